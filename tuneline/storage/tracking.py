"""MLflow tracking: client set-up, batched metric logging, secret-safe params and UI links.

Every MLflow call here goes over HTTP to the tracking server. One call per metric cost ~140 ms
on this machine, so training metrics go through :class:`BatchedMetricsLogger`, which sends them in
``log_batch`` calls from a background thread.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any
from urllib.parse import quote

import mlflow
from mlflow import MlflowClient
from mlflow.entities import LifecycleStage, Metric, Param
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, ErrorCode
from mlflow.utils.validation import MAX_METRICS_PER_BATCH, MAX_PARAM_VAL_LENGTH, MAX_PARAMS_TAGS_PER_BATCH

from tuneline.errors import ServiceUnavailableError, TunelineError
from tuneline.settings import Settings

__all__ = [
    "REDACTED",
    "BatchedMetricsLogger",
    "MetricsLoggerClosedError",
    "configure_mlflow",
    "experiment_url",
    "get_or_create_experiment",
    "listen_to_metrics",
    "log_params_safe",
    "model_version_url",
    "run_url",
    "unreachable_as_service_error",
]

_log = logging.getLogger(__name__)

REDACTED = "***redacted***"

# Parameter names whose values are secrets whatever they contain (belt and braces: the explicit
# secret list catches the values themselves). "token" only as a credential (hf_token, token):
# not a count of text tokens (max_new_tokens), a tokenizer or a token id.
_SECRET_KEY_PATTERN = re.compile(
    r"(password|passwd|secret|token(?![a-z]|_id)|api[_-]?key|credential|private[_-]?key)", re.I
)


def configure_mlflow(settings: Settings) -> MlflowClient:
    """Point the ``mlflow`` module and a new client at the configured tracking server.

    Basic-auth credentials go to the environment variables MLflow's HTTP layer reads; they are
    never passed as params or tags.
    """
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    if settings.mlflow_username:
        os.environ["MLFLOW_TRACKING_USERNAME"] = settings.mlflow_username
    if settings.mlflow_password is not None:
        os.environ["MLFLOW_TRACKING_PASSWORD"] = settings.mlflow_password.get_secret_value()
    return MlflowClient(tracking_uri=settings.mlflow_tracking_uri)


# MLflow's REST client wraps every transport failure (refused connection, timeout, too many 5xx
# answers after its own retries) into one generic MlflowException with this wording; answers the
# server did give (bad parameter, missing resource) carry their own message and error code.
_UNREACHABLE = re.compile(r"^API request to \S+ failed with (timeout )?exception")


@contextlib.contextmanager
def unreachable_as_service_error() -> Iterator[None]:
    """Turn "the MLflow server did not answer" into ``ServiceUnavailableError('MLflow', ...)``.

    Usable as a decorator. Other MLflow errors pass through unchanged: they are not outages, and
    retrying them would not help.
    """
    try:
        yield
    except MlflowException as exc:
        if _UNREACHABLE.match(exc.message):
            raise ServiceUnavailableError("MLflow", exc.message) from exc
        raise


# --- UI links --------------------------------------------------------------------------------
def _ui_base(settings: Settings) -> str:
    return settings.mlflow_tracking_uri.rstrip("/")


def experiment_url(settings: Settings, experiment_id: str) -> str:
    return f"{_ui_base(settings)}/#/experiments/{quote(str(experiment_id), safe='')}"


def run_url(settings: Settings, run_id: str, experiment_id: str | None = None) -> str:
    """The MLflow UI page of a run (looks the experiment up when not given)."""
    if experiment_id is None:
        experiment_id = (
            MlflowClient(tracking_uri=settings.mlflow_tracking_uri).get_run(run_id).info.experiment_id
        )
    return f"{experiment_url(settings, experiment_id)}/runs/{quote(run_id, safe='')}"


def model_version_url(settings: Settings, name: str, version: str | int) -> str:
    return f"{_ui_base(settings)}/#/models/{quote(name, safe='')}/versions/{quote(str(version), safe='')}"


# --- experiments and params ------------------------------------------------------------------
def get_or_create_experiment(name: str, client: MlflowClient | None = None) -> str:
    """The id of experiment ``name``, creating it (or restoring it if deleted) when needed.

    Safe against a concurrent creator: losing the race returns the winner's experiment.
    """
    client = client or MlflowClient()
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        try:
            return client.create_experiment(name)
        except MlflowException as exc:
            if exc.error_code != ErrorCode.Name(RESOURCE_ALREADY_EXISTS):
                raise
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                raise
    if experiment.lifecycle_stage == LifecycleStage.DELETED:
        # A deleted experiment still owns its name; bringing it back keeps its history visible.
        client.restore_experiment(experiment.experiment_id)
    return experiment.experiment_id


def _redact(key: str, value: str, secrets: Sequence[str]) -> str:
    if _SECRET_KEY_PATTERN.search(key):
        return REDACTED
    if any(secret and secret in value for secret in secrets):
        return REDACTED
    return value


def log_params_safe(
    client: MlflowClient, run_id: str, params: Mapping[str, Any], secrets: Sequence[str]
) -> dict[str, str]:
    """Log ``params`` on the run with every secret redacted; return what was logged.

    A value is replaced by ``REDACTED`` when it contains any of ``secrets`` or when its name
    looks like a credential (password, token, api_key...). Values longer than MLflow's limit are
    truncated with a marker rather than failing the run.
    """
    logged: dict[str, str] = {}
    for key, raw in params.items():
        value = _redact(str(key), str(raw), secrets)
        if len(value) > MAX_PARAM_VAL_LENGTH:
            marker = "...[truncated]"
            value = value[: MAX_PARAM_VAL_LENGTH - len(marker)] + marker
        logged[str(key)] = value
    items = [Param(k, v) for k, v in logged.items()]
    for start in range(0, len(items), MAX_PARAMS_TAGS_PER_BATCH):
        client.log_batch(run_id, params=items[start : start + MAX_PARAMS_TAGS_PER_BATCH], synchronous=True)
    return logged


# --- batched metrics -------------------------------------------------------------------------
class MetricsLoggerClosedError(TunelineError):
    """``log_metrics`` was called after ``close``."""


def _logged_steps(client: MlflowClient, run_id: str) -> dict[str, set[int]]:
    """The steps at which each metric of the run already has a value."""
    keys = client.get_run(run_id).data.metrics
    return {key: {m.step for m in client.get_metric_history(run_id, key)} for key in keys}


_listeners: dict[str, list[Callable[[Mapping[str, float], int], None]]] = {}
_listeners_lock = threading.Lock()


@contextlib.contextmanager
def listen_to_metrics(run_id: str, listener: Callable[[Mapping[str, float], int], None]) -> Iterator[None]:
    """Call ``listener(metrics, step)`` for every metric a :class:`BatchedMetricsLogger` of this run
    takes, as it takes it (before the batch goes out): a live progress view of a training loop
    that only knows its metrics sink. A listener that raises is dropped, never training."""
    with _listeners_lock:
        _listeners.setdefault(run_id, []).append(listener)
    try:
        yield
    finally:
        with _listeners_lock:
            remaining = [x for x in _listeners.get(run_id, []) if x is not listener]
            if remaining:
                _listeners[run_id] = remaining
            else:
                _listeners.pop(run_id, None)


def _tell_listeners(run_id: str, metrics: Mapping[str, float], step: int) -> None:
    with _listeners_lock:
        listeners = list(_listeners.get(run_id, ()))
    for listener in listeners:
        try:
            listener(metrics, step)
        except Exception:  # noqa: BLE001 - a progress view must not stop training
            _log.warning("metrics listener %r of run %s failed; dropped", listener, run_id, exc_info=True)
            with _listeners_lock:
                if listener in _listeners.get(run_id, []):
                    _listeners[run_id].remove(listener)


class BatchedMetricsLogger:
    """A ``MetricsSink`` that buffers metrics and sends them with ``log_batch`` from a thread.

    A batch goes out when ``flush_every`` metrics are waiting or ``flush_seconds`` have passed,
    and on ``flush``/``close``. ``log_metrics`` never waits for the network. A batch the server
    rejects is not retried (the client already retried the HTTP call); ``flush`` and ``close``
    then raise ``ServiceUnavailableError`` saying how many metrics were lost. With
    ``skip_logged``, a metric at a step the run already has for its key is dropped (a resumed
    attempt does not log its steps twice; the first value logged stands).
    """

    def __init__(
        self,
        client: MlflowClient,
        run_id: str,
        flush_every: int = 50,
        flush_seconds: float = 5.0,
        skip_logged: bool = False,
    ) -> None:
        if flush_every < 1 or flush_seconds <= 0:
            raise ValueError("flush_every must be >= 1 and flush_seconds > 0")
        self.client = client
        self.run_id = run_id
        # A retried attempt (a training job resumed from its last checkpoint) emits again the
        # steps its killed predecessor already logged. MLflow keeps every (key, step, timestamp,
        # value), so each such step would appear twice in the history and the charts: with
        # ``skip_logged`` the run's existing (key, step) pairs are read once, here, and dropped.
        self._logged = _logged_steps(client, run_id) if skip_logged else {}
        self.flush_every = flush_every
        self.flush_seconds = flush_seconds
        self.batches_sent = 0
        self.metrics_sent = 0
        self._pending: list[Metric] = []
        self._queued = 0
        self._done = 0  # sent or failed
        self._failed = 0
        self._error: BaseException | None = None
        self._flush_wanted = False
        self._closed = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name=f"mlflow-metrics-{run_id[:8]}", daemon=True)
        self._thread.start()

    # MetricsSink
    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        _tell_listeners(self.run_id, metrics, step)
        timestamp = int(time.time() * 1000)
        batch = [
            Metric(key, float(value), timestamp, step)
            for key, value in metrics.items()
            if step not in self._logged.get(key, ())
        ]
        with self._cond:
            if self._closed:
                raise MetricsLoggerClosedError(f"metrics logger for run {self.run_id} is closed")
            self._pending.extend(batch)
            self._queued += len(batch)
            if len(self._pending) >= self.flush_every:
                self._cond.notify_all()

    def flush(self, timeout_s: float | None = None) -> None:
        """Send everything logged so far and wait for it; raise if any metric was lost."""
        with self._cond:
            target = self._queued
            self._flush_wanted = True
            self._cond.notify_all()
            if not self._cond.wait_for(
                lambda: self._done >= target or not self._thread.is_alive(), timeout_s
            ):
                raise ServiceUnavailableError(
                    "MLflow", f"metrics for run {self.run_id} not sent within {timeout_s} s"
                )
            self._raise_failure()

    def close(self, timeout_s: float | None = None) -> None:
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout_s)
        with self._cond:
            self._raise_failure()

    def __enter__(self) -> BatchedMetricsLogger:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is None:
            self.close()
            return
        # Already failing: send what we have, but don't mask the original error.
        try:
            self.close()
        except TunelineError:
            pass

    def _raise_failure(self) -> None:
        if self._error is not None:
            error, failed = self._error, self._failed
            self._error, self._failed = None, 0
            raise ServiceUnavailableError(
                "MLflow", f"{failed} metric(s) for run {self.run_id} were not recorded: {error}"
            ) from error

    def _take_batch(self) -> tuple[list[Metric], bool]:
        with self._cond:
            deadline = time.monotonic() + self.flush_seconds
            while not (self._closed or self._flush_wanted or len(self._pending) >= self.flush_every):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            batch, self._pending = self._pending, []
            self._flush_wanted = False
            return batch, self._closed

    def _run(self) -> None:
        while True:
            batch, closing = self._take_batch()
            for start in range(0, len(batch), MAX_METRICS_PER_BATCH):
                chunk = batch[start : start + MAX_METRICS_PER_BATCH]
                error: BaseException | None = None
                try:
                    self.client.log_batch(self.run_id, metrics=chunk, synchronous=True)
                except Exception as exc:  # noqa: BLE001 - any failure is reported by flush/close
                    error = exc
                with self._cond:
                    if error is None:
                        self.batches_sent += 1
                        self.metrics_sent += len(chunk)
                    else:
                        self._error, self._failed = error, self._failed + len(chunk)
                    self._done += len(chunk)
                    self._cond.notify_all()
            if closing:
                with self._cond:
                    if not self._pending:
                        self._cond.notify_all()
                        return
