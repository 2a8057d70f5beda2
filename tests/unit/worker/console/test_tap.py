from __future__ import annotations

import structlog
from confluent_kafka import KafkaError

from worker.console.tap import ConsoleErrors
from worker.settings import KafkaSettings


def test_a_repeated_error_is_logged_once_per_period_with_the_count_held_back() -> None:
    errors = ConsoleErrors(KafkaSettings(bootstrap_servers="b:9092"), every_s=30)
    down = KafkaError(KafkaError._ALL_BROKERS_DOWN, "1/1 brokers are down")
    with structlog.testing.capture_logs() as logs:
        for _ in range(50):
            errors(down)
        errors(KafkaError(KafkaError._TRANSPORT, "connection refused"))
    assert [e["code"] for e in logs] == ["_ALL_BROKERS_DOWN", "_TRANSPORT"]
    assert errors.recent() == "connection refused"
    errors._logged[KafkaError._ALL_BROKERS_DOWN] -= 31  # the period is over
    with structlog.testing.capture_logs() as logs:
        errors(down)
    assert logs[0]["held_back"] == 49


def test_a_refused_login_names_the_settings_and_never_the_password() -> None:
    kafka = KafkaSettings(
        bootstrap_servers="b:9093", sasl_username="router", sasl_password="s3cret-pw"
    )
    errors = ConsoleErrors(kafka)
    errors(KafkaError(KafkaError._AUTHENTICATION, "SASL failed for s3cret-pw"))
    text = errors.recent()
    assert text is not None
    assert "refused the credentials of user 'router'" in text
    assert "s3cret-pw" not in text
    errors.last = (errors.last[0] - 60, text) if errors.last else None
    assert errors.recent() is None  # old news
