# support-trainer: builds the data set, fine-tunes, calibrates, evaluates and exports a
# model artifact. A batch job, not a service: no port, no HEALTHCHECK.
#
# Build from the repository root:
#   docker build -f deploy/docker/trainer.Dockerfile -t support-router/trainer:0.1.0 .
# Train on a GPU host (the vendored CLINC150 and Banking77, trainer/data/sets, mounted
# read-only at /data: .dockerignore keeps them out of the build context; the artifact
# written under /models; the container runs as uid 10001, so --user makes the files yours):
#   docker run --rm --gpus 1 --user "$(id -u):$(id -g)" \
#     -v "$PWD/trainer/data/sets:/data:ro" -v "$PWD/models:/models" \
#     support-router/trainer:0.1.0 train --preset full --out /models/minilm
# Without --gpus it trains on the CPU (slowly: the `full` preset is sized for a GPU).
#
# Pinned: the packages (the default ones and the `train` extra's) come from
# requirements/train.txt (`make lock`), each with its sha256 (pip --require-hashes); the
# project's wheel then installs with --no-deps, so nothing is resolved at build time.
# torch is the CUDA build from PyPI, which carries its own CUDA 13 libraries (see
# worker-gpu.Dockerfile for why the base is CUDA's `base` flavour, and where Python 3.11
# comes from). The manifest's git_commit reads "unknown" in the image (no .git in the
# context); the image's label org.opencontainers.image.revision carries GIT_COMMIT:
#   --build-arg GIT_COMMIT="$(git rev-parse HEAD)"
#
# Not built here: this project's development machines have no Docker engine (the file is
# checked offline by tests/unit/deploy/test_images.py).

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
ARG GIT_COMMIT=unknown
LABEL org.opencontainers.image.title="support-router trainer" \
      org.opencontainers.image.revision="${GIT_COMMIT}"
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
COPY requirements/train.txt /tmp/requirements.txt
COPY --from=builder /wheels/ /tmp/wheels/
RUN pip install --require-hashes -r /tmp/requirements.txt \
 && pip install --no-deps /tmp/wheels/*.whl \
 && rm -rf /tmp/wheels /tmp/requirements.txt \
 && pip check \
 && support-trainer --help > /dev/null \
 && python -c "import accelerate, matplotlib, nncf, onnx"

RUN groupadd --system --gid 10001 router \
 && useradd --system --uid 10001 --gid 10001 --create-home --home-dir /home/router router \
 && mkdir -p /data /models /work \
 && chown 10001:10001 /models /work \
 && chmod 1777 /work

# Where `--sources clinc,banking77` look without --clinc-path / --banking77-path. /work
# and HF_HOME are writable by any uid, for `docker run --user`.
ENV CLINC_PATH=/data/clinc150/data_oos_plus.json \
    BANKING77_PATH=/data/banking77/train.csv \
    HF_HOME=/tmp/huggingface
VOLUME ["/models"]
WORKDIR /work
USER 10001:10001
HEALTHCHECK NONE
ENTRYPOINT ["support-trainer"]
CMD ["--help"]
