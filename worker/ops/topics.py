"""Topics as data: parse deploy/topics.yaml and plan what ``topics apply`` must change.

Pure: no Kafka here. ``worker.ops.topics_kafka`` observes the cluster and executes the plan.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from worker.errors import ConfigError

DEFAULT_TOPICS_FILE = Path("deploy/topics.yaml")
# What one step of a plan does; drift is what `topics apply` cannot change (it reports it).
ChangeKind = Literal["create", "add_partitions", "set_configs", "drift", "ok"]


@dataclass(frozen=True)
class TopicSpec:
    """One declared topic."""

    name: str
    partitions: int
    replication_factor: int
    configs: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ObservedTopic:
    """What the cluster has for one topic."""

    name: str
    partitions: int
    replication_factor: int
    configs: Mapping[str, str]


@dataclass(frozen=True)
class Change:
    """One step of a plan."""

    kind: ChangeKind
    topic: str
    detail: str
    spec: TopicSpec | None = None
    partitions: int = 0
    configs: Mapping[str, str] = field(default_factory=dict)


def load_topics(
    path: Path = DEFAULT_TOPICS_FILE,
    *,
    partitions: int | None = None,
    replication_factor: int | None = None,
    name_suffix: str = "",
) -> list[TopicSpec]:
    """Read the declaration file, applying test/dev overrides."""
    try:
        doc = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"topics file not found: {path}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("topics"), dict) or not doc["topics"]:
        raise ConfigError(f"{path}: expected a mapping with a non-empty 'topics' mapping")
    defaults = doc.get("defaults") or {}
    specs = []
    for name, raw in doc["topics"].items():
        body: dict[str, Any] = raw or {}
        where = f"{path}: topics.{name}"
        parts = partitions if partitions is not None else body.get("partitions")
        rf = (
            replication_factor
            or body.get("replication_factor")
            or defaults.get("replication_factor", 1)
        )
        if not isinstance(parts, int) or parts < 1:
            raise ConfigError(f"{where}.partitions must be a positive integer, got {parts!r}")
        if not isinstance(rf, int) or rf < 1:
            raise ConfigError(f"{where}.replication_factor must be a positive integer, got {rf!r}")
        configs = {str(k): str(v) for k, v in (defaults.get("configs") or {}).items()}
        configs.update({str(k): str(v) for k, v in (body.get("configs") or {}).items()})
        # min.insync.replicas above the replication factor makes every acks=all write fail.
        if "min.insync.replicas" in configs and int(configs["min.insync.replicas"]) > rf:
            configs["min.insync.replicas"] = str(rf)
        specs.append(TopicSpec(f"{name}{name_suffix}", parts, rf, configs))
    return specs


def plan(desired: list[TopicSpec], observed: Mapping[str, ObservedTopic]) -> list[Change]:
    """The changes that bring the cluster to ``desired``, plus drift that cannot be fixed."""
    changes: list[Change] = []
    for spec in desired:
        have = observed.get(spec.name)
        if have is None:
            changes.append(
                Change(
                    "create",
                    spec.name,
                    f"create with {spec.partitions} partitions, rf {spec.replication_factor}",
                    spec=spec,
                )
            )
            continue
        fixed = False
        if have.partitions < spec.partitions:
            changes.append(
                Change(
                    "add_partitions",
                    spec.name,
                    f"partitions {have.partitions} -> {spec.partitions}",
                    partitions=spec.partitions,
                )
            )
            fixed = True
        elif have.partitions > spec.partitions:
            changes.append(
                Change(
                    "drift",
                    spec.name,
                    f"has {have.partitions} partitions, file wants {spec.partitions};"
                    " Kafka cannot remove partitions",
                )
            )
        if have.replication_factor != spec.replication_factor:
            changes.append(
                Change(
                    "drift",
                    spec.name,
                    f"replication factor is {have.replication_factor}, file wants "
                    f"{spec.replication_factor}; reassign partitions to change it",
                )
            )
        wrong = {k: v for k, v in spec.configs.items() if have.configs.get(k) != v}
        if wrong:
            detail = ", ".join(f"{k}: {have.configs.get(k)} -> {v}" for k, v in wrong.items())
            changes.append(Change("set_configs", spec.name, detail, configs=wrong))
            fixed = True
        if not fixed and not any(c.topic == spec.name for c in changes):
            changes.append(Change("ok", spec.name, "matches the file"))
    return changes
