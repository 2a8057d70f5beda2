"""The live trial of auto's contenders: warm-up, interleaved blocks, hysteresis, and only
full batches counted."""

from __future__ import annotations

import pytest

from worker.model.tuner import LiveVariants, Tuner, TunerLimits, Verdict

LIMITS = TunerLimits(warmup_batches=3, block=3, rounds=2, margin=0.05, recheck_batches=5)


def run(tuner: Tuner, speed: dict[str, float], batches: int, full: bool = True) -> list[str]:
    """``batches`` dispatches of 64 messages, each variant's cycle 64 / speed seconds;
    the variants they ran on."""
    ran = []
    for _ in range(batches):
        variant = tuner.next_variant()
        tuner.dispatched()
        ran.append(variant)
        tuner.observe(64, 64 / speed[variant], full)
    return ran


def test_it_serves_the_startup_pick_through_the_warm_up_then_trials_each_in_blocks() -> None:
    tuner = Tuner(["a", "b", "c"], LIMITS)
    ran = run(tuner, {"a": 100, "b": 100, "c": 100}, 3 + 18)
    assert ran[:3] == ["a"] * 3
    assert ran[3:] == (["a"] * 3 + ["b"] * 3 + ["c"] * 3) * 2


@pytest.mark.parametrize(("b_speed", "chosen"), [(106.0, "b"), (103.0, "a")])
def test_it_switches_only_to_a_contender_faster_by_the_margin(b_speed: float, chosen: str) -> None:
    tuner = Tuner(["a", "b", "c"], LIMITS)
    run(tuner, {"a": 100, "b": b_speed, "c": 90}, 3 + 18 + 1)
    (verdict,) = tuner.verdicts
    assert verdict.msgs_per_s == {"a": 100.0, "b": b_speed, "c": 90.0}
    assert (verdict.served, verdict.chosen, tuner.serving) == ("a", chosen, chosen)
    # Served from then on, until the next trial.
    assert run(tuner, {"a": 100, "b": b_speed, "c": 90}, 4) == [chosen] * 4


def test_a_block_s_first_batch_is_not_counted() -> None:
    """Its cycle began while the variant before ran: here that one is 10x slower."""
    tuner = Tuner(["a", "b"], TunerLimits(warmup_batches=1, block=2, rounds=1))
    cycles = iter([1.0, 1.0, 1.0, 10.0, 1.0, 1.0])  # b's first cycle holds a's slowness
    for _ in range(6):
        tuner.next_variant()
        tuner.dispatched()
        tuner.observe(100, next(cycles), True)
    assert tuner.verdicts[0].msgs_per_s == {"a": 100.0, "b": 100.0}


def test_batches_closed_by_their_deadline_are_not_timed() -> None:
    tuner = Tuner(["a", "b"], LIMITS)
    run(tuner, {"a": 100, "b": 500}, 50, full=False)
    assert not tuner.verdicts and tuner.serving == "a" and not tuner.trialling


def test_it_trials_again_after_recheck_batches() -> None:
    tuner = Tuner(["a", "b"], LIMITS)
    run(tuner, {"a": 100, "b": 100}, 3 + 12 + 1)
    assert len(tuner.verdicts) == 1 and not tuner.trialling
    run(tuner, {"a": 100, "b": 200}, 5 + 12)
    assert [v.chosen for v in tuner.verdicts] == ["a", "b"]


def test_it_keeps_only_the_latest_verdicts() -> None:
    tuner = Tuner(["a", "b"], TunerLimits(warmup_batches=1, block=2, rounds=1, recheck_batches=1))
    run(tuner, {"a": 100, "b": 100}, 200)
    assert len(tuner.verdicts) == tuner.verdicts.maxlen == 16


def test_one_contender_never_trials() -> None:
    tuner = Tuner(["a"], LIMITS)
    assert run(tuner, {"a": 100}, 30) == ["a"] * 30 and not tuner.verdicts


def test_live_variants_times_the_cycle_between_dispatches_and_reports_the_verdict() -> None:
    now = [0.0]
    verdicts: list[Verdict] = []
    live = LiveVariants(
        {"a": "model a", "b": "model b"},
        Tuner(["a", "b"], TunerLimits(warmup_batches=1, block=2, rounds=1)),
        verdicts.append,
        clock=lambda: now[0],
    )
    speed = {"model a": 100.0, "model b": 200.0}
    models = []
    for _ in range(7):
        model = live.model_for(50, full=True)
        models.append(model)
        now[0] += 50 / speed[model]
    assert models == ["model a", "model a", "model a", "model b", "model b", "model b", "model b"]
    assert verdicts == [Verdict({"a": 100.0, "b": 200.0}, "a", "b")]
    # A rewind: the next dispatch starts no cycle, so the pause it held is not timed.
    live.interrupted()
    now[0] += 60.0
    assert live.model_for(50, full=True) == "model b"
