"""Where Kafka places a transactional.id's coordinator (tests/chaos/coordinator.py).

The expected values come from the JVM: ``s.hashCode()`` and Kafka's ``Utils.abs(h) %
partitions`` (``h == Integer.MIN_VALUE ? 0 : Math.abs(h)``) evaluated by Java 17 on the
same strings. The chaos
scenario txn-coordinator checks the same computation against the coordinator librdkafka
finds on the live cluster.
"""

from __future__ import annotations

import pytest

from tests.chaos.coordinator import coordinator_partition, java_string_hash

# (text, String.hashCode(), partition of 3, partition of 50), as Java 17 computes them
JAVA = [
    ("", 0, 0, 0),
    ("a", 97, 1, 47),
    ("hello", 99162322, 1, 22),
    ("polygenelubricants", -2147483648, 0, 0),  # Integer.MIN_VALUE: Utils.abs gives 0
    ("\U0001f600", 1772899, 1, 49),  # outside the BMP: two UTF-16 code units
    ("support-router-worker-0", -1662680665, 1, 15),
    ("chaos-20261207-162656-txn-coordinator-ab12-r0", -1648187428, 1, 28),
    ("Ünïcödé", 1055431381, 1, 31),
]


@pytest.mark.parametrize(("text", "hash_code", "of3", "of50"), JAVA)
def test_the_placement_is_javas(text: str, hash_code: int, of3: int, of50: int) -> None:
    assert java_string_hash(text) == hash_code
    assert coordinator_partition(text, 3) == of3
    assert coordinator_partition(text, 50) == of50


def test_every_partition_is_in_range() -> None:
    ids = [f"chaos-run-{i}-r{j}" for i in range(200) for j in range(3)]
    for partitions in (1, 3, 50):
        placed = {coordinator_partition(i, partitions) for i in ids}
        assert placed <= set(range(partitions))
    assert len({coordinator_partition(i, 3) for i in ids}) == 3  # spread over all nodes
