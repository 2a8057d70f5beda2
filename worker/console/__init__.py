"""``support-worker console``: a web page on the live pipeline (the ``console`` extra).

It produces a typed message to the inbound topic and shows the routed result or the dead
letter that the workers commit for it, and it streams what every route topic and the DLQ
commit (rates, the last escalations and dead letters, low-confidence rate, consumer lag).
With ``--review`` it is also where agents label the review queue, and it shows how often
they agree with the model; it always shows a shadow candidate's agreement with the
serving model. It never loads the model: everything it shows is what a worker published.

- ``views``: pure; a committed record -> what the page shows (privacy applied here).
- ``window``: pure; per-second counts and the recent lists.
- ``review_queue``, ``agreement``, ``shadow``, ``agents``: pure; the review queue, the
  agents' agreement with the model, the candidate's with the serving model, and the
  agents' pseudonyms.
- ``tap``: the Kafka side (the read_committed consumer threads, the group's lag, the
  producer, one rate-limited error callback for them all).
- ``hub``: on the event loop; the window, the tries waiting for answers, the streams.
- ``learning``: on the event loop; the review, feedback and shadow records, read.
- ``app``: the Starlette app: the page, ``POST /api/try``, ``GET /api/events`` (SSE);
  ``review_api``: the review and shadow endpoints; ``web``: the allowed-host check and
  the JSON pieces they share. ``serve``: binds, announces the URL, runs uvicorn.
- ``auth``: who may do what: logins, the OIDC proxy's headers, roles, sessions, CSRF,
  the login rate limit and the audit trail; every endpoint asks its ``Gate``.
"""
