"""Export a trained model as a versioned artifact (``worker.model.artifact`` loads it).

A directory holding model.safetensors, the tokenizer files, manifest.json,
metrics.json and model_card.md. The worker rebuilds everything from it alone.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

from safetensors.torch import save_model

from schemas.artifact import MANIFEST_FILE, WEIGHTS_FILE, Manifest
from worker.model.artifact import sha256_file
from worker.model.network import MultiHeadClassifier


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
