"""What a worker serves: the variant by name or by autotune, the routing policy from the
artifact's thresholds, and the errors that name the setting at fault."""

from __future__ import annotations

from pathlib import Path

import pytest

from worker import serving
from worker.errors import ConfigError, ModelLoadError
from worker.model.protocol import NullClassifier
from worker.settings import ModelSettings, RoutingSettings, WorkerSettings


def _served(path: Path, variant: str, device: str = "cpu") -> serving.Served:
    model = ModelSettings(path=path, variant=variant, device=device)  # type: ignore[arg-type]
    return serving.load_served(WorkerSettings(model=model))


def test_model_variant_chooses_how_the_model_runs(smoke_artifact: Path) -> None:
    """null: the null model; auto on an artifact without a variant report: the device's
    torch default; a name: that variant; one that cannot run here: a configuration error."""
    null = _served(smoke_artifact, "null")
    assert isinstance(null.model, NullClassifier) and null.variant == "null"
    auto = _served(smoke_artifact, "auto")
    assert (auto.variant, auto.chosen_by, auto.model.precision) == (
        "torch-fp32",
        "setting",
        "float32, padding-free",
    )
    padded = _served(smoke_artifact, "torch-fp32-padded")
    assert (padded.variant, padded.model.precision) == ("torch-fp32-padded", "float32, padded")
    with pytest.raises(ConfigError, match=r"model\.variant=ort-fp32 cannot run here"):
        _served(smoke_artifact, "ort-fp32")  # the smoke artifact has no ONNX files


def test_a_missing_artifact_is_a_load_error_naming_the_setting(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="SUPPORT_WORKER_MODEL__PATH"):
        _served(tmp_path / "none", "auto")


def test_the_policy_takes_the_artifacts_thresholds_unless_the_settings_override(
    smoke_artifact: Path,
) -> None:
    settings = WorkerSettings(model=ModelSettings(path=smoke_artifact))
    shipped = serving.artifact_thresholds(settings)
    assert shipped.max_unfamiliarity is not None  # the smoke model has an OOD scorer
    policy = serving.build_policy(settings, shipped)
    assert policy.min_action_confidence == shipped.min_action_confidence
    routing = RoutingSettings(min_action_confidence=0.99)
    overridden = serving.build_policy(settings.model_copy(update={"routing": routing}), shipped)
    assert overridden.min_action_confidence == 0.99
    assert overridden.max_unfamiliarity == shipped.max_unfamiliarity
