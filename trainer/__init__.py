"""Offline trainer: data set, multi-task fine-tuning, calibration, evaluation, export."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from worker.model.artifact import LoadedModel, load_artifact

__all__ = ["LoadedModel", "load_artifact"]


def __getattr__(name: str) -> Any:
    # Lazy, so `support-trainer --version` and the data tools do not import torch.
    if name in __all__:
        from worker.model import artifact

        return getattr(artifact, name)
    raise AttributeError(name)
