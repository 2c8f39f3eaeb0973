"""Where Tuneline's services live: one ``Settings`` object, read from the environment.

Every field can be set with a ``TUNELINE_``-prefixed environment variable or in a ``.env`` file.
The local stack writes the credentials it generates to ``<home>/stack.env``, which is read too (the
home ``TUNELINE_HOME`` or ``.env`` names, else ``.tuneline``), so that ``tuneline stack up`` followed
by any command with the same home needs no exports. Pointing Tuneline at AWS S3,
a remote MLflow or Prefect Cloud is a matter of these variables, never of code.
"""

from __future__ import annotations

import json
import os
from functools import cached_property
from pathlib import Path
from typing import Literal

from dotenv import dotenv_values
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

__all__ = ["Settings", "get_settings"]

_DEFAULT_HOME = Path(".tuneline")
_DOTENV = ".env"


def _stack_env_of_home() -> Path:
    """``<home>/stack.env`` of the home the environment (or ``.env``) names, else the default home's:
    with ``TUNELINE_HOME=/data/tl tuneline stack up`` the credentials land in /data/tl/stack.env,
    and a later command with the same TUNELINE_HOME must read them there."""
    home = os.environ.get("TUNELINE_HOME") or dotenv_values(_DOTENV).get("TUNELINE_HOME") or _DEFAULT_HOME
    return Path(home) / "stack.env"


# A local service's URL follows its port when only the port is set (see Settings._urls_follow_ports).
_URL_OF_PORT = (
    ("s3_endpoint_url", "s3_port", "http://127.0.0.1:{}"),
    ("mlflow_tracking_uri", "mlflow_port", "http://127.0.0.1:{}"),
    ("prefect_api_url", "prefect_port", "http://127.0.0.1:{}/api"),
)


class Settings(BaseSettings):
    """Endpoints, bucket, credentials and paths. Secrets are ``SecretStr`` and never logged."""

    model_config = SettingsConfigDict(
        env_prefix="TUNELINE_",
        env_file=(str(_DEFAULT_HOME / "stack.env"), _DOTENV),
        env_file_encoding="utf-8",
        extra="ignore",
    )

    home: Path = Field(
        default=_DEFAULT_HOME,
        description="Folder for the local stack's state, logs and data, and local caches.",
    )

    # --- S3 -------------------------------------------------------------------------------
    s3_endpoint_url: str | None = Field(
        default="http://127.0.0.1:8333",
        description="S3 endpoint; empty for AWS S3 itself.",
    )
    s3_bucket: str = Field(default="tuneline", description="Bucket for datasets, models, audit.")
    aws_region: str = Field(default="us-east-1")
    aws_access_key_id: SecretStr | None = Field(
        default=None, description="Unset to use the default AWS credential chain (profile, role)."
    )
    aws_secret_access_key: SecretStr | None = None
    audit_aws_access_key_id: SecretStr | None = Field(
        default=None,
        description="A second S3 identity for writes under audit/ (the local stack generates it): the "
        "pipeline's own key may not put or delete there. Unset: audit records use the pipeline's key.",
    )
    audit_aws_secret_access_key: SecretStr | None = None
    s3_server_side_encryption: Literal["AES256", "aws:kms", "aws:kms:dsse", "off"] | None = Field(
        default=None,
        description="Server-side encryption every S3 write requests: 'AES256' (SSE-S3), 'aws:kms', "
        "'aws:kms:dsse' or 'off'. Unset: AES256 on AWS S3 (no endpoint URL), off on a custom endpoint "
        "(SeaweedFS, MinIO), which may not implement it.",
    )
    s3_sse_kms_key_id: str | None = Field(
        default=None,
        description="KMS key (id, ARN or alias) for 'aws:kms' encryption; unset: the account's AWS-managed key.",
    )
    audit_retention_mode: Literal["GOVERNANCE", "COMPLIANCE"] = Field(
        default="GOVERNANCE",
        description="S3 Object Lock mode of every record written under audit/ when the bucket has Object "
        "Lock enabled (the local stack's and infra/terraform/aws's have): GOVERNANCE, which an identity "
        "with s3:BypassGovernanceRetention can lift, or COMPLIANCE, which nobody can until it expires.",
    )
    audit_retention_days: int = Field(
        default=365,
        ge=1,
        description="Days each audit record is locked from its write (with audit_retention_mode).",
    )

    # --- MLflow ---------------------------------------------------------------------------
    mlflow_tracking_uri: str = Field(default="http://127.0.0.1:5000")
    mlflow_username: str | None = None
    mlflow_password: SecretStr | None = None
    mlflow_auth: bool = Field(
        default=True,
        description="Run the local stack's MLflow server with basic auth (off only with "
        "`tuneline stack up --insecure`); the admin is mlflow_username (default 'admin') with "
        "mlflow_password, generated into stack.env on the first `stack up` when unset.",
    )

    # --- Prefect --------------------------------------------------------------------------
    prefect_api_url: str = Field(default="http://127.0.0.1:4200/api")
    prefect_api_auth_string: SecretStr | None = Field(
        default=None,
        description="'user:password' for a self-hosted Prefect server with basic auth (the local stack "
        "generates it into stack.env); sent as Prefect's PREFECT_API_AUTH_STRING.",
    )
    lifecycle_lock_timeout_s: float | None = Field(
        default=6 * 3600.0,
        description="How long a lifecycle run waits for another run of the same model to finish "
        "(one run per model at a time) before it fails; unset to wait without limit.",
    )

    # --- Notifications (Prefect automations: a run failed, a run waits for approval) -------
    notify_slack_webhook_url: SecretStr | None = Field(
        default=None,
        description="Slack incoming-webhook URL; notifications go to the log when no URL is set.",
    )
    notify_webhook_url: SecretStr | None = Field(
        default=None, description="Any HTTP endpoint that accepts a JSON POST (Teams, PagerDuty, your own)."
    )

    # --- Local stack ----------------------------------------------------------------------
    stack_insecure: bool = Field(
        default=False,
        description="The local stack without authentication (`tuneline stack up --insecure`): MLflow and "
        "Prefect open, SeaweedFS's filer and volume HTTP ports unsigned. Recorded in stack.env.",
    )
    s3_port: int = 8333
    weed_master_port: int = 9333
    weed_volume_port: int = 8080
    weed_filer_port: int = 8888
    # ``weed mini`` serves its admin API (and its gRPC twin on +10000) even with the UI off.
    weed_admin_port: int = 23646
    mlflow_port: int = 5000
    prefect_port: int = 4200

    # --- Retries --------------------------------------------------------------------------
    task_retry_delays_s: list[float] = Field(
        default=[5.0, 15.0, 45.0],
        description="Seconds before each retry of a stage task that failed on an outage (S3, MLflow); "
        "one retry per entry. With the clients' own retries, this is how long an outage a run rides out.",
    )

    # --- Bedrock --------------------------------------------------------------------------
    bedrock_region: str = Field(default="us-west-2")
    bedrock_endpoint_url: str | None = None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Only the default files follow the home: ``Settings(_env_file=...)`` (or None) is kept as given.
        if isinstance(dotenv_settings, DotEnvSettingsSource) and dotenv_settings.env_file == cls.model_config["env_file"]:
            dotenv_settings = DotEnvSettingsSource(settings_cls, env_file=(_stack_env_of_home(), _DOTENV))
        return init_settings, env_settings, dotenv_settings, file_secret_settings

    @model_validator(mode="before")
    @classmethod
    def _urls_follow_ports(cls, data: object) -> object:
        # `TUNELINE_PREFECT_PORT=4300 tuneline stack up` moves the server; every client of these
        # settings must then find it there, not at the default URL (unless that URL is given too).
        if isinstance(data, dict):
            for url, port, template in _URL_OF_PORT:
                if data.get(port) not in (None, "") and url not in data:
                    data = {**data, url: template.format(data[port])}
        return data

    @field_validator(
        "s3_endpoint_url",
        "bedrock_endpoint_url",
        "s3_server_side_encryption",
        "s3_sse_kms_key_id",
        mode="before",
    )
    @classmethod
    def _empty_means_none(cls, value: object) -> object:
        return None if value == "" else value

    @cached_property
    def prefect_ui_url(self) -> str:
        return self.prefect_api_url.removesuffix("/api")

    def secret_values(self) -> list[str]:
        """The secret strings in these settings, for scanners that prove none leaked."""
        secrets = [
            self.aws_secret_access_key,
            self.audit_aws_secret_access_key,
            self.mlflow_password,
            self.prefect_api_auth_string,
            self.notify_slack_webhook_url,
            self.notify_webhook_url,
        ]
        return [s.get_secret_value() for s in secrets if s is not None and s.get_secret_value()]

    def as_env(self) -> dict[str, str]:
        """These settings as the ``TUNELINE_*`` variables a child process (worker, flow run) reads.

        An unset field whose default is set becomes "" (an empty S3 endpoint means AWS itself);
        one whose default is unset too is left out. Secrets are included: pass the result only to
        a child process's environment, never to a log.
        """
        env: dict[str, str] = {}
        for name, field in type(self).model_fields.items():
            value = getattr(self, name)
            if value is None:
                if field.default is not None:
                    env[f"TUNELINE_{name.upper()}"] = ""
                continue
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            env[f"TUNELINE_{name.upper()}"] = (
                json.dumps(value) if isinstance(value, list | dict) else str(value)
            )
        return env

    def prefect_env(self) -> dict[str, str]:
        """Prefect's own variables for a child process (``prefect worker``, a flow run): the API URL,
        and its basic-auth string when one is set. Secret: for a child's environment, never a log."""
        env = {"PREFECT_API_URL": self.prefect_api_url}
        if self.prefect_api_auth_string is not None and self.prefect_api_auth_string.get_secret_value():
            env["PREFECT_API_AUTH_STRING"] = self.prefect_api_auth_string.get_secret_value()
        return env


def get_settings() -> Settings:
    """Read the settings now (not cached: tests and the stack change the environment)."""
    return Settings()
