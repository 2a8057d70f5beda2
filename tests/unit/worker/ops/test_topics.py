"""The pure half of `topics apply`: parsing the file and planning changes."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import REPO
from worker.errors import ConfigError
from worker.ops.topics import ObservedTopic, TopicSpec, load_topics, plan
from worker.settings import TopicNames

FILE = REPO / "deploy" / "topics.yaml"


def test_the_shipped_file_declares_every_topic_the_settings_name() -> None:
    specs = {s.name: s for s in load_topics(FILE)}
    assert set(specs) == set(TopicNames().model_dump().values())
    assert specs["support.feedback"].configs["retention.ms"] == "-1"
    inbound = specs["support.inbound"]
    assert inbound.replication_factor == 3
    assert inbound.configs["min.insync.replicas"] == "2"
    assert inbound.configs["cleanup.policy"] == "delete"
    assert "retention.ms" in inbound.configs


def test_overrides_for_a_single_node_test_cluster() -> None:
    specs = load_topics(FILE, partitions=2, replication_factor=1, name_suffix=".x")
    assert all(s.partitions == 2 and s.replication_factor == 1 for s in specs)
    assert all(s.name.endswith(".x") for s in specs)
    # min.insync.replicas above the replication factor would reject every acks=all write
    assert all(s.configs["min.insync.replicas"] == "1" for s in specs)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("topics: {}", "non-empty 'topics'"),
        ("topics:\n  a:\n    partitions: 0\n", "topics.a.partitions must be a positive"),
        ("topics:\n  a:\n    partitions: two\n", "topics.a.partitions must be a positive"),
        ("topics: [", "not valid YAML"),
    ],
)
def test_bad_files_name_the_problem(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "topics.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_topics(path)


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="topics file not found"):
        load_topics(tmp_path / "nope.yaml")


def _spec(partitions: int = 4, rf: int = 1, **configs: str) -> TopicSpec:
    return TopicSpec("t", partitions, rf, configs)


def _have(partitions: int = 4, rf: int = 1, **configs: str) -> dict[str, ObservedTopic]:
    return {"t": ObservedTopic("t", partitions, rf, configs)}


def test_plan_creates_what_is_missing() -> None:
    [change] = plan([_spec()], {})
    assert change.kind == "create"
    assert change.spec == _spec()


def test_plan_is_empty_when_the_cluster_matches() -> None:
    assert [c.kind for c in plan([_spec(x="1")], _have(x="1"))] == ["ok"]


def test_plan_grows_partitions_but_reports_shrinking_as_drift() -> None:
    [grow] = plan([_spec(partitions=8)], _have(partitions=4))
    assert (grow.kind, grow.partitions) == ("add_partitions", 8)
    [shrink] = plan([_spec(partitions=2)], _have(partitions=4))
    assert shrink.kind == "drift"
    assert "cannot remove partitions" in shrink.detail


def test_plan_reports_replication_factor_drift_and_sets_only_differing_configs() -> None:
    changes = plan([_spec(rf=3, a="1", b="2")], _have(rf=1, a="1", b="9"))
    kinds = {c.kind: c for c in changes}
    assert set(kinds) == {"drift", "set_configs"}
    assert dict(kinds["set_configs"].configs) == {"b": "2"}
