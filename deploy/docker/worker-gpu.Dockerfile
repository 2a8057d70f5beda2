# The support-router worker on an NVIDIA GPU (one worker per GPU).
#
# Build from the repository root:
#   docker build -f deploy/docker/worker-gpu.Dockerfile -t support-router/worker-gpu:0.1.0 .
# Run on a host with the NVIDIA Container Toolkit and a driver for CUDA 13 (>= 580):
#   docker run --rm --gpus 1 -v "$PWD/models/minilm:/models/current:ro" \
#     -e KAFKA_BOOTSTRAP_SERVERS=broker:9092 support-router/worker-gpu:0.1.0
# Bake the artifact in instead of mounting it (.dockerignore lets models/bake/ through):
#   cp -rL models/minilm models/bake
#   docker build -f deploy/docker/worker-gpu.Dockerfile --build-arg MODEL_DIR=models/bake \
#     -t support-router/worker-gpu:0.1.0-minilm .
#
# CUDA: torch's Linux wheels on PyPI carry their own CUDA 13 user-space libraries
# (cuda-toolkit[cudart,cublas,...], nvidia-cudnn-cu13, nccl) and load those, so the base
# is CUDA's `base` flavour: the CUDA runtime (cudart), the NVIDIA_* settings the
# container toolkit reads, and the driver requirement (NVIDIA_REQUIRE_CUDA). The
# `runtime` and `cudnn-runtime` flavours would add a second, unused copy of cuBLAS,
# cuFFT, cuDNN... (2-3 GB). Its CUDA major (13) must be the one the locked torch wheel is
# built for; a test checks it against the installed torch's metadata.
#
# Pinned: the packages come from requirements/worker.txt (`make lock`), each with its
# sha256 (pip --require-hashes), torch's CUDA build from PyPI among them; the project's
# wheel then installs with --no-deps, so nothing is resolved at build time.
#
# Python: Ubuntu 24.04 ships 3.12, and this project needs 3.11, so uv (pinned image)
# installs a python-build-standalone CPython 3.11.14, the same version as the python:
# images of the builder stage and the CPU image.
#
# Not built here: this project's development machines have no Docker engine (the file is
# checked offline by tests/unit/deploy/test_images.py). Pin by digest too
# (image:tag@sha256:...) where your registry policy asks for it.

FROM python:3.11.14-slim-bookworm AS builder
WORKDIR /src
COPY pyproject.toml README.md ./
COPY worker/ worker/
COPY trainer/ trainer/
COPY schemas/ schemas/
RUN pip wheel --no-deps --no-cache-dir --wheel-dir /wheels .

FROM ghcr.io/astral-sh/uv:0.9.28 AS uv

FROM nvidia/cuda:13.0.1-base-ubuntu24.04 AS runtime
ARG PYTHON_VERSION=3.11.14
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    UV_PYTHON_INSTALL_DIR=/opt/python \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH
COPY --from=uv /uv /usr/local/bin/uv
RUN uv python install "${PYTHON_VERSION}" \
 && uv venv --seed --python "${PYTHON_VERSION}" /opt/venv \
 && rm /usr/local/bin/uv
COPY requirements/worker.txt /tmp/requirements.txt
COPY --from=builder /wheels/ /tmp/wheels/
# The lock (torch from PyPI: the CUDA build), then the project's wheel alone.
RUN pip install --require-hashes -r /tmp/requirements.txt \
 && pip install --no-deps /tmp/wheels/*.whl \
 && rm -rf /tmp/wheels /tmp/requirements.txt \
 && pip check \
 && python -c "import torch; assert torch.version.cuda, 'a CPU-only torch in the GPU image'"

RUN groupadd --system --gid 10001 router \
 && useradd --system --uid 10001 --gid 10001 --create-home --home-dir /home/router router

# The model artifact: mounted here by default; baked in when MODEL_DIR names an artifact
# directory in the build context. The placeholder only says that nothing was baked.
ARG MODEL_DIR=""
COPY --chown=10001:10001 ${MODEL_DIR:-deploy/docker/no-model}/ /models/current/
RUN if [ -n "${MODEL_DIR}" ]; then \
      support-worker classify --model /models/current "my card was declined"; \
    fi

# MODEL__DEVICE=cuda: a GPU worker that cannot see its GPU exits instead of crawling on
# the CPU. The admin port listens on every interface (HEALTHCHECK, Prometheus).
ENV SUPPORT_WORKER_MODEL__PATH=/models/current \
    SUPPORT_WORKER_MODEL__DEVICE=cuda \
    SUPPORT_WORKER_ADMIN_HOST=0.0.0.0 \
    SUPPORT_WORKER_ADMIN_PORT=9400
EXPOSE 9400
WORKDIR /home/router
USER 10001:10001
# /healthz: the loop's heartbeat is fresh. urllib (no curl in the image); a non-2xx
# answer raises, so the exit code is 1. start-period covers loading and warming the model.
HEALTHCHECK --interval=15s --timeout=5s --start-period=180s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('SUPPORT_WORKER_ADMIN_PORT', '9400') + '/healthz', timeout=4)"]
# SIGTERM drains within SUPPORT_WORKER_SHUTDOWN_GRACE_S (30 s): stop with more than that.
STOPSIGNAL SIGTERM
ENTRYPOINT ["support-worker"]
CMD ["run"]
