"""Load a model artifact, refusing a bad one with the field at fault.

A directory holding model.safetensors, the tokenizer files and manifest.json (the
contract, ``schemas.artifact``), plus metrics.json and model_card.md. The worker and
the trainer's evaluation rebuild the model from the directory alone, with this code.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError
from safetensors.torch import load_file
from transformers import AutoTokenizer

from schemas.artifact import ARTIFACT_FORMAT_VERSION, MANIFEST_FILE, WEIGHTS_FILE, Manifest
from worker.model.errors import ArtifactError
from worker.model.network import MultiHeadClassifier, encoder_from_config


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

    @property
    def model_info(self) -> dict[str, str]:
        """What every result names its model by."""
        m = self.manifest
        return {"name": m.name, "version": m.version, "content_hash": self.content_hash}

    def column_temperatures(self) -> list[float]:
        """One temperature per output column, heads side by side in the manifest's order,
        so that calibrating all heads' logits is a single division."""
        m = self.manifest
        return [m.temperatures[h] for h, labels in m.heads.items() for _ in labels]


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


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
