"""deploy/docker/*.Dockerfile and .dockerignore, checked offline (no Docker engine here).

The Dockerfiles are read with the small parser below rather than a package: the files use
a plain subset of the syntax (no heredocs, no escape directive), the parser refuses what it
does not understand instead of misreading it, and the checks need the ARG/ENV scope at each
instruction (to expand ``${MODEL_DIR:-...}``), which the PyPI parsers do not track across
stages. Every check is a function that returns its findings, so that the same function is
run on the real files (no findings) and on broken copies of them (a finding each): the
``test_*_catches`` tests are the proof that a check can fail.
"""

from __future__ import annotations

import contextlib
import http.server
import importlib.metadata
import json
import os
import re
import shlex
import subprocess
import sys
import threading
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from tests import locks
from tests.conftest import REPO

DOCKER_DIR = REPO / "deploy" / "docker"
WORKER_CPU = DOCKER_DIR / "worker-cpu.Dockerfile"
WORKER_GPU = DOCKER_DIR / "worker-gpu.Dockerfile"
TRAINER = DOCKER_DIR / "trainer.Dockerfile"
DOCKERFILES = (WORKER_CPU, WORKER_GPU, TRAINER)
WORKER_IMAGES = (WORKER_CPU, WORKER_GPU)
DOCKERIGNORE = REPO / ".dockerignore"
# The lock each image installs with pip --require-hashes (`make lock`, tests/locks.py).
IMAGE_LOCKS = {WORKER_CPU: locks.WORKER_CPU, WORKER_GPU: locks.WORKER, TRAINER: locks.TRAIN}
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
# What the wheel is built from (pyproject's [tool.setuptools.packages.find] include):
# the builder stage copies it, the runtime stage must not.
SOURCE_TREE = ("worker", "trainer", "schemas")
WORKER_ENV = ("SUPPORT_WORKER_", "KAFKA_BOOTSTRAP_SERVERS")
KNOWN = frozenset(
    {"FROM", "ARG", "ENV", "RUN", "COPY", "ADD", "WORKDIR", "USER", "EXPOSE", "HEALTHCHECK"}
    | {"ENTRYPOINT", "CMD", "LABEL", "STOPSIGNAL", "VOLUME", "SHELL"}
)


# --- a parser of the Dockerfile subset these files use -----------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str
    flags: dict[str, str]  # the leading --name=value options (COPY --from, HEALTHCHECK ...)
    value: str  # the rest, continuation lines joined, variables not expanded
    line: int
    scope: dict[str, str]  # ARG and ENV values in force at this instruction

    def expand(self, text: str | None = None) -> str:
        return expand(self.value if text is None else text, self.scope)

    def exec_form(self) -> list[str] | None:
        """The JSON array of an exec-form CMD/ENTRYPOINT/HEALTHCHECK CMD, else None."""
        text = self.value
        if self.keyword == "HEALTHCHECK":
            if not text.startswith("CMD"):
                return None
            text = text[3:].strip()
        if not text.startswith("["):
            return None
        parsed = json.loads(text)
        assert isinstance(parsed, list) and all(isinstance(a, str) for a in parsed)
        return parsed


@dataclass
class Stage:
    index: int
    base: str  # FROM's image, expanded; an earlier stage's name when built on one
    name: str | None
    parent: Stage | None  # the earlier stage this one is FROM
    instructions: list[Instruction] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)  # ENV only (what the image keeps)

    def lineage(self) -> list[Stage]:
        """This stage and the stages it is built on, oldest first."""
        chain: list[Stage] = []
        stage: Stage | None = self
        while stage is not None:
            chain.insert(0, stage)
            stage = stage.parent
        return chain

    def all_instructions(self, keyword: str) -> list[Instruction]:
        return [i for s in self.lineage() for i in s.instructions if i.keyword == keyword]


@dataclass
class Dockerfile:
    path: Path
    stages: list[Stage]

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    def stage(self, name: str) -> Stage | None:
        return next((s for s in self.stages if s.name == name), None)

    def external_bases(self) -> list[tuple[int, str]]:
        """(line, image) of every FROM that names an image, not an earlier stage."""
        return [
            (s.instructions[0].line, s.base)
            for s in self.stages
            if s.parent is None and s.base != "scratch"
        ]


_VAR = re.compile(r"\$(?:\{(\w+)(?::([-+])([^}]*))?\}|(\w+))")


def expand(text: str, scope: dict[str, str]) -> str:
    """Docker's variable substitution: $X, ${X}, ${X:-default}, ${X:+alternative}."""

    def one(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(4)
        value = scope.get(name, "")
        if m.group(2) == "-":
            return value or m.group(3)
        if m.group(2) == "+":
            return m.group(3) if value else ""
        return value

    return _VAR.sub(one, text)


def _logical_lines(text: str) -> Iterator[tuple[int, str]]:
    """(first line number, text) per instruction: comments dropped, continuations joined."""
    buffer: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not buffer):
            continue  # a comment line, also inside a continuation, is removed by Docker
        if not buffer:
            start = number
        if raw.rstrip().endswith("\\"):
            buffer.append(raw.rstrip()[:-1])
            continue
        buffer.append(raw)
        yield start, " ".join(part.strip() for part in buffer if part.strip())
        buffer = []
    if buffer:
        raise ValueError(f"line {start}: the file ends inside a continuation")


def parse_dockerfile_text(text: str, path: Path = Path("Dockerfile")) -> Dockerfile:
    if re.search(r"^#\s*escape\s*=", text, re.MULTILINE | re.IGNORECASE):
        raise ValueError(f"{path}: the escape directive is not supported by this parser")
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    scope: dict[str, str] = {}
    for number, line in _logical_lines(text):
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword not in KNOWN:
            raise ValueError(f"{path}:{number}: unknown or unsupported instruction {keyword}")
        if "<<" in rest and keyword in {"RUN", "COPY"}:
            raise ValueError(f"{path}:{number}: heredocs are not supported by this parser")
        flags: dict[str, str] = {}
        rest = rest.strip()
        while rest.startswith("--"):
            token, _, rest = rest.partition(" ")
            name, _, value = token[2:].partition("=")
            flags[name] = value
            rest = rest.strip()
        if keyword == "ARG" and not stages:
            name, _, default = rest.partition("=")
            global_args[name] = default.strip("\"'")
            continue
        if keyword == "FROM":
            words = rest.split()
            base = expand(words[0], global_args)
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            if len(words) not in (1, 3):
                raise ValueError(f"{path}:{number}: FROM image [AS name]")
            parent = next((s for s in stages if s.name == base), None)
            stage = Stage(len(stages), base, name, parent)
            stage.env = dict(parent.env) if parent else {}
            stages.append(stage)
            scope = dict(stage.env)
        elif not stages:
            raise ValueError(f"{path}:{number}: {keyword} before the first FROM")
        stage = stages[-1]
        stage.instructions.append(Instruction(keyword, flags, rest, number, dict(scope)))
        if keyword == "ARG":
            name, eq, default = rest.partition("=")
            scope[name] = default.strip("\"'") if eq else global_args.get(name, "")
        elif keyword == "ENV":
            for name, value in _env_pairs(rest, scope):
                scope[name] = value
                stage.env[name] = value
    if not stages:
        raise ValueError(f"{path}: no FROM")
    return Dockerfile(path, stages)


def _env_pairs(rest: str, scope: dict[str, str]) -> list[tuple[str, str]]:
    words = shlex.split(rest)
    if words and "=" not in words[0]:  # the legacy form: ENV NAME value with spaces
        return [(words[0], expand(" ".join(words[1:]), scope))]
    pairs = []
    for word in words:
        name, _, value = word.partition("=")
        pairs.append((name, expand(value, scope)))
    return pairs


def parse_dockerfile(path: Path) -> Dockerfile:
    return parse_dockerfile_text(path.read_text(), path)


# --- .dockerignore, with Docker's matching rules ----------------------------------------


def _ignore_regex(pattern: str) -> re.Pattern[str]:
    """moby/patternmatcher: Go filepath.Match per segment, plus ** for any depth."""
    out = ""
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
            continue
        if pattern.startswith("**", i):
            out += ".*"
            i += 2
            continue
        if c == "*":
            out += "[^/]*"
        elif c == "?":
            out += "[^/]"
        elif c == "[":
            end = pattern.index("]", i)
            out += "[" + pattern[i + 1 : end].replace("!", "^", 1) + "]"
            i = end
        else:
            out += re.escape(c)
        i += 1
    return re.compile(out)


def dockerignore_rules(text: str) -> list[tuple[bool, re.Pattern[str]]]:
    """(re-include?, pattern) per rule, in file order."""
    rules = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        include = line.startswith("!")
        pattern = os.path.normpath(line.lstrip("!").strip()).lstrip("/")
        rules.append((include, _ignore_regex(pattern)))
    return rules


def is_ignored(rules: list[tuple[bool, re.Pattern[str]]], path: str) -> bool:
    """Whether Docker leaves `path` (relative to the context) out: the last rule that matches
    the path or one of its parent directories decides."""
    parts = path.strip("/").split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    ignored = False
    for include, regex in rules:
        if any(regex.fullmatch(c) for c in candidates):
            ignored = not include
    return ignored


# --- what the checks read from a Dockerfile ---------------------------------------------


OPERATORS = frozenset({"&&", "||", ";", "|", "(", ")", "&"})
KEYWORDS = frozenset({"if", "then", "else", "elif", "fi", "do", "done", "!"})


@dataclass(frozen=True)
class Command:
    argv: list[str]
    stdout: str | None  # the file of a `> FILE` redirect


def shell_commands(instruction: Instruction) -> list[Command]:
    """The simple commands of a RUN, expanded: split on && || ; | and shell keywords."""
    lexer = shlex.shlex(instruction.expand(), posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    commands: list[Command] = []
    argv: list[str] = []
    stdout: str | None = None
    tokens = iter(lexer)
    for token in tokens:
        if token in OPERATORS:
            if argv:
                commands.append(Command(argv, stdout))
            argv, stdout = [], None
        elif not argv and token in KEYWORDS:
            continue
        elif set(token) <= set("<>&") and ("<" in token or ">" in token):
            target = next(tokens, "")
            if token in (">", ">>"):
                stdout = target
        else:
            argv.append(token)
    if argv:
        commands.append(Command(argv, stdout))
    return commands


@dataclass(frozen=True)
class PipInstall:
    argv: list[str]
    index_url: str | None
    extra_index_urls: list[str]
    constraints: list[str]
    editable: bool
    targets: list[str]  # positional: requirements, wheels, paths; "-r FILE" for a file
    require_hashes: bool  # --require-hashes: every package pinned, its sha256 checked
    no_deps: bool  # --no-deps: installs the targets and resolves nothing


def pip_installs(stage: Stage) -> list[PipInstall]:
    installs = []
    for run in stage.all_instructions("RUN"):
        for command in shell_commands(run):
            argv = command.argv
            if argv[:1] in (["python"], ["python3"]) and argv[1:3] == ["-m", "pip"]:
                argv = ["pip", *argv[3:]]
            if Path(argv[0]).name not in {"pip", "pip3"} or argv[1:2] != ["install"]:
                continue
            index_url, extra, constraints, targets, editable = None, [], [], [], False
            words = iter(argv[2:])
            for word in words:
                if word in ("--index-url", "-i"):
                    index_url = next(words)
                elif word == "--extra-index-url":
                    extra.append(next(words))
                elif word in ("--constraint", "-c"):
                    constraints.append(next(words))
                elif word in ("-e", "--editable"):
                    editable = True
                    targets.append(next(words))
                elif word in ("-r", "--requirement"):
                    targets.append("-r " + next(words))
                elif not word.startswith("-"):
                    targets.append(word)
            installs.append(
                PipInstall(
                    argv,
                    index_url,
                    extra,
                    constraints,
                    editable,
                    targets,
                    "--require-hashes" in argv,
                    "--no-deps" in argv,
                )
            )
    return installs


def copied_files(stage: Stage) -> dict[str, str]:
    """Destination -> source of the stage's COPYs of one file from the build context."""
    copied = {}
    for copy in stage.all_instructions("COPY"):
        words = copy.expand().split()
        if "from" not in copy.flags and len(words) == 2:
            copied[words[1]] = words[0]
    return copied


def image_locks(df: Dockerfile) -> list[str]:
    """The files (in the repository) of the final stage's `pip install --require-hashes -r`."""
    copied = copied_files(df.final)
    return [
        copied.get(t.removeprefix("-r "), t.removeprefix("-r "))
        for p in pip_installs(df.final)
        if p.require_hashes
        for t in p.targets
        if t.startswith("-r ")
    ]


def image_lock(df: Dockerfile) -> Path | None:
    """The lock the image installs from, when it is one file of requirements/."""
    found = image_locks(df)
    return REPO / found[0] if len(found) == 1 and (REPO / found[0]).is_file() else None


def arg_default(df: Dockerfile, name: str) -> str | None:
    values = {
        i.value.partition("=")[2].strip("\"'")
        for s in df.stages
        for i in s.instructions
        if i.keyword == "ARG" and i.value.partition("=")[0] == name
    }
    if len(values) > 1:
        raise AssertionError(f"{df.path.name}: ARG {name} has several defaults: {values}")
    return values.pop() if values else None


def image_tag(ref: str) -> tuple[str, str | None, str | None]:
    """(name, tag, digest) of an image reference."""
    name, _, digest = ref.partition("@")
    tag = None
    if ":" in name.rsplit("/", 1)[-1]:
        name, tag = name.rsplit(":", 1)
    return name, tag, digest or None


# A tag with a full version: 3.11.14-slim-bookworm, 13.0.1-base-ubuntu24.04, v3.5.0, 4.1.1.
EXACT_TAG = re.compile(r"v?\d+\.\d+\.\d+(?:[-.+_][\w.-]+)?")
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


def pin_problem(ref: str) -> str | None:
    _, tag, digest = image_tag(ref)
    if digest is not None:
        return None if DIGEST.fullmatch(digest) else f"{ref}: malformed digest"
    if tag is None:
        return f"{ref}: no tag (that is :latest)"
    if not EXACT_TAG.fullmatch(tag):
        return f"{ref}: tag {tag!r} floats (pin an exact version like 1.2.3, or a digest)"
    return None


def is_root(user: str) -> bool:
    name = user.split(":")[0]
    return name in {"root", "0", ""}


# --- the checks: each returns its findings ----------------------------------------------

Check = Callable[[Dockerfile], list[str]]


def check_pinned_bases(df: Dockerfile) -> list[str]:
    found = []
    for line, ref in df.external_bases():
        problem = pin_problem(ref)
        if problem:
            found.append(f"{df.path.name}:{line}: FROM {problem}")
    return found


def check_non_root(df: Dockerfile) -> list[str]:
    users = df.final.all_instructions("USER")
    if not users:
        return [f"{df.path.name}: the final stage has no USER, so it runs as root"]
    user = users[-1].expand()
    if is_root(user):
        return [f"{df.path.name}:{users[-1].line}: USER {user} is root"]
    uid = user.split(":")[0]
    created = " ".join(r.expand() for r in df.final.all_instructions("RUN"))
    if uid.isdigit() and not re.search(rf"useradd\b[^&;]*--uid {uid}\b", created):
        return [f"{df.path.name}: USER {user}, but no useradd --uid {uid} in the final stage"]
    later = [i for i in df.final.all_instructions("RUN") if i.line > users[-1].line]
    if any("useradd" in i.value or "chown" in i.value for i in later):
        return [f"{df.path.name}: user setup after USER runs unprivileged and fails"]
    return []


def healthchecks(df: Dockerfile) -> list[Instruction]:
    return df.final.all_instructions("HEALTHCHECK")


def check_worker_healthcheck(df: Dockerfile) -> list[str]:
    checks = healthchecks(df)
    if not checks or checks[-1].value.strip().upper() == "NONE":
        return [f"{df.path.name}: no HEALTHCHECK"]
    argv = checks[-1].exec_form()
    if argv is None:
        return [f"{df.path.name}: HEALTHCHECK CMD is not in exec form"]
    if "/healthz" not in " ".join(argv):
        return [f"{df.path.name}: the HEALTHCHECK does not ask /healthz"]
    if argv[0] not in {"python", "python3"}:
        return [f"{df.path.name}: the HEALTHCHECK runs {argv[0]}, not the image's python"]
    path = df.final.env.get("PATH", "")
    venv = df.final.env.get("VIRTUAL_ENV", "")
    if argv[0] == "python" and not (venv and path.startswith(f"{venv}/bin")):
        return [f"{df.path.name}: `python` is not the image's venv python (ENV PATH)"]
    return []


class _Probe(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/healthz" else 404)
        self.end_headers()

    def log_message(self, *_: object) -> None:
        pass


def run_healthcheck(df: Dockerfile, status: int) -> int:
    """The HEALTHCHECK's own command, run here against a fake admin port that answers
    /healthz with `status`; the image's port setting points at it. Its exit code."""
    argv = healthchecks(df)[-1].exec_form()
    assert argv is not None
    handler = type("Probe", (_Probe,), {"status": status})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        env = {**os.environ, "SUPPORT_WORKER_ADMIN_PORT": str(server.server_address[1])}
        done = subprocess.run([sys.executable, *argv[1:]], env=env, capture_output=True, timeout=30)
        return done.returncode
    finally:
        server.shutdown()
        server.server_close()


def check_healthcheck_behaves(df: Dockerfile) -> list[str]:
    found = check_worker_healthcheck(df)
    if found:
        return found
    healthy, sick = run_healthcheck(df, 200), run_healthcheck(df, 503)
    if healthy != 0:
        return [f"{df.path.name}: the HEALTHCHECK fails ({healthy}) on a healthy worker"]
    if sick == 0:
        return [f"{df.path.name}: the HEALTHCHECK passes on a 503 /healthz"]
    return []


def wheel_stages(df: Dockerfile) -> dict[str, str]:
    """Stage name -> the directory its `pip wheel --no-deps --wheel-dir DIR .` fills."""
    made = {}
    for stage in df.stages:
        for run in stage.instructions:
            if run.keyword != "RUN":
                continue
            for command in shell_commands(run):
                argv = command.argv
                if argv[:2] == ["pip", "wheel"] and "--no-deps" in argv:
                    for flag in ("--wheel-dir", "-w"):
                        if flag in argv and stage.name:
                            made[stage.name] = argv[argv.index(flag) + 1].rstrip("/")
    return made


def check_installs_the_wheel(df: Dockerfile) -> list[str]:
    found = []
    made = wheel_stages(df)
    if not made:
        return [f"{df.path.name}: no builder stage runs `pip wheel --no-deps --wheel-dir DIR .`"]
    # Where the runtime gets the wheel: COPY --from=<builder> DIR DEST.
    wheel_dirs = set()
    for copy in df.final.all_instructions("COPY"):
        source = copy.flags.get("from")
        words = copy.expand().split()
        if source in made and words[0].rstrip("/") == made[source]:
            wheel_dirs.add(words[-1].rstrip("/"))
    installs = pip_installs(df.final)
    wheels = [
        t
        for p in installs
        for t in p.targets
        if t.endswith(".whl") and str(Path(t).parent) in wheel_dirs
    ]
    if not wheels:
        found.append(f"{df.path.name}: the runtime installs no .whl copied from the builder")
    for p in installs:
        if p.editable:
            found.append(f"{df.path.name}: an editable install ({' '.join(p.argv)})")
        for t in p.targets:
            if t.endswith(".whl") or (t.startswith("-r ") and p.require_hashes):
                continue  # the lock: check_installs_from_the_lock
            if t.startswith((".", "/", "-r")):
                found.append(f"{df.path.name}: installs {t!r}, a source tree or file")
            elif "==" not in t:
                found.append(f"{df.path.name}: installs {t!r} unpinned")
    for copy in df.final.all_instructions("COPY"):
        if "from" not in copy.flags:
            sources = copy.expand().split()[:-1]
            for src in sources:
                if src.rstrip("/") in SOURCE_TREE or src in {".", "./"}:
                    found.append(f"{df.path.name}:{copy.line}: the runtime copies {src}")
    return found


def check_installs_from_the_lock(df: Dockerfile) -> list[str]:
    """The image's lock with --require-hashes, and nothing resolved besides: every other
    install takes --no-deps (the wheel; the CPU image's torch)."""
    wanted = str(IMAGE_LOCKS[df.path].relative_to(REPO))
    found = []
    used = image_locks(df)
    if used != [wanted]:
        found.append(f"{df.path.name}: pip install --require-hashes -r reads {used}, not {wanted}")
    for p in pip_installs(df.final):
        others = [t for t in p.targets if not t.startswith("-r ")]
        if p.require_hashes and others:
            found.append(f"{df.path.name}: {others} install beside the lock")
        if not p.require_hashes and not p.no_deps:
            found.append(
                f"{df.path.name}: `{' '.join(p.argv)}` resolves outside the lock "
                "(neither --require-hashes -r LOCK nor --no-deps)"
            )
    return found


def check_cpu_torch(df: Dockerfile) -> list[str]:
    """The CPU image: torch==V+cpu alone (--no-deps) from the CPU index; a lock without
    torch's CUDA stack for the rest; no other install that could resolve PyPI's torch."""
    installs = pip_installs(df.final)
    found = []
    cpu = [
        p
        for p in installs
        if p.index_url == CPU_INDEX
        and not p.extra_index_urls
        and p.no_deps
        and any(t.startswith("torch==") and t.endswith("+cpu") for t in p.targets)
    ]
    if not cpu:
        found.append(
            f"{df.path.name}: torch is not installed alone (--no-deps) as torch==V+cpu "
            f"from {CPU_INDEX}"
        )
    for p in installs:
        if p in cpu:
            continue
        if any(Requirement(t).name == "torch" for t in _requirements(p)):
            found.append(f"{df.path.name}: torch installed by `{' '.join(p.argv)}`")
        if not (p.no_deps or p.require_hashes):
            found.append(
                f"{df.path.name}: `{' '.join(p.argv)}` resolves, so pip may replace the CPU "
                "torch with PyPI's CUDA one"
            )
    lock = image_lock(df)
    cuda = sorted(n for n in locks.pins(lock) if locks.CUDA_STACK.match(n)) if lock else []
    if cuda:
        found.append(f"{df.path.name}: its lock installs torch's CUDA stack: {cuda}")
    if any(p.extra_index_urls for p in installs):
        found.append(f"{df.path.name}: --extra-index-url mixes indexes for every package")
    return found


# The CPU image's torch is a build arg: what each value must do, with the default the
# project chose (docs/development.md, "torch in the worker's images").
WITH_TORCH_DEFAULT = "1"
TORCH_GUARD = re.compile(
    r'if \[ "\$\{WITH_TORCH\}" = 1 \]; then (?P<then>.*?)(?: else (?P<else>.*?))? fi'
)
# Without torch, pip check's one accepted complaint: the project's own torch requirement.
NO_TORCH_CHECK = (
    "! pip check | grep -v '^support-router [^ ]* requires torch, which is not installed\\.$'"
)


def check_torch_build_arg(df: Dockerfile) -> list[str]:
    """WITH_TORCH: torch, and the checks that need it, only under `if [ "${WITH_TORCH}" =
    1 ]`; without it pip check may only miss the project's torch; the default is ours."""
    found = []
    default = arg_default(df, "WITH_TORCH")
    if default != WITH_TORCH_DEFAULT:
        found.append(f"{df.path.name}: ARG WITH_TORCH={default}, not {WITH_TORCH_DEFAULT}")
    runs = [run.value for run in df.final.all_instructions("RUN")]
    guards = [m for text in runs for m in TORCH_GUARD.finditer(text)]
    guarded = " ".join(m.group("then") for m in guards)
    outside = " ".join(TORCH_GUARD.sub("", text) for text in runs)
    if "torch==" not in guarded or "import torch" not in guarded:
        found.append(f"{df.path.name}: no torch install and torch check under WITH_TORCH=1")
    if "torch==" in outside or "import torch" in outside:
        found.append(f"{df.path.name}: torch installed or imported whatever WITH_TORCH says")
    if not any(NO_TORCH_CHECK in (m.group("else") or "") for m in guards):
        found.append(f"{df.path.name}: without torch, no pip check that misses only torch")
    if "pip check" not in guarded:
        found.append(f"{df.path.name}: with torch, no plain pip check")
    return found


def _requirements(p: PipInstall) -> list[str]:
    return [t for t in p.targets if not t.endswith(".whl") and not t.startswith((".", "/", "-"))]


def check_gpu_torch(df: Dockerfile) -> list[str]:
    found = []
    for p in pip_installs(df.final):
        if p.index_url == CPU_INDEX or any(t.endswith("+cpu") for t in p.targets):
            found.append(f"{df.path.name}: a CPU-only torch in a CUDA image")
    lock = image_lock(df)
    stack = sorted(n for n in locks.pins(lock) if locks.CUDA_STACK.match(n)) if lock else []
    if "torch" not in stack or len(stack) < 2:
        found.append(f"{df.path.name}: its lock has no CUDA torch from PyPI ({stack})")
    name, tag, _ = image_tag(df.final.lineage()[0].base)
    if name != "nvidia/cuda" or tag is None:
        found.append(f"{df.path.name}: the runtime is not built on nvidia/cuda")
    return found


def copy_problems(df: Dockerfile, ignore_rules: list[tuple[bool, re.Pattern[str]]]) -> list[str]:
    """Every COPY source exists: in the repository (and is not left out of the build context
    by .dockerignore), or, with --from, in an earlier stage."""
    found = []
    for stage in df.stages:
        for copy in stage.instructions:
            if copy.keyword == "ADD":
                found.append(f"{df.path.name}:{copy.line}: ADD (use COPY)")
            if copy.keyword != "COPY":
                continue
            words = copy.exec_form() or copy.value.split()
            sources = [copy.expand(w) for w in words[:-1]]
            origin = copy.flags.get("from")
            if origin is not None:
                earlier = [s for s in df.stages[: stage.index] if s.name == origin]
                if not earlier:
                    found.append(f"{df.path.name}:{copy.line}: --from={origin} is no earlier stage")
                elif earlier[0].instructions[1:]:  # a stage of ours: it must make the path
                    made = " ".join(i.expand() for i in earlier[0].instructions)
                    for src in sources:
                        if src.rstrip("/") not in made:
                            found.append(f"{df.path.name}:{copy.line}: {origin} makes no {src}")
                continue
            for src in sources:
                matches = list(REPO.glob(src.rstrip("/")))
                if not matches:
                    found.append(f"{df.path.name}:{copy.line}: {src} is not in the repository")
                    continue
                for match in matches:
                    files = [match] if match.is_file() else list(match.rglob("*"))
                    relative = [str(f.relative_to(REPO)) for f in files if f.is_file()]
                    if not relative or all(is_ignored(ignore_rules, r) for r in relative):
                        found.append(f"{df.path.name}:{copy.line}: .dockerignore leaves out {src}")
    return found


def check_copy_sources(df: Dockerfile) -> list[str]:
    return copy_problems(df, dockerignore_rules(DOCKERIGNORE.read_text()))


def check_entrypoint(df: Dockerfile) -> list[str]:
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    entry = df.final.all_instructions("ENTRYPOINT")
    argv = entry[-1].exec_form() if entry else None
    if not argv or argv[0] not in scripts:
        return [f"{df.path.name}: ENTRYPOINT {argv} is not an exec-form console script"]
    return []


def ignore_problems(text: str) -> list[str]:
    rules = dockerignore_rules(text)
    must_leave_out = [
        ".venv/bin/python",
        "runs/chaos/report.md",
        "data/clinc/train.jsonl",
        ".git/HEAD",
        "models/current/manifest.json",
        "models/encoders/minilm/model.safetensors",
        ".kafka/data/meta.properties",
        "worker/__pycache__/cli.cpython-311.pyc",
        ".pytest_cache/README.md",
        ".mypy_cache/3.11/worker/cli.data.json",
    ]
    must_keep = [
        "pyproject.toml",
        "README.md",
        "worker/cli.py",
        "models/bake/manifest.json",
        "requirements/worker.txt",
    ]
    found = [f".dockerignore lets {p} in" for p in must_leave_out if not is_ignored(rules, p)]
    found += [f".dockerignore leaves out {p}" for p in must_keep if is_ignored(rules, p)]
    return found


# --- the tests on the real files ---------------------------------------------------------


@pytest.fixture(scope="module")
def parsed() -> dict[Path, Dockerfile]:
    return {p: parse_dockerfile(p) for p in DOCKERFILES}


def _id(path: Path) -> str:
    return path.name


@pytest.mark.parametrize("path", DOCKERFILES, ids=_id)
def test_base_images_are_pinned_by_exact_tag_or_digest(
    path: Path, parsed: dict[Path, Dockerfile]
) -> None:
    assert check_pinned_bases(parsed[path]) == []


@pytest.mark.parametrize("path", DOCKERFILES, ids=_id)
def test_the_final_stage_runs_as_a_created_non_root_user(
    path: Path, parsed: dict[Path, Dockerfile]
) -> None:
    assert check_non_root(parsed[path]) == []


@pytest.mark.parametrize("path", WORKER_IMAGES, ids=_id)
def test_the_worker_healthcheck_asks_healthz_and_fails_on_503(
    path: Path, parsed: dict[Path, Dockerfile]
) -> None:
    assert check_healthcheck_behaves(parsed[path]) == []


def test_the_trainer_is_a_job_without_a_healthcheck(parsed: dict[Path, Dockerfile]) -> None:
    checks = healthchecks(parsed[TRAINER])
    assert [c.value for c in checks] == ["NONE"]
    assert not parsed[TRAINER].final.all_instructions("EXPOSE")


@pytest.mark.parametrize("path", DOCKERFILES, ids=_id)
def test_the_runtime_installs_the_built_wheel_not_the_source_tree(
    path: Path, parsed: dict[Path, Dockerfile]
) -> None:
    assert check_installs_the_wheel(parsed[path]) == []


@pytest.mark.parametrize("path", DOCKERFILES, ids=_id)
def test_every_copy_source_exists_and_is_in_the_build_context(
    path: Path, parsed: dict[Path, Dockerfile]
) -> None:
    assert check_copy_sources(parsed[path]) == []


@pytest.mark.parametrize("path", DOCKERFILES, ids=_id)
def test_the_entrypoint_is_a_console_script_of_the_wheel(
    path: Path, parsed: dict[Path, Dockerfile]
) -> None:
    assert check_entrypoint(parsed[path]) == []


def test_the_cpu_image_gets_torch_from_the_cpu_index(parsed: dict[Path, Dockerfile]) -> None:
    assert check_cpu_torch(parsed[WORKER_CPU]) == []


def test_the_cpu_images_torch_is_the_with_torch_build_arg(parsed: dict[Path, Dockerfile]) -> None:
    assert check_torch_build_arg(parsed[WORKER_CPU]) == []


@pytest.mark.parametrize("path", DOCKERFILES, ids=_id)
def test_each_image_installs_its_lock_with_hashes_and_resolves_nothing_else(
    path: Path, parsed: dict[Path, Dockerfile]
) -> None:
    assert check_installs_from_the_lock(parsed[path]) == []


@pytest.mark.parametrize("path", (WORKER_GPU, TRAINER), ids=_id)
def test_the_cuda_images_get_the_cuda_torch(path: Path, parsed: dict[Path, Dockerfile]) -> None:
    assert check_gpu_torch(parsed[path]) == []


def _project() -> dict[str, Any]:
    project: dict[str, Any] = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return project


def torch_pin(df: Dockerfile) -> str:
    """The torch an image installs: its lock's, or the CPU image's TORCH_VERSION (+cpu)."""
    arg = arg_default(df, "TORCH_VERSION")
    if arg is not None:
        return arg
    lock = image_lock(df)
    pin = locks.pins(lock).get("torch") if lock else None
    return pin.version if pin else ""


def check_pins_agree_with_pyproject(dockerfiles: list[Dockerfile]) -> list[str]:
    """One torch and one Python version across the images, inside pyproject's ranges."""
    project = _project()
    torch_spec = next(
        r.specifier for r in map(Requirement, project["dependencies"]) if r.name == "torch"
    )
    found = []
    torch_pins = {df.path.name: torch_pin(df) for df in dockerfiles}
    if len(set(torch_pins.values())) != 1:
        found.append(f"the torch version differs between images: {torch_pins}")
    for name, pin in torch_pins.items():
        if not re.fullmatch(r"\d+\.\d+\.\d+", pin) or Version(pin) not in torch_spec:
            found.append(f"{name}: torch {pin!r} is no exact version in torch{torch_spec}")
    python_spec = SpecifierSet(project["requires-python"])
    pythons = {}
    for df in dockerfiles:
        for stage in df.stages:
            name, tag, _ = image_tag(stage.base)
            if name == "python" and tag:
                pythons[f"{df.path.name} {stage.name}"] = tag.split("-")[0]
        if arg_default(df, "PYTHON_VERSION") is not None:
            pythons[f"{df.path.name} uv"] = arg_default(df, "PYTHON_VERSION") or ""
    if len(set(pythons.values())) != 1:
        found.append(f"the Python version differs between stages: {pythons}")
    found += [
        f"{k}: Python {v} is outside {python_spec}"
        for k, v in pythons.items()
        if v not in python_spec
    ]
    return found


def test_torch_and_python_pins_agree_with_pyproject(parsed: dict[Path, Dockerfile]) -> None:
    assert check_pins_agree_with_pyproject(list(parsed.values())) == []


def _cuda_major_of_installed_torch() -> int | None:
    for requirement in importlib.metadata.requires("torch") or []:
        req = Requirement(requirement)
        if req.name in {"cuda-toolkit", "nvidia-cuda-runtime", "nvidia-cuda-runtime-cu12"}:
            pinned = [s.version for s in req.specifier if s.operator == "=="]
            if pinned:
                return Version(pinned[0]).major
    return None


@pytest.mark.parametrize("path", (WORKER_GPU, TRAINER), ids=_id)
def test_the_cuda_base_matches_the_cuda_of_the_pinned_torch(
    path: Path, parsed: dict[Path, Dockerfile]
) -> None:
    """The tested torch (this venv's) names the CUDA runtime its wheel is built for."""
    df = parsed[path]
    installed = Version(importlib.metadata.version("torch"))
    pin = Version(torch_pin(df) or "0")
    if installed.public != pin.public:
        pytest.skip(f"the venv has torch {installed}, the images pin {pin}")
    major = _cuda_major_of_installed_torch()
    if major is None:
        pytest.skip(f"torch {installed} here names no CUDA runtime (a CPU build)")
    base = df.final.lineage()[0].base
    _, tag, _ = image_tag(base)
    assert tag is not None
    assert int(tag.split(".")[0]) == major, f"{base}, but torch {pin} is built for CUDA {major}"


@contextlib.contextmanager
def worker_env(env: dict[str, str]) -> Iterator[None]:
    """os.environ with the worker's own variables replaced by `env`'s, restored after."""
    ours = {k: v for k, v in os.environ.items() if k.startswith(WORKER_ENV)}
    for name in ours:
        del os.environ[name]
    os.environ.update({k: v for k, v in env.items() if k.startswith(WORKER_ENV)})
    try:
        yield
    finally:
        for name in [k for k in os.environ if k.startswith(WORKER_ENV)]:
            del os.environ[name]
        os.environ.update(ours)


def check_settings_env(df: Dockerfile) -> list[str]:
    """The image's ENV names are real settings: the admin server listens on every interface
    and on the exposed port, and the model path is where the model is mounted or baked."""
    from worker.settings import WorkerSettings

    with worker_env(df.final.env):
        settings = WorkerSettings()
    found = []
    if settings.admin_host != "0.0.0.0":
        found.append(f"{df.path.name}: the admin server listens on {settings.admin_host}")
    exposed = [int(e.expand()) for e in df.final.all_instructions("EXPOSE")]
    if exposed != [settings.admin_port]:
        found.append(f"{df.path.name}: EXPOSE {exposed}, admin port {settings.admin_port}")
    destinations = [c.expand().split()[-1].rstrip("/") for c in df.final.all_instructions("COPY")]
    if str(settings.model.path) not in destinations:
        found.append(f"{df.path.name}: nothing is copied to the model path {settings.model.path}")
    wanted = "cpu" if "cpu" in df.path.name else "cuda"
    if settings.model.device != wanted:
        found.append(f"{df.path.name}: MODEL__DEVICE {settings.model.device}, not {wanted}")
    return found


@pytest.mark.parametrize("path", WORKER_IMAGES, ids=_id)
def test_the_image_env_is_read_by_the_worker_settings(
    path: Path, parsed: dict[Path, Dockerfile]
) -> None:
    assert check_settings_env(parsed[path]) == []


def test_dockerignore_leaves_out_local_state_and_keeps_the_sources() -> None:
    assert ignore_problems(DOCKERIGNORE.read_text()) == []


# --- the same checks on broken copies: each must find something --------------------------


def broken(id: str, path: Path, old: str, new: str, check: Check) -> Any:
    return pytest.param(path, old, new, check, id=id)


BROKEN = [
    broken(
        "floating-tag",
        WORKER_CPU,
        "python:3.11.14-slim-bookworm AS runtime",
        "python:3.11-slim AS runtime",
        check_pinned_bases,
    ),
    broken("latest", WORKER_GPU, "cuda:13.0.1-base-ubuntu24.04", "cuda:latest", check_pinned_bases),
    broken("no-tag", TRAINER, "astral-sh/uv:0.9.28", "astral-sh/uv", check_pinned_bases),
    broken("major-only", WORKER_GPU, "uv:0.9.28", "uv:0", check_pinned_bases),
    broken(
        "bad-digest",
        WORKER_CPU,
        ":3.11.14-slim-bookworm AS b",
        "@sha256:abc AS b",
        check_pinned_bases,
    ),
    broken("root", WORKER_CPU, "USER 10001:10001", "USER root", check_non_root),
    broken("uid-0", TRAINER, "USER 10001:10001", "USER 0:0", check_non_root),
    broken("no-user", WORKER_GPU, "USER 10001:10001", "", check_non_root),
    broken("user-not-created", WORKER_CPU, "USER 10001:10001", "USER 10002", check_non_root),
    broken("healthcheck-path", WORKER_CPU, "/healthz", "/metrics", check_healthcheck_behaves),
    broken(
        "healthcheck-fixed-port",
        WORKER_GPU,
        "os.environ.get('SUPPORT_WORKER_ADMIN_PORT', '9400')",
        "'9400'",
        check_healthcheck_behaves,
    ),
    broken(
        "healthcheck-none",
        WORKER_CPU,
        "HEALTHCHECK --",
        "HEALTHCHECK NONE\n# ",
        check_worker_healthcheck,
    ),
    broken(
        "healthcheck-shell",
        WORKER_GPU,
        'CMD ["python", "-c", ',
        "CMD python -c [",
        check_worker_healthcheck,
    ),
    broken("install-source", WORKER_CPU, "/tmp/wheels/*.whl", ".", check_installs_the_wheel),
    broken(
        "install-editable", WORKER_GPU, "/tmp/wheels/*.whl", "-e /src", check_installs_the_wheel
    ),
    broken(
        "wheel-with-deps", WORKER_CPU, "pip wheel --no-deps", "pip wheel", check_installs_the_wheel
    ),
    broken(
        "source-in-runtime",
        TRAINER,
        "RUN groupadd",
        "COPY worker/ /app/worker/\nRUN groupadd",
        check_installs_the_wheel,
    ),
    broken("cpu-index-gone", WORKER_CPU, '--index-url "${TORCH_INDEX_URL}" ', "", check_cpu_torch),
    broken("cpu-suffix-gone", WORKER_CPU, '+cpu";', '";', check_cpu_torch),
    broken("with-torch-default", WORKER_CPU, "WITH_TORCH=1", "WITH_TORCH=0", check_torch_build_arg),
    broken(
        "torch-unguarded",
        WORKER_CPU,
        'if [ "${WITH_TORCH}" = 1 ]; then',
        "if true; then",
        check_torch_build_arg,
    ),
    broken(
        "no-torch-pip-check-ignored",
        WORKER_CPU,
        "! pip check | grep -v",
        "pip check | grep -v",
        check_torch_build_arg,
    ),
    broken(
        "no-torch-pip-check-anything",
        WORKER_CPU,
        "requires torch, which",
        "requires",
        check_torch_build_arg,
    ),
    broken(
        "cpu-torch-with-deps", WORKER_CPU, "--no-deps --index-url", "--index-url", check_cpu_torch
    ),
    broken(
        "cpu-wheel-resolves", WORKER_CPU, "--no-deps /tmp/wheels", "/tmp/wheels", check_cpu_torch
    ),
    broken(
        "cpu-lock-with-cuda",
        WORKER_CPU,
        "COPY requirements/worker-cpu.txt",
        "COPY requirements/worker.txt",
        check_cpu_torch,
    ),
    broken(
        "cpu-torch-in-gpu",
        WORKER_GPU,
        "RUN pip install --require-hashes",
        'RUN pip install --no-deps "torch==2.15.0+cpu" && pip install --require-hashes',
        check_gpu_torch,
    ),
    broken(
        "gpu-lock-without-cuda",
        TRAINER,
        "COPY requirements/train.txt",
        "COPY requirements/worker-cpu.txt",
        check_gpu_torch,
    ),
    broken(
        "lock-without-hashes",
        WORKER_GPU,
        "pip install --require-hashes -r",
        "pip install -r",
        check_installs_from_the_lock,
    ),
    broken(
        "another-lock",
        TRAINER,
        "COPY requirements/train.txt",
        "COPY requirements/dev.txt",
        check_installs_from_the_lock,
    ),
    broken(
        "wheel-resolves",
        WORKER_GPU,
        "--no-deps /tmp/wheels",
        "/tmp/wheels",
        check_installs_from_the_lock,
    ),
    broken(
        "beside-the-lock",
        TRAINER,
        "-r /tmp/requirements.txt \\",
        "-r /tmp/requirements.txt accelerate==1.16.0 \\",
        check_installs_from_the_lock,
    ),
    broken(
        "no-lock",
        WORKER_CPU,
        "pip install --require-hashes -r /tmp/requirements.txt",
        "true",
        check_installs_from_the_lock,
    ),
    broken(
        "copy-missing", WORKER_GPU, "COPY schemas/ schemas/", "COPY schemaz/ s/", check_copy_sources
    ),
    broken(
        "copy-ignored", TRAINER, "COPY schemas/ schemas/", "COPY tests/ tests/", check_copy_sources
    ),
    broken("copy-no-such-stage", WORKER_CPU, "--from=builder", "--from=build", check_copy_sources),
    broken(
        "copy-unmade-path", WORKER_GPU, "builder /wheels/", "builder /dist/", check_copy_sources
    ),
    broken("entrypoint", TRAINER, '["support-trainer"]', '["trainer"]', check_entrypoint),
    broken("admin-host-typo", WORKER_CPU, "ADMIN_HOST=", "ADMINHOST=", check_settings_env),
    broken(
        "port-not-exposed", WORKER_GPU, "ADMIN_PORT=9400", "ADMIN_PORT=9500", check_settings_env
    ),
    broken("model-path-typo", WORKER_CPU, "MODEL__PATH=", "MODEL_PATH=", check_settings_env),
    broken(
        "device-auto", WORKER_GPU, "MODEL__DEVICE=cuda", "MODEL__DEVICE=auto", check_settings_env
    ),
]


@pytest.mark.parametrize(("path", "old", "new", "check"), BROKEN)
def test_each_check_catches_a_broken_dockerfile(
    path: Path, old: str, new: str, check: Check
) -> None:
    text = path.read_text()
    assert old in text, f"the mutation no longer applies to {path.name}: {old!r}"
    assert check(parse_dockerfile_text(text, path)) == []
    found = check(parse_dockerfile_text(text.replace(old, new), path))
    assert found, f"{check.__name__} missed {old!r} -> {new!r}"


@pytest.mark.parametrize(
    ("path", "old", "new"),
    [
        (WORKER_CPU, "TORCH_VERSION=2.15.0", "TORCH_VERSION=2.14.0"),
        (WORKER_CPU, "TORCH_VERSION=2.15.0", "TORCH_VERSION=2.15"),
        (WORKER_GPU, "COPY requirements/worker.txt", "COPY requirements/worker-cpu.txt"),
        (WORKER_GPU, "PYTHON_VERSION=3.11.14", "PYTHON_VERSION=3.12.8"),
    ],
    ids=["torch-not-the-locks", "torch-inexact", "torch-not-locked", "python-differs"],
)
def test_the_pin_check_catches_a_broken_pin(
    path: Path, old: str, new: str, parsed: dict[Path, Dockerfile]
) -> None:
    text = path.read_text()
    assert old in text
    dockerfiles = [
        parse_dockerfile_text(text.replace(old, new), path) if p == path else df
        for p, df in parsed.items()
    ]
    assert check_pins_agree_with_pyproject(dockerfiles)


@pytest.mark.parametrize(
    "rule", [".venv", "runs", "data", ".git", "models/*", "!models/bake", ".kafka", ".mypy_cache"]
)
def test_the_dockerignore_check_catches_a_missing_rule(rule: str) -> None:
    lines = DOCKERIGNORE.read_text().splitlines()
    assert rule in lines
    assert ignore_problems("\n".join(x for x in lines if x != rule))
