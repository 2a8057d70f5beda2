"""Process settings: one frozen object built from the environment and an optional file.

Env names live here and nowhere else: ``SUPPORT_WORKER_*`` with ``__`` between
nested fields (``SUPPORT_WORKER_KAFKA__BOOTSTRAP_SERVERS``), and the
ecosystem-wide ``KAFKA_BOOTSTRAP_SERVERS`` honoured as a fallback.
"""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SecretStr, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from schemas.artifact import ServedVariant
from schemas.messages import FallbackRoute, Route
from worker.routing import DEFAULT_MIN_ACTION_CONFIDENCE

ENV_PREFIX = "SUPPORT_WORKER_"
BOOTSTRAP_ENV = "KAFKA_BOOTSTRAP_SERVERS"
DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
REDACTED = "**********"
# Worker processes per host. Each needs host cores of its own (decode, tokenize, commit)
# and a CUDA context; far past a handful they only contend, so a larger value is a typo.
MAX_PROCESSES = 16
# librdkafka options whose values are credentials (sasl.password, ssl.key.password,
# ssl.key.pem, ssl.keystore.password, sasl.oauthbearer.client.secret, sasl.oauthbearer.config,
# sasl.jaas-style strings, ...). A name that merely looks like one is masked too: a
# masked harmless value costs nothing, a printed password costs a rotation.
SECRET_OPTION = re.compile(r"password|secret|token|credential|jaas|\.pem$|key$|oauthbearer\.config")


def is_secret(name: str) -> bool:
    """True for a setting or librdkafka option whose value must never reach a log."""
    return bool(SECRET_OPTION.search(name.lower()))


SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER", "GSSAPI"]


def read_secret_file(path: Path, setting: str) -> SecretStr:
    """A credential from a file (a mounted Kubernetes Secret), without its line ending.

    Errors name the setting and the path, never the content.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ValueError(f"{setting}: cannot read {path}: {why}") from None
    value = text.rstrip("\r\n")  # `kubectl create secret --from-file` keeps a final newline
    if not value:
        raise ValueError(f"{setting}: {path} is empty")
    return SecretStr(value)


class KafkaSettings(BaseModel):
    """How to reach the cluster; ``client_config`` passes librdkafka options through.

    A secured cluster (SASL_SSL with SCRAM, TLS verified against a CA) needs only the
    named fields, each its own env var, so a Kubernetes Secret can supply the password
    as a mounted file (``SASL_PASSWORD_FILE``) or a variable (``SASL_PASSWORD``) and the
    CA as a mounted file (``SSL_CA_LOCATION``). A named field wins over the same option
    in ``client_config``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    bootstrap_servers: str = Field(default="", description="host:port[,host:port...]")
    client_config: dict[str, str] = Field(
        default_factory=dict,
        description="librdkafka options for every client, e.g. security.protocol, sasl.mechanism",
    )
    security_protocol: SecurityProtocol | None = Field(
        default=None, description="security.protocol, e.g. SASL_SSL"
    )
    sasl_mechanism: SaslMechanism | None = Field(
        default=None, description="sasl.mechanism, e.g. SCRAM-SHA-512"
    )
    sasl_username: str | None = Field(default=None, description="sasl.username")
    sasl_password: SecretStr | None = Field(
        default=None, description="sasl.password, kept out of logs"
    )
    sasl_password_file: Path | None = Field(
        default=None,
        description="a file holding sasl.password (a mounted Secret; a final newline is "
        "ignored), read at start; instead of sasl_password",
    )
    ssl_ca_location: Path | None = Field(
        default=None,
        description="ssl.ca.location: the CA certificate(s), PEM, that the broker's "
        "certificate must chain to (default: the system's CAs)",
    )
    ssl_key_password: SecretStr | None = None
    admin_timeout_s: float = Field(default=15.0, gt=0)

    _sasl_password_from_file: SecretStr | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _fill_bootstrap(self) -> KafkaSettings:
        if not self.bootstrap_servers:
            object.__setattr__(
                self, "bootstrap_servers", os.environ.get(BOOTSTRAP_ENV) or DEFAULT_BOOTSTRAP
            )
        return self

    @model_validator(mode="after")
    def _read_secure_files(self) -> KafkaSettings:
        """Fail at start, naming the setting, instead of at the first connection."""
        if self.sasl_password_file is not None:
            if self.sasl_password is not None:
                raise ValueError(
                    "set kafka.sasl_password or kafka.sasl_password_file, not both "
                    f"({ENV_PREFIX}KAFKA__SASL_PASSWORD, {ENV_PREFIX}KAFKA__SASL_PASSWORD_FILE)"
                )
            self._sasl_password_from_file = read_secret_file(
                self.sasl_password_file, "kafka.sasl_password_file"
            )
        if self.ssl_ca_location is not None and not self.ssl_ca_location.exists():
            raise ValueError(f"kafka.ssl_ca_location: {self.ssl_ca_location} does not exist")
        return self

    def librdkafka(self, **overrides: Any) -> dict[str, Any]:
        """The config dict for a confluent-kafka client, secrets revealed only here."""
        conf: dict[str, Any] = {"bootstrap.servers": self.bootstrap_servers}
        conf.update(self.client_config)
        named = {
            "security.protocol": self.security_protocol,
            "sasl.mechanism": self.sasl_mechanism,
            "sasl.username": self.sasl_username,
            "ssl.ca.location": None if self.ssl_ca_location is None else str(self.ssl_ca_location),
        }
        conf.update({k: v for k, v in named.items() if v is not None})
        password = self.sasl_password
        if password is None:
            password = self._sasl_password_from_file
        if password is not None:
            conf["sasl.password"] = password.get_secret_value()
        if self.ssl_key_password is not None:
            conf["ssl.key.password"] = self.ssl_key_password.get_secret_value()
        conf.update(overrides)
        return conf

    def scrub(self, text: str) -> str:
        """``text`` with every credential these settings hold replaced by REDACTED.

        For text that did not come from us (a librdkafka or broker error message) before
        it reaches a log line or an error: whatever it echoes, no secret gets through.
        """
        secrets = {
            value
            for name, value in self.librdkafka().items()
            if is_secret(name) and isinstance(value, str) and value
        }
        for value in sorted(secrets, key=len, reverse=True):  # a longer one may contain another
            text = text.replace(value, REDACTED)
        return text


class KafkaOnlySettings(BaseSettings):
    """The settings a Kafka-only command (``topics apply``) needs."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        frozen=True,
        extra="ignore",
        hide_input_in_errors=True,  # as WorkerSettings: a bad value may be a password
    )

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)


class TopicNames(BaseModel):
    """The inbound topic, one per route (a field named as each of ROUTES), and the DLQ."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    inbound: str = "support.inbound"
    escalate: str = "support.escalate"
    auto_resolve: str = "support.auto_resolve"
    more_info: str = "support.more_info"
    dlq: str = "support.dlq"
    # The learning loop (docs/learning.md): queued for agents, their corrections, and a
    # candidate model's results in shadow.
    review: str = "support.review"
    feedback: str = "support.feedback"
    shadow: str = "support.shadow"

    def for_route(self, route: Route) -> str:
        return str(getattr(self, route))


class BatchingSettings(BaseModel):
    """The defaults fit a CPU; with ``model.device=cuda`` the ones left unset take
    GPU_BATCHING's (``WorkerSettings``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_batch_size: int = Field(default=64, ge=1, le=4096, description="CPU 64, cuda 512")
    max_batch_tokens: int = Field(
        default=4096, ge=1, description="sum of token lengths; CPU 4096, cuda 16384"
    )
    max_wait_ms: float = Field(default=25.0, ge=0)
    overlap: bool = Field(
        default=True,
        description="decode/tokenize the next batch and commit the last one while one is in "
        "the model",
    )


# On a GPU a MiniLM forward pass of 64 short messages is short beside the host's
# per-batch work, so the GPU batches are larger by default. 512 messages of
# the noisy test's ~20 tokens fill about 10k tokens; 16k leaves room for longer traffic.
GPU_BATCHING: dict[str, int] = {"max_batch_size": 512, "max_batch_tokens": 16_384}


class RoutingSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    min_action_confidence: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description=f"default: the artifact's ({DEFAULT_MIN_ACTION_CONFIDENCE} as in the notebook)",
    )
    # Never auto_resolve: the fallback takes what the model cannot vouch for.
    fallback_route: FallbackRoute = "more_info"
    escalate_on_high_urgency: float | None = Field(
        default=None, ge=0, le=1, description="urgency=high at this confidence escalates"
    )
    max_unfamiliarity: float | None = Field(
        default=None,
        gt=0,
        description="OOD score above which a message is 'unfamiliar' and goes to the fallback; "
        "default: the artifact's ood.threshold",
    )


class ReviewSettings(BaseModel):
    """The review queue (worker.review): which routed results agents should label first."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = Field(
        default=False, description="copy sampled results to topics.review (the topic must exist)"
    )
    random_share: float = Field(
        default=0.02,
        ge=0,
        le=1,
        description="share of confident results queued at random (drawn from a hash of the "
        "message_id): the unbiased sample of the model's accuracy",
    )
    max_per_minute: float = Field(
        default=30.0,
        gt=0,
        description="per worker process: the queue never outgrows the team that labels it",
    )
    diversity_window: int = Field(
        default=1000, ge=0, description="how many recently queued messages a new one is compared to"
    )
    max_hamming: int = Field(
        default=3,
        ge=0,
        le=64,
        description="a message whose token SimHash is this close to a recently queued one "
        "is a near-copy and is not queued again",
    )


class ShadowSettings(BaseModel):
    """A candidate model on live traffic, publishing only to topics.shadow."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    candidate: Path | None = Field(
        default=None,
        description="the candidate artifact; set, the worker runs in shadow: it consumes "
        "under group_id-shadow, runs the candidate and model.path (the serving model) on each "
        "batch, and writes the candidate's results to topics.shadow only",
    )


# The settings that once said how the model runs, beside model.variant: each is refused
# with the variant that does what it did (no silent alias).
RETIRED_MODEL_SETTINGS = ("backend", "dtype", "quantize", "autocast", "padding_free")
_PRECISIONS = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}


def variant_for_retired(old: dict[str, Any]) -> str:
    """The model.variant that runs as the retired settings in ``old`` said."""
    if old.get("backend") == "null":
        return "null"
    named = str(old.get("variant", "auto"))
    if named not in {"auto", "torch"}:
        return named  # the retired settings never applied to a variant named
    if named == "auto" and not set(old) & set(RETIRED_MODEL_SETTINGS[1:]):
        return "auto"  # backend=torch alone: the default
    padded = str(old.get("padding_free", True)).lower() in {"false", "0", "no", "off"}
    precision = (
        "int8"
        if old.get("quantize") == "int8"
        else _PRECISIONS.get(str(old.get("autocast"))) or _PRECISIONS.get(str(old.get("dtype")))
    )
    if precision is None:  # dtype auto: what the device served best
        precision = "bf16" if old.get("device") == "cuda" else "fp32"
    if precision == "bf16" and "autocast" not in old and old.get("device") == "cpu":
        precision = "bf16" if padded else "bf16-weights"  # torch-bf16 is autocast on a CPU
    return f"torch-{precision}{'-padded' if padded else ''}"


class ModelSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    path: Path = Path("models/current")
    variant: Literal["auto", "null"] | ServedVariant = Field(
        default="auto",
        description="how the model runs. auto: time the artifact's allowed variants that run "
        "here at startup and serve the fastest (the device's torch default if the artifact "
        "has no variant report); one variant by name: torch-fp32, torch-bf16, torch-fp16, "
        "torch-int8 (padding-free; each also -padded), torch-bf16-weights, ort-fp32, "
        "ort-int8-dynamic, ort-int8-static, ov-fp32, ov-bf16, ov-int8-static "
        "(worker.model.variants); null: fixed predictions, no model (framework benchmarks)",
    )
    autotune_seconds: float = Field(
        default=1.0,
        gt=0,
        le=30,
        description="how long autotune times each variant (an OpenVINO variant then runs 3x as "
        "long on distinct traffic-shaped batches, to prepare its kernels for their shapes)",
    )
    autotune_live: bool = Field(
        default=True,
        description="auto: keep the startup's best few variants and trial them on the "
        "worker's own full batches after a warm-up and now and then; switch to one that ran "
        "5% faster end to end (worker.model.tuner)",
    )
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int | None = Field(
        default=None,
        ge=1,
        description="CPU threads of the forward pass: torch's pool, ONNX Runtime's intra-op "
        "threads, OpenVINO's cores (default: the runtime's own, one per core)",
    )
    watch_s: float = Field(
        default=5.0,
        ge=0,
        description="how often to look whether model.path points to another version (a "
        "`current` link moved by `support-trainer promote`); a change, or SIGHUP, swaps the "
        "model between batches. 0: SIGHUP only",
    )
    failing_batches: int = Field(
        default=3,
        ge=1,
        description="circuit breaker: after this many batches in a row fail whole (and a probe "
        "message too), stop committing, leave the group and exit 4",
    )

    @model_validator(mode="before")
    @classmethod
    def _refuse_retired(cls, data: Any) -> Any:
        """One setting says how the model runs: the ones it replaced are refused, naming it."""
        if not isinstance(data, dict):
            return data
        old = [f"model.{k}" for k in RETIRED_MODEL_SETTINGS if k in data]
        if data.get("variant") == "torch":
            old.append("model.variant=torch")
        if old:
            raise ValueError(
                f"{' and '.join(old)} {'is' if len(old) == 1 else 'are'} retired: one setting, "
                f"{ENV_PREFIX}MODEL__VARIANT, says how the model runs; set "
                f"{ENV_PREFIX}MODEL__VARIANT={variant_for_retired(data)} instead"
            )
        return data


class WorkerSettings(BaseSettings):
    """Everything one worker process reads; frozen once built."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        frozen=True,
        extra="forbid",
        hide_input_in_errors=True,  # a bad value may be a password: errors never echo it
    )

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    topics: TopicNames = Field(default_factory=TopicNames)
    batching: BatchingSettings = Field(default_factory=BatchingSettings)
    routing: RoutingSettings = Field(default_factory=RoutingSettings)
    model: ModelSettings = Field(default_factory=ModelSettings)
    review: ReviewSettings = Field(default_factory=ReviewSettings)
    shadow: ShadowSettings = Field(default_factory=ShadowSettings)

    mode: Literal["exactly_once", "at_least_once"] = "exactly_once"
    group_id: str = "support-router"
    transactional_id: str = Field(
        default="", description="stable per replica; default support-router-<hostname>"
    )
    group_instance_id: str | None = Field(
        default=None, description="static membership, e.g. the pod name"
    )
    max_text_chars: int = Field(default=100_000, ge=1)
    max_poll_interval_ms: int = Field(default=300_000, ge=1000)
    session_timeout_ms: int = Field(default=45_000, ge=1000)
    transaction_timeout_ms: int = Field(default=60_000, ge=1000)
    commit_timeout_s: float = Field(default=30.0, gt=0)
    stall_after_s: float = Field(
        default=120.0,
        gt=0,
        description="a partition with records waiting whose committed offset has not moved "
        "for this long is stalled: support_partition_stalled, a partition_stalled line",
    )
    statistics_interval_ms: int = Field(default=5000, ge=0, description="0 disables lag metrics")
    admin_host: str = "127.0.0.1"
    admin_port: int = Field(default=9400, ge=0, le=65535, description="0 picks a free port")
    shutdown_grace_s: float = Field(default=30.0, gt=0)
    heartbeat_stale_s: float = Field(default=30.0, gt=0)
    log_text: bool = Field(default=False, description="log message text (off: privacy)")
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    processes: int = Field(
        default=1,
        ge=1,
        le=MAX_PROCESSES,
        description="worker processes on this host (e.g. per GPU); above 1, `run` supervises "
        "that many, process i with transactional_id-<i> and admin_port+i "
        "(worker.runtime.processes)",
    )
    process_index: int | None = Field(
        default=None,
        ge=0,
        description="set by the supervisor in each process it starts; tags its log lines",
    )

    @model_validator(mode="after")
    def _defaults(self) -> WorkerSettings:
        if self.shadow.candidate is not None:
            # Its own group, so it reads every message the serving group reads, and its own
            # transactional id, so it never fences a serving replica.
            object.__setattr__(self, "group_id", f"{self.group_id}-shadow")
            if self.transactional_id:
                object.__setattr__(self, "transactional_id", f"{self.transactional_id}-shadow")
        if not self.transactional_id:
            suffix = "-shadow" if self.shadow.candidate is not None else ""
            name = f"support-router-{socket.gethostname()}{suffix}"
            object.__setattr__(self, "transactional_id", name)
        if self.model.device == "cuda":
            unset = {
                k: v for k, v in GPU_BATCHING.items() if k not in self.batching.model_fields_set
            }
            object.__setattr__(self, "batching", self.batching.model_copy(update=unset))
        return self

    def redacted(self) -> dict[str, Any]:
        """The effective settings for the startup log, every credential masked.

        SecretStr fields dump as '**********' by themselves; librdkafka options passed
        through ``kafka.client_config`` (the usual way to set SASL and TLS) are plain
        strings, so their secret ones are masked here by name.
        """
        out = self.model_dump(mode="json")
        options = out["kafka"]["client_config"]
        out["kafka"]["client_config"] = {
            k: REDACTED if is_secret(k) else v for k, v in options.items()
        }
        return out


def load_settings(config_file: Path | None = None) -> WorkerSettings:
    """Environment over the optional TOML file over defaults."""
    if config_file is None:
        return WorkerSettings()
    if not config_file.exists():
        raise FileNotFoundError(f"config file not found: {config_file}")

    class FromFile(WorkerSettings):
        model_config = SettingsConfigDict(toml_file=config_file)

        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))

    return FromFile()
