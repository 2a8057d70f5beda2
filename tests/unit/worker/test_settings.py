"""Settings: what reaches the startup log and the error line (issue 9, defect 3)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from schemas.messages import ROUTES
from tests.conftest import REPO
from worker.settings import TopicNames, WorkerSettings

SECRET = "hunter2-s3cr3t"


def test_redacted_masks_credentials_passed_through_client_config(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(
        "SUPPORT_WORKER_KAFKA__CLIENT_CONFIG",
        json.dumps(
            {
                "security.protocol": "SASL_SSL",
                "sasl.mechanism": "SCRAM-SHA-512",
                "sasl.username": "router",
                "sasl.password": SECRET,
                "ssl.key.pem": SECRET,
                "sasl.oauthbearer.client.secret": SECRET,
                "ssl.keystore.password": SECRET,
            }
        ),
    )
    monkeypatch.setenv("SUPPORT_WORKER_KAFKA__SASL_PASSWORD", SECRET)
    settings = WorkerSettings()
    shown = settings.redacted()
    assert SECRET not in json.dumps(shown)
    options = shown["kafka"]["client_config"]
    assert options["security.protocol"] == "SASL_SSL" and options["sasl.username"] == "router"
    assert options["sasl.password"] == "**********"
    # the client still gets the real value
    assert settings.kafka.librdkafka()["sasl.password"] == SECRET


@pytest.mark.parametrize(
    "env",
    [
        {"SUPPORT_WORKER_KAFKA__CLIENT_CONFIG": json.dumps({"sasl.password": 7, "x": SECRET})},
        {"SUPPORT_WORKER_KAFKA__CLIENT_CONFIG": '{"sasl.password": "' + SECRET + '", 5'},
        {"SUPPORT_WORKER_KAFKA__ADMIN_TIMEOUT_S": SECRET},
        {"SUPPORT_WORKER_KAFKA__SASL_PASSWORD": SECRET, "SUPPORT_WORKER_MODE": "twice"},
    ],
)
def test_a_bad_setting_is_one_line_that_never_echoes_a_credential(env: dict[str, str]) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "worker.cli", "run"],
        cwd=REPO,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2, out.stderr
    assert SECRET not in out.stdout + out.stderr
    assert len(out.stderr.splitlines()) == 1 and "configuration error" in out.stderr


def test_there_is_a_topic_for_every_route() -> None:
    topics = TopicNames()
    assert len({topics.for_route(route) for route in ROUTES}) == len(ROUTES)
