"""``support-worker console``: a web page on the live pipeline (the ``console`` extra).

It produces a typed message to the inbound topic and shows the routed result or the dead
letter that the workers commit for it, and it streams what every route topic and the DLQ
commit (rates, the last escalations and dead letters, low-confidence rate, consumer lag).
It never loads the model: everything it shows is what a worker published.

- ``views``: pure; a committed record -> what the page shows (privacy applied here).
- ``window``: pure; per-second counts and the recent lists.
- ``tap``: the Kafka side (the read_committed consumer thread, the group's lag, the
  producer, one rate-limited error callback for them all).
- ``hub``: on the event loop; the window, the tries waiting for answers, the streams.
- ``app``: the Starlette app: the page, ``POST /api/try``, ``GET /api/events`` (SSE),
  and the allowed-host check. ``serve``: binds, announces the URL, runs uvicorn.
"""
