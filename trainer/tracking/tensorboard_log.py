"""`--report-to tensorboard`: scalars per epoch, the evaluation's figures and tables, in
one event directory per run (``tensorboard --logdir tensorboard`` compares them)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch.utils.tensorboard import SummaryWriter

from trainer.tracking import summary
from trainer.tracking.reporter import Where


class TensorBoardRun:
    """A reporter (trainer.tracking.reporter.Reporter) that writes TensorBoard events."""

    def __init__(self, writer: SummaryWriter) -> None:
        self.writer, self.step = writer, 0

    @classmethod
    def start(cls, where: Where) -> TensorBoardRun:
        print(f"tensorboard: {where.log_dir}", flush=True)
        return cls(SummaryWriter(log_dir=str(where.log_dir)))

    def params(self, values: dict[str, str]) -> None:
        rows = "\n".join(f"| {k} | {v} |" for k, v in values.items())
        self.writer.add_text("params", "| param | value |\n|---|---|\n" + rows)

    def epoch(self, row: dict[str, Any]) -> None:
        self.step = int(row["epoch"])
        for name, value in summary.epoch_scalars(row).items():
            self.writer.add_scalar(name, value, self.step)
        self.writer.flush()  # a run in progress shows up in TensorBoard as it goes

    def finish(self, artifact: Path, metrics: dict[str, Any]) -> None:
        # The exported model's figures at the last epoch's step, beside the curves.
        for name, value in summary.final_scalars(metrics).items():
            self.writer.add_scalar(name, value, self.step)
        self.writer.add_text("evaluation", summary.evaluation_markdown(metrics), self.step)
        self.writer.add_text("artifact", str(artifact.resolve()), self.step)
        self.writer.flush()

    def close(self, *, failed: bool) -> None:
        self.writer.close()
