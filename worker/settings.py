"""Process settings: one frozen object built from the environment and an optional file.

Env names live here and nowhere else: ``SUPPORT_WORKER_*`` with ``__`` between
nested fields (``SUPPORT_WORKER_KAFKA__BOOTSTRAP_SERVERS``), and the
ecosystem-wide ``KAFKA_BOOTSTRAP_SERVERS`` honoured as a fallback.
"""

from __future__ import annotations

import os
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "SUPPORT_WORKER_"
BOOTSTRAP_ENV = "KAFKA_BOOTSTRAP_SERVERS"
DEFAULT_BOOTSTRAP = "127.0.0.1:9092"


class KafkaSettings(BaseModel):
    """How to reach the cluster; ``client_config`` passes librdkafka options through."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    bootstrap_servers: str = Field(default="", description="host:port[,host:port...]")
    client_config: dict[str, str] = Field(
        default_factory=dict,
        description="librdkafka options for every client, e.g. security.protocol, sasl.mechanism",
    )
    sasl_password: SecretStr | None = Field(
        default=None, description="sasl.password, kept out of logs"
    )
    ssl_key_password: SecretStr | None = None
    admin_timeout_s: float = Field(default=15.0, gt=0)

    @model_validator(mode="after")
    def _fill_bootstrap(self) -> KafkaSettings:
        if not self.bootstrap_servers:
            object.__setattr__(
                self, "bootstrap_servers", os.environ.get(BOOTSTRAP_ENV) or DEFAULT_BOOTSTRAP
            )
        return self

    def librdkafka(self, **overrides: Any) -> dict[str, Any]:
        """The config dict for a confluent-kafka client, secrets revealed only here."""
        conf: dict[str, Any] = {"bootstrap.servers": self.bootstrap_servers}
        conf.update(self.client_config)
        if self.sasl_password is not None:
            conf["sasl.password"] = self.sasl_password.get_secret_value()
        if self.ssl_key_password is not None:
            conf["ssl.key.password"] = self.ssl_key_password.get_secret_value()
        conf.update(overrides)
        return conf


class KafkaOnlySettings(BaseSettings):
    """The settings a Kafka-only command (``topics apply``) needs."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", frozen=True, extra="ignore"
    )

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
