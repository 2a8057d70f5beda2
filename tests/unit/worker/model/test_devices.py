"""model.device resolved, with torch asked only where it must answer."""

from __future__ import annotations

import sys

import pytest

from worker.model import devices
from worker.model.errors import DeviceError


def test_cpu_needs_no_torch_and_auto_without_torch_is_the_cpu(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)  # an import of torch now fails
    assert devices.resolve("cpu") == "cpu"
    assert devices.resolve("auto") == "cpu"
    with pytest.raises(DeviceError, match=r"model\.device=cuda needs torch"):
        devices.resolve("cuda")


def test_with_torch_auto_and_cuda_follow_what_torch_sees() -> None:
    import torch

    if torch.cuda.is_available():
        assert devices.resolve("auto") == devices.resolve("cuda") == "cuda"
    else:
        assert devices.resolve("auto") == "cpu"
        with pytest.raises(DeviceError, match="torch sees no CUDA device"):
            devices.resolve("cuda")
