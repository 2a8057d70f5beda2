# support-router: the two commands a new user needs are `make demo` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
KAFKA := $(PY) deploy/local-kafka/kafka
# The pinned build of everything (every extra: dev, console, train, tracking, otel), with hashes; `make lock`
# writes it and the images' locks beside it (requirements/, docs/development.md).
LOCK := requirements/dev.txt
# Re-install only when the dependency list or its lock changes.
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml $(LOCK) | sha256sum | cut -c1-12)
# pip's HTTP cache stores nothing behind a registry proxy that sends no Cache-Control,
# so the torch/CUDA wheels are kept in a wheelhouse outside git instead. A clone whose wheels are all there
# installs offline; otherwise pip downloads only the missing files into it.
WHEELHOUSE ?= $(HOME)/.cache/support-router/wheels
PIP_LOCAL := $(PY) -m pip install --quiet --no-index --find-links $(WHEELHOUSE)
PIP_FETCH := $(PY) -m pip download --quiet --dest $(WHEELHOUSE) --find-links $(WHEELHOUSE)
# The lock's packages, each file checked against its sha256, then the project alone.
INSTALL := $(PIP_LOCAL) --require-hashes -r $(LOCK) && $(PIP_LOCAL) --no-deps -e .
PYTEST_ARGS ?=
# promtool (the alert-rule tests) from Debian's prometheus package, without root:
# `apt-get download` fetches the .deb once into a cache outside git, `dpkg -x` unpacks it
# into .tools/ (gitignored), and `make test` puts .tools/usr/bin first on pytest's PATH.
DEBS ?= $(HOME)/.cache/support-router/debs
TOOLS := .tools
PROMTOOL := $(TOOLS)/usr/bin/promtool
# The console's browser tests: Debian's chromium + chromium-driver and whichever of their
# libraries this machine lacks, unpacked the same way (tools/unpack_debs.sh, ~150 MB).
CHROMIUM := $(TOOLS)/.chromium-unpacked
# Toxiproxy's server (the network faults of `make chaos CHAOS_ARGS="--brokers 3"`), built
# with Go from the Go module proxy into .tools/ (gitignored). The module's server command
# is cmd/server (there is no cmd/toxiproxy-server); `go install` names it `server`.
TOXIPROXY_VERSION := 2.12.0
TOXIPROXY := $(TOOLS)/toxiproxy-$(TOXIPROXY_VERSION)/toxiproxy-server
# Jaeger v2 (OTLP in, query API and UI), a trace backend for the worker's spans
# (tools/jaeger_demo.py, deploy/jaeger/local.yaml, docs/operations.md "Tracing"), built with
# Go like Toxiproxy. Jaeger v2 is still the module github.com/jaegertracing/jaeger, tagged
# v1.x (v1.75.0 is the v2.12.0 release); a scratch module in .tools/ takes it as a tool
# (`go get -tool`) and builds it. Not part of `make test`: 13 min on a busy 2-core machine.
JAEGER_VERSION := 1.75.0
JAEGER := $(TOOLS)/jaeger-$(JAEGER_VERSION)/jaeger

.PHONY: help install lock tools toxiproxy jaeger lint test chaos soak demo screenshot gpu-pack gpu-check kafka-up kafka-down kafka-status clean

help:
	@echo "make demo        broker, topics, model, worker, sample traffic and a live view"
	@echo "make test        install, lint, start a broker, run every test, stop it"
	@echo "make chaos       the fault suite on a broker of its own (< 30 min); runs/chaos/report.md"
	@echo "                 CHAOS_ARGS=\"--brokers 3\": on a three-node cluster, plus its scenarios"
	@echo "make soak        an hour at a steady rate, 1% hostile, a SIGKILL every 5 min; runs/soak/"
	@echo "make lint        ruff check, ruff format --check, mypy"
	@echo "make lock        refresh requirements/*.txt (the pinned builds, hashes) from PyPI with uv"
	@echo "make screenshot  docs/console.png: the console after a routed result (headless Chromium)"
	@echo "make tools       promtool and chromium into .tools/ from Debian's .debs (no root needed)"
	@echo "make toxiproxy   toxiproxy-server into .tools/ with go install (chaos network faults)"
	@echo "make jaeger      Jaeger v2 into .tools/ with Go (a trace backend: tools/jaeger_demo.py)"
	@echo "make gpu-pack    .gpu/ and .whl/: what the GPU check needs on a device machine (< 60 MiB)"
	@echo "make gpu-check   the GPU check (tools/gpu_check.py): classify, batch sweep, pipeline; JSON"
	@echo "make kafka-up    start (or reuse) the local broker; prints its address"
	@echo "make kafka-down  stop it"

$(STAMP): pyproject.toml $(LOCK)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@mkdir -p $(WHEELHOUSE)
	{ $(INSTALL); } 2>/dev/null || { \
	  $(PIP_FETCH) --require-hashes -r $(LOCK) && $(PIP_FETCH) 'setuptools>=68' wheel && \
	  $(INSTALL); }
	$(PY) -m pip check
	@rm -f $(VENV)/.installed-*
	@touch $@

install: $(STAMP)

# Refreshes the locks from PyPI with uv, for CPython 3.11 on Linux x86_64 (manylinux_2_28):
# dev.txt (make test, make demo) first, then the images' locks constrained to it, so that
# a package has one version in every file. Pins that still satisfy pyproject.toml stay;
# LOCK_UPGRADE=--upgrade moves every package to its newest allowed version.
UV := $(VENV)/bin/uv
LOCK_UPGRADE ?=
COMPILE = $(UV) pip compile pyproject.toml --quiet --generate-hashes --python-version 3.11 \
  --python-platform x86_64-manylinux_2_28 --custom-compile-command "make lock"
lock:
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@test -x $(UV) || $(PY) -m pip install --quiet 'uv>=0.13.10'
	$(COMPILE) $(LOCK_UPGRADE) --all-extras -o $(LOCK)
	$(COMPILE) -c $(LOCK) --extra train --extra tracking -o requirements/train.txt
	$(COMPILE) -c $(LOCK) --extra otel -o requirements/worker.txt
	$(COMPILE) -c $(LOCK) --extra otel --excludes requirements/cuda-stack.excludes --no-emit-package torch \
	  -o requirements/worker-cpu.txt

# Idempotent: a file target, rebuilt only when .tools/ lacks promtool. If the package
# lists are empty (a fresh machine), root refreshes them once; anyone else is told to.
$(PROMTOOL):
	@mkdir -p $(DEBS)
	@ls $(DEBS)/prometheus_*.deb >/dev/null 2>&1 || (cd $(DEBS) && apt-get download prometheus) \
	  || { [ "$$(id -u)" = 0 ] && apt-get update -qq && (cd $(DEBS) && apt-get download prometheus); } \
	  || { echo "promtool: 'apt-get download prometheus' failed; run 'apt-get update' as root" >&2; exit 1; }
	dpkg -x "$$(ls -t $(DEBS)/prometheus_*.deb | head -n 1)" $(TOOLS)
	@touch $@
	@$@ --version | head -n 1

$(CHROMIUM): tools/unpack_debs.sh
	tools/unpack_debs.sh $(TOOLS) $(DEBS) chromium chromium-driver
	@touch $@

tools: $(PROMTOOL) $(CHROMIUM)

$(TOXIPROXY):
	@command -v go >/dev/null || { echo "toxiproxy: go not found (https://go.dev/dl/)" >&2; exit 1; }
	GOBIN="$(CURDIR)/$(@D)" go install -ldflags "-s -w \
	  -X github.com/Shopify/toxiproxy/v2.Version=$(TOXIPROXY_VERSION)" \
	  github.com/Shopify/toxiproxy/v2/cmd/server@v$(TOXIPROXY_VERSION)
	mv "$(@D)/server" $@
	@$@ -version

toxiproxy: $(TOXIPROXY)

$(JAEGER):
	@command -v go >/dev/null || { echo "jaeger: go not found (https://go.dev/dl/)" >&2; exit 1; }
	rm -rf $(@D)/src && mkdir -p $(@D)/src
	cd $(@D)/src && go mod init jaeger-build >/dev/null 2>&1 \
	  && go get -tool github.com/jaegertracing/jaeger/cmd/jaeger@v$(JAEGER_VERSION) \
	  && go build -o ../jaeger -ldflags "-s -w \
	    -X github.com/jaegertracing/jaeger/internal/version.latestVersion=v$(JAEGER_VERSION)" \
	    github.com/jaegertracing/jaeger/cmd/jaeger
	@$@ version 2>/dev/null | head -n 3

jaeger: $(JAEGER)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/python -m tools.check_imports

# `kafka run` starts a broker unless one runs (or KAFKA_BOOTSTRAP_SERVERS is set),
# and stops the one it started when pytest ends, pass or fail.
# The manifests' test (tests/unit/deploy/test_k8s.py) renders them with `kubectl kustomize`:
# kubectl must be on PATH (it is at /usr/bin/kubectl on the project's machines).
test: $(STAMP) lint $(PROMTOOL) $(CHROMIUM)
	PATH="$(CURDIR)/$(TOOLS)/usr/bin:$$PATH" $(KAFKA) run -- $(VENV)/bin/pytest $(PYTEST_ARGS)

# Faults (SIGKILLs, a broker killed and frozen, poison, fuzz, a broken model) against real
# workers, on a broker of its own (.kafka-chaos, a free port): it kills and restarts that
# broker, so never the one `make test` or `make demo` uses. Stops what it started, also on
# Ctrl-C. CHAOS_ARGS: e.g. --short, --scenario poison, --seed 7, --out DIR, --brokers 3.
# --brokers 3: a three-node cluster there instead (replication factor 3, min.insync.replicas
# 2), every scenario on it plus one node stopped, killed, frozen, the transaction
# coordinator killed, a rolling restart, and network faults through Toxiproxy (built first
# with `make toxiproxy`).
CHAOS_ARGS ?=
# Without Go the build fails, and the network scenarios are reported as skipped.
chaos: $(STAMP)
	$(if $(findstring --brokers,$(CHAOS_ARGS)),@$(MAKE) --no-print-directory $(TOXIPROXY) \
	  || echo "toxiproxy-server not built: the network scenarios will be skipped" >&2)
	TOXIPROXY_SERVER="$(CURDIR)/$(TOXIPROXY)" $(PY) -m tests.chaos $(CHAOS_ARGS)

# An hour at a steady rate with 1% hostile records and a worker SIGKILLed every 5 min
# (tests/chaos/soak.py): RSS, fds, threads and log bytes per message must be as flat in
# the last 10 min as in the first, and every input routed or dead-lettered exactly once.
# Its own broker (.kafka-soak, a free port); not part of `make test`. SOAK_ARGS: e.g.
# --minutes 12 --kill-every 120 --window-minutes 2, --rate 50, --seed 7, --out DIR.
SOAK_ARGS ?=
soak: $(STAMP)
	$(PY) -m tests.chaos.soak $(SOAK_ARGS)

# The main job: broker + topics + a model (trained if models/current is missing) +
# the worker + sample traffic + a live view. Ctrl-C stops what it started.
# A developer tool (tools/demo.py), not part of the worker's package.
demo: $(STAMP)
	$(PY) -m tools.demo

# docs/console.png, the README's picture of the console: a worker, a console and headless
# Chromium on the demo's broker, topics and model (tools/console_shot.py).
screenshot: $(STAMP) $(CHROMIUM)
	$(PY) -m tools.console_shot

# The GPU check (tools/gpu_check.py, its stages bounded to 6 min): classify on the device, model-only
# msg/s for fp32/bf16/fp16, padded and padding-free, over the batch sweep, the pipeline
# without Kafka and its null-model ceiling, in one JSON file (runs/gpu-check.json).
# `make gpu-pack` first writes what travels to a device machine: .gpu/ (an fp16 copy of
# GPU_PACK_ARGS' --model, default models/current, and the message set) and .whl/ (the
# wheels its image lacks); it prints the device command. A device has no .venv: there,
# GPU_PY=python3 (with PYTHONPATH as that command sets it) skips the install step.
# The tests run it on the CPU with the tiny smoke model (tests/unit/tools/test_gpu_check.py).
GPU_PY ?= $(PY)
GPU_CHECK_ARGS ?= --model .gpu/artifact --device cuda --out runs/gpu-check.json
GPU_PACK_ARGS ?=
gpu-pack: $(STAMP)
	$(PY) -m tools.gpu_pack $(GPU_PACK_ARGS)

gpu-check: $(if $(filter $(PY),$(GPU_PY)),$(STAMP))
	$(GPU_PY) -m tools.gpu_check $(GPU_CHECK_ARGS)

kafka-up: $(STAMP)
	@$(KAFKA) up

kafka-down:
	@$(KAFKA) down

kafka-status:
	@$(KAFKA) status

clean:
	rm -rf .kafka .kafka-chaos .kafka-soak build *.egg-info .mypy_cache .ruff_cache .pytest_cache
