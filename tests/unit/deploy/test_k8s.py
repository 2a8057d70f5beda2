"""The Kubernetes manifests (deploy/k8s), rendered and checked offline.

Every overlay is rendered with `kubectl kustomize`; the core kinds are validated against
the Kubernetes schemas that kubernetes-validate ships, the KEDA and prometheus-operator
kinds against the OpenAPI schemas of their CRDs vendored in deploy/vendor, and the
result is held to what the worker and the reliability scheme need: the settings the
ConfigMap gives, the partitions of the inbound topic, the drain bound, the probes'
endpoints, the transactional id, GPU scheduling and secret handling.

By hand (the runbook's commands):
    kubectl kustomize deploy/k8s/overlays/cpu
    .venv/bin/pytest -q tests/unit/deploy/test_k8s.py
"""

from __future__ import annotations

import copy
import functools
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any
from unittest import mock

import jsonschema
import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import all_versions

from worker.kafka.clients import consumer_config
from worker.metrics import Metrics
from worker.runtime.processes import KILL_MARGIN_S, child_env
from worker.settings import BOOTSTRAP_ENV, ENV_PREFIX, WorkerSettings, is_secret

REPO = Path(__file__).resolve().parents[3]
K8S = REPO / "deploy" / "k8s"
OVERLAYS = sorted(p.parent.name for p in (K8S / "overlays").glob("*/kustomization.yaml"))
STATIC_MEMBERSHIP = K8S / "components" / "static-membership"
GPU_PROCESSES = K8S / "components" / "gpu-processes"
# Opt-in components written for one overlay, rendered on top of it and held to every check
# an overlay is: name -> (overlay, components).
COMPOSED = {"gpu+gpu-processes": ("gpu", (GPU_PROCESSES,))}
RENDERS = [*OVERLAYS, *COMPOSED]
TOPICS_FILE = REPO / "deploy" / "topics.yaml"
# The custom kinds' CRDs, vendored with their licenses and commits.
VENDOR = REPO / "deploy" / "vendor"

# Kubernetes releases whose schemas the core kinds must satisfy: the oldest minor still
# maintained upstream when this was written (1.32, also the kubectl here) and the newest
# that kubernetes-validate ships.
K8S_VERSIONS = ("1.32.0", all_versions()[-1])

# What every overlay renders, and where the custom kinds' schemas come from.
EXPECTED_KINDS = {
    "ConfigMap",
    "Service",
    "StatefulSet",
    "PodDisruptionBudget",
    "ScaledObject",
    "TriggerAuthentication",
    "PodMonitor",
    "PrometheusRule",
}
CUSTOM_KINDS = {
    ("keda.sh/v1alpha1", "ScaledObject"),
    ("keda.sh/v1alpha1", "TriggerAuthentication"),
    ("monitoring.coreos.com/v1", "PodMonitor"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
}
# The HPA's own default scale-down window; a shorter one would flap more than no setting.
MIN_SCALE_DOWN_WINDOW_S = 300
# The kubelet's SIGKILL must come after the worker's own exit, with room for its last lines.
MIN_GRACE_MARGIN_S = 5
# librdkafka's sasl.mechanism -> KEDA's `sasl` for the same login.
KEDA_SASL = {"PLAIN": "plaintext", "SCRAM-SHA-256": "scram_sha256", "SCRAM-SHA-512": "scram_sha512"}
ENV_REF = re.compile(r"^\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)$")

Doc = dict[str, Any]


# -- rendering ------------------------------------------------------------------------


def kubectl() -> str:
    wanted = os.environ.get("KUBECTL", "kubectl")
    exe = shutil.which(wanted)
    if not exe:
        pytest.fail(
            f"{wanted} not found (PATH or $KUBECTL): deploy/k8s is rendered with "
            "`kubectl kustomize` (kubectl >= 1.27, which embeds kustomize v5). Install "
            "kubectl, or set KUBECTL=/path/to/kubectl.",
            pytrace=False,
        )
    return exe


@functools.cache
def render(directory: str) -> tuple[Doc, ...]:
    proc = subprocess.run(
        [kubectl(), "kustomize", directory],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if proc.returncode != 0:
        pytest.fail(f"kubectl kustomize {directory} failed:\n{proc.stderr}", pytrace=False)
    return tuple(d for d in yaml.safe_load_all(proc.stdout) if d)


# Where the COMPOSED kustomizations are written; removed when the interpreter exits.
_COMPOSED_DIR = tempfile.TemporaryDirectory(prefix="k8s-composed-")


def write_kustomization(directory: Path, resource: Path, components: tuple[Path, ...]) -> None:
    """``resource`` plus opt-in components, as a user's own kustomization would add them."""
    (directory / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                # kustomize takes relative paths only.
                "resources": [os.path.relpath(resource, directory)],
                "components": [os.path.relpath(c, directory) for c in components],
            }
        )
    )


def source(name: str) -> Path:
    """The directory that renders ``name``, an overlay or one of COMPOSED."""
    if name not in COMPOSED:
        return K8S / "overlays" / name
    overlay, components = COMPOSED[name]
    directory = Path(_COMPOSED_DIR.name) / name
    if not directory.is_dir():
        directory.mkdir()
        write_kustomization(directory, K8S / "overlays" / overlay, components)
    return directory


def overlay_of(name: str) -> str:
    return COMPOSED[name][0] if name in COMPOSED else name


def rendered(name: str) -> tuple[Doc, ...]:
    return render(str(source(name)))


def with_static_membership(name: str, tmp_path: Path) -> tuple[Doc, ...]:
    """The render plus the static-membership component."""
    write_kustomization(tmp_path, source(name), (STATIC_MEMBERSHIP,))
    return render(str(tmp_path))


def of_kind(docs: tuple[Doc, ...], kind: str) -> list[Doc]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: tuple[Doc, ...], kind: str) -> Doc:
    found = of_kind(docs, kind)
    assert len(found) == 1, f"expected one {kind}, rendered {len(found)}"
    return found[0]


def pod_spec(docs: tuple[Doc, ...]) -> Doc:
    spec: Doc = one(docs, "StatefulSet")["spec"]["template"]["spec"]
    return spec


def worker(docs: tuple[Doc, ...]) -> Doc:
    containers = pod_spec(docs)["containers"]
    assert [c["name"] for c in containers] == ["worker"], containers
    container: Doc = containers[0]
    return container


def env_of(docs: tuple[Doc, ...]) -> dict[str, Doc]:
    return {e["name"]: e for e in worker(docs).get("env", [])}


def config_data(docs: tuple[Doc, ...]) -> dict[str, str]:
    """The data of every ConfigMap the worker takes its environment from."""
    names = {s["configMapRef"]["name"] for s in worker(docs).get("envFrom", [])}
    maps = [d for d in of_kind(docs, "ConfigMap") if d["metadata"]["name"] in names]
    assert len(maps) == len(names), f"envFrom names ConfigMaps that are not rendered: {names}"
    data: dict[str, str] = {}
    for m in maps:
        data.update(m.get("data", {}))
    return data


def settings_of(docs: tuple[Doc, ...]) -> WorkerSettings:
    """The settings a worker pod would run with: defaults, then the ConfigMap, then env."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX) and k != BOOTSTRAP_ENV
    }
    env.update(config_data(docs))
    env.update({e["name"]: e["value"] for e in worker(docs).get("env", []) if "value" in e})
    with mock.patch.dict(os.environ, env, clear=True):
        return WorkerSettings()


def inbound_partitions(topic: str) -> int:
    topics = yaml.safe_load(TOPICS_FILE.read_text())["topics"]
    assert topic in topics, f"{topic} is not declared in {TOPICS_FILE}"
    return int(topics[topic]["partitions"])


def port_number(container: Doc, port: int | str) -> int:
    if isinstance(port, int):
        return port
    named = {p["name"]: p["containerPort"] for p in container.get("ports", []) if "name" in p}
    assert port in named, f"port {port!r} is not a named port of the container: {named}"
    return int(named[port])


def kafka_trigger(docs: tuple[Doc, ...]) -> Doc:
    triggers = one(docs, "ScaledObject")["spec"]["triggers"]
    kafka = [t for t in triggers if t["type"] == "kafka"]
    assert len(kafka) == 1, triggers
    trigger: Doc = kafka[0]
    return trigger


# -- schemas --------------------------------------------------------------------------


def strict(schema: Any) -> Any:
    """A CRD schema that refuses unknown fields, as the API server's strict field
    validation (kubectl apply's default) does: every object schema that lists its
    properties and neither allows more nor preserves unknown fields gets
    additionalProperties: false. Without it a misspelt field would pass."""
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strict(v) for k, v in schema.items()}
    if (
        "properties" in schema
        and "additionalProperties" not in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


@functools.cache
def crd_schemas() -> dict[tuple[str, str], Doc]:
    """(apiVersion, kind) -> openAPIV3Schema, from every CRD in deploy/vendor."""
    if not VENDOR.is_dir():
        pytest.fail(f"{VENDOR} is missing: the CRD schemas are vendored there")
    schemas: dict[tuple[str, str], Doc] = {}
    for path in sorted(VENDOR.glob("*/*.yaml")):
        for crd in yaml.safe_load_all(path.read_text()):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            spec = crd["spec"]
            for version in spec["versions"]:
                if version.get("served", True):
                    key = (f"{spec['group']}/{version['name']}", spec["names"]["kind"])
                    schemas[key] = strict(copy.deepcopy(version["schema"]["openAPIV3Schema"]))
    return schemas


def schema_errors(doc: Doc) -> list[str]:
    key = (doc["apiVersion"], doc["kind"])
    schema = crd_schemas().get(key)
    if schema is None:
        return [f"{key}: no vendored CRD serves this apiVersion and kind"]
    validator = jsonschema.Draft4Validator(schema)
    return [
        f"{doc['kind']}/{doc['metadata']['name']} at {'.'.join(map(str, e.absolute_path))}: "
        f"{e.message}"
        for e in validator.iter_errors(doc)
    ]


# -- tests ----------------------------------------------------------------------------


def test_the_cpu_and_gpu_overlays_exist() -> None:
    assert {"cpu", "gpu"} <= set(OVERLAYS), OVERLAYS


def test_every_crd_the_manifests_use_is_vendored() -> None:
    assert set(crd_schemas()) >= CUSTOM_KINDS, sorted(crd_schemas())


@pytest.mark.parametrize("overlay", RENDERS)
def test_each_overlay_renders_every_part(overlay: str) -> None:
    docs = rendered(overlay)
    kinds = [d["kind"] for d in docs]
    assert set(kinds) >= EXPECTED_KINDS, sorted(set(kinds))
    assert kinds.count("StatefulSet") == 1, kinds
    for d in docs:
        assert d["metadata"].get("namespace"), f"{d['kind']} has no namespace"


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("overlay", RENDERS)
def test_core_kinds_match_the_kubernetes_schemas(overlay: str, version: str) -> None:
    core = [d for d in rendered(overlay) if (d["apiVersion"], d["kind"]) not in CUSTOM_KINDS]
    assert core
    errors = []
    for doc in core:
        name = f"{doc['kind']}/{doc['metadata']['name']}"
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            errors.append(f"{name} at {'.'.join(map(str, e.path))}: {e.message}")
        except kubernetes_validate.SchemaNotFoundError as e:
            errors.append(f"{name}: {e.message}")
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize("overlay", RENDERS)
def test_custom_kinds_match_their_crd_schemas(overlay: str) -> None:
    custom = [d for d in rendered(overlay) if (d["apiVersion"], d["kind"]) in CUSTOM_KINDS]
    assert {d["kind"] for d in custom} >= {
        "ScaledObject",
        "TriggerAuthentication",
        "PodMonitor",
        "PrometheusRule",
    }
    errors = [message for doc in custom for message in schema_errors(doc)]
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize("overlay", RENDERS)
def test_replicas_never_outnumber_the_inbound_partitions(overlay: str) -> None:
    docs = rendered(overlay)
    spec = one(docs, "ScaledObject")["spec"]
    settings = settings_of(docs)
    partitions = inbound_partitions(settings.topics.inbound)
    # KEDA counts pods; each pod is `processes` members of the group.
    members = settings.processes
    assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
    assert spec["maxReplicaCount"] * members <= partitions, (spec["maxReplicaCount"], members)
    assert kafka_trigger(docs)["metadata"].get("allowIdleConsumers", "false") == "false"
    assert one(docs, "StatefulSet")["spec"]["replicas"] * members <= partitions


@pytest.mark.parametrize("overlay", RENDERS)
def test_scale_down_is_stabilised_against_rebalance_storms(overlay: str) -> None:
    spec = one(rendered(overlay), "ScaledObject")["spec"]
    behavior = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] >= MIN_SCALE_DOWN_WINDOW_S


@pytest.mark.parametrize("overlay", RENDERS)
def test_keda_measures_the_lag_of_the_workers_group(overlay: str) -> None:
    docs = rendered(overlay)
    settings = settings_of(docs)
    consumer = consumer_config(settings, Metrics())
    meta = kafka_trigger(docs)["metadata"]
    assert meta["topic"] == settings.topics.inbound
    assert meta["consumerGroup"] == consumer["group.id"]
    assert meta["bootstrapServers"] == consumer["bootstrap.servers"]
    assert meta["offsetResetPolicy"] == consumer["auto.offset.reset"]
    assert int(meta["lagThreshold"]) > 0
    # KEDA logs in the way the worker does.
    client = settings.kafka.librdkafka()
    assert meta.get("sasl", "none") == KEDA_SASL.get(client.get("sasl.mechanism", ""), "none")
    tls = client.get("security.protocol", "PLAINTEXT") in {"SSL", "SASL_SSL"}
    assert meta.get("tls", "disable") == ("enable" if tls else "disable")
    # ...and scales the worker's StatefulSet, with credentials that are rendered too.
    target = one(docs, "ScaledObject")["spec"]["scaleTargetRef"]
    statefulset = one(docs, "StatefulSet")
    assert (target.get("apiVersion"), target.get("kind"), target["name"]) == (
        statefulset["apiVersion"],
        "StatefulSet",
        statefulset["metadata"]["name"],
    )
    auth = kafka_trigger(docs)["authenticationRef"]["name"]
    assert auth in {d["metadata"]["name"] for d in of_kind(docs, "TriggerAuthentication")}


def drain_bound_s(settings: WorkerSettings) -> float:
    """The longest a worker runs after SIGTERM. worker.runtime.signals.Stopper arms a timer at the
    signal that ends the process (os._exit) after shutdown_grace_s, whatever the drain is
    doing: a commit retried for commit_timeout_s + transaction_timeout_ms is cut there.
    Several processes per pod drain side by side; their supervisor (worker.runtime.processes)
    kills one that outlives its grace KILL_MARGIN_S later, then exits."""
    if settings.processes > 1:
        return settings.shutdown_grace_s + KILL_MARGIN_S
    return settings.shutdown_grace_s


@pytest.mark.parametrize("overlay", RENDERS)
def test_the_grace_period_outlasts_the_workers_drain(overlay: str) -> None:
    docs = rendered(overlay)
    grace = pod_spec(docs).get("terminationGracePeriodSeconds", 30)  # Kubernetes' default
    assert grace >= drain_bound_s(settings_of(docs)) + MIN_GRACE_MARGIN_S


@pytest.mark.parametrize("overlay", RENDERS)
def test_probes_hit_the_admin_endpoints(overlay: str) -> None:
    docs = rendered(overlay)
    settings = settings_of(docs)
    container = worker(docs)
    # The kubelet and Prometheus reach the pod's IP, not its loopback.
    assert settings.admin_host in {"0.0.0.0", "::", ""}, settings.admin_host
    paths = {}
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        if probe not in container:
            continue
        get = container[probe]["httpGet"]
        assert port_number(container, get["port"]) == settings.admin_port, probe
        paths[probe] = get["path"]
    assert paths.get("livenessProbe") == "/healthz", paths
    assert paths.get("readinessProbe") == "/readyz", paths
    assert paths.get("startupProbe", "/readyz") in {"/healthz", "/readyz"}, paths


@pytest.mark.parametrize("overlay", RENDERS)
def test_the_transactional_id_is_the_stable_pod_name(overlay: str) -> None:
    docs = rendered(overlay)
    name = f"{ENV_PREFIX}TRANSACTIONAL_ID"
    entry = env_of(docs).get(name)
    assert entry is not None, f"{name} is not set: every replica would share a default id"
    assert entry.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.name"
    assert name not in config_data(docs), "a ConfigMap value is one id for every replica"
    assert settings_of(docs).mode == "exactly_once"
    # Stable names (support-router-0, -1, ...) come from a StatefulSet, not a Deployment.
    assert not of_kind(docs, "Deployment")


@pytest.mark.parametrize("overlay", RENDERS)
def test_only_the_gpu_overlay_asks_for_a_gpu(overlay: str) -> None:
    docs = rendered(overlay)
    spec, container = pod_spec(docs), worker(docs)
    limits = container.get("resources", {}).get("limits", {})
    tolerations = [t.get("key") for t in spec.get("tolerations", [])]
    selector = spec.get("nodeSelector", {})
    settings = settings_of(docs)
    if overlay_of(overlay) == "gpu":
        assert str(limits.get("nvidia.com/gpu")) == "1", limits
        assert "nvidia.com/gpu" in tolerations, tolerations
        assert any("nvidia.com" in k for k in selector), selector
        assert settings.model.device == "cuda"
        assert worker(rendered("cpu"))["image"] != container["image"]
    else:
        assert "nvidia.com/gpu" not in json.dumps(container.get("resources", {}))
        assert "nvidia.com/gpu" not in tolerations, tolerations
        assert not any("nvidia.com" in k for k in selector), selector
        assert settings.model.device != "cuda"
    # torch sizes its thread pool from the node's cores unless told the pod's share
    # (each process's, where several share the pod).
    cpu_request = container["resources"]["requests"]["cpu"]
    threads = settings.model.threads
    assert threads is not None and threads * settings.processes == int(cpu_request), (
        threads,
        settings.processes,
        cpu_request,
    )


@pytest.mark.parametrize("overlay", RENDERS)
def test_secrets_are_referenced_never_inlined(overlay: str) -> None:
    docs = rendered(overlay)
    assert not of_kind(docs, "Secret"), "a Secret's value would be in the repository"
    env = worker(docs).get("env", [])
    secret_refs: dict[str, tuple[str, str]] = {}
    for i, e in enumerate(env):
        ref = e.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            secret_refs[e["name"]] = (ref["name"], ref["key"])
        elif is_secret(e["name"]):
            pytest.fail(f"{e['name']} is not taken from a Secret")
        # A $(VAR) in a value must name a variable from a Secret defined before it.
        for var in re.findall(r"\$\(([^)]+)\)", e.get("value", "")):
            earlier = {x["name"] for x in env[:i]}
            assert var in earlier and var in secret_refs, f"{e['name']} expands $({var})"
    for key in config_data(docs):
        assert not is_secret(key), f"ConfigMap holds {key}"
    settings = settings_of(docs)
    assert not any(is_secret(k) for k in settings.kafka.client_config), "client_config secret"
    # The SASL login: the password from a Secret through its own setting; the username
    # from a Secret too, through its own setting or by $(VAR) into client_config.
    client = settings.kafka.librdkafka()
    assert client.get("security.protocol") == "SASL_SSL"
    password_ref = secret_refs.get(f"{ENV_PREFIX}KAFKA__SASL_PASSWORD")
    assert password_ref, "the SASL password is not taken from a Secret"
    username_ref = secret_refs.get(f"{ENV_PREFIX}KAFKA__SASL_USERNAME")
    if username_ref is None:
        username = ENV_REF.match(client.get("sasl.username", ""))
        assert username and username.group(1) in secret_refs, client.get("sasl.username")
        username_ref = secret_refs[username.group(1)]
    # The CA is a file from a Secret volume, at the path librdkafka is given.
    ca = Path(client["ssl.ca.location"])
    volumes = {v["name"]: v for v in pod_spec(docs).get("volumes", [])}
    mounts = [m for m in worker(docs).get("volumeMounts", []) if Path(m["mountPath"]) == ca.parent]
    assert len(mounts) == 1, f"nothing mounted at {ca.parent}"
    ca_secret = volumes[mounts[0]["name"]].get("secret")
    assert ca_secret, f"{ca.parent} is not a Secret volume"
    items = {i["path"]: i["key"] for i in ca_secret.get("items", [])}
    ca_key = items.get(ca.name, ca.name)
    # KEDA logs in with the same Secrets, and takes nothing inline.
    for auth in of_kind(docs, "TriggerAuthentication"):
        spec = auth["spec"]
        assert set(spec) == {"secretTargetRef"}, sorted(spec)
        params = {r["parameter"]: (r["name"], r["key"]) for r in spec["secretTargetRef"]}
        assert params.get("username") == username_ref
        assert params.get("password") == password_ref
        assert params.get("ca") == (ca_secret["secretName"], ca_key)
    for key in kafka_trigger(docs)["metadata"]:
        assert not is_secret(key), f"the ScaledObject's trigger holds {key}"


@pytest.mark.parametrize("overlay", RENDERS)
def test_static_membership_is_an_opt_in_component(overlay: str, tmp_path: Path) -> None:
    name = f"{ENV_PREFIX}GROUP_INSTANCE_ID"
    assert name not in env_of(rendered(overlay))
    assert settings_of(rendered(overlay)).group_instance_id is None
    docs = with_static_membership(overlay, tmp_path)
    entry = env_of(docs).get(name)
    assert entry is not None, "the component does not set group.instance.id"
    assert entry.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.name"
    # Nothing else moves: the same objects, the same transactional id.
    assert [d["kind"] for d in docs] == [d["kind"] for d in rendered(overlay)]
    assert (
        env_of(docs)[f"{ENV_PREFIX}TRANSACTIONAL_ID"]
        == env_of(rendered(overlay))[f"{ENV_PREFIX}TRANSACTIONAL_ID"]
    )


@pytest.mark.parametrize("overlay", RENDERS)
def test_selectors_pick_the_worker_pods_and_ports(overlay: str) -> None:
    docs = rendered(overlay)
    statefulset = one(docs, "StatefulSet")
    labels = statefulset["spec"]["template"]["metadata"]["labels"]
    container = worker(docs)

    def selects(selector: dict[str, str]) -> bool:
        return bool(selector) and selector.items() <= labels.items()

    assert selects(statefulset["spec"]["selector"]["matchLabels"])
    assert selects(one(docs, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"])
    service = one(docs, "Service")
    assert statefulset["spec"]["serviceName"] == service["metadata"]["name"]
    assert service["spec"].get("clusterIP") == "None", "a StatefulSet's service is headless"
    assert selects(service["spec"]["selector"])
    # Process i of a pod serves on the port its supervisor gives it (worker.runtime.processes).
    settings = settings_of(docs)
    admin_ports = [
        int(child_env(settings, i)[f"{ENV_PREFIX}ADMIN_PORT"]) for i in range(settings.processes)
    ]
    assert admin_ports[0] == settings.admin_port
    declared = {p["containerPort"] for p in container.get("ports", [])}
    assert set(admin_ports) <= declared, (admin_ports, declared)
    service_ports = {p["name"]: p for p in service["spec"]["ports"]}
    for port in service_ports.values():
        assert port_number(container, port["targetPort"]) == settings.admin_port
    pod_monitors, service_monitors = of_kind(docs, "PodMonitor"), of_kind(docs, "ServiceMonitor")
    assert pod_monitors or service_monitors, "nothing scrapes /metrics"
    for monitor in pod_monitors:
        assert selects(monitor["spec"]["selector"]["matchLabels"])
        scraped = []
        for endpoint in monitor["spec"]["podMetricsEndpoints"]:
            assert endpoint.get("path", "/metrics") == "/metrics"
            scraped.append(port_number(container, endpoint["port"]))
        assert sorted(scraped) == admin_ports, "every process's /metrics, once"
    for monitor in service_monitors:
        selector = monitor["spec"]["selector"]["matchLabels"]
        assert selector and selector.items() <= service["metadata"]["labels"].items()
        for endpoint in monitor["spec"]["endpoints"]:
            assert endpoint.get("path", "/metrics") == "/metrics"
            assert endpoint["port"] in service_ports, endpoint


@pytest.mark.parametrize("overlay", RENDERS)
def test_the_dashboard_ships_as_a_configmap_grafana_loads(overlay: str) -> None:
    dashboards = [
        cm
        for cm in of_kind(rendered(overlay), "ConfigMap")
        if cm["metadata"].get("labels", {}).get("grafana_dashboard") == "1"
    ]
    assert len(dashboards) == 1, "one ConfigMap labelled grafana_dashboard=1"
    (text,) = dashboards[0]["data"].values()
    shipped = REPO / "deploy" / "monitoring" / "grafana" / "support-router.json"
    assert json.loads(text) == json.loads(shipped.read_text())


def test_several_processes_per_gpu_is_an_opt_in_component() -> None:
    assert all(settings_of(rendered(o)).processes == 1 for o in OVERLAYS)
    opt_in = (K8S / "overlays" / "gpu" / "kustomization.yaml").read_text()
    assert f"#   - {os.path.relpath(GPU_PROCESSES, K8S / 'overlays' / 'gpu')}" in opt_in
    docs = rendered("gpu+gpu-processes")
    settings = settings_of(docs)
    assert settings.processes == 2
    # Each process's transactional.id extends the pod's own, so it stays stable per pod.
    ids = {child_env(settings, i)[f"{ENV_PREFIX}TRANSACTIONAL_ID"] for i in range(2)}
    assert ids == {f"{settings.transactional_id}-0", f"{settings.transactional_id}-1"}
    # Still one GPU, shared; the probes stay on process 0's port (the other's exit ends the
    # pod's container through the supervisor).
    assert str(worker(docs)["resources"]["limits"]["nvidia.com/gpu"]) == "1"
    assert port_number(worker(docs), worker(docs)["livenessProbe"]["httpGet"]["port"]) == 9400
    assert [d["kind"] for d in docs] == [d["kind"] for d in rendered("gpu")]


CONSOLE_PROXY = K8S / "components" / "console-oauth2-proxy"


def console_docs(docs: tuple[Doc, ...]) -> tuple[Doc, ...]:
    return tuple(
        d
        for d in docs
        if d["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "console"
        or d["metadata"]["name"].startswith("support-router-console-roles")
    )


def test_the_console_behind_oauth2_proxy_is_an_opt_in_component(tmp_path: Path) -> None:
    from worker.cli import build_parser
    from worker.console.auth.proxy import RoleMap

    write_kustomization(tmp_path, source("cpu"), (CONSOLE_PROXY,))
    docs = render(str(tmp_path))
    console = console_docs(docs)
    # The worker's objects do not move; the component adds the console's three.
    assert [d for d in docs if d not in console] == list(rendered("cpu"))
    assert sorted(d["kind"] for d in console) == ["ConfigMap", "Deployment", "Service"]
    for version in K8S_VERSIONS:
        for doc in console:
            kubernetes_validate.validate(doc, version, strict=True)
            assert doc["metadata"].get("namespace"), doc["kind"]
    assert not of_kind(docs, "Secret")

    pod = one(console, "Deployment")["spec"]["template"]["spec"]
    containers = {c["name"]: c for c in pod["containers"]}
    assert set(containers) == {"oauth2-proxy", "console"}
    proxy_c, console_c = containers["oauth2-proxy"], containers["console"]
    # The console as its own CLI reads these arguments: loopback, trusting the pod's
    # loopback (the proxy beside it) and nothing else.
    args = build_parser().parse_args(console_c["args"])
    assert args.host == "127.0.0.1" and args.trusted_proxy == ["127.0.0.1"]
    assert args.review and args.users_file is None and args.agent_key_file is not None
    proxy_args = dict(a.removeprefix("--").split("=", 1) for a in proxy_c["args"])
    assert proxy_args["upstream"] == f"http://127.0.0.1:{args.port}/"
    assert proxy_args["pass-user-headers"] == "true"
    assert proxy_args["cookie-secure"] == "true"
    # The Service reaches the proxy only, never the console's port.
    service = one(console, "Service")
    assert [port_number(proxy_c, p["targetPort"]) for p in service["spec"]["ports"]] == [4180]
    assert not console_c.get("ports")
    assert service["spec"]["selector"].items() <= pod_labels(one(console, "Deployment")).items()
    # The roles file is mounted where the console reads it, and parses.
    mounts = {m["mountPath"]: m["name"] for m in console_c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    roles_file = args.proxy_roles_file
    config_map = volumes[mounts[str(roles_file.parent)]]["configMap"]["name"]
    [roles_cm] = [d for d in console if d["kind"] == "ConfigMap"]
    assert roles_cm["metadata"]["name"] == config_map
    (tmp_path / roles_file.name).write_text(roles_cm["data"][roles_file.name])
    roles = RoleMap.from_file(tmp_path / roles_file.name)
    assert roles.identity("u", "", "support-agents") is not None
    assert "secret" in volumes[mounts[str(args.agent_key_file.parent)]]
    # Secrets by reference; the worker's settings by the generated ConfigMap's real name.
    for env in proxy_c["env"]:
        assert "secretKeyRef" in env["valueFrom"], env["name"]
    names = {d["metadata"]["name"] for d in of_kind(docs, "ConfigMap")}
    assert {e["configMapRef"]["name"] for e in console_c["envFrom"]} <= names


def pod_labels(deployment: Doc) -> dict[str, str]:
    labels: dict[str, str] = deployment["spec"]["template"]["metadata"]["labels"]
    return labels
