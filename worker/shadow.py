"""Shadow: a candidate's results beside the serving model's, for ``support.shadow``. Pure.

A worker in shadow (``shadow.candidate`` set) consumes the inbound topic under a group of
its own, runs the candidate and the serving model on every batch, and writes only to
``topics.shadow``: the candidate's result wrapped with the serving model's route and
labels, and whether they agree (``schemas.learning.ShadowResult``). Nothing it does can
reach a route topic or the DLQ, which the serving replicas own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

import orjson

from worker.inference import ItemResult
from worker.intake import Item
from worker.model.protocol import Model, Prediction
from worker.outgoing import Outgoing
from worker.routing import RoutingPolicy

ROUTE = "route"


def retokenized(items: Sequence[Item], model: Model) -> list[Item]:
    """The items as ``model``'s tokenizer cuts them: the serving model may not share the
    candidate's (another casing marker, another max_length)."""
    wanted = [n for n, item in enumerate(items) if item.ids]
    texts = [items[n].outcome.text for n in wanted]  # type: ignore[union-attr]
    tokens = model.tokenize(texts)
    out = list(items)
    for n, ids, cut in zip(wanted, tokens.ids, tokens.truncated, strict=True):
        out[n] = replace(items[n], ids=ids, truncated=cut)
    return out


def agreement(
    candidate: Prediction, serving: Prediction, candidate_route: str, serving_route: str
) -> dict[str, bool]:
    agree = {h: candidate.labels[h] == serving.labels.get(h) for h in candidate.labels}
    agree[ROUTE] = candidate_route == serving_route
    return agree


def wrap(
    outgoing: Sequence[Outgoing],
    results: Sequence[ItemResult],
    serving: Sequence[ItemResult],
    serving_policy: RoutingPolicy,
    serving_model: Mapping[str, str],
    topic: str,
) -> tuple[list[Outgoing], list[dict[str, bool]]]:
    """Every record retargeted to ``topic``; each routed result wrapped as a ShadowResult.

    Returns the records and, per message both models classified, its agreement.
    """
    out: list[Outgoing] = []
    agreements: list[dict[str, bool]] = []
    for record, mine, theirs in zip(outgoing, results, serving, strict=True):
        if record.is_dead_letter or record.route is None or record.value is None:
            out.append(replace(record, topic=topic))
            continue
        if isinstance(mine, Prediction) and isinstance(theirs, Prediction):
            decision = serving_policy.decide(
                theirs.labels, theirs.confidences, theirs.unfamiliarity
            )
            agree = agreement(mine, theirs, record.route, decision.route)
            agreements.append(agree)
            block = {"model": serving_model, "route": decision.route, "labels": theirs.labels}
        else:  # blank text: neither model ran, both take the empty-text route
            empty = serving_policy.empty_text()
            agree = {ROUTE: record.route == empty.route}
            block = {"model": serving_model, "route": empty.route, "labels": {}}
        value = (
            b'{"schema_version":1,"result":'
            + record.value
            + b',"serving":'
            + orjson.dumps(block)
            + b',"agree":'
            + orjson.dumps(agree)
            + b"}"
        )
        out.append(replace(record, topic=topic, value=value))
    return out, agreements
