"""The review page's endpoints, and the shadow panel's.

With ``--review`` (else each review endpoint answers 404):

- ``GET /api/review/queue?limit=100``: the queued messages, highest priority first, with
  their text (the one place the console shows customer text by design), the reason each
  was queued and the model's labels.
- ``GET /api/review/agreement``: the agents' agreement with the model, per version, head
  and hour (``agreement``).
- ``POST /api/review/feedback/{message_id}`` ``{"labels": {head: label}, "reason"?:
  TEXT}``: the correction of a queued message. The server builds the ``Feedback``
  record: the message id, the model version and the review reason come from the queued
  item, the agent id is the logged-in user's pseudonym (``agents``; an ``agent`` in the
  body is ignored and logged), ``at`` is now; it is produced to the feedback topic, keyed
  by the message id, and the answer waits for the broker's acknowledgement. In the
  no-login mode (loopback only) the body's ``agent`` names the agent.

Always: ``GET /api/shadow``: a shadow candidate's agreement with the serving model.

The review endpoints need the agent role, the shadow panel the viewer role
(``auth.gate``). Each queued text shown to a user for the first time, and each
correction, is an ``audit`` line: ids only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Final

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from worker.console.agents import Pseudonyms
from worker.console.auth.audit import audit
from worker.console.auth.gate import Gate
from worker.console.auth.roles import Role
from worker.console.learning import Learning, errors_text, feedback_for
from worker.console.tap import Submitter
from worker.console.web import error, json_body, json_response, refuse_post
from worker.settings import WorkerSettings

MAX_BODY_BYTES: Final = 64 * 1024
DEFAULT_LIMIT: Final = 100
MAX_LIMIT: Final = 500
OFF: Final = "the review page is off: start the console with --review"


def routes(
    review: bool,
    ws: WorkerSettings,
    learning: Learning,
    pseudonyms: Pseudonyms,
    submitter: Callable[[], Submitter],
    hosts: frozenset[str],
    gate: Gate,
) -> list[Route]:
    """``submitter`` gives the app's producer (it is made when the app starts)."""

    async def queue(request: Request) -> Response:
        who = gate.check(request, Role.AGENT)
        if isinstance(who, Response):
            return who
        if not review:
            return error(404, OFF)
        try:
            limit = int(request.query_params.get("limit", DEFAULT_LIMIT))
        except ValueError:
            return error(400, "limit: an integer")
        q = learning.queue
        items = [item.view for item in q.top(max(1, min(limit, MAX_LIMIT)))]
        if who.user is not None:
            user = gate.audit_name(who) or who.user
            opened = gate.shown.new(user, (str(i["message_id"]) for i in items))
            if opened:
                audit("review_opened", user, message_ids=opened)
        return json_response(
            {
                "revision": q.revision,
                "size": len(q),
                "dropped": q.dropped,
                "items": items,
                "read": learning.read,
                "unreadable": learning.unreadable,
                "tap_error": learning.tap_error,
                "agent_keyed": pseudonyms.keyed,
            }
        )

    async def agreement(request: Request) -> Response:
        who = gate.check(request, Role.AGENT)
        if isinstance(who, Response):
            return who
        if not review:
            return error(404, OFF)
        return json_response(learning.agreement.report())

    async def correct(request: Request) -> Response:
        refused = refuse_post(request, hosts)
        if refused is not None:
            return refused
        who = gate.check(request, Role.AGENT, post=True)
        if isinstance(who, Response):
            return who
        if not review:
            return error(404, OFF)
        body = await json_body(request, MAX_BODY_BYTES)
        if isinstance(body, Response):
            return body
        if not isinstance(body, dict):
            return error(400, 'expected {"labels": {"intent": "...", ...}}')
        message_id = request.path_params["message_id"]
        item = learning.queue.get(message_id)
        if item is None:
            if learning.queue.answered(message_id):
                return error(409, f"{message_id} was answered already")
            return error(404, f"{message_id} is not in the review queue")
        try:
            # Logged in: the session's user, whatever the body claims. No login
            # (loopback): the name the page sends.
            agent_id = gate.agent_id(who, body.get("agent"))
            if agent_id is None:
                agent = body.get("agent")
                if not isinstance(agent, str):
                    return error(400, "agent: give your name")
                agent_id = pseudonyms.agent_id(agent)
            feedback = feedback_for(item, body, agent_id, datetime.now(UTC))
        except ValidationError as exc:
            return error(400, errors_text(exc))
        except ValueError as exc:
            return error(400, str(exc))
        if message_id in learning.submitting:
            return error(409, f"a correction of {message_id} is being sent")
        learning.submitting.add(message_id)
        try:
            delivery = await asyncio.to_thread(
                submitter().send,
                ws.topics.feedback,
                message_id,
                feedback.model_dump_json().encode(),
            )
        finally:
            learning.submitting.discard(message_id)
        if "error" in delivery:
            return json_response({"status": "produce_failed", "error": delivery["error"]}, 502)
        learning.answered(feedback)
        audit("feedback_submitted", agent_id, message_id=message_id, offset=delivery.get("offset"))
        return json_response(
            {"status": "sent", "feedback": feedback.model_dump(mode="json"), "produced": delivery}
        )

    async def shadow(request: Request) -> Response:
        who = gate.check(request, Role.VIEWER)
        if isinstance(who, Response):
            return who
        return json_response(
            {
                "topic": ws.topics.shadow,
                **learning.shadow.report(),
                "read": learning.read.get(ws.topics.shadow, 0),
                "unreadable": learning.unreadable.get(ws.topics.shadow, 0),
                "dead_letters": learning.dead_letters.get(ws.topics.shadow, 0),
            }
        )

    return [
        Route("/api/review/queue", queue),
        Route("/api/review/agreement", agreement),
        Route("/api/review/feedback/{message_id:path}", correct, methods=["POST"]),
        Route("/api/shadow", shadow),
    ]
