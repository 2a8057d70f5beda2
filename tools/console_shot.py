"""``make screenshot`` (``python -m tools.console_shot``): docs/console.png, the console
after a routed result, from a real broker, worker and console and headless Chromium.

It uses the demo's broker (started here if none runs, and stopped after), topics and
model (models/current, trained as `make demo` does if missing), with a worker and a
console of its own (their own group, free ports), so a running `make demo` is not
disturbed. Live traffic is the demo's samples, produced over a few seconds; the tried
message is the notebook's "charged me TWICE" example.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tools import KAFKA_TOOL, REPO, browser, console_proc, demo, worker_proc
from worker.settings import TopicNames

TRIED = "WTF!!! You charged me TWICE for the same transaction!! FIX THIS IMMEDIATELY!"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "console.png")
    parser.add_argument("--width", type=int, default=1440)
    parser.add_argument("--height", type=int, default=1100)
    args = parser.parse_args()

    bootstrap, started_broker = demo.broker()
    logs = REPO / ".kafka"
    logs.mkdir(exist_ok=True)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        demo.apply_topics(
            bootstrap, local=started_broker or not os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
        )
        model = demo.ensure_model()
        topics = TopicNames()
        tag = uuid.uuid4().hex[:6]
        env = worker_proc.worker_env(
            bootstrap,
            topics.model_dump(),
            model,
            group=f"support-router-shot-{tag}",
            txn_id=f"support-router-shot-{tag}",
        )
        worker = worker_proc.WorkerProc(
            subprocess.Popen(
                [sys.executable, "-m", "worker.cli", "run"],
                cwd=REPO,
                env=env,
                stdout=(logs / "shot-worker.log").open("wb"),
                stderr=subprocess.STDOUT,
            ),
            logs / "shot-worker.log",
        )
        procs.append(worker.proc)
        worker.wait_ready(120)
        console = console_proc.start(env, logs / "shot-console.log")
        procs.append(console.proc)
        url = console.wait_ready()
        demo.say(f"worker and console ({url}) ready; producing the demo's samples")

        driver = browser.chrome(args.width, args.height)
        try:
            driver.get(url)
            WebDriverWait(driver, 20).until(
                lambda d: d.find_element(By.ID, "stream-state").text == "live"
            )
            for _ in range(3):  # a few seconds of traffic for the live view
                demo.produce_samples(bootstrap, topics.inbound)
                time.sleep(4)
            box = driver.find_element(By.ID, "text")
            box.clear()
            box.send_keys(TRIED)
            driver.find_element(By.ID, "submit").click()
            result = driver.find_element(By.ID, "result")
            WebDriverWait(driver, 30).until(
                lambda _: result.get_attribute("data-status") == "routed"
            )
            time.sleep(2)  # the next stats event redraws the chart with the last records
            args.out.parent.mkdir(parents=True, exist_ok=True)
            driver.save_screenshot(str(args.out))
        finally:
            driver.quit()
        demo.say(f"wrote {args.out}")
    finally:
        for proc in reversed(procs):
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            proc.wait(60)
        if started_broker:
            subprocess.run([sys.executable, str(KAFKA_TOOL), "down"], check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
