"""The versioned model artifact: export a trained model, and load one back, refusing bad ones.

A directory holding model.safetensors, the tokenizer files, manifest.json,
metrics.json and model_card.md. The worker rebuilds everything from it alone.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError
from safetensors.torch import load_file, save_model
from transformers import AutoTokenizer

from schemas.artifact import ARTIFACT_FORMAT_VERSION, MANIFEST_FILE, WEIGHTS_FILE, Manifest
from trainer.errors import ArtifactError
from trainer.modeling import MultiHeadClassifier, encoder_from_config


@dataclass
class LoadedModel:
    """A model rebuilt from an artifact, in eval mode, with what describes it."""

    model: MultiHeadClassifier
    tokenizer: Any
    manifest: Manifest
    path: Path

    @property
    def content_hash(self) -> str:
        return self.manifest.weights_sha256


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def git_commit(cwd: Path | None = None) -> str:
    """HEAD's commit, '+dirty' when the tree has changes; 'unknown' outside a repository."""
    try:

        def git(*args: str) -> str:
            out = subprocess.run(
                ["git", *args], cwd=cwd, capture_output=True, text=True, check=True, timeout=10
            )
            return out.stdout.strip()

        head = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{head}+dirty" if dirty else head


def export(
    out_dir: Path,
    model: MultiHeadClassifier,
    tokenizer: Any,
    manifest_fields: dict[str, Any],
    metrics: dict[str, Any],
    model_card: str,
) -> Manifest:
    """Write the artifact atomically (a temp dir renamed into place) and return its manifest."""
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_model(model, str(tmp / WEIGHTS_FILE))
    tokenizer.save_pretrained(str(tmp))
    weights_sha = sha256_file(tmp / WEIGHTS_FILE)
    fields = dict(manifest_fields, weights_sha256=weights_sha)
    fields.setdefault("version", f"{fields['created_at'][:10].replace('-', '.')}+{weights_sha[:8]}")
    manifest = Manifest.model_validate(fields)
    (tmp / MANIFEST_FILE).write_text(manifest.model_dump_json(indent=2) + "\n")
    (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    (tmp / "model_card.md").write_text(model_card)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    tmp.rename(out_dir)
    return manifest


def read_manifest(path: Path) -> Manifest:
    """Parse and validate manifest.json, naming the first bad or missing field."""
    file = path / MANIFEST_FILE
    if not path.is_dir():
        raise ArtifactError(f"{path}: not a directory")
    if not file.exists():
        raise ArtifactError(f"{path}: missing {MANIFEST_FILE}")
    try:
        raw = json.loads(file.read_text())
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{file}: not valid JSON ({exc.msg})") from None
    found = raw.get("format_version") if isinstance(raw, dict) else None
    if isinstance(found, int) and found != ARTIFACT_FORMAT_VERSION:
        raise ArtifactError(
            f"{file}: field 'format_version' is {found}; this release reads "
            f"{ARTIFACT_FORMAT_VERSION} (retrain with support-trainer train)"
        )
    try:
        return Manifest.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "(manifest)"
        raise ArtifactError(f"{file}: field {field!r}: {first['msg']}") from None


def load_artifact(path: Path | str, device: str | torch.device = "cpu") -> LoadedModel:
    """Rebuild model and tokenizer from the directory alone; refuse anything inconsistent."""
    path = Path(path)
    manifest = read_manifest(path)
    weights = path / WEIGHTS_FILE
    if not weights.exists():
        raise ArtifactError(f"{path}: missing {WEIGHTS_FILE}")
    if sha256_file(weights) != manifest.weights_sha256:
        raise ArtifactError(
            f"{path}: {WEIGHTS_FILE} does not match manifest field 'weights_sha256'"
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path))
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"{path}: tokenizer files missing or broken ({exc})") from None
    marker = manifest.casing_marker
    if marker and tokenizer.convert_tokens_to_ids(marker) == tokenizer.unk_token_id:
        raise ArtifactError(f"{path}: manifest field 'casing_marker' {marker!r} is not a token")
    encoder = encoder_from_config(manifest.backbone.config)
    model = MultiHeadClassifier(
        encoder, manifest.heads, manifest.pooling, manifest.dropout, manifest.ood.classes
    )
    state = load_file(str(weights))
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
        problem = f"missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]}"
    except RuntimeError as exc:  # a tensor of another shape
        missing, unexpected, problem = [], [], str(exc).splitlines()[-1].strip()
    if missing or unexpected or not problem.startswith("missing"):
        names = [*missing, *unexpected, problem]
        field = "ood.classes" if any("ood." in k for k in names) else "backbone.config"
        raise ArtifactError(f"{path}: weights do not fit manifest field {field!r} ({problem})")
    model.to(device).eval()
    return LoadedModel(model, tokenizer, manifest, path)
