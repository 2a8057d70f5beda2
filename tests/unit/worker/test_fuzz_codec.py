"""Any bytes as key, value and headers: decode -> route -> serialize gives one record.

A routed result or a dead letter, producible as it is, and never an exception. The chain
and the strategies are tests/chaos/fuzz.py's; the chaos run (`make chaos`) drives 100,000
cases through them, this test a few hundred per `make test`.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings

from tests.chaos.fuzz import Case, cases, problem
from worker.model.protocol import Prediction
from worker.routing import RoutingPolicy

PLAIN = Prediction(
    {"intent": "billing_issue", "urgency": "low", "sentiment": "calm", "action": "auto_resolve"},
    {"intent": 0.9, "urgency": 0.9, "sentiment": 0.9, "action": 0.9},
    {},
    0.0,
)
DEEP = b'{"message_id":"d","text":"hi","a":' + b"[" * 300 + b"]" * 300 + b"}"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_every_case_becomes_a_result_or_a_dead_letter(case: Case) -> None:
    assert problem(case) is None


@pytest.mark.parametrize(
    "value",
    [
        DEEP,  # orjson reads 1,024 levels but writes about 254 (issue 9, defect 1)
        b'{"message_id":"m","text":"x","metadata":{"' + b"k" * 70 + b'":1}}',
        b'{"message_id":"m","text":"\\ud800"}',  # a lone surrogate escape
        b'{"message_id":"m","text":"x","n":1e400}',
        b'{"message_id":"m","text":"x","n":123456789012345678901234567890}',
        b"\xef\xbb\xbf{}",
        None,
    ],
    ids=["deep-json", "long-meta-key", "lone-surrogate", "huge-float", "huge-int", "bom", "null"],
)
def test_known_poison_values(value: bytes | None) -> None:
    case = Case(
        b"k",
        value,
        [("x-null", None), ("traceparent", b"00-1-01")],
        0,
        PLAIN,
        None,
        RoutingPolicy(),
    )
    assert problem(case) is None
