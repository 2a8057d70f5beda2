"""The device a ``model.device`` setting names, asking torch only where it must answer.

"cpu" needs no torch: the ONNX Runtime and OpenVINO variants run there, and an install
without torch serves them. "auto" is CUDA where torch sees a GPU, else the CPU (without
torch nothing could run on a GPU); "cuda" needs torch, and a GPU it sees.
"""

from __future__ import annotations

from worker.model.errors import DeviceError


def resolve(device: str) -> str:
    """``device`` with "auto" resolved: "cpu", "cuda", ...; a DeviceError when it cannot
    be honoured here."""
    if device == "cpu":
        return device
    try:
        import torch
    except ImportError:
        if device == "auto":
            return "cpu"
        raise DeviceError(f"model.device={device} needs torch, which is not installed") from None
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise DeviceError("model.device=cuda, but torch sees no CUDA device")
    return device
