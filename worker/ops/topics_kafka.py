"""Thin AdminClient adapter: observe topics and carry out a plan from ``worker.ops.topics``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
    ResourceType,
)

from worker.errors import KafkaUnavailableError, WorkerError
from worker.kafka.clients import ClientErrors
from worker.ops.topics import Change, ObservedTopic, TopicSpec
from worker.settings import KafkaSettings


def make_admin(kafka: KafkaSettings) -> AdminClient:
    """An AdminClient that gives up on an unreachable cluster instead of retrying forever."""
    timeout_ms = int(kafka.admin_timeout_s * 1000)
    # log_level 0: an unreachable cluster makes librdkafka log every reconnect
    # attempt; the caller reports one clear error instead.
    # error_cb: a refused login or certificate is one fatal error naming the settings,
    # not a generic "cannot reach Kafka" after the timeout.
    conf = {"socket.timeout.ms": timeout_ms, "log_level": 0, "error_cb": ClientErrors(kafka)}
    return AdminClient(kafka.librdkafka(**conf))


def cluster_brokers(admin: AdminClient, kafka: KafkaSettings) -> int:
    """How many brokers answer; raises KafkaUnavailableError naming the address on timeout."""
    try:
        md = admin.list_topics(timeout=kafka.admin_timeout_s)
    except KafkaException as exc:
        raise KafkaUnavailableError(
            f"cannot reach Kafka at {kafka.bootstrap_servers} within "
            f"{kafka.admin_timeout_s:.0f}s: {exc.args[0] if exc.args else exc}"
        ) from None
    return len(md.brokers)


def observe(admin: AdminClient, names: Iterable[str], timeout_s: float) -> dict[str, ObservedTopic]:
    """Partitions, replication factor and explicitly set configs of the named topics."""
    md = admin.list_topics(timeout=timeout_s)
    present = [n for n in names if n in md.topics and md.topics[n].error is None]
    if not present:
        return {}
    futures = admin.describe_configs(
        [ConfigResource(ResourceType.TOPIC, n) for n in present], request_timeout=timeout_s
    )
    configs: dict[str, dict[str, str]] = {}
    for resource, fut in futures.items():
        entries: dict[str, Any] = fut.result(timeout=timeout_s)
        configs[resource.name] = {k: e.value for k, e in entries.items() if e.value is not None}
    out = {}
    for name in present:
        parts = md.topics[name].partitions
        rf = len(next(iter(parts.values())).replicas) if parts else 0
        out[name] = ObservedTopic(name, len(parts), rf, configs.get(name, {}))
    return out


def execute(admin: AdminClient, changes: list[Change], timeout_s: float) -> None:
    """Carry out create / add_partitions / set_configs; drift and ok need nothing."""
    creates = [c.spec for c in changes if c.kind == "create" and c.spec is not None]
    if creates:
        _wait(
            admin.create_topics([_new_topic(s) for s in creates], request_timeout=timeout_s),
            timeout_s,
        )
    grows = [NewPartitions(c.topic, c.partitions) for c in changes if c.kind == "add_partitions"]
    if grows:
        _wait(admin.create_partitions(grows, request_timeout=timeout_s), timeout_s)
    sets = [
        ConfigResource(
            ResourceType.TOPIC,
            c.topic,
            incremental_configs=[
                ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET)
                for k, v in c.configs.items()
            ],
        )
        for c in changes
        if c.kind == "set_configs"
    ]
    if sets:
        _wait(admin.incremental_alter_configs(sets, request_timeout=timeout_s), timeout_s)


def _new_topic(spec: TopicSpec) -> NewTopic:
    return NewTopic(
        spec.name,
        num_partitions=spec.partitions,
        replication_factor=spec.replication_factor,
        config=dict(spec.configs),
    )


def _wait(futures: dict[Any, Any], timeout_s: float) -> None:
    errors = []
    for key, fut in futures.items():
        try:
            fut.result(timeout=timeout_s)
        except KafkaException as exc:
            name = getattr(key, "name", key)
            errors.append(f"{name}: {exc.args[0] if exc.args else exc}")
    if errors:
        raise WorkerError("topics apply failed: " + "; ".join(errors))
