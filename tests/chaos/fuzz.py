"""Fuzz cases for the worker, and the in-process check of its per-message chain.

The chain is the worker's own, without Kafka or torch: ``codec.decode`` ->
``RoutingPolicy`` (inside ``outgoing.to_outgoing``, with a fake model result) ->
``codec.result_value`` / ``codec.dead_letter_headers``. Every case must yield one
producible record, a routed result or a dead letter, and never raise.

Used by tests/unit/worker/test_fuzz_codec.py (a few hundred cases per ``make test``),
by the chaos run (``python -m tests.chaos.fuzz --examples 100000``, in a subprocess so
that a crash of the chain is reported, not shared), and by the live fuzz of the poison
scenario, which produces ``live_cases`` to the broker.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from functools import cache
from typing import Any

import orjson
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from schemas import messages as m
from schemas.labels import HEADS
from worker import codec
from worker.inference import Failure, ItemResult, Skipped
from worker.intake import Item, needs_model
from worker.model.protocol import Prediction
from worker.outgoing import Outgoing, to_outgoing
from worker.routing import RoutingPolicy
from worker.settings import WorkerSettings

TextHeaders = list[tuple[str, bytes | None]]  # what the codec holds
WireHeaders = list[tuple[bytes, bytes | None]]  # what a raw producer can send

# -- strategies ------------------------------------------------------------------

_scalars = (
    st.none()
    | st.booleans()
    | st.integers()  # beyond 64 bits too: orjson refuses those on read
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
)
json_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)
_short_text = st.text(max_size=80)
_tz = st.none() | st.sampled_from([UTC, timezone(timedelta(hours=-3, minutes=-30))])
_texts = st.one_of(
    st.text(max_size=200),
    st.sampled_from(
        [
            "",
            "   ",
            "\u0000",
            "where is my refund",
            "CARD DECLINED!!!",
            "\U0001f621" * 40,
            "\u202e\u05e9\u05dc\u05d5\u05dd",
            "a" * 500,
        ]
    ),
)
message_like = st.fixed_dictionaries(
    {
        "message_id": st.one_of(st.text(min_size=1, max_size=140), st.integers(), st.none()),
        "text": st.one_of(_texts, st.integers(), st.none(), st.lists(st.text(max_size=5))),
    },
    optional={
        "conversation_id": st.one_of(st.text(max_size=260), st.integers(), st.none()),
        "customer_id": st.one_of(_short_text, st.booleans()),
        "channel": st.one_of(st.text(max_size=70), st.none()),
        "locale": st.text(max_size=40),
        "created_at": st.one_of(
            st.datetimes(timezones=_tz).map(lambda d: d.isoformat()), _short_text
        ),
        "metadata": st.one_of(
            st.dictionaries(st.text(max_size=70), _scalars, max_size=40), json_values
        ),
        "unknown_field": json_values,
    },
)


def _dumps(obj: Any, ascii_only: bool) -> bytes:
    return json.dumps(obj, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


@st.composite
def _mutated(draw: st.DrawFn) -> bytes:
    """A valid-looking message with a few bytes spliced in, cut off or repeated."""
    base = _dumps(draw(message_like), draw(st.booleans()))
    at = draw(st.integers(0, len(base)))
    how = draw(st.sampled_from(["insert", "truncate", "double"]))
    if how == "insert":
        return base[:at] + draw(st.binary(min_size=1, max_size=4)) + base[at:]
    if how == "truncate":
        return base[:at]
    return base[:at] + base


# Valid messages with odd content: these reach the model, the policy and the serializer.
valid_message = st.fixed_dictionaries(
    {"message_id": st.text(min_size=1, max_size=128), "text": _texts},
    optional={
        "conversation_id": st.none() | st.text(max_size=256),
        "channel": st.none() | st.text(max_size=64),
        "created_at": st.datetimes(timezones=st.just(UTC)).map(lambda d: d.isoformat()),
        "metadata": st.none() | st.dictionaries(st.text(max_size=64), _scalars, max_size=32),
        "unknown_field": json_values,
    },
)


def _deep(depth: int) -> bytes:
    """A valid message with an unknown field nested ``depth`` arrays deep (orjson reads 1,024
    levels and writes about 254: issue 9, defect 1)."""
    return b'{"message_id":"d","text":"hi","a":' + b"[" * depth + b"]" * depth + b"}"


values: st.SearchStrategy[bytes | None] = st.one_of(
    st.none(),  # a tombstone
    st.integers(200, 1100).map(_deep),
    st.binary(max_size=200),
    st.builds(_dumps, json_values, st.booleans()),
    st.builds(_dumps, message_like, st.booleans()),
    st.builds(_dumps, valid_message, st.booleans()),
    st.builds(_dumps, valid_message, st.booleans()),
    _mutated(),
)
keys: st.SearchStrategy[bytes | None] = st.none() | st.binary(max_size=40)
# Header values are bytes or null. Keys: text for the codec; on the wire any bytes but NUL
# (librdkafka takes names as C strings), so keys that are not UTF-8 reach the live worker.
_header_values = st.none() | st.binary(max_size=40)
text_headers: st.SearchStrategy[TextHeaders] = st.lists(
    st.tuples(st.text(max_size=20), _header_values), max_size=4
)
_wire_keys = st.text(max_size=20).map(lambda t: t.replace("\0", "").encode()) | st.binary(
    max_size=20
).map(lambda b: b.replace(b"\0", b""))
wire_headers: st.SearchStrategy[WireHeaders] = st.lists(
    st.tuples(_wire_keys, _header_values), max_size=4
)


@dataclass(frozen=True)
class Case:
    """One record plus what the model and the policy do with it."""

    key: bytes | None
    value: bytes | None
    headers: codec.Headers
    timestamp_ms: int | None
    row: Prediction
    model_error: str | None  # the forward pass failed for this message
    policy: RoutingPolicy


@st.composite
def _rows(draw: st.DrawFn) -> Prediction:
    """A model row: per head a top label and its confidence (cheap to draw: 2 per head)."""
    labels, confidences, predictions = {}, {}, {}
    for head, names in HEADS.items():
        top = draw(st.integers(0, len(names) - 1))
        conf = draw(st.floats(0, 1))
        probs = [conf if i == top else (1 - conf) / (len(names) - 1) for i in range(len(names))]
        labels[head], confidences[head] = names[top], conf
        predictions[head] = {
            "label": names[top],
            "confidence": conf,
            "probabilities": dict(zip(names, probs, strict=True)),
        }
    unfamiliarity = draw(st.none() | st.floats())
    return Prediction(labels, confidences, predictions, unfamiliarity)


_policies = st.builds(
    RoutingPolicy,
    st.floats(0, 1),
    st.sampled_from(["escalate", "more_info"]),
    st.none() | st.floats(0, 1),
    st.none() | st.floats(min_value=0, exclude_min=True),
)


@st.composite
def cases(draw: st.DrawFn) -> Case:
    headers: codec.Headers = list(draw(text_headers))
    model_error = draw(st.none() | st.text(max_size=40)) if draw(st.integers(0, 9)) == 0 else None
    return Case(
        draw(keys),
        draw(values),
        headers,
        draw(st.none() | st.integers(0, 2**41)),
        draw(_rows()),
        model_error,
        draw(_policies),
    )


# -- the chain ---------------------------------------------------------------------


@cache
def _settings() -> WorkerSettings:
    return WorkerSettings()


MODEL_INFO = {"name": "fuzz", "version": "0", "content_hash": "0" * 64}


def place(out: Outgoing) -> str:
    """Where a record went, as the reports name it: a route, or "dlq:<stage>"."""
    return f"dlq:{out.stage}" if out.stage is not None else str(out.route)


def outgoing(case: Case, topic: str = "in", partition: int = 3, offset: int = 12345) -> Any:
    """What the worker's chain makes of one case (may raise: that is what we look for)."""
    s = _settings()
    record = codec.Record(
        topic, partition, offset, case.key, case.value, list(case.headers), case.timestamp_ms
    )
    outcome = codec.decode(record, s.max_text_chars)
    model = needs_model(outcome)
    item = Item(record, outcome, [101, 7, 102] if model else [])
    result: ItemResult = Skipped()
    if model:
        error = case.model_error
        result = case.row if error is None else Failure(RuntimeError(error))
    ctx = codec.ResultContext(
        model=MODEL_INFO,
        policy=case.policy.name,
        classified_at=datetime.now(UTC).isoformat(timespec="milliseconds"),
        inference_ms=1.5,
        batch_size=7,
        batch_started_ms=time.time() * 1000,
    )
    return outcome, to_outgoing(item, result, ctx, case.policy, s.topics)


def problem(case: Case) -> str | None:
    """None when the chain handles the case correctly, else what went wrong (never raises)."""
    return evaluate(case)[0]


def evaluate(case: Case) -> tuple[str | None, str]:
    """(problem or None, where it went: a route name, "dlq:<stage>" or "raised")."""
    try:
        outcome, out = outgoing(case)
    except Exception as exc:
        return f"raised {type(exc).__name__}: {str(exc)[:200]}", "raised"
    try:
        return _check(case, outcome, out), place(out)
    except Exception as exc:
        return f"its output could not be checked: {type(exc).__name__}: {str(exc)[:200]}", "?"


def _check(case: Case, outcome: codec.Accepted | codec.Rejected, out: Any) -> str | None:
    s = _settings()
    headers: list[tuple[Any, Any]] = list(out.headers)
    for k, v in headers:
        if not isinstance(k, str) or not isinstance(v, bytes | None):
            return f"header {k!r} is not (str, bytes)"
        try:
            k.encode("utf-8")
        except UnicodeEncodeError:
            return f"header key {k!r} cannot be produced (not encodable as UTF-8)"
    if out.topic == s.topics.dlq:
        found = dict(headers)
        stage = (found.get(m.HEADER_STAGE) or b"").decode(errors="replace")
        if stage not in m.DLQ_STAGES:
            return f"dead letter with stage {stage!r}"
        if isinstance(outcome, codec.Rejected) and stage != outcome.stage:
            return f"rejected at {outcome.stage} but dead-lettered as {stage}"
        if isinstance(outcome, codec.Accepted) and stage in ("decode", "validate"):
            return f"an accepted message dead-lettered at {stage}"
        if case.model_error is None and stage == "infer":
            return "an infer dead letter without a model failure"
        if headers[: len(case.headers)] != case.headers:
            return "the dead letter does not keep the original headers first, unchanged"
        if (out.key, out.value) != (case.key, case.value):
            return "the dead letter does not keep the original key and value"
        if found.get(m.HEADER_SOURCE_OFFSET) != b"12345":
            return "the dead letter's x-source-offset is wrong"
        return None
    if isinstance(outcome, codec.Rejected):
        return f"rejected at {outcome.stage} but routed to {out.topic}"
    if case.model_error is not None and outcome.text.strip():
        return "a failed forward pass was routed"
    route = next((r for r in m.ROUTES if s.topics.for_route(r) == out.topic), None)
    if route is None:
        return f"produced to an unknown topic {out.topic!r}"
    value = orjson.loads(out.value)
    if value["route"] != route or value["message_id"] != outcome.message_id:
        return f"result says route {value['route']!r}, id {value['message_id']!r}"
    if value["source"] != {"topic": "in", "partition": 3, "offset": 12345}:
        return f"result's source is {value['source']}"
    m.OutboundMessage.model_validate(value)
    return None


# -- the chaos run's in-process fuzz -----------------------------------------------


def _hypothesis_settings(n: int) -> settings:
    return settings(
        max_examples=n,
        deadline=None,
        database=None,
        derandomize=False,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )


def run_in_process(examples: int, rng_seed: int, budget_s: float = 1e9) -> dict[str, Any]:
    """Generate ``examples`` cases, check each, and count problems by kind (never stops)."""
    seen = Counter[str]()
    samples: dict[str, dict[str, Any]] = {}
    outcomes = Counter[str]()
    started = time.monotonic()
    count = 0

    def body(case: Case) -> None:
        nonlocal count
        if time.monotonic() - started > budget_s:
            return
        count += 1
        found, place = evaluate(case)
        outcomes[place] += 1
        if found is None:
            return
        kind = found.split(":")[0][:80]
        seen[kind] += 1
        samples.setdefault(
            kind,
            {
                "problem": found,
                "key": repr(case.key)[:200],
                "value": repr(case.value)[:300],
                "headers": repr(case.headers)[:200],
            },
        )

    while count < examples and time.monotonic() - started < budget_s:
        before = count
        test = _hypothesis_settings(examples - count)(seed(rng_seed + count)(given(cases())(body)))
        test()
        if count == before:
            break
    return {
        "cases": count,
        "problems": sum(seen.values()),
        "by_problem": dict(seen),
        "samples": samples,
        "seconds": round(time.monotonic() - started, 1),
        "outcomes": dict(outcomes),
    }


LiveCase = tuple[bytes | None, bytes | None, WireHeaders]


def live_cases(n: int, rng_seed: int) -> list[LiveCase]:
    """n (key, value, headers) for the live worker: header keys are bytes, values may be None."""
    out: list[LiveCase] = []

    def body(key: bytes | None, value: bytes | None, headers: WireHeaders) -> None:
        if len(out) < n:
            out.append((key, value, headers))

    while len(out) < n:
        before = len(out)
        given(keys, values, wire_headers)(
            seed(rng_seed + len(out))(_hypothesis_settings(n - len(out))(body))
        )()
        if len(out) == before:
            break
    return out


_PLAIN_ROW = Prediction(
    {"intent": "billing_issue", "urgency": "low", "sentiment": "calm", "action": "auto_resolve"},
    dict.fromkeys(HEADS, 0.9),
    {},
    0.0,
)


def expected_place(key: bytes | None, value: bytes | None, headers: WireHeaders) -> set[str]:
    """Where the live worker must put this record: {"route"} (any route) or {"dlq:<stage>"}.

    A header key that is not UTF-8 makes the record a decode dead letter (issue 9, defect
    2). Otherwise the oracle is the worker's own chain with a plain model row; when that
    chain raises (a defect), a route or a post-decode dead letter both count as handled.
    """
    try:
        text = [(k.decode("utf-8"), v) for k, v in headers]
    except UnicodeDecodeError:
        return {"dlq:decode"}
    case = Case(key, value, text, 0, _PLAIN_ROW, None, RoutingPolicy())
    try:
        _, out = outgoing(case)
    except Exception:
        return {"route", "dlq:route", "dlq:serialize"}
    return {"route"} if out.stage is None else {place(out)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos.fuzz", description=__doc__)
    parser.add_argument("--examples", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--budget-s", type=float, default=1e9, help="stop generating after this")
    parser.add_argument("--json", help="write the summary here too")
    args = parser.parse_args(argv)
    summary = run_in_process(args.examples, args.seed, args.budget_s)
    text = json.dumps(summary, indent=2)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
