"""Settings: what reaches the startup log and the error line (issue 9, defect 3)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import structlog
from confluent_kafka import KafkaError, KafkaException
from pydantic import SecretStr, ValidationError

from schemas.messages import ROUTES
from tests.conftest import REPO
from worker.errors import ConfigError, FatalKafkaError
from worker.kafka.clients import (
    ClientErrors,
    Refusals,
    WorkerProducer,
    consumer_config,
    make_consumer,
    make_producer,
    producer_config,
)
from worker.metrics import Metrics
from worker.settings import KafkaOnlySettings, KafkaSettings, TopicNames, WorkerSettings

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


def _worker_run(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``support-worker run`` with ``env`` added: what it prints before it would consume."""
    return subprocess.run(
        [sys.executable, "-m", "worker.cli", "run"],
        cwd=REPO,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


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
    out = _worker_run(env)
    assert out.returncode == 2, out.stderr
    assert SECRET not in out.stdout + out.stderr
    assert len(out.stderr.splitlines()) == 1 and "configuration error" in out.stderr


def test_there_is_a_topic_for_every_route() -> None:
    topics = TopicNames()
    assert len({topics.for_route(route) for route in ROUTES}) == len(ROUTES)


# --- secure connections: SASL_SSL settings, secrets from files, refused credentials ---


def _secure_env(tmp_path: Path, password: str = SECRET) -> dict[str, str]:
    """The variables a Kubernetes pod gets: the password and the CA as mounted files."""
    password_file = tmp_path / "sasl-password"
    password_file.write_text(password + "\n")  # `kubectl create secret --from-file` keeps it
    ca = tmp_path / "ca.crt"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    return {
        "SUPPORT_WORKER_KAFKA__SECURITY_PROTOCOL": "SASL_SSL",
        "SUPPORT_WORKER_KAFKA__SASL_MECHANISM": "SCRAM-SHA-512",
        "SUPPORT_WORKER_KAFKA__SASL_USERNAME": "router",
        "SUPPORT_WORKER_KAFKA__SASL_PASSWORD_FILE": str(password_file),
        "SUPPORT_WORKER_KAFKA__SSL_CA_LOCATION": str(ca),
    }


def test_sasl_ssl_settings_and_a_password_file_reach_the_client_and_no_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = _secure_env(tmp_path)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = WorkerSettings()
    conf = settings.kafka.librdkafka()
    assert conf["security.protocol"] == "SASL_SSL"
    assert conf["sasl.mechanism"] == "SCRAM-SHA-512"
    assert conf["sasl.username"] == "router"
    assert conf["sasl.password"] == SECRET  # the final newline of the file is not part of it
    assert conf["ssl.ca.location"] == env["SUPPORT_WORKER_KAFKA__SSL_CA_LOCATION"]
    shown = json.dumps(settings.redacted())
    assert SECRET not in shown and SECRET not in repr(settings) and SECRET not in str(settings)
    assert env["SUPPORT_WORKER_KAFKA__SASL_PASSWORD_FILE"] in shown  # where, never what
    # `topics apply --bootstrap-servers` rebuilds the Kafka settings from a dump
    rebuilt = KafkaSettings(**settings.kafka.model_dump())
    assert rebuilt.librdkafka()["sasl.password"] == SECRET


def test_named_security_settings_win_over_client_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "SUPPORT_WORKER_KAFKA__CLIENT_CONFIG",
        json.dumps({"security.protocol": "PLAINTEXT", "sasl.password": "old", "linger.ms": "7"}),
    )
    monkeypatch.setenv("SUPPORT_WORKER_KAFKA__SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("SUPPORT_WORKER_KAFKA__SASL_PASSWORD", SECRET)
    conf = WorkerSettings().kafka.librdkafka()
    assert conf["security.protocol"] == "SASL_SSL" and conf["sasl.password"] == SECRET
    assert conf["linger.ms"] == "7"


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"SUPPORT_WORKER_KAFKA__SASL_PASSWORD": SECRET}, "not both"),
        ({"SUPPORT_WORKER_KAFKA__SASL_PASSWORD_FILE": "/nonexistent/sasl-password"}, "cannot read"),
        ({"SUPPORT_WORKER_KAFKA__SASL_PASSWORD_FILE": "EMPTY"}, "is empty"),
        ({"SUPPORT_WORKER_KAFKA__SSL_CA_LOCATION": "/nonexistent/ca.crt"}, "does not exist"),
        ({"SUPPORT_WORKER_KAFKA__SECURITY_PROTOCOL": "SASL_TLS"}, "security_protocol"),
    ],
)
def test_a_bad_secure_setting_names_the_setting_never_the_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: dict[str, str], named: str
) -> None:
    env = _secure_env(tmp_path)
    if change.get("SUPPORT_WORKER_KAFKA__SASL_PASSWORD_FILE") == "EMPTY":
        (tmp_path / "empty").write_text("\n")
        change = {"SUPPORT_WORKER_KAFKA__SASL_PASSWORD_FILE": str(tmp_path / "empty")}
    for name, value in {**env, **change}.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError) as caught:
        WorkerSettings()
    assert named in str(caught.value)
    # what the CLI prints: the message (the input is never echoed for kafka.* settings)
    messages = [e["msg"] for e in caught.value.errors()]
    assert SECRET not in str(caught.value) and SECRET not in repr(messages)


def test_password_and_password_file_together_is_one_config_error_line(tmp_path: Path) -> None:
    env = {**_secure_env(tmp_path), "SUPPORT_WORKER_KAFKA__SASL_PASSWORD": SECRET}
    out = _worker_run(env)
    assert out.returncode == 2, out.stderr
    assert SECRET not in out.stdout + out.stderr
    [line] = out.stderr.splitlines()
    assert "configuration error" in line and "SUPPORT_WORKER_KAFKA__SASL_PASSWORD_FILE" in line


def test_scrub_masks_every_credential_the_settings_hold() -> None:
    kafka = KafkaSettings(
        sasl_password=SecretStr(SECRET),
        client_config={"ssl.keystore.password": "ks-pass-77", "sasl.username": "router"},
    )
    text = kafka.scrub(f"broker said: {SECRET} / ks-pass-77 / router")
    assert SECRET not in text and "ks-pass-77" not in text
    assert text == "broker said: ********** / ********** / router"


def _kafka_error(code: int, text: str) -> KafkaError:
    return KafkaError(code, text)


def test_refused_credentials_are_fatal_once_scrubbed_and_name_the_settings() -> None:
    kafka = KafkaSettings(
        bootstrap_servers="broker:9093", sasl_username="router", sasl_password=SecretStr(SECRET)
    )
    refusals = Refusals()
    consumer_errors, producer_errors = ClientErrors(kafka, refusals), ClientErrors(kafka, refusals)
    refused = _kafka_error(KafkaError._AUTHENTICATION, f"SASL authentication error: {SECRET}")
    with pytest.raises(FatalKafkaError) as caught:
        producer_errors(refused)
    message = str(caught.value)
    assert SECRET not in message
    assert "refused the credentials of user 'router'" in message and "broker:9093" in message
    assert "SUPPORT_WORKER_KAFKA__SASL_PASSWORD_FILE" in message
    assert len(message.splitlines()) == 1
    # the other client of the process (or the consumer's close on the way out): no second line
    consumer_errors(refused)


def test_a_tls_failure_is_fatal_and_names_the_ca_setting() -> None:
    errors = ClientErrors(KafkaSettings(bootstrap_servers="broker:9093"), Refusals())
    with pytest.raises(FatalKafkaError, match="SUPPORT_WORKER_KAFKA__SSL_CA_LOCATION"):
        errors(_kafka_error(KafkaError._SSL, "SSL handshake failed: certificate verify failed"))


def test_other_client_errors_are_scrubbed_warnings_not_fatal() -> None:
    kafka = KafkaSettings(sasl_password=SecretStr(SECRET))
    with structlog.testing.capture_logs() as logs:
        ClientErrors(kafka, Refusals())(
            _kafka_error(KafkaError._TRANSPORT, f"Connection refused {SECRET}")
        )
    [entry] = logs
    assert entry["event"] == "kafka_client_error" and entry["log_level"] == "warning"
    assert entry["code"] == "_TRANSPORT" and SECRET not in json.dumps(entry)


def test_the_worker_clients_report_errors_to_one_shared_handler() -> None:
    settings = WorkerSettings()
    consumer_cb = consumer_config(settings, Metrics())["error_cb"]
    producer_cb = producer_config(settings)["error_cb"]
    assert isinstance(consumer_cb, ClientErrors) and isinstance(producer_cb, ClientErrors)
    assert consumer_cb.refusals is producer_cb.refusals


def test_a_failed_init_transactions_serves_error_cb_before_raising() -> None:
    # init_transactions waits on its own queue, so without the poll a refused credential
    # would only ever show as timeouts. Port 1 refuses the connection: error_cb is served.
    class ReportedError(Exception):
        pass

    def error_cb(err: KafkaError) -> None:
        raise ReportedError(err.name())

    producer = WorkerProducer(
        {
            "bootstrap.servers": "127.0.0.1:1",
            "transactional.id": "t",
            "error_cb": error_cb,
            "log_level": 0,
        }
    )
    with pytest.raises(ReportedError):
        producer.init_transactions(1.0)


def test_a_ca_file_librdkafka_cannot_use_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in _secure_env(tmp_path).items():  # its CA file holds no certificate
        monkeypatch.setenv(name, value)
    settings = WorkerSettings()
    with pytest.raises(ConfigError, match=r"ssl\.ca\.location") as caught:
        make_producer(settings)
    assert SECRET not in str(caught.value)
    with pytest.raises(ConfigError, match=r"ssl\.ca\.location"):
        make_consumer(settings, Metrics())


def test_init_transactions_in_slices_still_ends_by_its_own_timeout() -> None:
    producer = WorkerProducer(
        {"bootstrap.servers": "127.0.0.1:1", "transactional.id": "t", "log_level": 0}
    )
    started = time.monotonic()
    with pytest.raises(KafkaException) as caught:
        producer.init_transactions(1.6)  # four slices, none of them reaching a broker
    assert caught.value.args[0].code() == KafkaError._TIMED_OUT
    assert 1.5 <= time.monotonic() - started < 3.0


def test_the_kafka_only_settings_never_echo_a_password_either(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `topics apply` reads these; a short password would fit in an echoed input whole
    monkeypatch.setenv("SUPPORT_WORKER_KAFKA__SASL_PASSWORD", "pw7")
    monkeypatch.setenv("SUPPORT_WORKER_KAFKA__SASL_PASSWORD_FILE", str(tmp_path / "none"))
    with pytest.raises(ValidationError) as caught:
        KafkaOnlySettings()
    assert "not both" in str(caught.value) and "pw7" not in str(caught.value)


def test_cuda_takes_gpu_sized_batches_unless_they_are_set(monkeypatch: pytest.MonkeyPatch) -> None:
    from worker.settings import GPU_BATCHING

    cpu = WorkerSettings().batching
    assert (cpu.max_batch_size, cpu.max_batch_tokens) == (64, 4096)
    monkeypatch.setenv("SUPPORT_WORKER_MODEL__DEVICE", "cuda")
    gpu = WorkerSettings().batching
    assert gpu.max_batch_size == GPU_BATCHING["max_batch_size"] > cpu.max_batch_size
    assert gpu.max_batch_tokens == GPU_BATCHING["max_batch_tokens"] > cpu.max_batch_tokens
    monkeypatch.setenv("SUPPORT_WORKER_BATCHING__MAX_BATCH_SIZE", "100")
    mixed = WorkerSettings().batching
    assert (mixed.max_batch_size, mixed.max_batch_tokens) == (100, GPU_BATCHING["max_batch_tokens"])


# --- one setting says how the model runs: MODEL__VARIANT ---


@pytest.mark.parametrize(
    ("env", "retired", "use"),
    [
        ({"BACKEND": "null"}, "model.backend", "null"),
        ({"BACKEND": "torch"}, "model.backend", "auto"),
        ({"VARIANT": "torch"}, "model.variant=torch", "torch-fp32"),
        ({"VARIANT": "torch", "DTYPE": "bfloat16"}, "model.dtype", "torch-bf16"),
        ({"DTYPE": "float16", "DEVICE": "cuda"}, "model.dtype", "torch-fp16"),
        ({"VARIANT": "torch", "DEVICE": "cuda"}, "model.variant=torch", "torch-bf16"),
        ({"QUANTIZE": "int8"}, "model.quantize", "torch-int8"),
        ({"AUTOCAST": "bfloat16", "VARIANT": "torch"}, "model.autocast", "torch-bf16"),
        ({"PADDING_FREE": "false"}, "model.padding_free", "torch-fp32-padded"),
        ({"PADDING_FREE": "false", "QUANTIZE": "int8"}, "model.quantize", "torch-int8-padded"),
        ({"DTYPE": "bfloat16", "DEVICE": "cpu"}, "model.dtype", "torch-bf16-weights"),
        ({"DTYPE": "bfloat16", "VARIANT": "ort-fp32"}, "model.dtype", "ort-fp32"),
    ],
)
def test_a_retired_model_setting_is_refused_naming_model_variant_and_the_value(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], retired: str, use: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(f"SUPPORT_WORKER_MODEL__{name}", value)
    with pytest.raises(ValidationError) as caught:
        WorkerSettings()
    (error,) = caught.value.errors()
    assert error["loc"] == ("model",)
    assert retired in error["msg"] and "retired" in error["msg"]
    assert error["msg"].endswith(f"set SUPPORT_WORKER_MODEL__VARIANT={use} instead")


def test_a_retired_model_setting_is_one_configuration_error_line() -> None:
    out = _worker_run({"SUPPORT_WORKER_MODEL__DTYPE": "float32"})
    assert out.returncode == 2, out.stderr
    assert out.stderr.splitlines() == [
        "support-worker: configuration error: setting 'model': Value error, model.dtype is "
        "retired: one setting, SUPPORT_WORKER_MODEL__VARIANT, says how the model runs; set "
        "SUPPORT_WORKER_MODEL__VARIANT=torch-fp32 instead"
    ]


@pytest.mark.parametrize(
    "variant", ["auto", "null", "torch-fp32", "torch-bf16-padded", "torch-bf16-weights", "ov-bf16"]
)
def test_model_variant_takes_auto_null_and_every_variant_by_name(
    monkeypatch: pytest.MonkeyPatch, variant: str
) -> None:
    from worker.model.variants import SERVED

    assert set(SERVED) >= {"torch-fp32", "torch-fp32-padded", "torch-fp16", "ort-fp32"}
    monkeypatch.setenv("SUPPORT_WORKER_MODEL__VARIANT", variant)
    assert WorkerSettings().model.variant == variant
    monkeypatch.setenv("SUPPORT_WORKER_MODEL__VARIANT", "torch-fp64")
    with pytest.raises(ValidationError):
        WorkerSettings()
