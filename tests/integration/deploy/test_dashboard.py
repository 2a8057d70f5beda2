"""The dashboard and the alert rules name only metrics a live worker exports.

A worker on the real broker, with the smoke model, routes a few messages and dead-letters
some, so that every labelled counter has a sample; then its /metrics is parsed, and every
``support_*`` name in every panel's query, in the dashboard's variables and in every rule
of deploy/monitoring/alerts.yaml must be a series on it. The check itself is shown to name
a panel whose query has a metric the worker lacks.

The readiness and circuit-breaker gauges are read from live workers too: what the
readiness-flapping and circuit-breaker alerts count must move.
"""

from __future__ import annotations

import copy
import json
import re
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import REPO
from tests.integration.worker.harness import (
    make_topics,
    produce,
    read_committed,
    running_worker,
    start_worker,
)
from tools.worker_proc import WorkerProc

DASHBOARD = REPO / "deploy" / "monitoring" / "grafana" / "support-router.json"
ALERTS = REPO / "deploy" / "monitoring" / "alerts.yaml"
# A worker metric: `support_` then letters and underscores, not inside a longer name (the
# recording rules' `support:...` names are Prometheus's own, not the worker's).
METRIC = re.compile(r"(?<![\w:])support_[a-z_]+")
SUFFIXES = ("_bucket", "_sum", "_count", "_total")


def dashboard_references(dashboard: dict[str, Any]) -> dict[str, set[str]]:
    """Metric name -> the panels (by title) and variables (by name) that query it."""
    refs: dict[str, set[str]] = {}
    panels = [p for top in dashboard["panels"] for p in [top, *top.get("panels", [])]]
    for panel in panels:
        for target in panel.get("targets", []):
            for name in METRIC.findall(target.get("expr", "")):
                refs.setdefault(name, set()).add(f"panel {panel['title']!r}")
    for variable in dashboard.get("templating", {}).get("list", []):
        query = variable.get("query")
        query = query.get("query", "") if isinstance(query, dict) else query or ""
        for name in METRIC.findall(query):
            refs.setdefault(name, set()).add(f"variable ${variable['name']}")
    return refs


def rule_references(groups: Iterable[dict[str, Any]]) -> dict[str, set[str]]:
    refs: dict[str, set[str]] = {}
    for group in groups:
        for rule in group["rules"]:
            for name in METRIC.findall(rule["expr"]):
                refs.setdefault(name, set()).add(f"rule {rule.get('alert') or rule['record']}")
    return refs


def family(name: str) -> str:
    """The family prometheus_client reports a series under (counters lose ``_total``)."""
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def missing(refs: dict[str, set[str]], exposition: str) -> list[str]:
    """One line per referenced name that is not a series of the exposition."""
    families = list(text_string_to_metric_families(exposition))
    series = {s.name for f in families for s in f.samples}
    names = {f.name for f in families}
    out = []
    for name, where in sorted(refs.items()):
        if name in series:
            continue
        known = f"family {family(name)} has no such series" if family(name) in names else ""
        out.append(f"{name} ({', '.join(sorted(where))}) is not on /metrics {known}".strip())
    return out


def scrape(w: WorkerProc) -> str:
    status, body = w.get("/metrics")
    assert status == 200, w.tail()
    return body


def samples(body: str, name: str) -> list[float]:
    return [
        s.value for f in text_string_to_metric_families(body) for s in f.samples if s.name == name
    ]


def wait_for(w: WorkerProc, ok: Callable[[str], bool], what: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = scrape(w)
        if ok(body):
            return body
        time.sleep(0.2)
    raise AssertionError(f"{what} not seen on /metrics in {timeout}s:\n{scrape(w)}\n{w.tail()}")


def test_every_dashboard_and_alert_metric_is_on_a_live_worker(
    kafka_bootstrap: str, make_topic: Callable[..., str], smoke_artifact: Path, tmp_path: Path
) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    panel_refs, rule_refs = dashboard_references(dashboard), rule_references(groups)
    assert panel_refs and rule_refs

    topics = make_topics(make_topic, partitions=2)
    good, bad = produce(kafka_bootstrap, topics.inbound, 40, bad_every=10)
    assert (len(good), len(bad)) == (36, 4)
    with running_worker(kafka_bootstrap, topics, smoke_artifact, tmp_path) as w:
        got = read_committed(kafka_bootstrap, topics, 40, timeout=90)
        assert (len(got.results), len(got.dead)) == (36, 4)
        # Counted after the commit, and the lag comes with librdkafka's next statistics.
        body = wait_for(
            w,
            lambda b: (
                sum(samples(b, "support_messages_out_total")) == 36
                and sum(samples(b, "support_dead_letters_total")) == 4
                and len(samples(b, "support_consumer_lag")) == 2
            ),
            "36 results, 4 dead letters and the lag of both partitions",
        )

    problems = missing(panel_refs, body) + missing(rule_refs, body)
    assert not problems, "\n".join(problems)
    assert samples(body, "support_ready") == [1.0], "a ready worker exports support_ready 1"

    # The check names what is missing, and where: a panel with a metric no worker exports.
    bogus = copy.deepcopy(dashboard)
    expr = "sum(rate(support_bogus_total[5m])) / sum(rate(support_batches_total[5m]))"
    bogus["panels"].append({"type": "timeseries", "title": "Bogus", "targets": [{"expr": expr}]})
    assert missing(dashboard_references(bogus), body) == [
        "support_bogus_total (panel 'Bogus') is not on /metrics"
    ]


def test_the_failing_batches_gauge_counts_the_batches_a_broken_model_fails(
    kafka_bootstrap: str, make_topic: Callable[..., str], smoke_artifact: Path, tmp_path: Path
) -> None:
    """What SupportRouterCircuitBreakerOpen reads, on a worker whose every forward pass fails.

    The breaker's limit is raised so that the worker keeps failing, and keeps exporting,
    instead of exiting 4 before a scrape.
    """
    topics = make_topics(make_topic, partitions=1)
    w = start_worker(
        kafka_bootstrap,
        topics,
        smoke_artifact,
        tmp_path,
        group=f"g-{topics.inbound}",
        txn_id=f"t-{topics.inbound}",
        module="tests.chaos.faulty_worker",
        extra_env={"CHAOS_FAIL_ALL": "1"},
        MODEL__FAILING_BATCHES="100000",
    )
    try:
        w.wait_ready()
        body = scrape(w)
        assert samples(body, "support_model_failing_batches") == [0.0]
        produce(kafka_bootstrap, topics.inbound, 5)
        body = wait_for(
            w,
            lambda b: max(samples(b, "support_model_failing_batches"), default=0) >= 2,
            "support_model_failing_batches >= 2",
        )
        assert samples(body, "support_batches_total") == [0.0]  # nothing was committed
    finally:
        w.kill()
