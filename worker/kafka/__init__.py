"""The Kafka adapters: clients and their settings, the header reader, admin, positions,
the hung-call watchdog and the commit protocol."""
