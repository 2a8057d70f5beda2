"""deploy/monitoring as code, checked offline.

- promtool (Debian's `prometheus` package; `make test` puts it on PATH from
  `.tools/usr/bin`) checks alerts.yaml and runs its unit tests, alerts.test.yaml, in which
  every alert fires on its case and stays silent beside it; with every alert's expression
  made unsatisfiable those tests fail, naming each alert.
- deploy/k8s/base/prometheusrule.yaml carries the same groups and fits the
  prometheus-operator CRD schema vendored in deploy/vendor.
- The Grafana dashboard is well-formed and every query parses as PromQL. That each one
  names a metric the worker really exports is tests/integration/deploy/test_dashboard.py.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.conftest import REPO, VENDOR

MONITORING = REPO / "deploy" / "monitoring"
ALERTS = MONITORING / "alerts.yaml"
ALERT_TESTS = MONITORING / "alerts.test.yaml"
DASHBOARD = MONITORING / "grafana" / "support-router.json"
PROMETHEUS_RULE = REPO / "deploy" / "k8s" / "base" / "prometheusrule.yaml"
CRD = VENDOR / "prometheus-operator" / "monitoring.coreos.com_prometheusrules.yaml"
LOCAL_PROMTOOL = REPO / ".tools" / "usr" / "bin" / "promtool"
RUNBOOK = "docs/operations.md"
SEVERITIES = {"warning", "critical"}


@pytest.fixture(scope="module")
def promtool() -> str:
    found = shutil.which("promtool") or (str(LOCAL_PROMTOOL) if LOCAL_PROMTOOL.exists() else None)
    if found is None:
        pytest.fail(
            f"promtool is neither on PATH nor at {LOCAL_PROMTOOL}: `make test` provides it "
            "(Debian's prometheus package, extracted into .tools)"
        )
    return found


def run_promtool(promtool: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool, *map(str, args)], capture_output=True, text=True, timeout=300, check=False
    )


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def alert_rules(groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


# -- the rules, through promtool -------------------------------------------------------------


def test_promtool_checks_the_rules(promtool: str) -> None:
    rules = [rule for group in load_yaml(ALERTS)["groups"] for rule in group["rules"]]
    done = run_promtool(promtool, "check", "rules", ALERTS)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(rules)} rules found" in done.stdout + done.stderr


def test_promtool_unit_tests_pass(promtool: str) -> None:
    done = run_promtool(promtool, "test", "rules", ALERT_TESTS)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout + done.stderr


def test_the_unit_tests_fail_for_every_alert_that_cannot_fire(
    promtool: str, tmp_path: Path
) -> None:
    """The promtool tests bite: with each alert's expression unsatisfiable, each one fails."""
    rules = load_yaml(ALERTS)
    for rule in alert_rules(rules["groups"]):
        rule["expr"] = "vector(1) == 0"
    (tmp_path / ALERTS.name).write_text(yaml.safe_dump(rules, sort_keys=False))
    shutil.copy(ALERT_TESTS, tmp_path / ALERT_TESTS.name)
    done = run_promtool(promtool, "test", "rules", tmp_path / ALERT_TESTS.name)
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    missed = [
        r["alert"] for r in alert_rules(rules["groups"]) if f"alertname: {r['alert']}" not in output
    ]
    assert not missed, f"no failing case for {missed}:\n{output}"


def test_every_alert_has_a_firing_case_and_a_silent_one() -> None:
    cases: dict[str, list[bool]] = {}
    for test in load_yaml(ALERT_TESTS)["tests"]:
        for case in test.get("alert_rule_test", []):
            cases.setdefault(case["alertname"], []).append(bool(case.get("exp_alerts")))
    alerts = [rule["alert"] for rule in alert_rules(load_yaml(ALERTS)["groups"])]
    assert alerts
    assert {name: sorted(set(fired)) for name, fired in cases.items() if name in alerts} == {
        name: [False, True] for name in alerts
    }
    assert set(cases) <= set(alerts), (
        f"tests of alerts that do not exist: {set(cases) - set(alerts)}"
    )


def test_every_alert_has_a_severity_a_summary_a_description_and_its_runbook() -> None:
    for rule in alert_rules(load_yaml(ALERTS)["groups"]):
        name, annotations = rule["alert"], rule.get("annotations", {})
        assert rule.get("labels", {}).get("severity") in SEVERITIES, name
        assert annotations.get("summary") and annotations.get("description"), name
        # The runbook section is the alert's name as a heading: `### SupportRouterX`.
        assert annotations.get("runbook_url") == f"{RUNBOOK}#{name.lower()}", name


# -- the PrometheusRule -----------------------------------------------------------------------


def test_the_prometheusrule_carries_the_groups_of_alerts_yaml() -> None:
    rule = load_yaml(PROMETHEUS_RULE)
    assert (rule["apiVersion"], rule["kind"]) == ("monitoring.coreos.com/v1", "PrometheusRule")
    assert rule["spec"]["groups"] == load_yaml(ALERTS)["groups"], (
        f"{PROMETHEUS_RULE.relative_to(REPO)}: spec.groups differs from "
        f"{ALERTS.relative_to(REPO)}'s groups; copy them over"
    )


def crd_schema() -> dict[str, Any]:
    crd = load_yaml(CRD)
    [version] = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


def test_the_prometheusrule_fits_the_crd_schema() -> None:
    schema = crd_schema()
    validator = jsonschema.Draft7Validator(schema)
    rule = load_yaml(PROMETHEUS_RULE)
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(rule)]
    assert not errors, errors
    # The schema is not vacuous: a duration Prometheus would refuse, and a rule without
    # an expression, both fail it.
    bad = copy.deepcopy(rule)
    alerts = alert_rules(bad["spec"]["groups"])
    alerts[0]["for"] = "ten minutes"
    del alerts[1]["expr"]
    messages = sorted(e.message for e in validator.iter_errors(bad))
    assert len(messages) == 2, messages
    assert any("ten minutes" in m for m in messages) and any("'expr'" in m for m in messages)


# -- the dashboard ------------------------------------------------------------------------------


def all_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, those inside rows (collapsed rows hold theirs) included."""
    out = []
    for panel in dashboard["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))
    return out


def test_the_dashboard_is_provisionable() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"] and dashboard["schemaVersion"] >= 36
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert (variables["DS_PROMETHEUS"]["type"], variables["DS_PROMETHEUS"]["query"]) == (
        "datasource",
        "prometheus",
    )
    panels = [p for p in all_panels(dashboard) if p["type"] != "row"]
    assert len({p["id"] for p in all_panels(dashboard)}) == len(all_panels(dashboard))
    for panel in panels:
        title = panel["title"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}, title
        assert panel["targets"], title
        for target in panel["targets"]:
            assert target["expr"].strip() and target["datasource"] == panel["datasource"], title
        # Every $variable a query uses is defined (Grafana's own $__ ones aside).
        used = {v for t in panel["targets"] for v in re.findall(r"\$(\w+)", t["expr"])}
        assert {v for v in used if not v.startswith("__")} <= set(variables), title


GRAFANA_VARIABLES = {
    "$__rate_interval": "1m",
    "$window": "1h",
    "$job": ".*",
    "$instance": ".*",
    "$head": "intent",
}


def as_promql(expr: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    return expr


def test_every_dashboard_query_parses_as_promql(promtool: str, tmp_path: Path) -> None:
    """Each query, with Grafana's variables filled in, as a recording rule promtool checks."""
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in all_panels(dashboard) for t in p.get("targets", [])]
    for variable in dashboard["templating"]["list"]:
        query = variable.get("query")
        query = query.get("query", "") if isinstance(query, dict) else query
        if match := re.fullmatch(r"label_values\((.+),\s*\w+\)", query or ""):
            exprs.append(match.group(1))
    assert exprs
    assert not [e for e in map(as_promql, exprs) if "$" in e], "a variable left unreplaced"
    rules = [{"record": f"dashboard:query{i}", "expr": as_promql(e)} for i, e in enumerate(exprs)]
    path = tmp_path / "dashboard-queries.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    done = run_promtool(promtool, "check", "rules", path)
    assert done.returncode == 0, done.stdout + done.stderr
    # ... and promtool does refuse a broken one.
    rules.append({"record": "dashboard:broken", "expr": "sum by (le (rate(x[1m]))"})
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    assert run_promtool(promtool, "check", "rules", path).returncode != 0


def test_duration_panels_query_seconds_and_show_seconds() -> None:
    """Base units (issue 24): the worker's durations are `support_*_seconds` histograms, and
    a panel over one says so in its unit, which Grafana then scales (ms, s, min)."""
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = {
        p["title"]: " ".join(t["expr"] for t in p["targets"])
        for p in all_panels(dashboard)
        if p["type"] != "row"
    }
    assert not [t for t, e in exprs.items() if re.search(r"support_\w+_ms(_|\b)", e)], (
        "a panel queries a metric of the old _ms names, which no worker exports any more"
    )
    timed = [p for p in all_panels(dashboard) if "_seconds_bucket" in exprs.get(p["title"], "")]
    assert len(timed) == 3, [p["title"] for p in timed]  # queue, inference, end to end
    assert {p["title"]: p["fieldConfig"]["defaults"]["unit"] for p in timed} == {
        p["title"]: "s" for p in timed
    }
