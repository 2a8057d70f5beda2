"""``support-worker``: the worker's command line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from schemas import PACKAGE_VERSION
from worker.errors import ConfigError, TopicDriftError, WorkerError

EXIT_FAILURE = 1
EXIT_CONFIG = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="support-worker",
        description="Route customer-support messages from Kafka through a multi-head model.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {PACKAGE_VERSION}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    topics = commands.add_parser("topics", help="manage the topics declared in deploy/topics.yaml")
    topic_cmds = topics.add_subparsers(dest="topics_command", metavar="ACTION", required=True)
    apply = topic_cmds.add_parser(
        "apply", help="create missing topics, add partitions, set configs; report drift"
    )
    apply.add_argument("--file", type=Path, default=Path("deploy/topics.yaml"))
    apply.add_argument(
        "--bootstrap-servers",
        help="defaults to SUPPORT_WORKER_KAFKA__BOOTSTRAP_SERVERS, then KAFKA_BOOTSTRAP_SERVERS",
    )
    apply.add_argument("--partitions", type=int, help="override every topic's partition count")
    apply.add_argument(
        "--replication-factor", type=int, help="override it, e.g. 1 on a single-node cluster"
    )
    apply.add_argument("--name-suffix", default="", help="append to every topic name (tests)")
    apply.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    apply.set_defaults(handler=_topics_apply)
    return parser


def _topics_apply(args: argparse.Namespace) -> int:
    # Imported here so `--help` and `--version` do not load librdkafka.
    from worker import kafka_admin
    from worker.settings import KafkaOnlySettings, KafkaSettings
    from worker.topics import load_topics, plan

    kafka = KafkaOnlySettings().kafka
    if args.bootstrap_servers:
        kafka = KafkaSettings(**{**kafka.model_dump(), "bootstrap_servers": args.bootstrap_servers})
    specs = load_topics(
        args.file,
        partitions=args.partitions,
        replication_factor=args.replication_factor,
        name_suffix=args.name_suffix,
    )
    admin = kafka_admin.make_admin(kafka)
    brokers = kafka_admin.cluster_brokers(admin, kafka)
    too_wide = [s.name for s in specs if s.replication_factor > brokers]
    if too_wide:
        raise ConfigError(
            f"{', '.join(too_wide)}: replication factor above the {brokers} broker(s) at "
            f"{kafka.bootstrap_servers}; pass --replication-factor {brokers}"
        )
    observed = kafka_admin.observe(admin, [s.name for s in specs], kafka.admin_timeout_s)
    changes = plan(specs, observed)
    if not args.dry_run:
        kafka_admin.execute(admin, changes, kafka.admin_timeout_s)
    for change in changes:
        print(f"{change.kind:<15} {change.topic:<28} {change.detail}")
    drift = [c for c in changes if c.kind == "drift"]
    if drift:
        raise TopicDriftError(f"{len(drift)} drift(s) that apply cannot fix; see above")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 0
    try:
        code: int = args.handler(args)
    except ConfigError as exc:
        print(f"support-worker: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except WorkerError as exc:
        print(f"support-worker: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    return code


if __name__ == "__main__":
    sys.exit(main())
