"""Assemble and run one worker process: signals -> HTTP server (/readyz not ready) ->
model, loaded and warmed up on the model thread -> Kafka -> loop.

Startup order follows text-embeddings-inference: health first, then warm-up, then serve;
the consumer subscribes only once the model has answered a dummy batch.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import structlog
import torch

from worker.errors import ConfigError, ExitCode, FatalKafkaError, ModelBrokenError, ModelLoadError
from worker.health import Health
from worker.inference import PROBE_TEXT
from worker.kafka.clients import make_consumer, make_producer
from worker.metrics import Metrics
from worker.model.artifact import LoadedModel
from worker.model.classifier import resolve_device
from worker.model.protocol import Model
from worker.model.tuner import LiveVariants, Tuner, Verdict
from worker.model_thread import model_executor
from worker.pipeline import Pipeline, Reference
from worker.review import Sampler
from worker.routing import DEFAULT_MIN_ACTION_CONFIDENCE, RoutingPolicy
from worker.runtime.http_server import HttpServer
from worker.runtime.signals import Stopper
from worker.settings import WorkerSettings
from worker.swap import PointerWatch, Swapped, target
from worker.tracing import Tracer

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


def pin_tokenizer_threads() -> None:
    """Tokenize on the calling thread only, unless the user chose otherwise.

    The worker tokenizes one consumed chunk at a time while torch's threads run the
    previous batch; the tokenizers Rust pool would only take cores from them (on 2 cores
    the int8 worker was faster and steadier without it).
    """
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def start_model(settings: WorkerSettings, metrics: Metrics) -> tuple[Served, ThreadPoolExecutor]:
    """The model to serve (and the live trial's contenders), loaded, autotuned and warmed
    up on the thread that will run every forward pass (worker.model_thread), and that
    thread."""
    model_thread = model_executor()
    try:
        served = model_thread.submit(load_served, settings, metrics, True).result()
        warm = min(8, settings.batching.max_batch_size)
        for model in served.contenders.values() or [served.model]:
            model_thread.submit(model.warmup, warm).result()
    except BaseException:
        model_thread.shutdown(wait=False)
        raise
    return served, model_thread


@dataclass(frozen=True)
class Served:
    """The model to serve, its variant's name and how it was chosen; under auto, the
    contenders of the live trial (empty: no trial)."""

    model: Model
    variant: str
    chosen_by: str
    contenders: dict[str, Model] = field(default_factory=dict)


def load_classifier(settings: WorkerSettings, metrics: Metrics | None = None) -> Model:
    """The model to serve: ``model.variant`` by name, or the fastest allowed (auto)."""
    return load_served(settings, metrics).model


def load_served(
    settings: WorkerSettings, metrics: Metrics | None = None, live: bool = False
) -> Served:
    """``load_classifier``'s, with the contenders for a live trial when ``live``."""
    from worker.model.artifact import load_artifact
    from worker.model.errors import ArtifactError, DeviceError

    if settings.model.variant == "null":
        from schemas.labels import HEADS
        from worker.model.protocol import NullClassifier

        return Served(NullClassifier(dict(HEADS)), "null", "setting")
    if settings.model.threads:
        torch.set_num_threads(settings.model.threads)
    pin_tokenizer_threads()
    try:
        loaded = load_artifact(settings.model.path)
    except ArtifactError as exc:
        raise ModelLoadError(f"{exc} (model.path, SUPPORT_WORKER_MODEL__PATH)") from None
    try:
        served = _variant(loaded, settings, live)
    except ArtifactError as exc:  # a variant's file, checked when it is built
        raise ModelLoadError(f"{exc} (model.path, SUPPORT_WORKER_MODEL__PATH)") from None
    except DeviceError as exc:  # e.g. model.device=cuda on a host torch sees no GPU on
        raise ConfigError(str(exc)) from None
    if metrics is not None:
        metrics.model_variant.labels(variant=served.variant, chosen_by=served.chosen_by).set(1)
    return served


def _variant(loaded: LoadedModel, settings: WorkerSettings, live: bool) -> Served:
    from worker.model import autotune, variants
    from worker.model.errors import DeviceError

    m = settings.model
    device = str(resolve_device(m.device))  # DeviceError before any work
    if m.variant == "auto" and loaded.manifest.variants is None:
        default = variants.torch_variant("auto", device)
        log.info(
            "model_variant",
            variant=default,
            chosen_by="setting",
            why="the artifact has no variant report (support-trainer variants)",
        )
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


def live_variants(served: Served, metrics: Metrics) -> LiveVariants | None:
    """The live trial of ``served``'s contenders, switches logged and exported."""
    if not served.contenders:
        return None

    def on_verdict(verdict: Verdict) -> None:
        for variant, rate in verdict.msgs_per_s.items():
            metrics.model_variant_trial_msgs_per_s.labels(variant=variant).set(rate)
        log.info(
            "model_variant_trial",
            served=verdict.served,
            chosen=verdict.chosen,
            switched=verdict.switched,
            msgs_per_s=verdict.msgs_per_s,
        )
        if verdict.switched:
            metrics.model_variant.clear()
            metrics.model_variant.labels(variant=verdict.chosen, chosen_by="live").set(1)
            metrics.model_variant_switches.labels(
                from_variant=verdict.served, to_variant=verdict.chosen
            ).inc()

    return LiveVariants(served.contenders, Tuner(list(served.contenders)), on_verdict)


def run(settings: WorkerSettings, tracer: Tracer | None = None) -> int:
    """The long-running worker; returns the process exit code. ``tracer``: its batches'
    spans (worker.tracing), None when tracing is off."""
    stopper = Stopper(settings.shutdown_grace_s)
    stopper.start()
    log.info("starting", settings=settings.redacted())
    metrics = Metrics()
    health = Health(stale_after_s=settings.heartbeat_stale_s)
    http_server = HttpServer(settings.admin_host, settings.admin_port, metrics, health)
    http_server.start()
    log.info("admin_listening", port=http_server.port)

    try:
        # Shadow: the candidate is the model this process routes with; the serving model
        # (model.path) is the reference it is compared with.
        serving, candidate = settings, settings.shadow.candidate
        if candidate is not None:
            settings = at_path(settings, candidate, live=False)
        else:  # load the version the pointer names now, so a move during the load is seen
            settings = at_path(settings, Path(target(settings.model.path)))
        served, model_thread = start_model(settings, metrics)
        classifier = served.model
        policy = build_policy(settings, artifact_thresholds(settings))
        reference = None
        if candidate is not None:
            reference = model_thread.submit(load_reference, serving).result()
        health.model_ready = True
        info = classifier.model_info
        metrics.model_version.labels(info["name"], info["version"]).set(1)
        log.info(
            "model_ready",
            model=classifier.model_info,
            device=str(classifier.device),
            dtype=str(classifier.dtype),
            precision=classifier.precision,
            threads=torch.get_num_threads(),
            policy=policy.name,
        )

        pipeline = Pipeline(
            settings,
            classifier,
            policy,
            make_consumer(settings, metrics),
            make_producer(settings),
            metrics,
            health,
            model_thread=model_thread,
            live=live_variants(served, metrics),
            sampler=Sampler(settings.review) if settings.review.enabled and not reference else None,
            reference=reference,
            reload=None if reference else reloader(serving, metrics),
            watch=None if reference else PointerWatch(serving.model.path, settings.model.watch_s),
            tracer=tracer,
        )
        stopper.pipeline = pipeline
        try:
            pipeline.start()
            pipeline.run()
        except FatalKafkaError as exc:
            # One clear line; the next owner of these partitions redoes the open batch.
            log.error("fatal_kafka_error", error=str(exc))
            pipeline.leave()
            return ExitCode.FATAL
        except ModelBrokenError as exc:
            # Circuit open: nothing of the failing batches was committed or dead-lettered;
            # leaving the group hands the partitions to a replica whose model works.
            log.error("model_broken", error=str(exc))
            pipeline.leave()
            return ExitCode.MODEL_BROKEN
    finally:
        http_server.stop()
        if tracer is not None:
            tracer.close()  # the spans of the last batches, within a bounded wait
    pipeline.close()
    log.info("stopped")
    return ExitCode.OK


def at_path(settings: WorkerSettings, path: Path, live: bool = True) -> WorkerSettings:
    """``settings`` with model.path set (and the live variant trial off unless ``live``)."""
    update: dict[str, object] = {"path": path}
    if not live:
        update["autotune_live"] = False
    return settings.model_copy(update={"model": settings.model.model_copy(update=update)})


def load_reference(serving: WorkerSettings) -> Reference:
    """Shadow: the serving model, loaded and warmed up as a worker would serve it."""
    settings = at_path(serving, Path(target(serving.model.path)), live=False)
    model = load_served(settings).model
    model.warmup(min(8, settings.batching.max_batch_size))
    policy = build_policy(settings, artifact_thresholds(settings))
    return Reference(model, policy, model.tokenize([PROBE_TEXT]).ids[0])


def reloader(serving: WorkerSettings, metrics: Metrics) -> Callable[[], Swapped]:
    """Loads what model.path points to now: the pipeline's hot swap (worker.swap)."""

    def reload() -> Swapped:
        to = target(serving.model.path)
        settings = at_path(serving, Path(to))
        served = load_served(settings, live=True)
        warm = min(8, settings.batching.max_batch_size)
        for model in served.contenders.values() or [served.model]:
            model.warmup(warm)
        policy = build_policy(settings, artifact_thresholds(settings))
        metrics.model_variant.clear()
        metrics.model_variant.labels(variant=served.variant, chosen_by=served.chosen_by).set(1)
        return Swapped(served.model, policy, live_variants(served, metrics), to, served.variant)

    return reload


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
