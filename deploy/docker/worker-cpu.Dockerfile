# The support-router worker on CPUs, without torch's CUDA libraries.
#
# Build from the repository root (the build context is the checkout, filtered by
# .dockerignore):
#   docker build -f deploy/docker/worker-cpu.Dockerfile -t support-router/worker-cpu:0.1.0 .
# Run, with the model artifact mounted at /models/current (SUPPORT_WORKER_MODEL__PATH):
#   docker run --rm -v "$PWD/models/minilm:/models/current:ro" \
#     -e KAFKA_BOOTSTRAP_SERVERS=broker:9092 support-router/worker-cpu:0.1.0
# Or bake the artifact in (the image then needs no mount; .dockerignore keeps models/
# out of the context except models/bake/):
#   cp -rL models/minilm models/bake
#   docker build -f deploy/docker/worker-cpu.Dockerfile --build-arg MODEL_DIR=models/bake \
#     -t support-router/worker-cpu:0.1.0-minilm .
#
# Pinned: every package but torch comes from requirements/worker-cpu.txt (`make lock`),
# pinned with its sha256 (pip --require-hashes); the project's wheel then installs with
# --no-deps, so nothing is resolved at build time.
#
# CPU-only torch: on Linux x86_64, torch from PyPI depends on CUDA wheels (cuda-toolkit,
# nvidia-cudnn-cu13, ...: about 3 GB). worker-cpu.txt is the worker's lock without torch
# and that CUDA stack (torch's other dependencies are in it); torch itself comes alone
# (--no-deps) from PyTorch's CPU index (https://download.pytorch.org/whl/cpu, version
# TORCH_VERSION+cpu), pinned by version only: the lock is made where that index cannot be
# reached, so it has no hash of the +cpu wheel. The build fails if a CUDA torch or any
# nvidia-*, cuda-* or triton package got in. TORCH_VERSION must be the locks' torch
# (a test holds it to that). The CPU index must be reachable from the machine that builds
# the image.
#
# torch is a build arg: WITH_TORCH=1 (the default) installs it as above; WITH_TORCH=0
# leaves it out, for models that carry their exported variants (the full preset's, or
# any after `support-trainer variants`): the worker then serves ONNX Runtime and OpenVINO
# variants only (MODEL__VARIANT=auto times those), a torch-* variant or an artifact
# without a variant report fails at startup naming why, and the venv is about half the
# size (docs/development.md, "torch in the worker's images", has the figures):
#   docker build -f deploy/docker/worker-cpu.Dockerfile --build-arg WITH_TORCH=0 \
#     -t support-router/worker-cpu:0.1.0-notorch .
# pip check then reports one thing, which the build accepts: the project's own
# requirement of torch (pyproject lists torch among the worker's dependencies).
#
# NOT built here: this project's development machines have no Docker engine and do not
# reach the CPU index; tests/unit/deploy/test_images.py checks this file offline. Base
# images are pinned by exact tag; add the digest (FROM image:tag@sha256:...) where your
# registry policy asks for it.

FROM python:3.11.14-slim-bookworm AS builder
WORKDIR /src
# Only what the wheel is made of (pyproject's packages: worker, trainer, schemas).
COPY pyproject.toml README.md ./
COPY worker/ worker/
COPY trainer/ trainer/
COPY schemas/ schemas/
RUN pip wheel --no-deps --no-cache-dir --wheel-dir /wheels .

FROM python:3.11.14-slim-bookworm AS runtime
ARG TORCH_VERSION=2.15.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG WITH_TORCH=1
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH
COPY requirements/worker-cpu.txt /tmp/requirements.txt
RUN python -m venv /opt/venv \
 && pip install --require-hashes -r /tmp/requirements.txt \
 && if [ "${WITH_TORCH}" = 1 ]; then \
      pip install --no-deps --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}+cpu"; \
    fi \
 && rm /tmp/requirements.txt
COPY --from=builder /wheels/ /tmp/wheels/
RUN pip install --no-deps /tmp/wheels/*.whl \
 && rm -rf /tmp/wheels \
 && if [ "${WITH_TORCH}" = 1 ]; then \
      pip check \
      && python -c "import torch; assert torch.version.cuda is None, torch.version.cuda"; \
    else \
      ! pip check | grep -v '^support-router [^ ]* requires torch, which is not installed\.$'; \
    fi \
 && if pip list --format=freeze | grep -iE '^(nvidia-|cuda-|triton=)'; then \
      echo "CUDA wheels got into the CPU image" >&2; exit 1; \
    fi

# An unprivileged user with a fixed numeric id (Kubernetes' runAsNonRoot checks the id).
RUN groupadd --system --gid 10001 router \
 && useradd --system --uid 10001 --gid 10001 --create-home --home-dir /home/router router

# The model artifact: mounted here by default; baked in when MODEL_DIR names an artifact
# directory in the build context. The placeholder only says that nothing was baked.
ARG MODEL_DIR=""
COPY --chown=10001:10001 ${MODEL_DIR:-deploy/docker/no-model}/ /models/current/
RUN if [ -n "${MODEL_DIR}" ]; then \
      support-worker classify --model /models/current "my card was declined"; \
    fi

# The admin port serves /metrics, /healthz and /readyz; in a container it must listen on
# every interface, or neither the HEALTHCHECK's peers nor Prometheus can reach it.
ENV SUPPORT_WORKER_MODEL__PATH=/models/current \
    SUPPORT_WORKER_MODEL__DEVICE=cpu \
    SUPPORT_WORKER_ADMIN_HOST=0.0.0.0 \
    SUPPORT_WORKER_ADMIN_PORT=9400
EXPOSE 9400
WORKDIR /home/router
USER 10001:10001
# /healthz: the loop's heartbeat is fresh. urllib (curl is not in the image); a non-2xx
# answer raises, so the exit code is 1. start-period covers loading and warming the model.
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('SUPPORT_WORKER_ADMIN_PORT', '9400') + '/healthz', timeout=4)"]
# SIGTERM drains: the batch in hand is committed, then the process leaves the group and
# exits 0 within SUPPORT_WORKER_SHUTDOWN_GRACE_S (30 s); give it longer than that
# (`docker stop -t 45`, compose's stop_grace_period).
STOPSIGNAL SIGTERM
ENTRYPOINT ["support-worker"]
CMD ["run"]
