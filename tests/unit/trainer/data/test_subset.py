"""The demo preset's balanced train subset: what a short CPU run needs to see."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import replace

from tests.conftest import B77_FILE, CLINC_FILE
from trainer.data.records import Example
from trainer.data.splits import DataSpec, balanced_subset, build, stratum_quotas
from trainer.presets import PRESETS


def test_quotas_follow_the_square_root_of_the_stratum_sizes() -> None:
    assert stratum_quotas({"calm": 900, "angry": 100}, 100) == {"calm": 75, "angry": 25}


def test_a_stratum_smaller_than_its_share_gives_all_it_has_and_the_rest_goes_elsewhere() -> None:
    assert stratum_quotas({"calm": 1000, "angry": 4}, 100) == {"calm": 96, "angry": 4}
    assert stratum_quotas({"a": 5, "b": 2}, 100) == {"a": 5, "b": 2}


def test_quotas_are_whole_rows_that_add_up_to_n() -> None:
    sizes = {"a": 7, "b": 3, "c": 3, "d": 1, "e": 500}
    for n in range(1, sum(sizes.values()) + 1):
        quotas = stratum_quotas(sizes, n)
        assert sum(quotas.values()) == n
        assert all(0 <= quotas[k] <= sizes[k] for k in sizes)


def test_a_power_of_one_gives_the_shares_a_random_draw_would() -> None:
    assert stratum_quotas({"a": 1000, "b": 180}, 118, power=1.0) == {"a": 100, "b": 18}


def pool() -> list[Example]:
    """General questions: 900 calm and low, 100 angry and high; technical problems: 144
    calm, 36 angry (both medium urgency)."""
    rows = [("what are your hours", "general_question", "low", "calm")] * 900
    rows += [("what are your hours, now!!!", "general_question", "high", "angry")] * 100
    rows += [("my card is broken", "technical_problem", "medium", "calm")] * 144
    rows += [("my card is broken, ridiculous", "technical_problem", "medium", "angry")] * 36
    random.Random(0).shuffle(rows)
    return [
        Example(f"{text} {i}", intent, urgency, sentiment, "-", source=f"src{i % 7}")
        for i, (text, intent, urgency, sentiment) in enumerate(rows)
    ]


def test_balanced_subset_keeps_the_intent_mix_and_over_represents_rare_labels() -> None:
    examples = pool()
    picked = balanced_subset(examples, 118, random.Random("seed"))
    assert picked == balanced_subset(examples, 118, random.Random("seed"))
    assert len(picked) == 118 == len(set(picked))
    assert set(picked) <= set(examples)
    order = {ex: i for i, ex in enumerate(examples)}
    assert [order[ex] for ex in picked] == sorted(order[ex] for ex in picked)
    # Intents 100 : 18 as in the pool (1,000 : 180); within each, sqrt shares: general
    # questions 30 : 10 (75 : 25), technical problems 12 : 6 (12 : 6). Angry: 10% -> 26%.
    assert Counter((ex.intent, ex.sentiment) for ex in picked) == {
        ("general_question", "calm"): 75,
        ("general_question", "angry"): 25,
        ("technical_problem", "calm"): 12,
        ("technical_problem", "angry"): 6,
    }
    assert balanced_subset(examples, 118, random.Random("other")) != picked


def test_only_a_limited_train_split_is_balanced_val_and_test_stay_random() -> None:
    spec = DataSpec(sources=("synthetic",), synthetic_per_intent=400, limit=300)
    randomly, balanced = build(spec), build(replace(spec, subset="balanced"))
    for split in ("val", "test_noisy", "test_clean"):
        assert balanced[split] == randomly[split]
    assert len(balanced["train"]) == len(randomly["train"]) == 300
    assert balanced["train"] != randomly["train"]
    unlimited = set(build(replace(spec, limit=None))["train"])
    assert set(balanced["train"]) <= unlimited  # the same rows the full set has, not redrawn


def shares(examples: list[Example], head: str) -> dict[str | None, float]:
    return {k: v / len(examples) for k, v in Counter(ex.label(head) for ex in examples).items()}


def test_the_demo_preset_trains_on_enough_angry_and_urgent_rows() -> None:
    """A short run learns the keyword rules ("ridiculous" -> angry, "now" -> high) away
    from the augmentation's templates only from enough such rows. A random 2,500-row draw
    holds about 6% of each, and the demo model it trained called "This is ridiculous,
    someone stole my card" calm (docs/model.md, "The demo preset")."""
    preset = PRESETS["demo"].data
    assert preset.limit is not None and preset.subset == "balanced"
    spec = replace(preset, clinc_path=CLINC_FILE, banking77_path=B77_FILE)
    data, randomly = build(spec), build(replace(spec, subset="random"))
    train, drawn = data["train"], randomly["train"]
    for head, rare in (("sentiment", "angry"), ("urgency", "high"), ("sentiment", "frustrated")):
        share, before = shares(train, head)[rare], shares(drawn, head)[rare]
        assert share >= 0.12 and share >= 1.8 * before, (head, rare, share, before)
    assert shares(train, "sentiment")["calm"] >= 0.6  # still most rows, as in real traffic
    # The intent mix is the random draw's: moving it toward the support intents cost the
    # general questions more (they were escalated) than it bought.
    intents, drawn_intents = shares(train, "intent"), shares(drawn, "intent")
    assert intents.keys() == drawn_intents.keys()
    assert all(abs(intents[k] - drawn_intents[k]) <= 0.01 for k in intents), intents
    per = Counter(ex.collection for ex in train)
    assert per["clinc"] == per["banking77"] == preset.limit and per["definitions"] > 0
    for split in ("val", "test_noisy", "test_clean"):
        assert data[split] == randomly[split]  # what calibrates and scores stays random
