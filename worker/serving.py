"""What a worker serves: the model (by name, or the fastest allowed variant under auto)
and the routing policy its artifact's thresholds and the settings make.

The worker process (``worker.service``) and the Python API (``worker.router``) load
through here. Nothing of the loop, Kafka or the HTTP server is imported, and the model
library only when a model is loaded, so ``import worker.router`` stays cheap; an
ONNX Runtime or OpenVINO variant on the CPU loads without torch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import structlog

from worker.errors import ConfigError, ModelLoadError
from worker.model.protocol import Model
from worker.routing import DEFAULT_MIN_ACTION_CONFIDENCE, RoutingPolicy
from worker.settings import WorkerSettings

if TYPE_CHECKING:
    from worker.model.artifact import LoadedModel

log = structlog.get_logger("worker")


@dataclass(frozen=True)
class ArtifactThresholds:
    """The routing thresholds an artifact ships; settings may override each."""

    min_action_confidence: float = DEFAULT_MIN_ACTION_CONFIDENCE
    max_unfamiliarity: float | None = None  # None: the model has no OOD score (variant null)


def build_policy(settings: WorkerSettings, artifact: ArtifactThresholds) -> RoutingPolicy:
    r = settings.routing
    confidence = (
        r.min_action_confidence
        if r.min_action_confidence is not None
        else artifact.min_action_confidence
    )
    unfamiliarity = (
        r.max_unfamiliarity if r.max_unfamiliarity is not None else artifact.max_unfamiliarity
    )
    return RoutingPolicy(confidence, r.fallback_route, r.escalate_on_high_urgency, unfamiliarity)


def artifact_thresholds(settings: WorkerSettings) -> ArtifactThresholds:
    from worker.model.artifact import read_manifest
    from worker.model.errors import ArtifactError

    if settings.model.variant == "null":
        return ArtifactThresholds()
    try:
        manifest = read_manifest(settings.model.path)
    except ArtifactError as exc:
        raise ModelLoadError(f"{exc} (model.path, SUPPORT_WORKER_MODEL__PATH)") from None
    return ArtifactThresholds(manifest.min_action_confidence, manifest.ood.threshold)


def pin_tokenizer_threads() -> None:
    """Tokenize on the calling thread only, unless the user chose otherwise.

    The worker tokenizes one consumed chunk at a time while the model's threads run the
    previous batch; the tokenizers Rust pool would only take cores from them (on 2 cores
    the int8 worker was faster and steadier without it).
    """
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@dataclass(frozen=True)
class Served:
    """The model to serve, its variant's name and how it was chosen; under auto, the
    contenders of the live trial (empty: no trial)."""

    model: Model
    variant: str
    chosen_by: str
    contenders: dict[str, Model] = field(default_factory=dict)


def load_classifier(settings: WorkerSettings) -> Model:
    """The model to serve: ``model.variant`` by name, or the fastest allowed (auto)."""
    return load_served(settings).model


def load_served(settings: WorkerSettings, live: bool = False) -> Served:
    """``load_classifier``'s, with the contenders for a live trial when ``live``."""
    from worker.model.artifact import read_artifact
    from worker.model.errors import ArtifactError, DeviceError

    if settings.model.variant == "null":
        from schemas.labels import HEADS
        from worker.model.protocol import NullClassifier

        return Served(NullClassifier(dict(HEADS)), "null", "setting")
    pin_tokenizer_threads()
    try:
        loaded = read_artifact(settings.model.path)
        return _variant(loaded, settings, live)
    except ArtifactError as exc:  # the directory, or a variant's file checked when built
        raise ModelLoadError(f"{exc} (model.path, SUPPORT_WORKER_MODEL__PATH)") from None
    except DeviceError as exc:  # e.g. model.device=cuda on a host torch sees no GPU on
        raise ConfigError(str(exc)) from None


def _variant(loaded: LoadedModel, settings: WorkerSettings, live: bool) -> Served:
    from worker.model import autotune, devices, variants
    from worker.model.errors import ArtifactError, DeviceError

    m = settings.model
    device = devices.resolve(m.device)  # DeviceError before any work
    if m.variant == "auto" and loaded.manifest.variants is None:
        why = "the artifact has no variant report (support-trainer variants)"
        missing = variants.missing_runtime(variants.BASELINE)
        if missing is not None:
            raise ArtifactError(f"{loaded.path}: {why}, and {missing} to serve it with")
        default = variants.torch_variant("auto", device)
        log.info("model_variant", variant=default, chosen_by="setting", why=why)
        return Served(variants.build(default, loaded, device, m.threads), default, "setting")
    if m.variant != "auto" and m.variant != "null":
        reason = variants.unavailable(m.variant, loaded, device)
        if reason is not None:
            raise DeviceError(f"model.variant={m.variant} cannot run here: {reason}")
        model = variants.build(m.variant, loaded, device, m.threads)
        batch = settings.batching.max_batch_size
        autotune.settle(model, m.variant, loaded, batch, 3 * m.autotune_seconds)
        log.info("model_variant", variant=m.variant, chosen_by="setting")
        return Served(model, m.variant, "setting")
    choice = autotune.autotune(
        loaded,
        device,
        settings.batching.max_batch_size,
        m.threads,
        m.autotune_seconds,
        keep_contenders=live and m.autotune_live,
    )
    log.info(
        "model_variant",
        variant=choice.variant,
        chosen_by="autotune",
        msgs_per_s=choice.msgs_per_s,
        skipped=choice.skipped,
        batch_size=settings.batching.max_batch_size,
        contenders=list(choice.contenders),
    )
    contenders = choice.contenders if len(choice.contenders) > 1 else {}
    return Served(choice.model, choice.variant, "autotune", contenders)
