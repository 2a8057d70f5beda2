"""The service's start-up: the model is loaded, warmed up and served on one thread."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, cast

import pytest

from tests.unit.worker.fakes import FlakyModel, GroupConsumer, TxnProducer, message
from worker import service
from worker.health import Health
from worker.metrics import Metrics
from worker.model.protocol import BatchOutput
from worker.pipeline import Pipeline
from worker.routing import RoutingPolicy
from worker.serving import Served
from worker.settings import WorkerSettings


class ThreadRecordingModel(FlakyModel):
    """Records the thread of every call that would run the network."""

    def __init__(self) -> None:
        super().__init__()
        self.threads: dict[str, set[int]] = {"load": {threading.get_ident()}}

    def _seen(self, what: str) -> None:
        self.threads.setdefault(what, set()).add(threading.get_ident())

    def warmup(self, batch_size: int = 8) -> None:
        self._seen("warmup")

    def predict(self, batch_ids: Sequence[Sequence[int]]) -> BatchOutput:
        self._seen("predict")
        return super().predict(batch_ids)


def test_the_model_is_loaded_warmed_and_served_on_one_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One thread for the model keeps one OpenMP pool (worker.model_thread)."""
    made: list[ThreadRecordingModel] = []

    def load(settings: WorkerSettings, live: bool = False) -> Served:
        made.append(ThreadRecordingModel())
        return Served(cast(Any, made[-1]), "recording", "setting")

    monkeypatch.setattr(service, "load_served", load)
    settings = WorkerSettings()
    served, model_thread = service.start_model(settings, Metrics())
    pipeline = Pipeline(
        settings,
        served.model,
        RoutingPolicy(),
        cast(Any, GroupConsumer()),
        cast(Any, TxnProducer([])),
        Metrics(),
        Health(stale_after_s=30),
        model_thread=model_thread,
    )
    pipeline.accept([message(0, 0), message(0, 1)])
    pipeline.dispatch()
    pipeline.drain()
    threads = made[0].threads
    assert threads["predict"] == threads["warmup"] == threads["load"]
    assert threads["load"] != {threading.get_ident()}  # not the caller's (main) thread
    model_thread.shutdown()
