"""Assemble and run one worker process: settings -> model -> admin -> Kafka -> loop.

Startup order follows text-embeddings-inference: health first, then warm-up, then serve;
the consumer subscribes only once the model has answered a dummy batch.
"""

from __future__ import annotations

import os
import signal
import threading
from dataclasses import dataclass
from types import FrameType
from typing import cast

import structlog
import torch

from worker.admin import AdminServer, Health
from worker.errors import FatalKafkaError, ModelBrokenError, ModelLoadError
from worker.inference import Classifier
from worker.kafka_io import make_consumer, make_producer
from worker.metrics import Metrics
from worker.pipeline import Pipeline
from worker.routing import RoutingPolicy
from worker.settings import WorkerSettings

log = structlog.get_logger("worker")

EXIT_FATAL = 1
EXIT_MODEL_BROKEN = 4
EXIT_SECOND_SIGNAL = 130


@dataclass(frozen=True)
class ArtifactThresholds:
    """The routing thresholds an artifact ships; settings may override each."""

    min_action_confidence: float = 0.7
    max_unfamiliarity: float | None = None  # None: the model has no OOD score (null backend)


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


def load_classifier(settings: WorkerSettings) -> Classifier:
    from trainer import load_artifact
    from trainer.errors import ArtifactError

    if settings.model.backend == "null":
        from schemas.labels import HEADS
        from worker.inference import NullClassifier

        return cast(Classifier, NullClassifier(dict(HEADS)))
    if settings.model.threads:
        torch.set_num_threads(settings.model.threads)
    pin_tokenizer_threads()
    try:
        loaded = load_artifact(settings.model.path)
    except ArtifactError as exc:
        raise ModelLoadError(f"{exc} (model.path, SUPPORT_WORKER_MODEL__PATH)") from None
    m = settings.model
    return Classifier(loaded, m.device, m.dtype, m.quantize, m.padding_free, m.autocast)


def run(settings: WorkerSettings) -> int:
    """The long-running worker; returns the process exit code."""
    stopper = Stopper(settings.shutdown_grace_s)
    stopper.start()
    log.info("starting", settings=settings.redacted())
    metrics = Metrics()
    health = Health(stale_after_s=settings.heartbeat_stale_s)
    admin = AdminServer(settings.admin_host, settings.admin_port, metrics, health)
    admin.start()
    log.info("admin_listening", port=admin.port)

    try:
        classifier = load_classifier(settings)
        policy = build_policy(settings, artifact_thresholds(settings))
        classifier.warmup(min(8, settings.batching.max_batch_size))
        health.model_ready = True
        log.info("model_ready", model=classifier.model_info, device=str(classifier.device),
                 dtype=str(classifier.dtype), precision=classifier.precision,
                 threads=torch.get_num_threads(),
                 policy=policy.name)  # fmt: skip

        pipeline = Pipeline(settings, classifier, policy, make_consumer(settings, metrics),
                            make_producer(settings), metrics, health)  # fmt: skip
        stopper.pipeline = pipeline
        try:
            pipeline.start()
            pipeline.run()
        except FatalKafkaError as exc:
            # One clear line; the next owner of these partitions redoes the open batch.
            log.error("fatal_kafka_error", error=str(exc))
            pipeline.leave()
            return EXIT_FATAL
        except ModelBrokenError as exc:
            # Circuit open: nothing of the failing batches was committed or dead-lettered;
            # leaving the group hands the partitions to a replica whose model works.
            log.error("model_broken", error=str(exc))
            pipeline.leave()
            return EXIT_MODEL_BROKEN
    finally:
        admin.stop()
    pipeline.close()
    log.info("stopped")
    return 0


def artifact_thresholds(settings: WorkerSettings) -> ArtifactThresholds:
    from trainer.artifact import read_manifest
    from trainer.errors import ArtifactError

    if settings.model.backend == "null":
        return ArtifactThresholds()
    try:
        manifest = read_manifest(settings.model.path)
    except ArtifactError as exc:
        raise ModelLoadError(f"{exc} (model.path, SUPPORT_WORKER_MODEL__PATH)") from None
    return ArtifactThresholds(manifest.min_action_confidence, manifest.ood.threshold)


STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}


class Stopper:
    """First SIGTERM/SIGINT: finish the batch in hand and leave; the second: exit now.

    Signals are taken by a thread of their own (sigwait), not by a Python handler: a
    handler runs only when the main thread executes Python, and a main thread stuck in
    a librdkafka call would never arm the grace timer, so SIGTERM would never end the
    process. ``start`` blocks the signals in the calling thread before any other thread
    exists (``support-worker run`` blocks them before it imports torch), so every thread
    created later (admin, model, librdkafka) inherits the block and the signal thread is
    the one that receives them.
    """

    def __init__(self, grace_s: float) -> None:
        self.grace_s = grace_s
        self.pipeline: Pipeline | None = None
        self.signalled = False

    def start(self) -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        # A thread started before the block (none in `support-worker run`, which blocks
        # first) could still receive a signal: without a handler it would kill the process.
        for signum in STOP_SIGNALS:
            signal.signal(signum, self.handle)
        threading.Thread(target=self._wait, name="signals", daemon=True).start()

    def _wait(self) -> None:
        while True:
            self.handle(signal.sigwait(STOP_SIGNALS))

    def handle(self, signum: int, _frame: FrameType | None = None) -> None:
        if self.signalled:
            log.warning("second_signal", signal=signum)
            os._exit(EXIT_SECOND_SIGNAL)  # the uncommitted batch is redone by the next owner
        self.signalled = True
        log.info("stopping", signal=signum, grace_s=self.grace_s)
        if self.pipeline is None:
            os._exit(0)  # still starting: nothing consumed, nothing to drain
        self.pipeline.stopping = True
        timer = threading.Timer(self.grace_s, _grace_expired, args=(self.grace_s,))
        timer.daemon = True
        timer.start()


def _grace_expired(grace_s: float) -> None:
    log.error("shutdown_grace_expired", grace_s=grace_s)
    os._exit(EXIT_FATAL)
