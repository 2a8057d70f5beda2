"""The torch network of an artifact, rebuilt from model.safetensors.

Only the torch variants and the trainer run it, so only they import torch (through
here): an ONNX Runtime or OpenVINO variant serves from the artifact's files alone.
Rebuilding also checks that the weights fit the manifest (heads, backbone, OOD classes).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from safetensors.torch import load_file

from schemas.artifact import WEIGHTS_FILE, Manifest
from worker.model.errors import ArtifactError
from worker.model.network import MultiHeadClassifier, encoder_from_config


def load_network(path: Path, manifest: Manifest, device: Any = "cpu") -> MultiHeadClassifier:
    """The network ``manifest`` describes with the weights of ``path``, in eval mode on
    ``device``; an ArtifactError naming the manifest field the weights do not fit."""
    encoder = encoder_from_config(manifest.backbone.config)
    model = MultiHeadClassifier(
        encoder, manifest.heads, manifest.pooling, manifest.dropout, manifest.ood.classes
    )
    state = load_file(str(path / WEIGHTS_FILE))
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
        problem = f"missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]}"
    except RuntimeError as exc:  # a tensor of another shape
        missing, unexpected, problem = [], [], str(exc).splitlines()[-1].strip()
    if missing or unexpected or not problem.startswith("missing"):
        names = [*missing, *unexpected, problem]
        field = "ood.classes" if any("ood." in k for k in names) else "backbone.config"
        raise ArtifactError(f"{path}: weights do not fit manifest field {field!r} ({problem})")
    return model.to(device).eval()
