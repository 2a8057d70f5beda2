"""The worker over SASL_SSL (SCRAM-SHA-512, TLS verified against a CA), on a real broker.

Issue 11, item 5. A broker of this module's own (``deploy/local-kafka/kafka up
--sasl-ssl`` in a private state dir, on free ports; the session broker is untouched)
gets a SASL_SSL listener whose certificate a CA made here with openssl signed, and a
SCRAM user formatted into its data dir. Inter-broker and controller traffic stay
PLAINTEXT. Everything the worker needs comes from settings the way a Kubernetes pod
gets it: the password and the CA as files, the rest as variables.

- The right credentials: ``topics apply`` creates the topics over SASL_SSL, and a real
  worker routes every message produced over SASL_SSL, read back read_committed.
- A wrong password: the worker exits 1 within a bound, with one error line naming the
  refused credentials.
- Neither password appears in any log: the worker's, ``topics apply``'s, the tool's, the
  broker's.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer

from tests.conftest import KAFKA_TOOL, REPO
from tests.integration.worker.harness import Topics, message, running_worker, start_worker
from worker.errors import ExitCode
from worker.settings import REDACTED, KafkaSettings, TopicNames

pytestmark = [
    pytest.mark.skipif(
        bool(os.environ.get("KAFKA_BOOTSTRAP_SERVERS"))
        and not os.environ.get("LOCAL_KAFKA_MANAGED"),
        reason="KAFKA_BOOTSTRAP_SERVERS names a user's cluster: start no broker of our own",
    ),
    pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl makes the certificates"),
]

USER = "router"
APPLY = "topics apply --replication-factor 1 --partitions 2"
MESSAGES = 24
# A worker that cannot authenticate must be gone by then. It takes about 6 s here: start
# and model load, then at most one init_transactions slice (0.5 s) after the refusal.
EXIT_BOUND_S = 60.0


@dataclass(frozen=True)
class SecureBroker:
    state: Path
    sasl_addr: str
    ca: Path
    password: str  # distinctive and random: grep-able, and nothing can know it in advance
    password_file: Path
    tool_log: str  # what `kafka up` wrote to stderr

    def worker_settings(self, **change: str) -> dict[str, str]:
        """SUPPORT_WORKER_* settings (lower case, for the harness) of a pod on this broker.

        ``change`` replaces some; an empty value leaves that one out.
        """
        settings = {
            "kafka__bootstrap_servers": self.sasl_addr,
            "kafka__security_protocol": "SASL_SSL",
            "kafka__sasl_mechanism": "SCRAM-SHA-512",
            "kafka__sasl_username": USER,
            "kafka__sasl_password_file": str(self.password_file),
            "kafka__ssl_ca_location": str(self.ca),
        }
        settings.update(change)
        return {k: v for k, v in settings.items() if v}

    def env(self) -> dict[str, str]:
        """This process's environment with the pod's Kafka settings instead of its own."""
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("SUPPORT_WORKER_") and k != "KAFKA_BOOTSTRAP_SERVERS"
        }
        env.update({f"SUPPORT_WORKER_{k.upper()}": v for k, v in self.worker_settings().items()})
        return env

    def client(self, **options: object) -> dict[str, object]:
        """A librdkafka config with the worker's own secure settings (same code path)."""
        kafka = KafkaSettings(
            bootstrap_servers=self.sasl_addr,
            security_protocol="SASL_SSL",
            sasl_mechanism="SCRAM-SHA-512",
            sasl_username=USER,
            sasl_password_file=self.password_file,
            ssl_ca_location=self.ca,
        )
        return kafka.librdkafka(**options)

    def broker_log(self) -> str:
        return (self.state / "logs" / "broker.log").read_text(errors="replace")


def _openssl(command: str, *args: str, cwd: Path) -> None:
    """``openssl`` with the words of ``command``, then ``args`` (which may hold spaces)."""
    out = subprocess.run(
        ["openssl", *command.split(), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, f"openssl {command} failed:\n{out.stderr}"


def make_certificates(d: Path, keystore_password: str) -> tuple[Path, Path]:
    """A CA, and a broker keystore (PKCS12) it signed for 127.0.0.1; (CA PEM, keystore)."""
    _openssl(
        "req -x509 -newkey rsa:2048 -nodes -days 2 -keyout ca.key -out ca.crt",
        "-subj",
        "/CN=support-router test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        cwd=d,
    )
    _openssl(
        "req -newkey rsa:2048 -nodes -keyout broker.key -out broker.csr -subj /CN=127.0.0.1",
        cwd=d,
    )
    # librdkafka checks the host name (ssl.endpoint.identification.algorithm=https).
    (d / "broker.ext").write_text(
        "basicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
    )
    _openssl(
        "x509 -req -in broker.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 "
        "-extfile broker.ext -out broker.crt",
        cwd=d,
    )
    _openssl(
        "pkcs12 -export -in broker.crt -inkey broker.key -certfile ca.crt -name broker "
        "-out broker.p12",
        "-passout",
        f"pass:{keystore_password}",
        cwd=d,
    )
    return d / "ca.crt", d / "broker.p12"


def _tool(state: Path, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}
    env.update(LOCAL_KAFKA_STATE=str(state), LOCAL_KAFKA_PORT="0")  # 0: free ports only
    return subprocess.run(
        [sys.executable, str(KAFKA_TOOL), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="module")
def secure_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    root = tmp_path_factory.mktemp("sasl-ssl")
    certs = root / "certs"
    certs.mkdir()
    keystore_password = secrets.token_hex(12)
    ca, keystore = make_certificates(certs, keystore_password)
    overrides = root / "sasl-ssl.properties"
    overrides.write_text(
        "ssl.keystore.type=PKCS12\n"
        f"ssl.keystore.location={keystore}\n"
        f"ssl.keystore.password={keystore_password}\n"
        f"ssl.key.password={keystore_password}\n"
    )
    password = f"scram-{secrets.token_hex(16)}-pw"
    # As a Secret mounted from a file made with `kubectl create secret --from-file`.
    password_file = root / "sasl-password"
    password_file.write_text(password + "\n")
    state = root / "kafka-state"
    up = _tool(
        state,
        "up",
        "--sasl-ssl",
        "--config-override",
        str(overrides),
        "--add-scram",
        f"SCRAM-SHA-512=[name={USER},password={password}]",
    )
    try:
        assert up.returncode == 0, up.stderr
        sasl_addr = (state / "bootstrap.sasl_ssl").read_text().strip()
        yield SecureBroker(state, sasl_addr, ca, password, password_file, up.stderr + up.stdout)
    finally:
        _tool(state, "down", timeout=90)


def topics_named(suffix: str) -> Topics:
    """deploy/topics.yaml's topics as ``topics apply --name-suffix`` names them."""
    roles = ("inbound", "escalate", "auto_resolve", "more_info", "dlq")
    return Topics(**{role: f"support.{role}{suffix}" for role in roles})


def produce(broker: SecureBroker, topic: str, n: int) -> set[str]:
    p = Producer(broker.client(**{"enable.idempotence": True, "linger.ms": 5}))
    ids = set()
    for i in range(n):
        msg = message(i)
        p.produce(topic, key=msg["conversation_id"].encode(), value=json.dumps(msg).encode())
        ids.add(msg["message_id"])
    assert p.flush(30) == 0
    return ids


def read_routed(broker: SecureBroker, topics: Topics, expect: int) -> list[tuple[str, str]]:
    """(topic, message_id) of every committed output, once ``expect`` arrived (or 60 s)."""
    c = Consumer(
        broker.client(
            **{
                "group.id": f"reader-{uuid.uuid4().hex}",
                "isolation.level": "read_committed",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
            }
        )
    )
    c.subscribe(topics.outputs())
    out: list[tuple[str, str]] = []
    deadline = time.monotonic() + 60
    quiet_until = None
    try:
        while time.monotonic() < deadline:
            for m in c.consume(100, timeout=0.5):
                assert m.error() is None, m.error()
                value = json.loads(m.value()) if m.topic() != topics.dlq else {}
                out.append((m.topic() or "", value.get("message_id", "dead letter")))
            if len(out) >= expect:
                # a moment more: a duplicate would arrive now, and must be caught
                quiet_until = quiet_until or time.monotonic() + 2
                if time.monotonic() > quiet_until:
                    break
    finally:
        c.close()
    return out


def assert_no_password(text: str, *passwords: str, where: str) -> None:
    for password in passwords:
        assert password not in text, f"a password reached {where}"


def test_the_worker_routes_over_sasl_ssl_with_the_right_credentials(
    secure_broker: SecureBroker, smoke_artifact: Path, tmp_path: Path
) -> None:
    suffix = f".sasl-{uuid.uuid4().hex[:8]}"
    # The topics, over SASL_SSL with the worker's own settings.
    apply = subprocess.run(
        [sys.executable, "-m", "worker.cli", *APPLY.split(), "--name-suffix", suffix],
        cwd=REPO,
        env=secure_broker.env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert apply.returncode == 0, apply.stdout + apply.stderr
    created = [line for line in apply.stdout.splitlines() if line.startswith("create ")]
    assert len(created) == len(TopicNames().model_dump()), apply.stdout
    topics = topics_named(suffix)

    settings = secure_broker.worker_settings()
    with running_worker(
        secure_broker.sasl_addr, topics, smoke_artifact, tmp_path, **settings
    ) as worker:
        sent = produce(secure_broker, topics.inbound, MESSAGES)
        routed = read_routed(secure_broker, topics, MESSAGES)

    ids = [message_id for _, message_id in routed]
    assert sorted(ids) == sorted(sent), "every message routed exactly once"
    assert {topic for topic, _ in routed} <= {
        topics.escalate,
        topics.auto_resolve,
        topics.more_info,
    }
    committed = sum(
        e.get("size", 0) for e in worker.log_lines() if e.get("event") == "batch_committed"
    )
    assert committed == MESSAGES

    worker_log = worker.log_path.read_text(errors="replace")
    assert_no_password(worker_log, secure_broker.password, where="the worker's log")
    assert_no_password(apply.stdout + apply.stderr, secure_broker.password, where="topics apply")
    assert_no_password(secure_broker.tool_log, secure_broker.password, where="`kafka up`")
    assert_no_password(secure_broker.broker_log(), secure_broker.password, where="the broker log")
    assert not [e for e in worker.log_lines() if e.get("level") == "error"], worker.tail()


def test_a_wrong_password_exits_fast_with_one_authentication_error(
    secure_broker: SecureBroker, smoke_artifact: Path, tmp_path: Path
) -> None:
    wrong = f"wrong-{secrets.token_hex(16)}-pw"  # through the variable, not the file
    settings = secure_broker.worker_settings(
        kafka__sasl_password_file="", kafka__sasl_password=wrong
    )
    tag = uuid.uuid4().hex[:8]
    topics = topics_named(f".wrong-{tag}")  # never created: the connection is refused first
    started = time.monotonic()
    worker = start_worker(
        secure_broker.sasl_addr,
        topics,
        smoke_artifact,
        tmp_path,
        group=f"g-{tag}",
        txn_id=f"t-{tag}",
        **settings,
    )
    try:
        code = worker.wait(EXIT_BOUND_S)
    except subprocess.TimeoutExpired:
        worker.kill()
        pytest.fail(f"still running after {EXIT_BOUND_S:.0f}s:\n{worker.tail()}")
    elapsed = time.monotonic() - started
    assert code == ExitCode.FATAL, worker.tail()
    assert elapsed < EXIT_BOUND_S

    lines = worker.log_lines()
    errors = [e for e in lines if e.get("level") == "error"]
    assert len(errors) == 1, worker.tail()
    [fatal] = errors
    assert fatal["event"] == "fatal_kafka_error"
    assert "refused the credentials of user 'router'" in fatal["error"]
    assert "SASL authentication failed" in fatal["error"]
    assert "SUPPORT_WORKER_KAFKA__SASL_PASSWORD" in fatal["error"]
    log_text = worker.log_path.read_text(errors="replace")
    assert "Traceback" not in log_text
    # the effective settings were logged at start, the password masked
    [starting] = [e for e in lines if e.get("event") == "starting"]
    assert starting["settings"]["kafka"]["sasl_password"] == REDACTED

    assert_no_password(log_text, wrong, secure_broker.password, where="the worker's log")
    assert_no_password(secure_broker.broker_log(), wrong, where="the broker log")
    print(f"wrong password: exit {code} after {elapsed:.1f}s; fatal line: {fatal['error']}")
