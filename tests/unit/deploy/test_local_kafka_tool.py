"""`deploy/local-kafka/kafka` without a broker: external clusters and missing tools."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import KAFKA_TOOL


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(KAFKA_TOOL), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _load_tool_module() -> object:
    loader = importlib.machinery.SourceFileLoader("local_kafka_tool", str(KAFKA_TOOL))
    spec = importlib.util.spec_from_loader("local_kafka_tool", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def test_cluster_ids_never_look_like_an_option() -> None:
    # 1 id in 64 starts with "-" when drawn naively, and kafka-storage then fails to
    # parse `-t <id>`; 2000 draws make a regression show with near certainty.
    make_id = _load_tool_module().base64_uuid  # type: ignore[attr-defined]
    ids = [make_id() for _ in range(2000)]
    assert not [i for i in ids if i.startswith("-")]
    assert all(len(i) == 22 for i in ids)
    assert len(set(ids)) == len(ids)


def _bare_env(tmp_path: Path, *tools: str) -> dict[str, str]:
    """PATH holding only the named tools, a private state dir and an empty jar cache."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in tools:
        found = shutil.which(tool)
        assert found, tool
        (bin_dir / tool).symlink_to(found)
    env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}
    env.update(
        PATH=str(bin_dir),
        LOCAL_KAFKA_STATE=str(tmp_path / "state"),
        LOCAL_KAFKA_CACHE=str(tmp_path / "cache"),
    )
    return env


def test_external_cluster_is_used_and_nothing_starts(tmp_path: Path) -> None:
    env = dict(_bare_env(tmp_path), KAFKA_BOOTSTRAP_SERVERS="kafka.example:9092")
    out = _run(env, "up")
    assert out.returncode == 0
    assert out.stdout == "kafka.example:9092\n"
    assert not (tmp_path / "state").exists()


def test_missing_java_is_named_with_the_alternatives(tmp_path: Path) -> None:
    out = _run(_bare_env(tmp_path), "up")
    assert out.returncode == 1
    [line] = out.stderr.splitlines()
    assert "java not found" in line
    assert "KAFKA_BOOTSTRAP_SERVERS" in line and "deploy/compose.yaml" in line


def test_missing_maven_is_named_when_the_jars_are_not_cached(tmp_path: Path) -> None:
    out = _run(_bare_env(tmp_path, "java"), "up")
    assert out.returncode == 1
    [line] = out.stderr.splitlines()
    assert "mvn not found" in line


def test_the_single_brokers_options_fingerprint_is_unchanged() -> None:
    # A broker started before --brokers existed must still be reused by a plain `up`.
    import hashlib

    tool = _load_tool_module()
    default = tool.BrokerOptions()  # type: ignore[attr-defined]
    assert default.fingerprint() == hashlib.sha256(repr((False, ())).encode()).hexdigest()[:16]
    cluster = tool.parse_up(["--brokers", "3"])  # type: ignore[attr-defined]
    assert cluster.brokers == 3
    assert cluster.fingerprint() != default.fingerprint()
    proxied = tool.parse_up(  # type: ignore[attr-defined]
        ["--brokers", "3", "--advertise-external", "127.0.0.1:1,127.0.0.1:2,127.0.0.1:3"]
    )
    assert proxied.advertise == ("127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3")
    assert proxied.fingerprint() != cluster.fingerprint()


def test_cluster_options_that_do_not_fit_are_named(tmp_path: Path) -> None:
    env = _bare_env(tmp_path)
    for args, said in [
        (["up", "--brokers", "0"], "--brokers takes 1 to 9"),
        (["up", "--advertise-external", "127.0.0.1:1"], "needs --brokers 2 or more"),
        (["up", "--brokers", "3", "--sasl-ssl"], "not with --brokers"),
        (["relaunch", "--node", "2"], "no cluster in"),
    ]:
        out = _run(env, *args)
        assert out.returncode == 1, args
        [line] = out.stderr.splitlines()
        assert said in line, (args, line)
        assert out.stdout == ""
