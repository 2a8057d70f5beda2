"""The ``support-trainer feedback`` commands. Light at import: each handler imports Kafka,
SQLite and the schemas when it runs, so ``support-trainer --help`` stays fast."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Final

from trainer.feedback.errors import FeedbackError

if TYPE_CHECKING:
    from worker.settings import WorkerSettings

DEFAULT_GROUP: Final = "support-trainer-feedback"
EXIT_INCOMPLETE: Final = 1


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``feedback collect`` and ``feedback forget`` under ``commands``."""
    fb = commands.add_parser("feedback", help="agents' corrections as a labeled data set")
    sub = fb.add_subparsers(dest="feedback_command", metavar="COMMAND", required=True)

    co = sub.add_parser(
        "collect",
        help="read support.feedback, join each correction with its routed result, and write "
        "DIR/dataset.jsonl and DIR/manifest.json (resumable; a second run adds nothing)",
    )
    co.add_argument(
        "--out", type=Path, required=True, help="data set dir (also holds collect.sqlite)"
    )
    co.add_argument("--config", type=Path, help="TOML settings file (kafka, topics), the worker's")
    co.add_argument(
        "--timeout-s",
        type=float,
        default=300.0,
        help="stop after this long (exit 1; progress is kept); Kafka must answer within "
        "min(this, kafka.admin_timeout_s)",
    )
    co.add_argument(
        "--group",
        default=DEFAULT_GROUP,
        help=f"consumer group that owns the feedback position (default {DEFAULT_GROUP}); one "
        "per data set dir",
    )
    co.add_argument(
        "--batch-size", type=int, default=500, help="records per chunk (one transaction each)"
    )
    co.set_defaults(handler=_collect)

    fo = sub.add_parser(
        "forget",
        help="erase a customer's messages from a data set (and keep a later collect from "
        "adding them back); prints the count removed",
    )
    fo.add_argument("--dataset", type=Path, required=True, help="the data set dir of collect")
    fo.add_argument("--customer-id", required=True, help="as in the inbound message")
    fo.set_defaults(handler=_forget)


def _collect(args: argparse.Namespace) -> int:
    from confluent_kafka import KafkaException

    from trainer.feedback.collect import CollectOptions, collect, summary
    from worker.errors import WorkerError

    if args.timeout_s <= 0 or args.batch_size < 1:
        raise FeedbackError("--timeout-s and --batch-size take a positive number")
    settings = _settings(args.config)
    opts = CollectOptions(args.out, args.group, args.timeout_s, args.batch_size)
    try:
        outcome = collect(settings, opts)
    except WorkerError as exc:  # e.g. refused credentials, raised from librdkafka's callback
        raise FeedbackError(str(exc)) from None
    except KafkaException as exc:
        raise FeedbackError(f"Kafka: {settings.kafka.scrub(str(exc))}") from None
    for line in summary(opts, settings.topics, outcome):
        print(line, flush=True)
    return 0 if outcome.complete else EXIT_INCOMPLETE


def _forget(args: argparse.Namespace) -> int:
    from trainer.feedback.erasure import forget

    removed, meta = forget(args.dataset, args.customer_id)
    print(
        f"removed {removed} example(s) of that customer from {args.dataset}; the erasure is "
        "recorded, so a later collect will not add them back"
    )
    print(f"fingerprint {meta['fingerprint']}")
    return 0


def _settings(config: Path | None) -> WorkerSettings:
    """The worker's settings (kafka, topics), or one FeedbackError naming the setting."""
    from pydantic import ValidationError
    from pydantic_settings import SettingsError

    from worker.settings import load_settings

    try:
        return load_settings(config)
    except ValidationError as exc:
        first = exc.errors()[0]
        name = ".".join(str(p) for p in first["loc"])
        raise FeedbackError(f"setting {name!r}: {first['msg']}") from None
    except (SettingsError, FileNotFoundError) as exc:
        raise FeedbackError(str(exc)) from None
