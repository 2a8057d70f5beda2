"""``make screenshot`` (``python -m tools.console_shot``): docs/console.png, the console
after a routed result, from a real broker, worker and console and headless Chromium.

It uses the demo's broker (started here if none runs, and stopped after) and model
(models/current, trained as `make demo` does if missing), on topics of its own (the
five of deploy/topics.yaml with a unique suffix, deleted after), so a running
`make demo` is neither disturbed nor replayed. Live traffic is the demo's samples,
produced three times over a few seconds; the tried message is the notebook's "charged
me TWICE" example.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from confluent_kafka.admin import AdminClient
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tools import KAFKA_TOOL, REPO, browser, console_proc, demo, worker_proc
from worker.settings import TopicNames

TRIED = "WTF!!! You charged me TWICE for the same transaction!! FIX THIS IMMEDIATELY!"
LOGS = REPO / ".kafka"


@contextlib.contextmanager
def own_topics(bootstrap: str, local: bool) -> Iterator[TopicNames]:
    suffix = f".shot-{uuid.uuid4().hex[:6]}"
    cmd = [sys.executable, "-m", "worker.cli", "topics", "apply", "--bootstrap-servers"]
    cmd += [bootstrap, "--file", str(REPO / "deploy" / "topics.yaml"), "--name-suffix", suffix]
    if local:
        cmd += ["--replication-factor", "1"]
    subprocess.run(cmd, check=True, cwd=REPO, stdout=subprocess.DEVNULL)
    topics = TopicNames(**{role: name + suffix for role, name in TopicNames().model_dump().items()})
    try:
        yield topics
    finally:
        admin = AdminClient({"bootstrap.servers": bootstrap})
        for fut in admin.delete_topics(list(topics.model_dump().values())).values():
            with contextlib.suppress(Exception):  # best effort: a leftover costs only disk
                fut.result(timeout=30)


@contextlib.contextmanager
def worker(bootstrap: str, topics: dict[str, str], model: Path, tag: str) -> Iterator[str]:
    """A ready worker of its own group on ``topics``; yields the group."""
    group = f"support-router-shot-{tag}"
    log = LOGS / "shot-worker.log"
    proc = worker_proc.start(bootstrap, topics, model, log, group=group, txn_id=group)
    try:
        proc.wait_ready(120)
        yield group
    finally:
        try:
            proc.stop(60)
        except subprocess.TimeoutExpired:
            proc.kill()


def shoot(url: str, bootstrap: str, inbound: str, out: Path, width: int, height: int) -> None:
    driver = browser.chrome(width, height)
    try:
        driver.get(url)
        WebDriverWait(driver, 20).until(
            lambda d: d.find_element(By.ID, "stream-state").text == "live"
        )
        for _ in range(3):  # a few seconds of traffic for the live view
            demo.produce_samples(bootstrap, inbound)
            time.sleep(4)
        box = driver.find_element(By.ID, "text")
        box.clear()
        box.send_keys(TRIED)
        driver.find_element(By.ID, "submit").click()
        result = driver.find_element(By.ID, "result")
        WebDriverWait(driver, 30).until(lambda _: result.get_attribute("data-status") == "routed")
        time.sleep(2)  # the next stats event redraws the chart with the last records
        out.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(out))
    finally:
        driver.quit()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "console.png")
    parser.add_argument("--width", type=int, default=1440)
    parser.add_argument("--height", type=int, default=1100)
    args = parser.parse_args()

    bootstrap, started_broker = demo.broker()
    LOGS.mkdir(exist_ok=True)
    local = started_broker or not os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    try:
        model = demo.ensure_model()
        with own_topics(bootstrap, local) as topics:
            roles = topics.model_dump()
            with worker(bootstrap, roles, model, uuid.uuid4().hex[:6]) as group:
                env = worker_proc.worker_env(bootstrap, roles, model, group=group, txn_id=group)
                with console_proc.running(env, LOGS / "shot-console.log") as console:
                    demo.say(f"worker and console ({console.url}) ready; producing the samples")
                    shoot(console.url, bootstrap, topics.inbound, args.out, args.width, args.height)
        demo.say(f"wrote {args.out}")
    finally:
        if started_broker:
            subprocess.run([sys.executable, str(KAFKA_TOOL), "down"], check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
