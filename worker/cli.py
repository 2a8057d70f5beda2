"""``support-worker``: the worker's command line."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from schemas import PACKAGE_VERSION
from worker.errors import (
    ConfigError,
    ExitCode,
    ModelLoadError,
    TopicDriftError,
    WorkerError,
)

T = TypeVar("T")

if TYPE_CHECKING:
    from worker.settings import WorkerSettings


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="support-worker",
        description="Route customer-support messages from Kafka through a multi-head model.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {PACKAGE_VERSION}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = commands.add_parser("run", help="consume, classify and route until stopped")
    run.add_argument("--config", type=Path, help="TOML settings file (env vars override it)")
    run.add_argument(
        "--shadow",
        type=Path,
        metavar="CANDIDATE",
        help="run the candidate artifact in shadow beside model.path: its own group, results "
        "to topics.shadow only, agreement per head in metrics (shadow.candidate)",
    )
    run.set_defaults(handler=_run)

    classify = commands.add_parser(
        "classify", help="run the pipeline and policy on one message; print the outbound JSON"
    )
    classify.add_argument("--model", type=Path, help="artifact dir (default: settings)")
    classify.add_argument("--config", type=Path)
    classify.add_argument("text")
    classify.set_defaults(handler=_classify)

    score = commands.add_parser(
        "score",
        help="route a JSONL file of inbound messages into a JSONL file of results, no Kafka",
        description="Each input line is an inbound message; each output line is the result "
        "the worker would publish for it, in input order, through the worker's intake, "
        "batches, model variant and routing. Lines the worker would dead-letter go to "
        "--dead-letters with their reason. Prints a JSON summary on stdout.",
    )
    score.add_argument(
        "--in", dest="src", type=Path, required=True, help="JSONL of inbound messages; - for stdin"
    )
    score.add_argument("--out", type=Path, required=True, help="JSONL of routed results")
    score.add_argument(
        "--dead-letters",
        type=Path,
        help="JSONL of the lines the worker would dead-letter (default: OUT with .dlq.jsonl)",
    )
    score.add_argument("--model", type=Path, help="artifact dir (default: settings)")
    score.add_argument("--config", type=Path)
    score.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="a progress bar on stderr (default: when stderr is a terminal)",
    )
    score.set_defaults(handler=_score)

    console = commands.add_parser(
        "console",
        help="a web page on the live pipeline: try a message, watch the routing "
        "(the console extra: pip install 'support-router[console]')",
        description="Serves one page. It produces typed messages to the inbound topic and shows "
        "the result a worker commits; it streams rates, escalations, dead letters and lag. "
        "Kafka, topics and the workers' group come from the worker's settings.",
    )
    console.add_argument("--config", type=Path, help="TOML settings file (kafka, topics)")
    console.add_argument(
        "--host",
        default="127.0.0.1",
        help="bind address (default loopback: the page can "
        "produce to the inbound topic, so expose it only behind your own access control)",
    )
    console.add_argument("--port", type=_port, default=8080, help="0 picks a free port")
    console.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        metavar="NAME",
        help="a host name the page is reached by, beyond loopback and --host (a proxy's, "
        "a DNS name); requests naming any other host are refused (DNS rebinding)",
    )
    console.add_argument(
        "--show-live-text",
        action="store_true",
        help="show the text of live traffic too (privacy: off, only the console's own "
        "messages show their text)",
    )
    console.add_argument(
        "--answer-timeout",
        type=float,
        default=10.0,
        metavar="S",
        help="how long a tried message waits for a worker's answer",
    )
    console.add_argument(
        "--review",
        action="store_true",
        help="the review page: queued messages with their text (shown by design), agents' "
        "corrections to topics.feedback, the agents' agreement with the model",
    )
    console.add_argument(
        "--agent-key-file",
        type=Path,
        metavar="PATH",
        help="a secret key (16+ bytes): agents' names become keyed hashes (a-<20 hex>); "
        "without it a name must already be an opaque id",
    )
    access = console.add_argument_group(
        "access",
        "who may use the console (docs/console.md: access). Neither a users file nor "
        "a proxy: no login, on a loopback --host only",
    )
    access.add_argument(
        "--users-file",
        type=Path,
        metavar="PATH",
        help="standalone login: name:role:argon2-hash lines (console hash-password writes one)",
    )
    access.add_argument(
        "--trusted-proxy",
        action="append",
        default=[],
        metavar="ADDR",
        help="an address or CIDR block of the OIDC proxy (oauth2-proxy) whose "
        "X-Forwarded-User/-Email/-Groups are believed; from anywhere else they are refused",
    )
    access.add_argument(
        "--proxy-roles-file",
        type=Path,
        metavar="PATH",
        help="TOML: [users] and [groups] of the proxy's identities -> viewer, agent, operator",
    )
    access.add_argument(
        "--session-key-file",
        type=Path,
        metavar="PATH",
        help="32+ random bytes that sign session cookies (else a random key: a restart "
        "ends every session)",
    )
    access.add_argument("--certfile", type=Path, metavar="PATH", help="HTTPS: the certificate")
    access.add_argument("--keyfile", type=Path, metavar="PATH", help="HTTPS: its private key")
    console.set_defaults(handler=_console)
    console_cmds = console.add_subparsers(dest="console_command", metavar="ACTION")
    hash_password = console_cmds.add_parser(
        "hash-password",
        help="print a users-file line (name:role:argon2 hash); the password is read from "
        "the terminal, or from stdin's first line when it is no terminal",
    )
    hash_password.add_argument("name")
    hash_password.add_argument("role", choices=["viewer", "agent", "operator"])
    hash_password.set_defaults(handler=_hash_password)

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

    dlq = commands.add_parser("dlq", help="work with the dead-letter topic")
    dlq_cmds = dlq.add_subparsers(dest="dlq_command", metavar="ACTION", required=True)
    replay = dlq_cmds.add_parser(
        "replay",
        help="re-publish selected dead letters to the inbound topic, exactly once",
        description="Filters combine with AND; a filter given twice matches either value. "
        "Progress is the group's DLQ position: a second run starts after the first.",
    )
    replay.add_argument("--config", type=Path, help="TOML settings file (topics, kafka)")
    replay.add_argument(
        "--stage", action="append", default=[], help="x-error-stage: decode, validate, infer, ..."
    )
    replay.add_argument("--error-type", action="append", default=[], metavar="TYPE")
    replay.add_argument(
        "--since", metavar="TIME", help="dead-lettered at or after (RFC 3339 or epoch ms)"
    )
    replay.add_argument("--until", metavar="TIME", help="dead-lettered before")
    replay.add_argument("--partition", action="append", default=[], metavar="P", help="of the DLQ")
    replay.add_argument(
        "--offsets",
        action="append",
        default=[],
        metavar="P:FIRST-LAST",
        help="DLQ offsets, inclusive; P:FIRST- or P:-LAST open-ended",
    )
    replay.add_argument("--group", default="support-router-dlq-replay", help="keeps progress")
    replay.add_argument("--transactional-id", default="", help="default: the group")
    replay.add_argument("--batch-size", type=int, default=500, help="DLQ records per transaction")
    replay.add_argument("--limit", type=int, help="stop after this many replays")
    replay.add_argument("--timeout-s", type=float, default=300.0, help="stop (exit 1) after")
    replay.add_argument("--dry-run", action="store_true", help="list, produce and commit nothing")
    replay.set_defaults(handler=_dlq_replay)
    return parser


def _topics_apply(args: argparse.Namespace) -> int:
    # Imported here so `--help` and `--version` do not load librdkafka.
    from worker.ops import topics_kafka
    from worker.ops.topics import load_topics, plan
    from worker.settings import KafkaOnlySettings, KafkaSettings

    kafka = _checked(KafkaOnlySettings).kafka
    if args.bootstrap_servers:
        kafka = KafkaSettings(**{**kafka.model_dump(), "bootstrap_servers": args.bootstrap_servers})
    specs = load_topics(
        args.file,
        partitions=args.partitions,
        replication_factor=args.replication_factor,
        name_suffix=args.name_suffix,
    )
    admin = topics_kafka.make_admin(kafka)
    brokers = topics_kafka.cluster_brokers(admin, kafka)
    too_wide = [s.name for s in specs if s.replication_factor > brokers]
    if too_wide:
        raise ConfigError(
            f"{', '.join(too_wide)}: replication factor above the {brokers} broker(s) at "
            f"{kafka.bootstrap_servers}; pass --replication-factor {brokers}"
        )
    observed = topics_kafka.observe(admin, [s.name for s in specs], kafka.admin_timeout_s)
    changes = plan(specs, observed)
    if not args.dry_run:
        topics_kafka.execute(admin, changes, kafka.admin_timeout_s)
    for change in changes:
        print(f"{change.kind:<15} {change.topic:<28} {change.detail}")
    drift = [c for c in changes if c.kind == "drift"]
    if drift:
        raise TopicDriftError(f"{len(drift)} drift(s) that apply cannot fix; see above")
    return 0


def _dlq_replay(args: argparse.Namespace) -> int:
    from schemas.messages import DLQ_STAGES
    from worker.ops.replay import Selection, parse_offsets, parse_time
    from worker.ops.replay_kafka import ReplayOptions, replay

    unknown = sorted(set(args.stage) - set(DLQ_STAGES))
    if unknown:
        raise ConfigError(f"--stage {unknown[0]!r}: expected one of {', '.join(DLQ_STAGES)}")
    if args.batch_size < 1 or (args.limit is not None and args.limit < 1):
        raise ConfigError("--batch-size and --limit take a positive number")
    try:
        selection = Selection(
            stages=frozenset(args.stage),
            error_types=frozenset(args.error_type),
            since_ms=parse_time(args.since) if args.since else None,
            until_ms=parse_time(args.until) if args.until else None,
            offsets=tuple(parse_offsets(o) for o in [*args.partition, *args.offsets]),
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    options = ReplayOptions(
        selection,
        group=args.group,
        transactional_id=args.transactional_id,
        dry_run=args.dry_run,
        batch_size=args.batch_size,
        limit=args.limit,
        timeout_s=args.timeout_s,
    )
    outcome = replay(_settings(args.config), options, lambda line: print(line, flush=True))
    return ExitCode.OK if outcome.complete else ExitCode.FATAL


def _settings(config: Path | None) -> WorkerSettings:
    from worker.settings import load_settings

    return _checked(lambda: load_settings(config))


def _checked(load: Callable[[], T]) -> T:
    """Settings from ``load``, or one ConfigError naming the setting, never its value."""
    from pydantic import ValidationError
    from pydantic_settings import SettingsError

    try:
        return load()
    except ValidationError as exc:
        first = exc.errors()[0]
        name = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"setting {name!r}: {first['msg']}{_echo(name, first)}") from None
    except SettingsError as exc:
        # e.g. KAFKA__CLIENT_CONFIG that is not JSON; the message names the field, not the value
        raise ConfigError(str(exc)) from None
    except FileNotFoundError as exc:
        raise ConfigError(str(exc)) from None


def _echo(name: str, error: Any) -> str:
    """The rejected value, for settings that can never hold a credential."""
    from worker.settings import is_secret

    value = error.get("input")
    if name.startswith("kafka.") or is_secret(name) or isinstance(value, dict | list):
        return ""
    text = repr(value)
    return f" (got {text[:80]}{'...' if len(text) > 80 else ''})"


def _run(args: argparse.Namespace) -> int:
    from worker.runtime.signals import block_stop_signals

    # Before torch and librdkafka start threads, so they all inherit the block and the
    # stop signals reach the worker's signal thread only (worker.runtime.signals.Stopper).
    block_stop_signals()
    from worker.runtime import logs

    if args.shadow is not None:  # the environment, so a supervisor's processes inherit it
        os.environ["SUPPORT_WORKER_SHADOW__CANDIDATE"] = str(args.shadow)
    settings = _settings(args.config)
    if settings.processes > 1:
        logs.configure(settings.log_level, settings.process_index)
        from worker.runtime import processes  # no torch: the supervisor only starts workers

        return processes.supervise(settings, args.config)  # each process traces on its own
    from worker import service, tracing

    traces = tracing.start(os.environ, settings)  # off unless OTEL_* asks for it
    logs.configure(settings.log_level, settings.process_index, traces.log_processors)
    traces.announce()
    return service.run(settings, traces.tracer)


def _port(text: str) -> int:
    port = int(text)
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port (0-65535)")
    return port


def _console(args: argparse.Namespace) -> int:
    try:
        from worker.console import serve
    except ImportError as exc:  # the extra is not installed
        raise ConfigError(
            f"the console needs its extra: pip install 'support-router[console]' ({exc})"
        ) from exc
    from worker.console.hub import ConsoleSettings
    from worker.runtime import logs

    settings = _settings(args.config)
    logs.configure(settings.log_level)
    console = ConsoleSettings(
        host=args.host,
        port=args.port,
        show_live_text=args.show_live_text,
        answer_timeout_s=args.answer_timeout,
        allowed_hosts=tuple(args.allowed_host),
        review=args.review,
        agent_key_file=args.agent_key_file,
        users_file=args.users_file,
        trusted_proxies=tuple(args.trusted_proxy),
        proxy_roles_file=args.proxy_roles_file,
        session_key_file=args.session_key_file,
        certfile=args.certfile,
        keyfile=args.keyfile,
    )
    return serve.run(console, settings)


def _hash_password(args: argparse.Namespace) -> int:
    """Never from argv: a command line is in the shell's history and in ``ps``."""
    import getpass

    try:
        from worker.console.auth.roles import Role
        from worker.console.auth.users import hash_line
    except ImportError as exc:
        raise ConfigError(
            f"hash-password needs the console extra: pip install 'support-router[console]' ({exc})"
        ) from exc
    if sys.stdin.isatty():
        password = getpass.getpass(f"password for {args.name}: ")
        if getpass.getpass("again: ") != password:
            raise ConfigError("the two passwords differ")
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    try:
        print(hash_line(args.name, Role.parse(args.role), password))
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    return 0


def _classify(args: argparse.Namespace) -> int:
    """One message through the worker's own intake, inference and routing, no Kafka."""
    from worker.router import Router
    from worker.runtime import logs

    settings = _settings(args.config)
    logs.configure(settings.log_level)  # on stderr: stdout holds only the JSON
    [routed] = Router.load(args.model, settings).route([args.text])
    print(json.dumps({"topic": routed.topic, "value": routed.value}, indent=2, ensure_ascii=False))
    return 0


def _score(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from worker.router import Router
    from worker.runtime import logs
    from worker.score import score_file

    settings = _settings(args.config)
    logs.configure(settings.log_level)  # on stderr: stdout holds only the summary
    src = None if str(args.src) == "-" else args.src
    if src is not None and not src.is_file():
        raise ConfigError(f"--in {src}: no such file")
    dead = args.dead_letters or args.out.with_name(
        args.out.name.removesuffix(".jsonl") + ".dlq.jsonl"
    )
    if len({args.out.resolve(), dead.resolve(), *([src.resolve()] if src else [])}) < (
        3 if src else 2
    ):
        raise ConfigError("--in, --out and --dead-letters must be three different files")
    router = Router.load(args.model, settings)
    with tqdm(
        total=None, unit="msg", disable=None if args.progress is None else not args.progress
    ) as bar:
        counts = score_file(router, src, args.out, dead, progress=bar.update)
    files = {"out": str(args.out), "dead_letters_file": str(dead)}
    print(json.dumps({**counts.summary(), "variant": router.variant, **files}))
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
        return ExitCode.CONFIG
    except ModelLoadError as exc:
        print(f"support-worker: cannot load the model: {exc}", file=sys.stderr)
        return ExitCode.MODEL_LOAD
    except WorkerError as exc:
        print(f"support-worker: {exc}", file=sys.stderr)
        return ExitCode.FATAL
    return code


if __name__ == "__main__":
    sys.exit(main())
