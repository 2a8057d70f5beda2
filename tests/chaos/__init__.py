"""The chaos suite (`make chaos`, issue 9): real workers, a real broker, injected faults.

    python -m tests.chaos [--short] [--scenario NAME ...] [--out DIR]

Modules: ``scenarios`` (the eleven scenarios), ``fleet`` (worker replicas), ``workload``
(what is produced), ``observe`` (the read_committed reader, RSS, faults), ``report``
(accounting and the JSON/markdown reports), ``broker`` (the run's own broker),
``faulty_worker`` (model faults without touching worker code), ``fuzz`` (hypothesis
cases and the in-process chain check).

The soak (`make soak`, ``python -m tests.chaos.soak``) reuses them: ``soak`` (the run),
``soak_feed`` (steady input with hostile records), ``soak_sample`` (/proc samples),
``soak_flatness`` (first window against last), ``soak_report``.
"""
