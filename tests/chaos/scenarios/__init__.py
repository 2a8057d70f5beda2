"""The chaos scenarios (issue 9, "The suite: make chaos"): the registry and the runner.

Each scenario makes its own topics, starts real worker processes (the smoke artifact),
produces messages with unique ids, injects its faults, and then accounts for every
input with a read_committed reader of the route topics and the DLQ. It passes only
with missing = 0, duplicated = 0 and wrong place = 0, plus its own checks (no worker
died by itself, exit codes, ...). Checks are never relaxed to make today's code pass.

Modules: ``common`` (Ctx, Run and the result every scenario returns), ``crashes``
(crash storm, scale, SIGTERM under backlog), ``broker_faults`` (broker kill and freeze),
``poison_fuzz`` (poison records and fuzz), ``model_faults`` (model fault, model down,
slow model), ``txn_memory`` (transactional.id schemes, peak RSS); with ``--brokers 3``
also ``cluster_faults`` (one node: leader stopped, killed, frozen; the transaction
coordinator killed; a rolling restart) and ``network_faults`` (latency, connection
resets, a blackhole between workers and brokers, through Toxiproxy).
"""

from __future__ import annotations

import contextlib
import time
import traceback
from collections.abc import Callable, Iterator
from typing import Any

from tests.chaos.cluster import ChaosCluster
from tests.chaos.scenarios.broker_faults import broker_freeze, broker_restart
from tests.chaos.scenarios.cluster_faults import (
    leader_freeze,
    leader_sigkill,
    leader_sigterm,
    rolling_restart,
    txn_coordinator_kill,
)
from tests.chaos.scenarios.common import FAULTY, LATE_STAGES, Ctx, Run
from tests.chaos.scenarios.crashes import crash_storm, scale, sigterm_backlog
from tests.chaos.scenarios.model_faults import model_down, model_fault, slow_model
from tests.chaos.scenarios.network_faults import net_blackhole, net_latency, net_reset
from tests.chaos.scenarios.poison_fuzz import DEEP, Case, poison
from tests.chaos.scenarios.txn_memory import memory, txn_id

__all__ = [
    "ALL",
    "CLUSTER",
    "DEEP",
    "FAULTY",
    "LATE_STAGES",
    "NETWORK",
    "OWN_BROKER",
    "SCENARIOS",
    "SHORT_SET",
    "Case",
    "Ctx",
    "Run",
    "broker_freeze",
    "broker_restart",
    "crash_storm",
    "iter_failures",
    "memory",
    "model_down",
    "model_fault",
    "poison",
    "run_scenario",
    "scale",
    "scenario_names",
    "sigterm_backlog",
    "slow_model",
    "summary_line",
    "txn_id",
]

SHORT_SET = ("crash-storm", "sigterm-backlog", "poison", "model-fault", "model-down")
ALL = (
    "crash-storm",
    "broker-restart",
    "broker-freeze",
    "scale",
    "sigterm-backlog",
    "poison",
    "model-fault",
    "model-down",
    "slow-model",
    "txn-id",
    "memory",
)
OWN_BROKER = frozenset({"broker-restart", "broker-freeze"})
# Only on the run's own three-node cluster (--brokers 3); NETWORK also needs Toxiproxy.
NETWORK = ("net-latency", "net-reset", "net-blackhole")
CLUSTER = (
    "leader-sigterm",
    "leader-sigkill",
    "txn-coordinator",
    "leader-freeze",
    "rolling-restart",
    *NETWORK,
)


SCENARIOS: dict[str, Callable[[Ctx], dict[str, Any]]] = {
    "crash-storm": crash_storm,
    "broker-restart": broker_restart,
    "broker-freeze": broker_freeze,
    "scale": scale,
    "sigterm-backlog": sigterm_backlog,
    "poison": poison,
    "model-fault": model_fault,
    "model-down": model_down,
    "slow-model": slow_model,
    "txn-id": txn_id,
    "memory": memory,
    "leader-sigterm": leader_sigterm,
    "leader-sigkill": leader_sigkill,
    "txn-coordinator": txn_coordinator_kill,
    "leader-freeze": leader_freeze,
    "rolling-restart": rolling_restart,
    "net-latency": net_latency,
    "net-reset": net_reset,
    "net-blackhole": net_blackhole,
}


def run_scenario(ctx: Ctx, name: str) -> dict[str, Any]:
    """One scenario, whatever happens: an exception is a failed result, and cleanup runs."""
    print(f"== {name} ({'short' if ctx.short else 'full'})", flush=True)
    started = time.monotonic()
    skip = ""
    if name in OWN_BROKER and ctx.broker is None:
        skip = "needs the run's own broker (not --bootstrap)"
    elif name in CLUSTER and not isinstance(ctx.broker, ChaosCluster):
        skip = "needs the run's own three-node cluster (--brokers 3)"
    elif name in NETWORK and ctx.proxy is None:
        skip = "needs Toxiproxy (`make toxiproxy` builds .tools/toxiproxy-*/toxiproxy-server)"
    if skip:
        return {
            "scenario": name,
            "passed": True,
            "skipped": True,
            "checks": [],
            "about": f"skipped: {skip}",
            "fault_summary": "skipped",
            "seconds": 0.0,
        }
    try:
        result = SCENARIOS[name](ctx)
    except Exception as exc:
        result = {
            "scenario": name,
            "passed": False,
            "error": f"{type(exc).__name__}: {exc}",
            "traceback": traceback.format_exc(),
            "checks": [],
            "fault_summary": "-",
            "seconds": round(time.monotonic() - started, 1),
        }
        tails = {}
        for run in ctx.runs:
            fleet = getattr(run, "fleet", None)  # absent when Run.__init__ failed part-way
            if fleet is not None:
                tails.update({f"{run.name}/{k}": v for k, v in fleet.log_tails().items()})
        result["tails"] = tails
    finally:
        ctx.close_runs()
        if ctx.proxy is not None:
            with contextlib.suppress(Exception):
                ctx.proxy.reset()  # no toxic outlives its scenario, whatever happened
        ctx.drop_topics()
    print(f"   {summary_line(result)}", flush=True)
    return result


def summary_line(r: dict[str, Any]) -> str:
    c = r.get("counts") or {}
    verdict = "SKIP" if r.get("skipped") else ("PASS" if r["passed"] else "FAIL")
    failed = [ch["name"] for ch in r.get("checks", []) if not ch["ok"] and ch.get("required", True)]
    rec = (r.get("recovery") or {}).get("longest_s")
    return (
        f"{r['scenario']}: {verdict} in={c.get('in', '-')} out={c.get('out', '-')} "
        f"missing={c.get('missing', '-')} duplicated={c.get('duplicated', '-')} "
        f"wrong={c.get('wrong_place', '-')} faults=[{r.get('fault_summary', '-')}] "
        f"recovery={rec}s {r.get('seconds', 0):.0f}s"
        + (f" error={r['error']}" if r.get("error") else "")
        + (f" failed={failed}" if failed else "")
    )


def scenario_names(requested: list[str] | None, short: bool, brokers: int = 1) -> list[str]:
    """The requested ones, else the default set; a cluster adds its own scenarios."""
    if requested:
        return list(requested)
    return [*(SHORT_SET if short else ALL), *(CLUSTER if brokers >= 3 else ())]


def iter_failures(r: dict[str, Any]) -> Iterator[str]:
    """Readable reasons a result failed, for a pytest assertion message."""
    if r.get("error"):
        yield f"error: {r['error']}\n{r.get('traceback', '')}"
    for ch in r.get("checks", []):
        if not ch["ok"] and ch.get("required", True):
            yield f"check failed: {ch['name']} ({ch.get('detail', '')})"
    c = r.get("counts") or {}
    for k in ("missing", "duplicated", "wrong_place", "unmatched_out"):
        if c.get(k):
            yield f"{k} = {c[k]}, e.g. {(r.get('examples') or {}).get(k, [])[:5]}"
    for name, tail in (r.get("tails") or {}).items():
        yield f"--- log tail {name}\n{tail}"
