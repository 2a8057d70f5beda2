"""python -m tests.chaos [--short] [--brokers 3] [--scenario NAME ...] [--out DIR]: the chaos suite.

Starts its own broker (deploy/local-kafka with LOCAL_KAFKA_STATE=.kafka-chaos on a free
port; scenario 2 kills and freezes it), builds or reuses the smoke artifact, runs the
scenarios one after another, writes report.json and report.md into --out, stops
everything it started (also on failure, Ctrl-C or SIGTERM), and exits 0 only when
every scenario passed.

With --brokers 3 the broker is a three-node KRaft cluster in the same state dir (topics
with replication factor 3, min.insync.replicas 2), every scenario runs on it, and the
cluster scenarios (one node stopped, killed, frozen, the transaction coordinator killed,
a rolling restart) follow. When toxiproxy-server is built (`make toxiproxy`), each node
also gets a proxied listener and the network scenarios run through it.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import shutil
import signal
import sys
import time
from pathlib import Path
from types import FrameType

from tests.chaos.broker import DEFAULT_STATE, ChaosBroker
from tests.chaos.cluster import ChaosCluster
from tests.chaos.report import markdown, write_reports
from tests.chaos.scenarios import (
    ALL,
    CLUSTER,
    NETWORK,
    SHORT_SET,
    Ctx,
    run_scenario,
    scenario_names,
)
from tests.chaos.toxiproxy import Toxiproxy, free_port, server_binary
from tests.conftest import REPO

CACHE = (
    Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "support-router"
)  # the jar and wheel cache's home


def smoke_artifact() -> Path:
    """The tests' smoke artifact (tests/conftest.py ``smoke_artifact``), trained once.

    Cached by a digest of the trainer and schema sources: a change there retrains it.
    """
    digest = hashlib.sha256()
    for root in ("trainer", "schemas"):
        for path in sorted((REPO / root).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                digest.update(str(path.relative_to(REPO)).encode())
                digest.update(path.read_bytes())
    out = CACHE / f"chaos-smoke-{digest.hexdigest()[:12]}"
    if (out / "manifest.json").exists():
        return out
    from trainer.cli import main as trainer_main

    tmp = out.with_name(out.name + f".tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    print(f"training the smoke artifact into {out} (once)", flush=True)
    if trainer_main(["train", "--preset", "smoke", "--out", str(tmp)]) != 0:
        raise SystemExit("training the smoke artifact failed")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


def _sigterm(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # unwinds through every finally: workers, topics, broker


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.chaos",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--short",
        action="store_true",
        help=f"the small form; default scenarios {', '.join(SHORT_SET)}",
    )
    parser.add_argument(
        "--scenario",
        action="append",
        choices=[*ALL, *CLUSTER],
        metavar="NAME",
        help=f"run only these (repeat); one of {', '.join(ALL)}; "
        f"with --brokers 3 also {', '.join(CLUSTER)}",
    )
    parser.add_argument(
        "--brokers",
        type=int,
        choices=(1, 3),
        default=1,
        help="the own broker: 1, or a three-node cluster (adds the cluster scenarios)",
    )
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "chaos")
    parser.add_argument("--seed", type=int, help="random choices (victims, fuzz); default: new")
    parser.add_argument(
        "--bootstrap",
        help="use this broker instead of starting one "
        "(broker-restart and broker-freeze are then skipped)",
    )
    parser.add_argument("--model", type=Path, help="artifact dir (default: the smoke artifact)")
    parser.add_argument(
        "--state",
        type=Path,
        default=DEFAULT_STATE,
        help="the own broker's state dir (default .kafka-chaos)",
    )
    parser.add_argument(
        "--max-minutes",
        type=float,
        help="stop everything after this long (default 12 short, 45 full; +15 with --brokers 3)",
    )
    args = parser.parse_args(argv)
    if args.bootstrap and args.brokers > 1:
        parser.error("--bootstrap uses your cluster; --brokers starts one of its own")
    signal.signal(signal.SIGTERM, _sigterm)
    signal.signal(signal.SIGALRM, _sigterm)  # the whole run is bounded, whatever hangs
    default_minutes = (12 if args.short else 45) + (15 if args.brokers > 1 else 0)
    signal.alarm(int(60 * (args.max_minutes or default_minutes)))
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    names = scenario_names(args.scenario, args.short, args.brokers)
    started = time.monotonic()
    broker: ChaosBroker | ChaosCluster | None = None
    proxy: Toxiproxy | None = None
    ctx: Ctx | None = None
    results = []
    try:
        artifact = args.model or smoke_artifact()
        proxied: str | None = None
        if args.bootstrap:
            bootstrap = args.bootstrap
        elif args.brokers > 1:
            toxiproxy = server_binary() if set(names) & set(NETWORK) else None
            if set(names) & set(NETWORK) and toxiproxy is None:
                print("toxiproxy-server not built (make toxiproxy): network scenarios skip")
            ports = [free_port() for _ in range(args.brokers)] if toxiproxy else []
            broker = ChaosCluster(args.state, args.brokers, [f"127.0.0.1:{p}" for p in ports])
            print(f"starting the chaos cluster ({args.state}, {args.brokers} nodes)", flush=True)
            bootstrap = broker.up()
            if toxiproxy is not None:
                proxy = Toxiproxy(toxiproxy, args.out / "logs" / "toxiproxy.log")
                proxy.start()
                for node in broker.nodes:
                    assert node.advertised and node.external_port
                    upstream = f"127.0.0.1:{node.external_port}"
                    proxy.add_proxy(f"node-{node.node_id}", node.advertised, upstream)
                proxied = broker.external
                print(f"toxiproxy {toxiproxy}: workers of network scenarios at {proxied}")
        else:
            broker = ChaosBroker(args.state)
            print(f"starting the chaos broker ({args.state}, port {broker.port})", flush=True)
            bootstrap = broker.up()
        ctx = Ctx(
            bootstrap,
            artifact,
            args.out,
            args.short,
            seed,
            broker,
            replication=3 if args.brokers >= 3 else 1,
            proxy=proxy,
            proxy_bootstrap=proxied,
        )
        print(
            f"chaos run {ctx.run_id}: seed {seed}, broker {bootstrap}, model {artifact}, "
            f"scenarios {', '.join(names)}",
            flush=True,
        )
        for name in names:
            results.append(run_scenario(ctx, name))
    except KeyboardInterrupt:
        print(
            "interrupted (Ctrl-C, SIGTERM or --max-minutes): stopping everything this run started",
            file=sys.stderr,
            flush=True,
        )
        return 130
    finally:
        signal.alarm(0)
        if ctx is not None:
            ctx.close()
        if proxy is not None:
            proxy.stop()
        if broker is not None:
            broker.down()
        if results and ctx is not None:
            meta = {
                "run_id": ctx.run_id,
                "mode": "short" if args.short else "full",
                "seed": seed,
                "broker": ctx.bootstrap,
                "brokers": args.brokers,
                "toxiproxy": str(proxy.binary) if proxy is not None else None,
                "model": str(ctx.artifact),
                "seconds": round(time.monotonic() - started, 1),
                "command": "python -m tests.chaos " + " ".join(argv or sys.argv[1:]),
            }
            md = write_reports(results, args.out, meta)
            print(
                markdown(
                    {**meta, "passed": all(r["passed"] for r in results), "scenarios": results}
                ).split("\n## ")[0]
            )
            print(f"reports: {md} and {md.with_suffix('.json')}", flush=True)
    return 0 if results and all(r["passed"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
