"""Figures with their spread, and ratios that take stable figures only."""

from __future__ import annotations

from typing import Any

import pytest

from tools.bench.figures import STABLE, Figures, spread
from tools.bench.run import sized


def test_spread_is_the_range_over_the_median() -> None:
    assert spread([90.0, 100.0, 110.0]) == pytest.approx(0.2)
    assert spread([100.0]) == 0.0


def test_a_ratio_of_stable_figures_is_their_medians_ratio() -> None:
    fig = Figures()
    assert fig.add("d", [98.0, 100.0, 102.0]) == 100.0
    fig.add("c", [199.0, 200.0, 201.0])
    assert fig.ratio("d", "c") == pytest.approx(0.5)
    assert fig.unstable() == []


def test_an_unstable_or_lone_figure_is_named_and_kept_out_of_ratios() -> None:
    fig = Figures()
    fig.add("steady", [100.0, 101.0, 99.0])
    fig.add("jumpy", [100.0, 100.0 * (1 + 2 * STABLE), 100.0])
    fig.add("once", [100.0])
    assert fig.unstable() == ["jumpy", "once"]
    assert fig.ratio("steady", "jumpy") is None and fig.ratio("once", "steady") is None
    report = fig.report()
    assert report["figures"]["jumpy"]["spread"] == pytest.approx(2 * STABLE)
    assert report["unstable"] == ["jumpy", "once"]


def test_broker_runs_are_sized_by_time_at_the_expected_rate() -> None:
    texts = ["a", "b", "c"]
    assert sized(texts, 1000.0, 4.0) == (texts * 1334)[:4000]
    assert sized(texts, 0.1, 1.0) == texts  # at least one pass over the set


def test_compare_shows_both_runs_and_the_largest_stable_difference() -> None:
    from tools.bench.figures import compare

    def report(c: float, f: list[float]) -> dict[str, Any]:
        fig = Figures()
        fig.add("c", [c, c, c])
        fig.add("f", f)
        return fig.report()

    text = compare({"spread": report(100.0, [1.0, 2.0, 3.0])}, {"spread": report(105.0, [9.0])})
    assert "| c | 100.0 | 105.0 | 1.050 | yes |" in text
    assert "| f | 2.0 | 9.0 | 4.500 | no |" in text
    assert text.endswith("differ by at most 5.0% (c)")
