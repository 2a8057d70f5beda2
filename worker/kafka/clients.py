"""Thin confluent-kafka adapters: client configs, and Message -> codec.Record."""

from __future__ import annotations

import math
import time
from typing import Any

import structlog
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer

from worker.codec import Headers, Record
from worker.errors import ConfigError, FatalKafkaError
from worker.kafka.headers import RawHeaders, read_headers
from worker.metrics import Metrics
from worker.settings import ENV_PREFIX, KafkaSettings, WorkerSettings

log = structlog.get_logger("worker")

# Results carry the inbound message; room for a max-size inbound record plus our fields.
MAX_RECORD_BYTES = 4 * 1024 * 1024
# Bounded prefetch: a slow model slows fetching instead of growing memory.
PREFETCH_KBYTES = 16 * 1024
# One fetch response holds at most FETCH_MAX_BYTES, and one batch may inflate to at most
# RECEIVE_MAX_BYTES (librdkafka wants receive >= fetch + 512). Far above a batch of records
# of at most 4 MiB each, and a bound on what a decompression bomb costs: librdkafka's own
# defaults (50 MB, 100 MB) let a 4.6 KB zstd record allocate 100 MB. A batch that inflates
# past it is an unreadable span (worker.unreadable).
FETCH_MAX_BYTES = 32 * 1024 * 1024
RECEIVE_MAX_BYTES = 64 * 1024 * 1024
# init_transactions waits at most this long between looks at the client's errors.
INIT_SLICE_S = 0.5
# A transaction begun right after the last one committed meets CONCURRENT_TRANSACTIONS while
# the coordinator still writes the markers, and librdkafka retries after retry.backoff.ms
# (100 by default, then growing): back-to-back transactions each waited about 100 ms
# (confluent-kafka-python#967; Java lowered its backoff for this to 20 ms, KAFKA-5477). The
# worker's transactions come back to back whenever the model is faster than the broker
# round trips, as on a GPU. `python -m tools.bench --txn-backoff` measures it.
TXN_RETRY_BACKOFF_MS = 5


def to_record(msg: Message) -> Record:
    ts_type, ts = msg.timestamp()
    # Never msg.headers(): it crashes the process on a key that is not UTF-8 (kafka_headers).
    headers, header_error = _headers(read_headers(msg))
    return Record(
        topic=msg.topic() or "",
        partition=msg.partition() or 0,
        offset=msg.offset() or 0,
        key=msg.key(),
        value=msg.value(),
        headers=headers,
        timestamp_ms=ts if ts_type != 0 else None,
        header_error=header_error,
    )


def _headers(raw: RawHeaders) -> tuple[Headers, str | None]:
    """Keys as strict UTF-8 (no surrogates: the producer cannot encode those either).

    A key that is not stays out of the headers, so it never reaches a producer, and is
    named, escaped, in the error that makes the record a dead letter.
    """
    headers: Headers = []
    bad: list[str] = []
    for i, (key, value) in enumerate(raw):
        try:
            headers.append((key.decode("utf-8"), value))
        except UnicodeDecodeError:
            bad.append(f"header {i} key is not valid UTF-8: {_escaped(key)}")
    if not bad:
        return headers, None
    more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
    return headers, bad[0] + more


def _escaped(raw: bytes, limit: int = 64) -> str:
    return repr(raw[:limit]) + ("..." if len(raw) > limit else "")


# The broker refused who we are, or TLS with it failed (a certificate that does not chain
# to kafka.ssl_ca_location, a host name it does not name): no retry can fix that, a person
# must. librdkafka reconnects forever and only reports each failure to error_cb.
# (Disconnects during a TLS handshake are _TRANSPORT, so _SSL is TLS itself failing.)
REFUSED = frozenset(
    {KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED, KafkaError._SSL}
)


class Refusals:
    """Whether a client of this process has already raised for a refused connection."""

    def __init__(self) -> None:
        self.raised = False


# One per process: the consumer and the producer of one worker share it.
PROCESS_REFUSALS = Refusals()


class ClientErrors:
    """``error_cb`` for the worker's clients: a refused connection is fatal, once.

    librdkafka hands a client's errors to ``error_cb`` from inside ``poll()``,
    ``consume()``, ``flush()`` and ``close()``, and an exception raised there is raised
    by that call. The first refusal (a wrong password, an unknown user, an unverified
    broker certificate) raises FatalKafkaError: one line, exit 1, instead of retrying
    forever. Later ones (the other client; the consumer's close on the way out) are
    dropped, so the process ends with that one line. Every other error is logged as a
    warning, where librdkafka would have logged it itself. Text that comes from
    librdkafka or the broker passes ``KafkaSettings.scrub`` first.
    """

    def __init__(self, kafka: KafkaSettings, refusals: Refusals = PROCESS_REFUSALS) -> None:
        self.kafka = kafka
        self.refusals = refusals

    def __call__(self, err: KafkaError) -> None:
        text = self.kafka.scrub(err.str())
        if err.code() not in REFUSED:
            log.warning("kafka_client_error", code=err.name(), error=text)
            return
        if self.refusals.raised:
            return
        self.refusals.raised = True
        raise FatalKafkaError(refused_message(self.kafka, err.code(), text))


def refused_message(kafka: KafkaSettings, code: int, text: str) -> str:
    """The one line for a refused connection: what failed, and the settings to check."""
    if code == KafkaError._SSL:
        return (
            f"TLS with Kafka at {kafka.bootstrap_servers} failed: {text}. Check "
            f"kafka.ssl_ca_location ({ENV_PREFIX}KAFKA__SSL_CA_LOCATION): the broker's "
            "certificate must chain to that CA and name the host it is reached at"
        )
    user = kafka.sasl_username or kafka.client_config.get("sasl.username")
    return (
        f"Kafka at {kafka.bootstrap_servers} refused the credentials"
        f"{f' of user {user!r}' if user else ''} (SASL authentication failed): {text}. Check "
        f"kafka.sasl_username and kafka.sasl_password or kafka.sasl_password_file "
        f"({ENV_PREFIX}KAFKA__SASL_USERNAME, {ENV_PREFIX}KAFKA__SASL_PASSWORD, "
        f"{ENV_PREFIX}KAFKA__SASL_PASSWORD_FILE)"
    )


class WorkerProducer(Producer):
    """A Producer whose ``init_transactions`` serves ``error_cb`` while it waits.

    ``init_transactions`` waits on a queue of its own, so a refused connection, reported
    through ``error_cb``, would only show as timeouts until ``commit_timeout_s`` ran out
    and then as an "outcome unknown" fatal error, while librdkafka logged the refusal
    twice a second. The call is resumable, so it runs in slices of ``INIT_SLICE_S`` with
    a ``poll(0)`` after each: a refusal is the FatalKafkaError it is (ClientErrors raises
    it from the poll) within a slice, and the call still ends by its own timeout.
    """

    def init_transactions(self, timeout: float = -1) -> None:
        deadline = time.monotonic() + timeout if timeout >= 0 else math.inf
        while True:
            left = deadline - time.monotonic()
            try:
                super().init_transactions(max(0.0, min(INIT_SLICE_S, left)))
                return
            except KafkaException as exc:
                self.poll(0)
                err = exc.args[0] if exc.args else None
                timed_out = isinstance(err, KafkaError) and err.code() == KafkaError._TIMED_OUT
                if not timed_out or time.monotonic() >= deadline:
                    raise


def consumer_options(
    kafka: KafkaSettings, group: str, error_cb: Any, **extra: Any
) -> dict[str, Any]:
    """What every consumer here needs: offsets move only when the program commits them
    (in a transaction), only records upstream producers committed are read, and a record
    is at most ``MAX_RECORD_BYTES``. ``extra`` adds or overrides options."""
    return kafka.librdkafka(
        **{
            "group.id": group,
            "error_cb": error_cb,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            "fetch.message.max.bytes": MAX_RECORD_BYTES,
            **extra,
        }
    )


def producer_options(
    kafka: KafkaSettings,
    error_cb: Any,
    transactional_id: str | None,
    transaction_timeout_ms: int,
    **extra: Any,
) -> dict[str, Any]:
    """What every producer here needs: idempotent, acks=all, records up to
    ``MAX_RECORD_BYTES``, lz4, the short retry backoff of back-to-back transactions;
    transactional when ``transactional_id`` is given."""
    conf = kafka.librdkafka(
        **{
            "error_cb": error_cb,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "message.max.bytes": MAX_RECORD_BYTES,
            "compression.type": "lz4",
            **extra,
        }
    )
    conf.setdefault("retry.backoff.ms", TXN_RETRY_BACKOFF_MS)
    if transactional_id:
        conf["transactional.id"] = transactional_id
        conf["transaction.timeout.ms"] = transaction_timeout_ms
    return conf


def consumer_config(s: WorkerSettings, metrics: Metrics) -> dict[str, Any]:
    conf = consumer_options(
        s.kafka,
        s.group_id,
        ClientErrors(s.kafka),
        **{
            "partition.assignment.strategy": "cooperative-sticky",
            "max.poll.interval.ms": s.max_poll_interval_ms,
            "session.timeout.ms": s.session_timeout_ms,
            "queued.max.messages.kbytes": PREFETCH_KBYTES,
            "fetch.max.bytes": FETCH_MAX_BYTES,
            "receive.message.max.bytes": RECEIVE_MAX_BYTES,
        },
    )
    if s.statistics_interval_ms:
        conf["statistics.interval.ms"] = s.statistics_interval_ms
        conf["stats_cb"] = metrics.on_stats
    if s.group_instance_id:
        conf["group.instance.id"] = s.group_instance_id
    return conf


def producer_config(s: WorkerSettings) -> dict[str, Any]:
    eos = s.mode == "exactly_once"
    return producer_options(
        s.kafka,
        ClientErrors(s.kafka),
        s.transactional_id if eos else None,
        s.transaction_timeout_ms,
    )


def make_consumer(s: WorkerSettings, metrics: Metrics) -> Consumer:
    try:
        return Consumer(consumer_config(s, metrics))
    except KafkaException as exc:
        raise _config_error(s.kafka, exc) from None


def make_producer(s: WorkerSettings) -> Producer:
    try:
        return WorkerProducer(producer_config(s))
    except KafkaException as exc:
        raise _config_error(s.kafka, exc) from None


def _config_error(kafka: KafkaSettings, exc: KafkaException) -> ConfigError:
    """librdkafka refused its config (e.g. a CA file that holds no certificate): exit 2."""
    err = exc.args[0] if exc.args else exc
    text = err.str() if isinstance(err, KafkaError) else str(err)
    return ConfigError(f"Kafka client: {kafka.scrub(text)} (the kafka.* settings)")
