"""File scoring routes each line as the worker would, in order, and keeps every bad one."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from schemas.messages import OutboundMessage
from tests.conftest import REPO
from tests.results import same_result
from worker.router import Router
from worker.score import read_lines, score, score_file
from worker.settings import WorkerSettings

TEXTS = ["my card was declined at the store", "WHERE IS MY REFUND", "", "how do i reset my pin"]


def _line(i: int, text: str) -> bytes:
    return orjson.dumps({"message_id": f"m{i}", "conversation_id": f"c{i}", "text": text})


@pytest.fixture(scope="module")
def router(smoke_artifact: Path) -> Router:
    # Batches of 2, so a file of a few lines crosses batch and chunk boundaries.
    s = WorkerSettings.model_validate({"batching": {"max_batch_size": 2}})
    return Router.load(smoke_artifact, s)


def test_lines_become_results_in_order_and_bad_lines_dead_letters(router: Router) -> None:
    lines = [
        _line(0, TEXTS[0]),
        b"not json",
        b"",  # blank: no message
        _line(3, TEXTS[1]) + b"\r",  # CRLF
        b"\xff\xfe not utf-8",
        _line(5, TEXTS[2]),
        b'{"message_id": "m6"}',
        b"x" * 300,  # past max_line_bytes below
        _line(8, TEXTS[3]),  # the last line, without a newline
    ]
    src = io.BytesIO(b"\n".join(lines))
    out, dead = io.BytesIO(), io.BytesIO()
    seen: list[int] = []
    counts = score(
        router, src, out, dead, source="in.jsonl", progress=seen.append, max_line_bytes=200
    )

    results = [json.loads(x) for x in out.getvalue().splitlines()]
    assert [r["message_id"] for r in results] == ["m0", "m3", "m5", "m8"]
    assert [r["source"] for r in results] == [
        {"topic": "in.jsonl", "partition": 0, "offset": n} for n in (1, 4, 6, 9)
    ]
    for r in results:
        OutboundMessage.model_validate(r)
    # What the Python API returns for the same texts, but for where and when.
    api = router.route(TEXTS)
    for got, want in zip(results, api, strict=True):
        want_value = dict(want.value, message_id=got["message_id"])
        want_value["conversation_id"] = got["conversation_id"]
        want_value["message"] = got["message"]
        assert same_result(got, want_value)

    dead_lines = [json.loads(x) for x in dead.getvalue().splitlines()]
    assert [(d["line"], d["stage"], d["error_type"]) for d in dead_lines] == [
        (2, "decode", "JSONDecodeError"),
        (5, "decode", "JSONDecodeError"),
        (7, "validate", "ValidationError"),
        (8, "decode", "ValueTooLarge"),
    ]
    assert dead_lines[0]["value"] == "not json"
    assert "value_base64" in dead_lines[1] and "value" not in dead_lines[1]
    assert dead_lines[3]["reason"] == "line has 300 bytes, limit 200"
    assert "value" not in dead_lines[3] and len(dead_lines[3]["value_sha256"]) == 64

    assert (counts.lines, counts.routed, counts.dead, counts.blank) == (8, 4, 4, 1)
    assert sum(counts.routes.values()) == 4
    assert sum(seen) == 9  # every line, blank ones too, reached the progress bar


def test_an_oversized_line_does_not_take_the_next_one_with_it() -> None:
    src = io.BytesIO(b"a" * 25 + b"\n" + b'{"x": 1}\n' + b"b" * 10)
    entries = list(read_lines(src, "f", max_line_bytes=8))
    assert [getattr(e, "number", None) or getattr(e, "offset", None) for e in entries] == [1, 2, 3]
    assert entries[0].length == 25  # type: ignore[union-attr]
    assert entries[1].value == b'{"x": 1}'  # type: ignore[union-attr]
    assert entries[2].length == 10  # type: ignore[union-attr]


def test_files_appear_only_when_every_line_is_done(router: Router, tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_bytes(b"\n".join(_line(i, t) for i, t in enumerate(TEXTS * 5)) + b"\n")
    out, dead = tmp_path / "out.jsonl", tmp_path / "dead.jsonl"
    counts = score_file(router, src, out, dead)
    assert counts.routed == 20 and len(out.read_bytes().splitlines()) == 20
    assert dead.read_bytes() == b""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dead.jsonl", "in.jsonl", "out.jsonl"]

    class StopScoringError(Exception):
        pass

    def stop(_: int) -> None:
        raise StopScoringError

    out.unlink()
    with pytest.raises(StopScoringError):
        score_file(router, src, out, dead, progress=stop)
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dead.jsonl", "in.jsonl"]


def _command(*args: str) -> subprocess.CompletedProcess[str]:
    """In a process of its own, as a user runs it: the command configures logging."""
    argv = [sys.executable, "-m", "worker.cli", "score", *args]
    return subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=300)


def test_the_command_prints_a_summary_and_a_progress_bar(
    smoke_artifact: Path, tmp_path: Path
) -> None:
    src = tmp_path / "msgs.jsonl"
    src.write_bytes(_line(0, TEXTS[0]) + b"\nnot json\n")
    out = tmp_path / "routed.jsonl"
    done = _command(
        "--in", str(src), "--out", str(out), "--model", str(smoke_artifact), "--progress"
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert (summary["lines"], summary["routed"], summary["dead_letters"]) == (2, 1, 1)
    assert summary["dead_letters_file"] == str(tmp_path / "routed.dlq.jsonl")
    assert summary["variant"] == "torch-fp32" and summary["msg_per_s"] > 0
    assert "2msg" in done.stderr.replace(" ", "")  # tqdm's bar, counting lines
    assert json.loads((tmp_path / "routed.dlq.jsonl").read_text())["line"] == 2
    assert OutboundMessage.model_validate_json(out.read_text()).message_id == "m0"

    same = _command("--in", str(src), "--out", str(src), "--no-progress")
    assert same.returncode == 2 and "three different files" in same.stderr
    assert src.read_bytes() == _line(0, TEXTS[0]) + b"\nnot json\n"
