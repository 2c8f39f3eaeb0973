"""MLflow tracking helpers against a real MLflow server (``stack_settings``)."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import mlflow
import pytest
from mlflow import MlflowClient
from pydantic import SecretStr

from tuneline.errors import ServiceUnavailableError
from tuneline.settings import Settings
from tuneline.storage.tracking import (
    REDACTED,
    BatchedMetricsLogger,
    MetricsLoggerClosedError,
    configure_mlflow,
    experiment_url,
    get_or_create_experiment,
    log_params_safe,
    model_version_url,
    run_url,
)

pytestmark = pytest.mark.service


class CountingClient(MlflowClient):
    """The real client, counting the ``log_batch`` HTTP calls it makes."""

    def __init__(self, tracking_uri: str) -> None:
        super().__init__(tracking_uri=tracking_uri)
        self.log_batch_calls: list[int] = []

    def log_batch(self, run_id: str, metrics: Sequence[Any] = (), *args: Any, **kwargs: Any) -> Any:
        self.log_batch_calls.append(len(metrics))
        return super().log_batch(run_id, metrics, *args, **kwargs)


@pytest.fixture
def client(stack_settings: Settings) -> CountingClient:
    configure_mlflow(stack_settings)
    return CountingClient(stack_settings.mlflow_tracking_uri)


@pytest.fixture
def run_id(client: CountingClient) -> Iterator[str]:
    experiment_id = get_or_create_experiment("tracking-tests", client)
    run = client.create_run(experiment_id)
    yield run.info.run_id
    client.set_terminated(run.info.run_id)


def _history(client: MlflowClient, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


def test_batched_logger_lands_every_metric_with_few_calls(client: CountingClient, run_id: str) -> None:
    steps = 200
    with BatchedMetricsLogger(client, run_id, flush_every=50, flush_seconds=30) as sink:
        for step in range(steps):
            sink.log_metrics({"train/loss": 1.0 / (step + 1), "train/lr": 0.001}, step=step)

    assert sum(client.log_batch_calls) == 2 * steps
    assert 1 <= len(client.log_batch_calls) <= (2 * steps) // 50 + 1
    assert sink.batches_sent == len(client.log_batch_calls) and sink.metrics_sent == 2 * steps
    assert _history(client, run_id, "train/loss") == [(s, 1.0 / (s + 1)) for s in range(steps)]
    assert len(_history(client, run_id, "train/lr")) == steps


def test_batches_respect_mlflows_1000_metric_limit(client: CountingClient, run_id: str) -> None:
    sink = BatchedMetricsLogger(client, run_id, flush_every=10_000, flush_seconds=60)
    for step in range(1200):
        sink.log_metrics({"loss": float(step)}, step=step)
    sink.close()
    assert client.log_batch_calls == [1000, 200]
    assert len(client.get_metric_history(run_id, "loss")) == 1200


def test_buffered_metrics_go_out_after_flush_seconds_without_flush(
    client: CountingClient, run_id: str
) -> None:
    sink = BatchedMetricsLogger(client, run_id, flush_every=1000, flush_seconds=0.2)
    try:
        sink.log_metrics({"eval/accuracy": 0.5}, step=3)
        deadline = time.monotonic() + 10
        while not client.get_metric_history(run_id, "eval/accuracy") and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _history(client, run_id, "eval/accuracy") == [(3, 0.5)]
    finally:
        sink.close()


def test_flush_waits_for_everything_logged_so_far(client: CountingClient, run_id: str) -> None:
    with BatchedMetricsLogger(client, run_id, flush_every=1000, flush_seconds=60) as sink:
        sink.log_metrics({"a": 1.0}, step=0)
        sink.flush()
        assert _history(client, run_id, "a") == [(0, 1.0)]


def test_lost_metrics_are_reported_not_swallowed(client: CountingClient) -> None:
    sink = BatchedMetricsLogger(client, uuid.uuid4().hex, flush_every=1000, flush_seconds=60)
    sink.log_metrics({"loss": 1.0, "lr": 0.1}, step=0)
    with pytest.raises(ServiceUnavailableError, match="2 metric"):
        sink.close()
    with pytest.raises(MetricsLoggerClosedError):
        sink.log_metrics({"loss": 0.5}, step=1)


def test_log_params_safe_redacts_secret_values_and_credential_names(
    client: CountingClient, run_id: str, stack_settings: Settings
) -> None:
    secret = stack_settings.aws_secret_access_key.get_secret_value()  # type: ignore[union-attr]
    logged = log_params_safe(
        client,
        run_id,
        {
            "learning_rate": 0.0002,
            "endpoint": f"http://user:{secret}@host",
            "hf_token": "hf_abcdef",
            "base_model": "tiny-llama",
        },
        secrets=stack_settings.secret_values(),
    )
    params = client.get_run(run_id).data.params
    assert params == logged
    assert params["learning_rate"] == "0.0002" and params["base_model"] == "tiny-llama"
    assert params["endpoint"] == REDACTED and params["hf_token"] == REDACTED
    assert not any(secret in value for value in params.values())


def test_get_or_create_experiment_is_idempotent_and_restores_deleted(client: CountingClient) -> None:
    name = f"exp-{uuid.uuid4().hex[:8]}"
    first = get_or_create_experiment(name, client)
    assert get_or_create_experiment(name, client) == first
    client.delete_experiment(first)
    assert get_or_create_experiment(name, client) == first
    assert client.get_experiment(first).lifecycle_stage == "active"


def test_configure_mlflow_points_mlflow_at_the_server_and_keeps_password_in_env(
    stack_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
    with_auth = stack_settings.model_copy(
        update={"mlflow_username": "alice", "mlflow_password": SecretStr("pw-123")}
    )
    try:
        configure_mlflow(with_auth)
        assert (os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"]) == (
            "alice",
            "pw-123",
        )
        assert mlflow.get_tracking_uri() == stack_settings.mlflow_tracking_uri
    finally:
        configure_mlflow(stack_settings)


def test_ui_urls_follow_mlflow3_routes(client: CountingClient, run_id: str, stack_settings: Settings) -> None:
    base = stack_settings.mlflow_tracking_uri
    experiment_id = client.get_run(run_id).info.experiment_id
    assert experiment_url(stack_settings, experiment_id) == f"{base}/#/experiments/{experiment_id}"
    assert run_url(stack_settings, run_id) == f"{base}/#/experiments/{experiment_id}/runs/{run_id}"
    assert model_version_url(stack_settings, "support bot", 3) == f"{base}/#/models/support%20bot/versions/3"
