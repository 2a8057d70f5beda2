"""``python -m tools.gpu_pack`` (``make gpu-pack``): what tools/gpu_check.py needs on a
device machine, in the two ignored folders the device tool carries.

``.gpu/artifact``  a copy of the artifact with fp16 weights (half the bytes: the device
                   tool carries 64 MiB in all) and without its ONNX and OpenVINO files.
                   The OOD scorer's buffers (``ood.*``) stay float32. load_artifact
                   loads the fp16 tensors into the float32 model, so the copy is the
                   model rounded to fp16 once; its manifest names the new weights'
                   sha256, drops the variant report (its files are not there) and
                   calls the version ``<version>.fp16``; ``derived.json`` says from what.
``.gpu/messages.jsonl``  the bench's message set (tools.bench.model.message_set: the
                   augmented CLINC test), built here so the device need not.
``.gpu/pack.json`` what was packed, from which commit, and the sizes.
``.whl/``          wheels for the device image's Python 3.12 of the packages the check
                   imports that the image lacks, at the versions of this .venv.

The total (the working tree, .gpu and .whl) must stay under 60 MiB. On the device tool,
with carry=[".gpu", ".whl"] and timeout_s=540, the command is DEVICE_COMMAND below: it
runs the check from source (the image's Python is 3.12, pyproject pins 3.11).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
MIB = 1 << 20
LIMIT_MIB = 60  # the device tool carries 64 MiB; the rest is headroom
# Artifact folders the check does not read: the ONNX/OpenVINO variants and the trainer's
# report figures.
DROPPED = ("onnx", "openvino", "report")
# What the check's imports need that the device image (torch, transformers, tokenizers,
# safetensors, numpy, pyyaml, prometheus-client, tqdm, onnx, onnxruntime) lacks:
# schemas and settings (pydantic), codec and metrics (orjson), logs (structlog), the
# pipeline and the bench's in-memory messages (confluent-kafka). typing-extensions
# travels too, for pydantic's floor on it.
DEVICE_LACKS = (
    "pydantic",
    "pydantic-core",
    "pydantic-settings",
    "python-dotenv",
    "typing-inspection",
    "annotated-types",
    "typing-extensions",
    "orjson",
    "structlog",
    "confluent-kafka",
)
DEVICE_PLATFORM = [
    "--python-version",
    "3.12",
    "--implementation",
    "cp",
    "--platform",
    "manylinux_2_28_x86_64",
    "--platform",
    "manylinux_2_17_x86_64",
    "--platform",
    "manylinux2014_x86_64",
]
DEVICE_COMMAND = (
    "python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade "
    "--target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD && "
    "python3 -m tools.gpu_check --model .gpu/artifact --device cuda --out $OUT/gpu-check.json"
)


def fp16_copy(src: Path, dst: Path) -> dict[str, Any]:
    """``src``'s artifact at ``dst`` with fp16 weights (``ood.*`` and integer tensors as
    they are), a manifest that fits them, and no variant files. Returns derived.json."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from schemas.artifact import MANIFEST_FILE, WEIGHTS_FILE
    from worker.model.artifact import read_manifest, sha256_file

    manifest = read_manifest(src)
    if dst.exists():
        shutil.rmtree(dst)
    dropped = [*DROPPED, MANIFEST_FILE, WEIGHTS_FILE]
    shutil.copytree(src, dst, ignore=lambda d, names: dropped if Path(d) == src else [])
    state = load_file(str(src / WEIGHTS_FILE))
    with safe_open(str(src / WEIGHTS_FILE), "pt") as f:
        metadata = f.metadata()
    # The scorer's distances are differences of squares in the hundreds: fp16's 10 bits
    # of mantissa would move them, and with them which messages count as unfamiliar.
    half = {
        k: v.half() if v.is_floating_point() and not k.startswith("ood.") else v
        for k, v in state.items()
    }
    overflow = [k for k, v in half.items() if v.is_floating_point() and not v.isfinite().all()]
    if overflow:
        raise ValueError(f"{src}: weights beyond fp16's range: {overflow[:3]}")
    save_file(half, str(dst / WEIGHTS_FILE), metadata=metadata)
    sha = sha256_file(dst / WEIGHTS_FILE)
    copy = manifest.model_copy(
        update={"weights_sha256": sha, "version": f"{manifest.version}.fp16", "variants": None}
    )
    (dst / MANIFEST_FILE).write_text(copy.model_dump_json(indent=2) + "\n")
    derived = {
        "derived_from": str(src.resolve()),
        "source_version": manifest.version,
        "source_weights_sha256": manifest.weights_sha256,
        "weights": "float16, except ood.* (float32) and integer tensors",
        "dropped": [*DROPPED, "manifest.variants"],
    }
    (dst / "derived.json").write_text(json.dumps(derived, indent=2) + "\n")
    return derived


def write_messages(path: Path, n: int) -> str:
    """The bench's message set as labelled JSONL (trainer.data.records); returns its source."""
    from tools.bench.model import message_set
    from trainer.data.records import write_jsonl

    examples, source = message_set(n)
    write_jsonl(path, examples)
    return source


def wanted_wheels() -> dict[str, str]:
    """Each package the device lacks, at this .venv's version."""
    return {name: importlib.metadata.version(name) for name in DEVICE_LACKS}


def _has_wheel(folder: Path, name: str, version: str) -> Path | None:
    prefix = f"{name.replace('-', '_')}-{version}-".lower()
    return next((f for f in folder.glob("*.whl") if f.name.lower().startswith(prefix)), None)


def download_wheels(folder: Path, wanted: dict[str, str]) -> str | None:
    """The missing wheels into ``folder``, stale ones out; None, or why it failed."""
    folder.mkdir(exist_ok=True)
    keep = {_has_wheel(folder, n, v) for n, v in wanted.items()} - {None}
    for stale in set(folder.glob("*.whl")) - keep:
        stale.unlink()
    missing = [f"{n}=={v}" for n, v in wanted.items() if _has_wheel(folder, n, v) is None]
    if not missing:
        return None
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--quiet",
        "--no-deps",
        "--only-binary=:all:",
        *DEVICE_PLATFORM,
        "-d",
        str(folder),
        *missing,
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        return f"pip download of {', '.join(missing)} timed out"
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["?"])[-1]
        return f"pip download of {', '.join(missing)} failed: {last}"
    return None


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.exists() else 0


def tree_bytes(repo: Path) -> int:
    """What the device tool copies of the checkout itself: tracked files and untracked
    ones git does not ignore (0 outside a git checkout)."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=repo,
            capture_output=True,
            check=True,
            timeout=30,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    files = (repo / name for name in out.decode().split("\0") if name)
    return sum(f.stat().st_size for f in files if f.is_file())


def pack(model: Path, out: Path, wheels: Path | None, messages: int) -> dict[str, Any]:
    """Build ``out`` (and ``wheels`` unless None); returns pack.json's content."""
    from trainer.artifact import git_commit

    derived = fp16_copy(model, out / "artifact")  # refuses a bad artifact before writing
    source = write_messages(out / "messages.jsonl", messages)
    report: dict[str, Any] = {
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "git_commit": git_commit(REPO),
        "artifact": derived,
        "messages": {"file": "messages.jsonl", "n": messages, "source": source},
        "device_command": DEVICE_COMMAND,
    }
    if wheels is not None:
        wanted = wanted_wheels()
        report["wheels"] = {"wanted": wanted, "error": download_wheels(wheels, wanted)}
    sizes = {
        "artifact": folder_bytes(out / "artifact"),
        "messages": (out / "messages.jsonl").stat().st_size,
        "wheels": folder_bytes(wheels) if wheels is not None else 0,
        "working_tree": tree_bytes(REPO),
    }
    report["bytes"] = sizes | {"total": sum(sizes.values())}
    (out / "pack.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.gpu_pack", description=__doc__)
    p.add_argument("--model", type=Path, default=Path("models/current"), help="artifact dir")
    p.add_argument("--out", type=Path, default=Path(".gpu"))
    p.add_argument("--wheels", type=Path, default=Path(".whl"))
    p.add_argument("--no-wheels", action="store_true", help="skip the wheels (tests, offline)")
    p.add_argument("--messages", type=int, default=5000, help="messages in messages.jsonl")
    args = p.parse_args(argv)
    from worker.model.errors import ArtifactError

    try:
        report = pack(args.model, args.out, None if args.no_wheels else args.wheels, args.messages)
    except (ArtifactError, ValueError) as exc:
        print(f"gpu_pack: {exc}", file=sys.stderr)
        return 2
    b = report["bytes"]
    for name, size in b.items():
        print(f"{name:<13} {size / MIB:6.1f} MiB")
    error = report.get("wheels", {}).get("error")
    if error:
        print(
            f"wheels: {error}\nThe device lacks {', '.join(DEVICE_LACKS)}; download them "
            f"where the index is reachable, or the check fails on its first import.",
            file=sys.stderr,
        )
    if b["total"] > LIMIT_MIB * MIB:
        print(f"over {LIMIT_MIB} MiB: the device tool carries 64 MiB in all", file=sys.stderr)
        return 1
    carry = json.dumps([str(args.out), str(args.wheels)])
    print(f"device tool: carry={carry}, timeout_s=540, command:\n  {DEVICE_COMMAND}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
