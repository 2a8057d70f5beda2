"""The tracing bench drives the loop with and without a tracer, every message committed."""

from __future__ import annotations

from tools.bench.tracing import Dropped, cpu_flags, records, run_once
from worker.tracing import incoming


def test_each_way_commits_every_message_and_reports_a_rate() -> None:
    traced, unsampled = records(128, traced=True), records(128, True, sampled=False)
    assert all(incoming(r.headers) for r in traced)
    assert {incoming(r.headers).flags for r in unsampled} == {0}  # type: ignore[union-attr]
    assert not any(r.headers for r in records(8, traced=False))
    for recs, exporter in ((traced, None), (traced, Dropped), (unsampled, Dropped)):
        assert run_once(recs, 64, exporter) > 0  # run_once asserts all 128 were produced


def test_the_cpu_is_described_from_proc_cpuinfo() -> None:
    cpu = cpu_flags()
    assert cpu["cores"] >= 1 and isinstance(cpu["flags"], list)
