"""deploy/compose.yaml and its config files, checked offline (no Docker engine here).

First the Compose Specification's own JSON schema (vendored from compose-spec/compose-go,
see compose-spec/SOURCE.md), then what a schema cannot see: services that depend on
services that exist, in a state they can reach; mounts of files that exist; a worker that
`--scale worker=3` can run three times, each replica with its own transactional.id (built
with the worker's own settings class, as the container would); a topics job that the real
CLI parser accepts; Prometheus finding every replica on the port the worker serves; Grafana
provisioned with that Prometheus and the repository's dashboards. Each check returns its
findings, and ``test_each_check_catches_a_broken_compose`` runs it on broken copies.
"""

from __future__ import annotations

import copy
import fnmatch
import hashlib
import json
import re
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import jsonschema
import pytest
import yaml

from tests.conftest import REPO
from tests.unit.deploy.test_images import (
    Dockerfile,
    parse_dockerfile,
    pin_problem,
    worker_env,
)

DEPLOY = REPO / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
SCHEMA = Path(__file__).parent / "compose-spec" / "compose-spec.json"
WORKER = "worker"
TOPICS_INIT = "topics-init"
# Two container ids, as compose names replicas' hosts: what each replica sees as hostname.
REPLICA_HOSTNAMES = ("3f2a1b0c9d8e", "7c6d5e4f3a2b")


# --- reading the file the way compose does ---------------------------------------------

_INTERPOLATION = re.compile(r"\$(?:(\$)|\{(\w+)(?:(:?[-?])([^}]*))?\}|(\w+))")


def interpolate(value: str, env: dict[str, str] | None = None) -> str:
    """Compose's interpolation with an empty environment unless given: defaults apply."""
    env = env or {}

    def one(m: re.Match[str]) -> str:
        if m.group(1):
            return "$"
        name = m.group(2) or m.group(5)
        op, word = m.group(3), m.group(4)
        value = env.get(name)
        if (op in (":-", ":?") and not value) or (op in ("-", "?") and value is None):
            if op.endswith("?"):
                raise ValueError(f"{name} is required: {word}")
            return word
        return value or ""

    return _INTERPOLATION.sub(one, value)


@dataclass(frozen=True)
class Mount:
    source: str  # interpolated, as written (relative to deploy/ for a bind mount)
    target: str
    read_only: bool

    @property
    def is_bind(self) -> bool:
        return self.source.startswith((".", "/", "~"))

    def host_path(self) -> Path:
        return (DEPLOY / self.source).resolve()


def mounts(service: dict[str, Any]) -> list[Mount]:
    found = []
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            parts = interpolate(volume).split(":")
            mode = parts[2] if len(parts) > 2 else "rw"
            found.append(Mount(parts[0], parts[1], "ro" in mode.split(",")))
        else:
            found.append(
                Mount(
                    interpolate(volume.get("source", "")),
                    volume["target"],
                    bool(volume.get("read_only")),
                )
            )
    return found


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {k: interpolate(str(v)) for k, v in env.items() if v is not None}


def depends_on(service: dict[str, Any]) -> dict[str, str]:
    """Service -> condition (service_started for the short syntax)."""
    deps = service.get("depends_on", {})
    if isinstance(deps, list):
        return dict.fromkeys(deps, "service_started")
    return {name: spec.get("condition", "service_started") for name, spec in deps.items()}


def argv(value: str | list[str] | None) -> list[str]:
    if value is None:
        return []
    return value.split() if isinstance(value, str) else [interpolate(str(v)) for v in value]


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(us|ms|s|m|h)")
_UNIT = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def seconds(duration: str) -> float:
    parts = _DURATION.findall(duration)
    if not parts or "".join(n + u for n, u in parts) != duration:
        raise ValueError(f"not a compose duration: {duration!r}")
    return sum(float(n) * _UNIT[u] for n, u in parts)


@dataclass
class Repo:
    """Host files as the checks see them; a broken copy overrides some of them."""

    overrides: dict[Path, Any] = field(default_factory=dict)

    def yaml(self, path: Path) -> Any:
        if path in self.overrides:
            return self.overrides[path]
        return yaml.safe_load(path.read_text())


def dockerfile_of(service: dict[str, Any]) -> Dockerfile | None:
    build = service.get("build")
    if build is None:
        return None
    if isinstance(build, str):
        build = {"context": build}
    context = (DEPLOY / build["context"]).resolve()
    return parse_dockerfile(context / build.get("dockerfile", "Dockerfile"))


def container_env(service: dict[str, Any]) -> dict[str, str]:
    """What a replica's process sees: the image's ENV, then the service's environment."""
    image = dockerfile_of(service)
    return {**(image.final.env if image else {}), **environment(service)}


def entry_argv(service: dict[str, Any]) -> list[str]:
    """The process a container runs: entrypoint + command, the image's where not set."""
    image = dockerfile_of(service)

    def from_image(keyword: str) -> list[str]:
        found = image.final.all_instructions(keyword) if image else []
        return (found[-1].exec_form() or []) if found else []

    entry = argv(service.get("entrypoint")) or from_image("ENTRYPOINT")
    command = service.get("command")
    return entry + (argv(command) if command is not None else from_image("CMD"))


def load_compose() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return doc


# --- the checks: each returns its findings ----------------------------------------------


def check_schema(doc: dict[str, Any], repo: Repo) -> list[str]:
    schema = json.loads(SCHEMA.read_text())
    validator = jsonschema.Draft202012Validator(schema)
    return [
        f"{'.'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}"
        for e in validator.iter_errors(doc)
    ]


def check_depends_on(doc: dict[str, Any], repo: Repo) -> list[str]:
    services = doc["services"]
    found = []
    for name, service in services.items():
        for dep, condition in depends_on(service).items():
            if dep not in services:
                found.append(f"{name} depends on {dep}, which is no service")
                continue
            target = services[dep]
            if condition == "service_healthy":
                image = dockerfile_of(target)
                own = "healthcheck" in target and not target["healthcheck"].get("disable")
                from_image = bool(image and image.final.all_instructions("HEALTHCHECK"))
                if not (own or from_image):
                    found.append(f"{name} waits for {dep} to be healthy; it has no healthcheck")
            restarts = target.get("restart", "no") not in ("no", "on-failure")
            if condition == "service_completed_successfully" and restarts:
                found.append(f"{name} waits for {dep} to complete; it restarts for ever")
    return found


def check_mounts(doc: dict[str, Any], repo: Repo) -> list[str]:
    """Every bind mount is of a file or directory of the repository, read-only; the model
    artifact (models/, made by the trainer or make demo, not in git) is the one exception
    to "exists", and it must sit under models/."""
    found = []
    models = (REPO / "models").resolve()
    for name, service in doc["services"].items():
        model_path = container_env(service).get("SUPPORT_WORKER_MODEL__PATH")
        for mount in mounts(service):
            if not mount.is_bind:
                continue
            host = mount.host_path()
            where = f"{name}: {mount.source} -> {mount.target}"
            if not mount.read_only:
                found.append(f"{where} is writable")
            if mount.target == model_path:
                if not host.is_relative_to(models):
                    found.append(f"{where}: the model's default is not under models/")
                continue
            if not host.is_relative_to(REPO):
                found.append(f"{where} is outside the repository")
            elif not host.exists():
                found.append(f"{where}: {host.relative_to(REPO)} does not exist")
    return found


def check_scalable_worker(doc: dict[str, Any], repo: Repo) -> list[str]:
    """`--scale worker=N`: nothing fixed per container, and N distinct transactional ids."""
    from worker.settings import WorkerSettings

    service = doc["services"][WORKER]
    found = [f"worker: {key} is fixed" for key in ("container_name", "hostname") if key in service]
    found += [f"worker: publishes {port}" for port in service.get("ports", [])]
    env = container_env(service)
    for name in ("SUPPORT_WORKER_TRANSACTIONAL_ID", "SUPPORT_WORKER_GROUP_INSTANCE_ID"):
        if name in environment(service):
            found.append(f"worker: {name} is set once for every replica")
    ids, members = set(), set()
    for hostname in REPLICA_HOSTNAMES:
        with worker_env(env), mock.patch.object(socket, "gethostname", return_value=hostname):
            settings = WorkerSettings()
        ids.add(settings.transactional_id)
        members.add(settings.group_instance_id)
        if hostname not in settings.transactional_id:
            found.append(f"worker: transactional.id {settings.transactional_id} is not per host")
    if len(ids) != len(REPLICA_HOSTNAMES):
        found.append(f"worker: replicas share the transactional.id {ids}")
    if members != {None} and len(members) != len(REPLICA_HOSTNAMES):
        found.append(f"worker: replicas share the group.instance.id {members}")
    with worker_env(env):
        grace = WorkerSettings().shutdown_grace_s
    stop = seconds(service.get("stop_grace_period", "10s"))
    if stop <= grace:
        found.append(f"worker: stop_grace_period {stop} s <= the drain's {grace} s")
    return found


def _advertised(kafka: dict[str, Any]) -> set[str]:
    listeners = environment(kafka).get("KAFKA_ADVERTISED_LISTENERS", "")
    return {item.partition("://")[2] for item in listeners.split(",") if item}


def check_kafka(doc: dict[str, Any], repo: Repo) -> list[str]:
    kafka = doc["services"].get("kafka")
    if kafka is None:
        return ["no kafka service"]
    env = environment(kafka)
    found = []
    if not kafka["image"].startswith("apache/kafka:") or pin_problem(kafka["image"]):
        found.append(f"kafka: {kafka['image']} is not a pinned apache/kafka")
    if set(env.get("KAFKA_PROCESS_ROLES", "").split(",")) != {"broker", "controller"}:
        found.append("kafka: not a combined KRaft broker+controller")
    if any("ZOOKEEPER" in key for key in env):
        found.append("kafka: ZooKeeper settings in a KRaft broker")
    if "healthcheck" not in kafka:
        found.append("kafka: no healthcheck")
    else:
        probe = " ".join(argv(kafka["healthcheck"]["test"]))
        if not any(address in probe for address in _advertised(kafka)):
            found.append("kafka: the healthcheck asks no advertised listener")
    for name, service in doc["services"].items():
        bootstrap = container_env(service).get("KAFKA_BOOTSTRAP_SERVERS")
        if name == "kafka" or bootstrap is None:
            continue
        for address in bootstrap.split(","):
            host = address.rsplit(":", 1)[0]
            if address not in _advertised(kafka) or host != "kafka":
                found.append(f"{name}: {address} is not the broker's in-network listener")
    return found


def check_topics_init(doc: dict[str, Any], repo: Repo) -> list[str]:
    from worker.cli import build_parser

    services = doc["services"]
    job = services.get(TOPICS_INIT)
    if job is None:
        return ["no topics-init service"]
    found = []
    command = entry_argv(job)
    if command[:1] != ["support-worker"]:
        return [f"topics-init runs {command}, not support-worker"]
    args = build_parser().parse_args(command[1:])
    if (args.command, getattr(args, "topics_command", None)) != ("topics", "apply"):
        found.append(f"topics-init runs {command}, not topics apply")
    topics_mounts = {m.target for m in mounts(job) if m.host_path() == DEPLOY / "topics.yaml"}
    if str(getattr(args, "file", "")) not in topics_mounts:
        found.append(f"topics-init: --file {args.file} is not deploy/topics.yaml's mount")
    if getattr(args, "replication_factor", None) != 1:
        found.append("topics-init: a one-broker cluster needs --replication-factor 1")
    if depends_on(job).get("kafka") != "service_healthy":
        found.append("topics-init does not wait for a healthy kafka")
    if depends_on(services[WORKER]).get(TOPICS_INIT) != "service_completed_successfully":
        found.append("the worker does not wait for topics-init to complete")
    if entry_argv(services[WORKER])[:2] != ["support-worker", "run"]:
        found.append(f"the worker runs {entry_argv(services[WORKER])}")
    return found


def check_images(doc: dict[str, Any], repo: Repo) -> list[str]:
    found = []
    for name, service in doc["services"].items():
        image = service.get("image")
        if "build" in service:
            _, _, tag = (image or "").rpartition(":")
            if not image or tag in ("", "latest") or "/" in tag:
                found.append(f"{name}: a built image needs a versioned name, not {image}")
            dockerfile_of(service)  # parses, or raises naming the file
        elif image is None or pin_problem(image):
            found.append(f"{name}: {image} is not pinned")
    return found


def _host_of(service: dict[str, Any], target: str) -> Path | None:
    hits = [m.host_path() for m in mounts(service) if m.target == target]
    return hits[0] if hits else None


def _worker_port(doc: dict[str, Any]) -> int:
    return int(container_env(doc["services"][WORKER]).get("SUPPORT_WORKER_ADMIN_PORT", "9400"))


def check_prometheus(doc: dict[str, Any], repo: Repo) -> list[str]:
    service = doc["services"]["prometheus"]
    flags = dict(a.partition("=")[::2] for a in argv(service.get("command")) if "=" in a)
    config_path = _host_of(service, flags.get("--config.file", "/etc/prometheus/prometheus.yml"))
    if config_path is None:
        return ["prometheus: its --config.file is not mounted"]
    config = repo.yaml(config_path)
    found = []
    port = _worker_port(doc)
    if str(port) not in map(str, doc["services"][WORKER].get("expose", [])):
        found.append(f"worker: the admin port {port} is not exposed")
    jobs = [
        sd
        for job in config.get("scrape_configs", [])
        if job.get("metrics_path", "/metrics") == "/metrics"
        for sd in job.get("dns_sd_configs", [])
        if WORKER in sd.get("names", [])
    ]
    if not jobs:
        found.append("prometheus: no DNS discovery of the worker service (every replica)")
    for sd in jobs:
        if sd.get("type", "SRV") != "A" or sd.get("port") != port:
            found.append(f"prometheus: worker discovery {sd} is not type A on port {port}")
    targets = {m.target: m.host_path() for m in mounts(service)}
    rule_files = config.get("rule_files", [])
    alerts = DEPLOY / "monitoring" / "alerts.yaml"
    loaded = [t for t, host in targets.items() if host == alerts]
    if not loaded or not any(fnmatch.fnmatch(loaded[0], glob) for glob in rule_files):
        found.append("prometheus: deploy/monitoring/alerts.yaml is not loaded by rule_files")
    elif not alerts.is_file():
        found.append("prometheus: deploy/monitoring/alerts.yaml does not exist")
    elif not isinstance(repo.yaml(alerts).get("groups"), list):
        found.append("deploy/monitoring/alerts.yaml has no rule groups")
    return found


def _dashboard_datasources(node: Any) -> Iterator[Any]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "datasource":
                yield value
            else:
                yield from _dashboard_datasources(value)
    elif isinstance(node, list):
        for item in node:
            yield from _dashboard_datasources(item)


def check_grafana(doc: dict[str, Any], repo: Repo) -> list[str]:
    service = doc["services"]["grafana"]
    provisioning = _host_of(service, "/etc/grafana/provisioning")
    if provisioning is None or not provisioning.is_dir():
        return ["grafana: no provisioning directory mounted at /etc/grafana/provisioning"]
    found = []
    prometheus = doc["services"]["prometheus"]
    published = [str(p).rsplit(":", 1)[-1] for p in prometheus.get("ports", [])]
    sources = [
        source
        for path in sorted((provisioning / "datasources").glob("*.y*ml"))
        for source in repo.yaml(path).get("datasources", [])
    ]
    proms = [s for s in sources if s.get("type") == "prometheus"]
    if not proms:
        found.append("grafana: no Prometheus datasource provisioned")
    for source in proms:
        url = source.get("url", "")
        if url not in {f"http://prometheus:{p}" for p in published or ["9090"]}:
            found.append(f"grafana: the datasource {url} is not the prometheus service")
    providers = [
        provider
        for path in sorted((provisioning / "dashboards").glob("*.y*ml"))
        for provider in repo.yaml(path).get("providers", [])
    ]
    if not providers:
        found.append("grafana: no dashboard provider")
    for provider in providers:
        inside = provider.get("options", {}).get("path", "")
        host = _host_of(service, inside)
        if host is None or not host.is_dir():
            found.append(f"grafana: the provider's {inside} is no mounted directory")
            continue
        dashboards = sorted(host.glob("*.json"))
        if not dashboards:
            found.append(f"grafana: {host.relative_to(REPO)} holds no dashboard")
        for path in dashboards:
            found += _dashboard_problems(path, repo, proms)
    return found


def _dashboard_problems(path: Path, repo: Repo, sources: list[dict[str, Any]]) -> list[str]:
    """Every Prometheus query of the dashboard reaches a provisioned datasource: by its uid,
    or through a datasource variable whose type one of them has."""
    dashboard = repo.overrides.get(path) or json.loads(path.read_text())
    name = path.relative_to(REPO)
    if "__inputs" in dashboard:
        return [f"{name}: an export 'for sharing' (__inputs): file provisioning cannot fill it"]
    uids = {s.get("uid") for s in sources}
    types = {s.get("type") for s in sources}
    variables = {
        v.get("name"): v.get("query")
        for v in dashboard.get("templating", {}).get("list", [])
        if v.get("type") == "datasource"
    }
    found = []
    for ref in _dashboard_datasources(dashboard):
        uid = ref.get("uid") if isinstance(ref, dict) else ref
        if uid is None or (isinstance(ref, dict) and ref.get("type") not in (None, "prometheus")):
            continue  # the panel default, or Grafana's own (annotations, -- Grafana --)
        variable = re.fullmatch(r"\$\{?(\w+)\}?", str(uid))
        if variable is None:
            if uid not in uids:
                found.append(f"{name}: datasource uid {uid!r} is not provisioned")
        elif variable.group(1) not in variables:
            found.append(f"{name}: datasource {uid} is no datasource variable")
        elif variables[variable.group(1)] not in types:
            found.append(f"{name}: {uid} picks a {variables[variable.group(1)]} datasource")
    return sorted(set(found))


CHECKS: list[Callable[[dict[str, Any], Repo], list[str]]] = [
    check_schema,
    check_depends_on,
    check_mounts,
    check_scalable_worker,
    check_kafka,
    check_topics_init,
    check_images,
    check_prometheus,
    check_grafana,
]


# --- the real file ------------------------------------------------------------------------


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
def test_the_compose_file(check: Callable[[dict[str, Any], Repo], list[str]]) -> None:
    assert check(load_compose(), Repo()) == []


def test_the_header_says_it_was_not_started_here() -> None:
    header = COMPOSE.read_text().split("\nservices:")[0]
    assert "NOT started here" in header
    assert "Docker engine" in header


def git_blob_id(path: Path) -> str:
    data = path.read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def test_the_vendored_schema_is_the_recorded_upstream_file() -> None:
    """SOURCE.md's blob ids are git's for the upstream files: the copy is unedited."""
    source = (SCHEMA.parent / "SOURCE.md").read_text()
    for path in (SCHEMA, SCHEMA.parent / "LICENSE"):
        assert f"{path.name} `{git_blob_id(path)}`" in source, f"{path.name} differs"
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)


# --- broken copies: each check must object -------------------------------------------------

PROMETHEUS_YML = DEPLOY / "compose" / "prometheus.yml"
DATASOURCE = DEPLOY / "compose" / "grafana" / "provisioning" / "datasources" / "prometheus.yaml"
PROVIDER = DEPLOY / "compose" / "grafana" / "provisioning" / "dashboards" / "support-router.yaml"
DASHBOARD = DEPLOY / "monitoring" / "grafana" / "support-router.json"


def _retype_datasource_variables(path: Path, kind: str) -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(path.read_text())
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") == "datasource":
            variable["query"] = kind
    return dashboard


def _set(doc: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    node = doc
    for key in parents:
        node = node[key]
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value


_DELETE = object()


def _replace_in_list(doc: dict[str, Any], path: str, old: str, new: str) -> None:
    node: Any = doc
    for key in path.split("."):
        node = node[key]
    assert old in node, f"{old!r} is no longer in {path}"
    node[node.index(old)] = new


def _yaml_edit(path: Path, edit: Callable[[Any], None]) -> dict[Path, Any]:
    data = yaml.safe_load(path.read_text())
    edit(data)
    return {path: data}


def _sd(config: Any) -> dict[str, Any]:
    sd: dict[str, Any] = config["scrape_configs"][0]["dns_sd_configs"][0]
    return sd


@dataclass(frozen=True)
class Broken:
    id: str
    check: Callable[[dict[str, Any], Repo], list[str]]
    edit: Callable[[dict[str, Any]], None] = lambda doc: None
    files: Callable[[], dict[Path, Any]] = dict


BROKEN = [
    Broken("schema-typo", check_schema, lambda d: _set(d, "services.worker.depend_on", [])),
    Broken("schema-type", check_schema, lambda d: _set(d, "services.worker.expose", "9400")),
    Broken(
        "schema-condition",
        check_schema,
        lambda d: _set(d, "services.worker.depends_on.kafka.condition", "healthy"),
    ),
    Broken(
        "depends-on-missing",
        check_depends_on,
        lambda d: _set(d, "services.prometheus.depends_on", ["workers"]),
    ),
    Broken(
        "healthy-without-healthcheck",
        check_depends_on,
        lambda d: _set(d, "services.kafka.healthcheck", _DELETE),
    ),
    Broken(
        "job-that-restarts",
        check_depends_on,
        lambda d: _set(d, "services.topics-init.restart", "unless-stopped"),
    ),
    Broken(
        "mount-missing",
        check_mounts,
        lambda d: _replace_in_list(
            d,
            "services.topics-init.volumes",
            "./topics.yaml:/deploy/topics.yaml:ro",
            "./topic.yaml:/deploy/topics.yaml:ro",
        ),
    ),
    Broken(
        "mount-writable",
        check_mounts,
        lambda d: _replace_in_list(
            d,
            "services.prometheus.volumes",
            "./compose/prometheus.yml:/etc/prometheus/prometheus.yml:ro",
            "./compose/prometheus.yml:/etc/prometheus/prometheus.yml",
        ),
    ),
    Broken(
        "model-outside-models",
        check_mounts,
        lambda d: _replace_in_list(
            d,
            "services.worker.volumes",
            "${SUPPORT_ROUTER_MODEL_DIR:-../models/current}:/models/current:ro",
            "${SUPPORT_ROUTER_MODEL_DIR:-../runs/model}:/models/current:ro",
        ),
    ),
    Broken(
        "container-name",
        check_scalable_worker,
        lambda d: _set(d, "services.worker.container_name", "support-router-worker"),
    ),
    Broken(
        "host-port",
        check_scalable_worker,
        lambda d: _set(d, "services.worker.ports", ["9400:9400"]),
    ),
    Broken(
        "hostname", check_scalable_worker, lambda d: _set(d, "services.worker.hostname", "worker")
    ),
    Broken(
        "one-transactional-id",
        check_scalable_worker,
        lambda d: _set(
            d, "services.worker.environment.SUPPORT_WORKER_TRANSACTIONAL_ID", "support-router-1"
        ),
    ),
    Broken(
        "one-instance-id",
        check_scalable_worker,
        lambda d: _set(d, "services.worker.environment.SUPPORT_WORKER_GROUP_INSTANCE_ID", "w"),
    ),
    Broken(
        "short-grace",
        check_scalable_worker,
        lambda d: _set(d, "services.worker.stop_grace_period", "10s"),
    ),
    Broken("kafka-latest", check_kafka, lambda d: _set(d, "services.kafka.image", "apache/kafka")),
    Broken(
        "zookeeper-mode",
        check_kafka,
        lambda d: _set(d, "services.kafka.environment.KAFKA_PROCESS_ROLES", "broker"),
    ),
    Broken(
        "host-listener-for-containers",
        check_kafka,
        lambda d: _set(d, "services.worker.environment.KAFKA_BOOTSTRAP_SERVERS", "kafka:9092"),
    ),
    Broken(
        "topics-file-not-mounted",
        check_topics_init,
        lambda d: _replace_in_list(
            d, "services.topics-init.command", "/deploy/topics.yaml", "/topics.yaml"
        ),
    ),
    Broken(
        "topics-rf-3",
        check_topics_init,
        lambda d: _replace_in_list(d, "services.topics-init.command", "1", "3"),
    ),
    Broken(
        "worker-does-not-wait",
        check_topics_init,
        lambda d: _set(d, "services.worker.depends_on.topics-init", _DELETE),
    ),
    Broken(
        "image-latest", check_images, lambda d: _set(d, "services.grafana.image", "grafana/grafana")
    ),
    Broken(
        "built-image-latest",
        check_images,
        lambda d: _set(d, "services.worker.image", "support-router/worker-cpu:latest"),
    ),
    Broken(
        "prometheus-one-target",
        check_prometheus,
        files=lambda: _yaml_edit(PROMETHEUS_YML, lambda c: _sd(c).update(names=["workers"])),
    ),
    Broken(
        "prometheus-wrong-port",
        check_prometheus,
        files=lambda: _yaml_edit(PROMETHEUS_YML, lambda c: _sd(c).update(port=9090)),
    ),
    Broken(
        "prometheus-no-rules",
        check_prometheus,
        files=lambda: _yaml_edit(PROMETHEUS_YML, lambda c: c.update(rule_files=["/rules/*.yml"])),
    ),
    Broken(
        "admin-port-not-exposed",
        check_prometheus,
        lambda d: _set(d, "services.worker.expose", ["9500"]),
    ),
    Broken(
        "grafana-wrong-url",
        check_grafana,
        files=lambda: _yaml_edit(
            DATASOURCE, lambda c: c["datasources"][0].update(url="http://localhost:9090")
        ),
    ),
    Broken(
        "grafana-provider-path",
        check_grafana,
        files=lambda: _yaml_edit(
            PROVIDER, lambda c: c["providers"][0]["options"].update(path="/var/lib/grafana/x")
        ),
    ),
    Broken(
        "grafana-dashboard-datasource",
        check_grafana,
        files=lambda: {DASHBOARD: _retype_datasource_variables(DASHBOARD, "loki")},
    ),
    Broken(
        "grafana-provider-dir-empty",
        check_grafana,
        lambda d: _replace_in_list(
            d,
            "services.grafana.volumes",
            "./monitoring/grafana:/var/lib/grafana/dashboards/support-router:ro",
            "./compose:/var/lib/grafana/dashboards/support-router:ro",
        ),
    ),
]


@pytest.mark.parametrize("broken", BROKEN, ids=lambda b: b.id)
def test_each_check_catches_a_broken_compose(broken: Broken) -> None:
    doc = load_compose()
    assert broken.check(doc, Repo()) == []
    broken_doc = copy.deepcopy(doc)
    broken.edit(broken_doc)
    found = broken.check(broken_doc, Repo(broken.files()))
    assert found, f"{broken.check.__name__} missed {broken.id}"


def test_the_dashboard_check_catches_an_unprovisioned_datasource() -> None:
    sources = [{"type": "prometheus", "uid": "prometheus"}]
    path = DEPLOY / "monitoring" / "grafana" / "broken.json"  # read from the override only
    panel = {"datasource": {"type": "prometheus", "uid": "DS_PROM"}}
    assert _dashboard_problems(path, Repo({path: {"panels": [panel]}}), sources)
    shared = {"__inputs": [{"name": "DS_PROMETHEUS"}], "panels": []}
    assert _dashboard_problems(path, Repo({path: shared}), sources)
    unknown = {"panels": [{"datasource": {"type": "prometheus", "uid": "${ds}"}}]}
    assert _dashboard_problems(path, Repo({path: unknown}), sources)
    variable = {**unknown, "templating": {"list": [{"name": "ds", "type": "datasource"}]}}
    variable["templating"]["list"][0]["query"] = "prometheus"
    assert _dashboard_problems(path, Repo({path: variable}), sources) == []


def test_interpolation_and_durations_read_like_compose() -> None:
    assert interpolate("${A:-x}") == "x"
    assert interpolate("${A:-x}", {"A": "y"}) == "y"
    assert interpolate("${A-x}", {"A": ""}) == ""
    assert interpolate("$$HOSTNAME") == "$HOSTNAME"
    with pytest.raises(ValueError, match="required"):
        interpolate("${A:?set A}")
    assert seconds("1m30s") == 90
    with pytest.raises(ValueError):
        seconds("45")
