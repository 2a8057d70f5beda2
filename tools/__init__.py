"""Developer tools that run from a checkout: the bench, the demo, the worker-process driver.

They live outside ``worker/`` on purpose. They depend on the repository's layout (the
local broker script ``deploy/local-kafka/kafka``, which fetches Kafka's jars with Maven,
``deploy/topics.yaml``, ``models/``, the data in ``trainer/data/sets``) and start ``support-worker``
processes from the checkout; the worker's wheel and image carry none of that, so they
carry none of this (``[tool.setuptools.packages.find]`` in pyproject.toml leaves ``tools``
out). Run them from the repo root: ``python -m tools.demo``, ``python -m tools.bench``.
"""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
KAFKA_TOOL = REPO / "deploy" / "local-kafka" / "kafka"
