"""Definition anchors: every term is quoted from labels.md, and the rows are labeled by rule."""

from __future__ import annotations

import re

from tests.conftest import LABELS_MD
from trainer.data import definitions
from trainer.data.splits import DataSpec, build


def test_every_term_comes_from_its_intents_definition_or_name() -> None:
    text = LABELS_MD.read_text()
    for intent, terms in definitions.TERMS.items():
        found = re.search(rf"^- `{intent}`: (.+?)(?=^- `|^$)", text, re.M | re.S)
        assert found, intent
        definition = " ".join(found.group(1).lower().split()) + " " + intent.replace("_", " ")
        for term in terms:
            # an article or possessive may be added, and a plural made singular
            words = [w for w in term.lower().split() if w not in {"a", "an", "my"}]
            for word in words:
                assert (
                    word in definition
                    or word.rstrip("s") in definition
                    or (word + "s" in definition)
                ), (intent, term, word)


def test_anchors_train_only_and_carry_their_intent() -> None:
    data = build(DataSpec(sources=("definitions",)))
    assert data["val"] == [] and data["test_noisy"] == []
    n = sum(len(t) for t in definitions.TERMS.values())
    assert len(data["train"]) == n * len(definitions.CARRIERS) * definitions.COPIES["train"]
    assert {ex.collection for ex in data["train"]} == {"definitions"}
    refunds = [ex for ex in data["train"] if ex.intent == "refund_request"]
    assert refunds and all(ex.action == "escalate_to_human" for ex in refunds)  # labels.md's rule
