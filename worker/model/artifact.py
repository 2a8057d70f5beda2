"""Load a model artifact, refusing a bad one with the field at fault.

A directory holding model.safetensors, the tokenizer files and manifest.json (the
contract, ``schemas.artifact``), plus metrics.json and model_card.md. The worker and
the trainer's evaluation rebuild the model from the directory alone, with this code.

``read_artifact`` needs no torch: the manifest, the tokenizer and the files checked
against the manifest's sha256 are what the ONNX Runtime and OpenVINO variants serve
from. The torch network (``LoadedModel.model``) is rebuilt from the weights on first
use, by the torch variants and the trainer (``load_artifact`` rebuilds it at once).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from schemas.artifact import ARTIFACT_FORMAT_VERSION, MANIFEST_FILE, WEIGHTS_FILE, Manifest
from worker.model.errors import ArtifactError

if TYPE_CHECKING:
    from worker.model.network import MultiHeadClassifier


@dataclass
class LoadedModel:
    """An artifact as the runners read it: manifest, tokenizer and directory; the torch
    network in eval mode on the CPU (``model``), rebuilt when first asked for."""

    tokenizer: Any
    manifest: Manifest
    path: Path
    network: MultiHeadClassifier | None = None

    @property
    def model(self) -> MultiHeadClassifier:
        """The network, rebuilt from model.safetensors on first use (imports torch)."""
        if self.network is None:
            from worker.model.weights import load_network

            self.network = load_network(self.path, self.manifest)
        return self.network

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


def auto_tokenizer() -> Any:
    """transformers' AutoTokenizer. Without torch, importing transformers warns once on
    stderr that models will not be available, a plain line among the worker's JSON logs:
    the worker needs only the tokenizers, so that advice is turned off."""
    if importlib.util.find_spec("torch") is None:
        os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    from transformers import AutoTokenizer

    return AutoTokenizer


def read_artifact(path: Path | str) -> LoadedModel:
    """Manifest and tokenizer from the directory alone, the weights checked against the
    manifest's sha256, no torch; refuse anything inconsistent."""
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
        tokenizer = auto_tokenizer().from_pretrained(str(path))
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"{path}: tokenizer files missing or broken ({exc})") from None
    marker = manifest.casing_marker
    if marker and tokenizer.convert_tokens_to_ids(marker) == tokenizer.unk_token_id:
        raise ArtifactError(f"{path}: manifest field 'casing_marker' {marker!r} is not a token")
    return LoadedModel(tokenizer, manifest, path)


def load_artifact(path: Path | str, device: Any = "cpu") -> LoadedModel:
    """``read_artifact``, and the network rebuilt on ``device`` now, refused if the
    weights do not fit the manifest (the trainer's way: it evaluates the network)."""
    from worker.model.weights import load_network

    loaded = read_artifact(path)
    loaded.network = load_network(loaded.path, loaded.manifest, device)
    return loaded
