"""Who may use the console (issue 21), against the real broker and a real worker: no
session, 401; identity headers from an address that is no configured proxy, 403; each
role reaches its endpoints and no others, the event stream included; a POST without the
session's CSRF token, 403; a correction's agent id is the logged-in user's pseudonym
whatever the body claims; repeated wrong passwords are refused (429)."""

from __future__ import annotations

import hashlib
import hmac
import json
import shutil
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from schemas.learning import Feedback
from tests.integration.console.conftest import (
    MAX_TEXT_CHARS,
    Pipeline,
    console_on,
    events,
    learning_topics,
    produce_values,
    read_all,
)
from tests.unit.worker.console.records import MODEL_VERSION, labelled, review_value
from tools import REPO, console_proc, worker_proc
from tools.console_proc import Client, ConsoleProc, call
from worker.console.auth.roles import Role
from worker.console.auth.users import hash_line
from worker.errors import ExitCode

KEY = b"test-agent-key-0123456789"
PASSWORDS = {"vera": "viewer-pass-1", "ana": "agent-pass-1", "otto": "operator-pass-1"}
ROLES = {"vera": Role.VIEWER, "ana": Role.AGENT, "otto": Role.OPERATOR}
PRIVATE = "my IBAN is DE02 1234 and I want a refund"
CORRECTED = {h: p["label"] for h, p in labelled().items()} | {"intent": "refund_request"}
JSON = {"Content-Type": "application/json"}


def write_users(path: Path, extra: dict[str, tuple[Role, str]] | None = None) -> Path:
    users = {n: (ROLES[n], PASSWORDS[n]) for n in PASSWORDS} | (extra or {})
    path.write_text(
        "# name:role:hash\n"
        + "".join(hash_line(name, role, pw) + "\n" for name, (role, pw) in users.items())
    )
    return path


@pytest.fixture(scope="module")
def topics(kafka_admin: AdminClient, pipeline: Pipeline) -> Iterator[dict[str, str]]:
    """The module's own review, feedback and shadow topics; one queued message, m-1."""
    names: list[str] = []

    def make(prefix: str, partitions: int) -> str:
        name = f"{prefix}.{uuid.uuid4().hex[:10]}"
        kafka_admin.create_topics([NewTopic(name, partitions, 1)])[name].result(timeout=30)
        names.append(name)
        return name

    t = learning_topics(make)
    produce_values(pipeline.bootstrap, t["review"], [("m-1", review_value("m-1", PRIVATE))])
    yield t
    for fut in kafka_admin.delete_topics(names).values():
        fut.exception(timeout=30)


@pytest.fixture(scope="module")
def guarded(
    pipeline: Pipeline, topics: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ConsoleProc]:
    """Standalone logins, with --review and an agent key; a proxy at an address the tests
    never send from, so their X-Forwarded-User is a forgery."""
    tmp = tmp_path_factory.mktemp("guarded")
    (tmp / "agent.key").write_bytes(KEY)
    (tmp / "roles.toml").write_text('[groups]\n"sre" = "operator"\n')
    args = (
        "--review",
        "--agent-key-file", str(tmp / "agent.key"),
        "--users-file", str(write_users(tmp / "users", {"victim": (Role.AGENT, "right-1")})),
        "--trusted-proxy", "192.0.2.7",
        "--proxy-roles-file", str(tmp / "roles.toml"),
    )  # fmt: skip
    with console_on(pipeline, tmp, *args, topics=topics) as c:
        yield c


def logged_in(console: ConsoleProc, user: str) -> Client:
    status, body, client = console.login(user, PASSWORDS[user])
    assert status == 200 and client is not None, body
    assert (body["user"], body["role"]) == (user, ROLES[user].label)
    return client


def raw(console: ConsoleProc, path: str, headers: dict[str, str], data: bytes | None = None) -> int:
    req = urllib.request.Request(console.url + path, data=data, headers=headers)
    return call(req)[0]


GETS = ("api/config", "api/session", "api/shadow", "api/review/queue", "api/review/agreement")
POSTS = ("api/try", "api/review/feedback/m-1", "api/logout")


def stream_status(console: ConsoleProc, headers: dict[str, str]) -> int:
    """The event stream's status (the stream itself is closed at once)."""
    req = urllib.request.Request(console.url + "api/events", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)


def test_without_a_session_every_endpoint_answers_401(guarded: ConsoleProc) -> None:
    for path in GETS:
        assert raw(guarded, path, {}) == 401, path
    assert stream_status(guarded, {}) == 401
    for path in POSTS:
        assert raw(guarded, path, JSON, b'{"text": "x"}') == 401, path
    forged = {"Cookie": "console_session=abc.def"}  # not signed by this console
    assert raw(guarded, "api/config", forged) == 401
    # The page and its script hold no data: they load, and ask for a login.
    assert raw(guarded, "", {}) == 200
    assert guarded.get("api/session")[1]["login"] is True


def test_identity_headers_from_an_untrusted_address_are_refused(guarded: ConsoleProc) -> None:
    otto = logged_in(guarded, "otto")
    for forged in (
        {"X-Forwarded-User": "otto"},
        {"X-Forwarded-Email": "boss@example.com", "X-Forwarded-Groups": "sre"},
    ):
        for path in GETS:
            assert raw(guarded, path, forged) == 403, (path, forged)
            # Not even beside a valid session: a forgery is refused, not ignored.
            assert raw(guarded, path, {**forged, **otto.headers()}) == 403, path
        assert stream_status(guarded, forged) == 403
        assert otto.post("api/try", {"text": "x"}, forged)[0] == 403
    assert "identity_header_refused" in guarded.log_path.read_text()


def test_each_role_reaches_its_endpoints_and_no_others(guarded: ConsoleProc) -> None:
    # (GET path or "events" or POST path) -> the least role that may.
    least = {
        "api/config": Role.VIEWER,
        "api/shadow": Role.VIEWER,
        "events": Role.VIEWER,
        "api/review/queue": Role.AGENT,
        "api/review/agreement": Role.AGENT,
        "POST api/try": Role.OPERATOR,
    }
    for user, role in ROLES.items():
        client = logged_in(guarded, user)
        for what, needed in least.items():
            if what == "events":
                status = stream_status(guarded, client.headers())
            elif what.startswith("POST "):
                status = client.post(what[5:], {"text": "hello from the role test"})[0]
            else:
                status = client.get(what)[0]
            assert status == (200 if role >= needed else 403), (user, what, status)
        # A viewer may not send a correction; an agent's is tested below.
        if role < Role.AGENT:
            assert client.post("api/review/feedback/m-1", {"labels": CORRECTED})[0] == 403


def test_a_post_without_the_session_s_csrf_token_is_refused(guarded: ConsoleProc) -> None:
    otto, other = logged_in(guarded, "otto"), logged_in(guarded, "otto")
    assert otto.csrf != other.csrf  # one per session
    for token in ("", "forged", other.csrf):
        status, body = otto.post("api/try", {"text": "x"}, {"X-CSRF-Token": token})
        assert status == 403 and "CSRF" in body["error"], (token, body)
    assert otto.post("api/logout", {}, {"X-CSRF-Token": ""})[0] == 403
    assert otto.get("api/session")[0] == 200  # the refused logout did nothing


def test_the_agent_id_is_the_logged_in_user_s_even_when_the_body_claims_another(
    guarded: ConsoleProc, pipeline: Pipeline, topics: dict[str, str]
) -> None:
    ana = logged_in(guarded, "ana")
    status, queue = ana.get("api/review/queue")
    assert status == 200 and [i["message_id"] for i in queue["items"]] == ["m-1"], queue
    assert queue["items"][0]["text"] == PRIVATE
    claim = {"labels": CORRECTED, "agent": "otto", "agent_id": "a-00000000000000000000"}
    status, answer = ana.post("api/review/feedback/m-1", claim)
    assert status == 200, answer

    [(key, value)] = read_all(pipeline.bootstrap, topics["feedback"])
    fb = Feedback.model_validate_json(value)
    ana_id = "a-" + hmac.new(KEY, b"ana", hashlib.sha256).hexdigest()[:20]
    assert (key, fb.agent_id, fb.model_version) == (b"m-1", ana_id, MODEL_VERSION)
    assert answer["feedback"]["agent_id"] == ana_id

    lines = [json.loads(x) for x in guarded.log_path.read_text().splitlines() if x.startswith("{")]
    [claimed] = [x for x in lines if x["event"] == "identity_claim_ignored"]
    otto_id = "a-" + hmac.new(KEY, b"otto", hashlib.sha256).hexdigest()[:20]
    assert (claimed["user"], claimed["claimed"]) == (ana_id, otto_id)
    trail = [(x["action"], x["user"]) for x in lines if x["event"] == "audit"]
    assert ("review_opened", ana_id) in trail and ("feedback_submitted", ana_id) in trail
    opened = [
        x["message_ids"]
        for x in lines
        if x["event"] == "audit" and x["action"] == "review_opened" and x["user"] == ana_id
    ]
    assert opened == [["m-1"]]  # once per user, however often the queue was read
    log = guarded.log_path.read_text()
    assert PRIVATE not in log and not any(pw in log for pw in PASSWORDS.values())


def test_a_viewer_s_and_an_agent_s_event_stream_carry_no_text(guarded: ConsoleProc) -> None:
    secret = "call me on 555-0199 " * 20  # over the limit: a dead letter
    assert len(secret) > MAX_TEXT_CHARS
    status, body = logged_in(guarded, "otto").post("api/try", {"text": secret})
    assert status == 200 and body["status"] == "dead_letter", body
    mid = body["message_id"]

    def snapshot_of(client: Client) -> dict[str, Any]:
        seen: dict[str, Any] = {}

        def until(event: str, data: Any) -> bool:
            seen.update({d["message_id"]: d for d in data.get("dead_letters", [])})
            return event == "snapshot"

        events(guarded, until, headers=client.headers())
        return dict(seen[mid])

    assert snapshot_of(logged_in(guarded, "otto"))["text"] == secret  # its own try
    for user in ("vera", "ana"):
        shown = snapshot_of(logged_in(guarded, user))
        assert (shown["text"], shown["reason"], shown["text_hidden"]) == (None, None, True)
        assert "view" not in shown


def test_logout_ends_the_session_and_the_cookie_is_strict(guarded: ConsoleProc) -> None:
    req = urllib.request.Request(
        guarded.url + "api/login",
        data=json.dumps({"user": "vera", "password": PASSWORDS["vera"]}).encode(),
        headers=JSON,
    )
    status, body, headers = call(req)
    assert status == 200, body
    attrs = {a.strip().split("=")[0].lower() for a in headers["set-cookie"].split(";")}
    assert {"httponly", "samesite", "max-age", "path"} <= attrs
    assert "samesite=strict" in headers["set-cookie"].lower()
    assert "secure" not in attrs  # plain HTTP here; Secure under --certfile
    vera = Client(guarded, headers["set-cookie"].split(";")[0], body["csrf"])
    assert vera.post("api/logout", {})[0] == 200
    assert vera.get("api/config")[0] == 401
    trail = guarded.log_path.read_text()
    assert '"action": "logout"' in trail or '"action":"logout"' in trail


def test_repeated_wrong_passwords_are_refused_then_even_the_right_one(
    guarded: ConsoleProc,
) -> None:
    for _ in range(5):
        assert guarded.login("victim", "wrong")[0] == 401
    status, body, client = guarded.login("victim", "right-1")
    assert (status, client) == (429, None), body
    assert "too many failed logins" in body["error"]
    # Per name: another user from the same address still logs in.
    assert guarded.login("vera", PASSWORDS["vera"])[0] == 200
    assert '"login_refused"' in guarded.log_path.read_text()


def test_a_trusted_proxy_s_headers_give_the_mapped_role(
    pipeline: Pipeline, topics: dict[str, str], tmp_path: Path
) -> None:
    roles = tmp_path / "roles.toml"
    roles.write_text('[users]\n"ana@example.com" = "agent"\n[groups]\n"sre" = "operator"\n')
    args = ("--review", "--trusted-proxy", "127.0.0.1", "--proxy-roles-file", str(roles))
    with console_on(pipeline, tmp_path, *args, topics=topics) as c:
        ana = {"X-Forwarded-User": "1234", "X-Forwarded-Email": "ana@example.com"}
        status, me = call(urllib.request.Request(c.url + "api/session", headers=ana))[:2]
        assert (status, me["user"], me["role"]) == (200, "ana@example.com", "agent"), me
        assert raw(c, "api/review/queue", ana) == 200
        try_it = {**ana, **JSON, "X-CSRF-Token": me["csrf"]}
        assert raw(c, "api/try", try_it, b'{"text": "x"}') == 403  # an agent
        sre = {"X-Forwarded-User": "bo", "X-Forwarded-Groups": "staff,sre"}
        assert raw(c, "api/review/queue", sre) == 200  # an operator
        nobody = {"X-Forwarded-User": "eve", "X-Forwarded-Groups": "staff"}
        assert raw(c, "api/config", nobody) == 403
        assert stream_status(c, nobody) == 403
        assert raw(c, "api/config", {}) == 401  # no users file: no login, no header


def test_a_bind_beyond_loopback_without_a_login_does_not_start(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "worker.cli", "console", "--host", "0.0.0.0"],
        cwd=REPO,
        env={"PATH": "/usr/bin:/bin", "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == ExitCode.CONFIG, proc.stderr
    assert "no login" in proc.stderr and "--users-file" in proc.stderr


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl makes the certificate")
def test_under_tls_the_console_serves_https_only_and_its_cookie_is_secure(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", "key.pem", "-out", "cert.pem", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        cwd=tmp_path, check=True, capture_output=True,
    )  # fmt: skip
    tls = ssl.create_default_context(cafile=str(tmp_path / "cert.pem"))
    env = worker_proc.worker_env(
        pipeline.bootstrap, pipeline.topics.roles(), Path("unused"), group=pipeline.group,
        txn_id="unused",
    )  # fmt: skip
    args = (
        "--users-file", str(write_users(tmp_path / "users")),
        "--certfile", str(tmp_path / "cert.pem"), "--keyfile", str(tmp_path / "key.pem"),
    )  # fmt: skip
    console = console_proc.start(env, tmp_path / "console.log", args=args)
    try:
        url = ""
        deadline = time.monotonic() + 60
        while not url and time.monotonic() < deadline:
            assert console.proc.poll() is None, console.tail()
            url = console._announced()
            time.sleep(0.2)
        assert url.startswith("https://127.0.0.1:"), console.tail()
        login = urllib.request.Request(
            url + "api/login",
            data=json.dumps({"user": "vera", "password": PASSWORDS["vera"]}).encode(),
            headers=JSON,
        )
        while True:  # the port is announced before the first request is served
            try:
                with urllib.request.urlopen(login, timeout=5, context=tls) as r:
                    cookie = r.headers["set-cookie"]
                    break
            except urllib.error.URLError:
                assert time.monotonic() < deadline, console.tail()
                time.sleep(0.2)
        attrs = {a.strip().split("=")[0].lower() for a in cookie.split(";")}
        assert {"secure", "httponly"} <= attrs and "samesite=strict" in cookie.lower()
        plain = url.replace("https://", "http://") + "healthz"
        with pytest.raises((urllib.error.URLError, ConnectionError)):
            urllib.request.urlopen(plain, timeout=5)  # plain HTTP gets no answer
    finally:
        console.proc.terminate()
        console.proc.wait(15)
