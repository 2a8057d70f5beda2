"""Operations on the topics around the worker: topics as data (`support-worker topics`)
and DLQ replay (`support-worker dlq`)."""
