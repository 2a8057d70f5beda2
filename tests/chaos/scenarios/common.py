"""What every chaos scenario shares: the context (Ctx), one run of workers (Run), the result.

Ctx holds the broker, the model artifact, the output folder and cleanup; Run is one
topic set with its inputs, workers, read_committed reader and fault log, its checks, and
its accounting at the end; _result turns a finished Run into a scenario's result.
"""

from __future__ import annotations

import contextlib
import json
import random
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka.admin import AdminClient, NewTopic

from tests.chaos.broker import ChaosBroker
from tests.chaos.cluster import ChaosCluster
from tests.chaos.fleet import Fleet
from tests.chaos.observe import CommittedTail, FaultLog, RssSampler
from tests.chaos.report import Accounting, Inputs, account, offset_unknown, recovery
from tests.chaos.toxiproxy import Toxiproxy
from tests.chaos.workload import Feeder
from tests.integration.worker.harness import make_topics
from worker.routing import DEFAULT_MIN_ACTION_CONFIDENCE, RoutingPolicy

FAULTY = "tests.chaos.faulty_worker"
# The worker's watchdog exit when a librdkafka call hangs after its broker went away
# (librdkafka#5456/#5511, worker/kafka/watchdog.py): deliberate where a scenario restarts brokers.
HUNG_CALL = frozenset({"kafka_call_hung"})
# Post-decode stages at which a message the decoder accepted may sensibly be dead-lettered.
LATE_STAGES = frozenset({"dlq:route", "dlq:serialize"})


@dataclass
class Ctx:
    """What every scenario shares: the broker, the model, where to write, and cleanup."""

    bootstrap: str
    artifact: Path
    out_dir: Path
    short: bool
    seed: int
    # None: not ours, so the broker faults are skipped; a cluster with --brokers 3
    broker: ChaosBroker | ChaosCluster | None = None
    run_id: str = field(default_factory=lambda: time.strftime("%Y%m%d-%H%M%S"))
    runs: list[Run] = field(default_factory=list)
    topics: list[str] = field(default_factory=list)
    rss: RssSampler = field(default_factory=RssSampler)
    replication: int = 1  # of every topic a scenario makes; 3 on the cluster
    # Toxiproxy in front of each broker, and the bootstrap through it (network faults)
    proxy: Toxiproxy | None = None
    proxy_bootstrap: str | None = None

    def __post_init__(self) -> None:
        self.admin = AdminClient({"bootstrap.servers": self.bootstrap})
        self.rng = random.Random(self.seed)
        self.policy = _artifact_policy(self.artifact)

    def make_topic(
        self, prefix: str = "t", partitions: int = 1, config: dict[str, str] | None = None
    ) -> str:
        """The integration tier's make_topic, outside pytest: unique name, deleted at close."""
        name = f"chaos.{prefix}.{uuid.uuid4().hex[:10]}"
        config = dict(config or {})
        if self.replication > 1:
            # acks=all then needs two copies: one node may be down, none may be lost.
            config.setdefault("min.insync.replicas", str(self.replication - 1))
        futures = self.admin.create_topics(
            [
                NewTopic(
                    name,
                    num_partitions=partitions,
                    replication_factor=self.replication,
                    config=config,
                )
            ]
        )
        futures[name].result(timeout=60)
        self.topics.append(name)
        return name

    def close_runs(self) -> None:
        """Stop every worker, feeder and reader any scenario started (also on Ctrl-C)."""
        for run in self.runs:
            run.close()
        self.runs.clear()

    def close(self) -> None:
        self.close_runs()
        self.rss.close()
        self.drop_topics()

    def drop_topics(self) -> None:
        """Delete the topics made so far (after a scenario: fewer partitions for the
        next one's failovers to move)."""
        if self.topics:
            for fut in self.admin.delete_topics(self.topics).values():
                with contextlib.suppress(Exception):
                    fut.result(timeout=30)
            self.topics.clear()


def _artifact_policy(artifact: Path) -> RoutingPolicy | None:
    """The policy the worker derives from the artifact (defaults otherwise)."""
    try:
        manifest = json.loads((artifact / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    return RoutingPolicy(
        manifest.get("min_action_confidence", DEFAULT_MIN_ACTION_CONFIDENCE),
        max_unfamiliarity=(manifest.get("ood") or {}).get("threshold"),
    )


class Run:
    """One topic set with its inputs, its workers, its reader and its fault log."""

    def __init__(
        self,
        ctx: Ctx,
        name: str,
        *,
        partitions: int,
        module: str = "worker.cli",
        extra_env: dict[str, str] | None = None,
        worker_bootstrap: str | None = None,
        **settings: str,
    ) -> None:
        """``worker_bootstrap``: where the workers (only) connect, e.g. through Toxiproxy."""
        self.ctx, self.name = ctx, name
        self.closed = False
        ctx.runs.append(self)  # closed by ctx.close_runs() whatever happens next
        self.topics = make_topics(ctx.make_topic, partitions)
        self.faults = FaultLog(name)
        self.inputs = Inputs()
        t = self.topics
        self.tail = CommittedTail(
            ctx.bootstrap,
            {t.escalate: "escalate", t.auto_resolve: "auto_resolve", t.more_info: "more_info"},
            t.dlq,
        )
        self.fleet = Fleet(
            worker_bootstrap or ctx.bootstrap,
            t,
            ctx.artifact,
            ctx.out_dir / "logs" / ctx.run_id / name,
            group=f"chaos-{ctx.run_id}-{name}-{uuid.uuid4().hex[:4]}",
            faults=self.faults,
            rss=ctx.rss,
            module=module,
            extra_env=extra_env,
            **settings,
        )
        self.feeder = Feeder(ctx.bootstrap, t.inbound, self.inputs)
        self.checks: list[dict[str, Any]] = []
        self.restarts_left = 0
        # Log events of a deliberate exit that a supervisor (Kubernetes) restarts: allowed
        # where a scenario expects them, e.g. the watchdog ending a hung librdkafka call.
        self.deliberate_exits: frozenset[str] = frozenset()
        self.started = time.monotonic()
        self.stacks: dict[str, str] = {}  # py-spy dumps of workers that hung
        # Stop at the end with more than the workers' own grace, to see them honour it.
        self.grace_s = float(settings.get("SHUTDOWN_GRACE_S", 30)) + 10

    def check(self, name: str, ok: bool, detail: str = "", required: bool = True) -> bool:
        """A scenario check; one that is not ``required`` is reported, not part of the verdict."""
        self.checks.append({"name": name, "ok": bool(ok), "detail": detail, "required": required})
        return ok

    # -- waiting ------------------------------------------------------------------------

    def outstanding(self) -> int:
        """Delivered inputs that have no committed output yet."""
        outs = self.tail.snapshot()
        seen = {o.source for o in outs if o.source is not None}
        ids = {o.message_id for o in outs if o.message_id is not None}
        return sum(
            (s.message_id not in ids)
            if offset_unknown(s)
            else ((s.partition, s.offset) not in seen)
            for s in self.inputs.delivered()
        )

    def supervise(self) -> None:
        """Restart replicas that died by themselves while restarts are left (deaths count)."""
        for name in self.fleet.poll():
            if self.restarts_left > 0:
                self.restarts_left -= 1
                self.fleet.start(name)

    def sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.supervise()
            time.sleep(min(0.25, max(0.0, end - time.monotonic())))

    def wait_all_out(self, timeout: float, stall_s: float = 60) -> bool:
        """Until every delivered input has an output (and production ended). False on timeout,
        or when nothing new came out for stall_s after production ended (the run stays
        bounded when the workers hang), after recording the stacks of the workers."""
        deadline = time.monotonic() + timeout
        last, moved = -1, time.monotonic()
        while time.monotonic() < deadline:
            self.supervise()
            left = self.outstanding()
            if not self.feeder.running() and left == 0:
                return True
            if left != last or self.feeder.running():
                last, moved = left, time.monotonic()
            elif time.monotonic() - moved > stall_s:
                self.check("outputs kept coming", False, f"none for {stall_s:.0f}s, {left} left")
                break
            time.sleep(0.5)
        self.stacks.update(
            {f"{n} (waiting for outputs)": st for n, st in self.fleet.dump_running().items()}
        )
        return False

    def ready(self, *names: str, timeout: float = 120) -> bool:
        return all(self.fleet.wait_ready(n, timeout) for n in names)

    # -- the end --------------------------------------------------------------------------

    def finish(self, drain_timeout: float = 60) -> tuple[Accounting, dict[str, Any]]:
        """Stop workers, read every output to the end, account; closes this run."""
        self.feeder.stop()
        codes = self.fleet.stop_all(self.grace_s)
        self.check(
            "every worker stops on SIGTERM at the end",
            all(c is not None for c in codes.values()),
            ", ".join(f"{n}: exit {c}" for n, c in codes.items()),
        )
        self.stacks.update({f"{n} (ignored SIGTERM)": st for n, st in self.fleet.stuck.items()})
        drained = self.tail.drain(drain_timeout)
        self.check("reader read every output partition to its end", drained)
        outs = self.tail.snapshot()
        acc = account(self.inputs, outs, self.ctx.policy)
        rec = recovery(self.faults.events, outs)
        undelivered = self.inputs.undelivered()
        extra = {
            "counts": {**acc.counts(), "not_delivered": len(undelivered)},
            "examples": acc.examples(),
            "recovery": rec,
            "workers": self.fleet.summary(),
            "peak_rss_mib": {
                n: r["peak_rss_mib"] for n, r in self.fleet.summary()["replicas"].items()
            },
            "reader_errors": self.tail.errors[:10],
            "stacks": self.stacks,
            "topics": self.topics.__dict__,
        }

        def deliberate(death: dict[str, Any]) -> str:
            # The whole log, not the tail: a worker that logs many failures on its way out
            # (model-down under load) pushes its one deliberate line out of the last 25.
            text = Path(death["log"]).read_text(errors="replace")
            events = [e for e in self.deliberate_exits if f'"event": "{e}"' in text]
            return events[0] if events and (death["exit_code"] or 0) > 0 else ""

        unplanned = [d for d in self.fleet.deaths if not deliberate(d)]
        self.check(
            "no worker died by itself",
            not unplanned,
            "; ".join(f"{d['replica']} exit {d['exit_code']}" for d in unplanned),
        )
        planned = [d for d in self.fleet.deaths if deliberate(d)]
        if planned:
            self.check(
                "deliberate exits (one log line, non-zero), restarted as a supervisor would",
                True,
                "; ".join(f"{d['replica']}: {deliberate(d)}" for d in planned),
                required=False,
            )
        self.close()
        return acc, extra

    def close(self) -> None:
        """Idempotent, and safe on a Run whose __init__ failed part-way."""
        if self.closed:
            return
        self.closed = True
        feeder, fleet, tail = (getattr(self, n, None) for n in ("feeder", "fleet", "tail"))
        if feeder is not None:
            with contextlib.suppress(Exception):
                feeder.stop()
        if fleet is not None:
            fleet.kill_all()
        if tail is not None:
            tail.close()


def _result(
    run: Run,
    about: str,
    params: dict[str, Any],
    acc: Accounting,
    extra: dict[str, Any],
    fault_summary: str,
) -> dict[str, Any]:
    passed = acc.ok() and all(c["ok"] for c in run.checks if c.get("required", True))
    return {
        "scenario": run.name,
        "about": about,
        "passed": passed,
        "params": params,
        "checks": run.checks,
        "fault_summary": fault_summary,
        **extra,
        "seconds": round(time.monotonic() - run.started, 1),
        "tails": {} if passed else run.fleet.log_tails(),
    }
