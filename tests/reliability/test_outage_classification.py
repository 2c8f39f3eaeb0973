"""Which failures count as outages: retried by the tasks and reported naming the service."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from tasks._retry import transient_only
from tuneline.errors import ConfigError, DataError, JobFailedError, ServiceUnavailableError
from tuneline.storage.tracking import unreachable_as_service_error

pytestmark = pytest.mark.faults


def _failed_state(exc: BaseException) -> SimpleNamespace:
    def result() -> None:
        raise exc

    return SimpleNamespace(result=result)


def _chained(outer: BaseException, cause: BaseException) -> BaseException:
    try:
        try:
            raise cause
        except BaseException as inner:
            raise outer from inner
    except BaseException as exc:
        return exc


@pytest.mark.parametrize(
    ("exc", "retried"),
    [
        (ServiceUnavailableError("S3", "connection refused"), True),
        (_chained(JobFailedError("local job x failed at step 20"), ServiceUnavailableError("S3", "down")), True),
        (JobFailedError("tuning job ended FAILED: loss is NaN"), False),
        (DataError("no readable records"), False),
        (ConfigError("tune.learning_rate too high"), False),
        (ConnectionResetError("peer reset"), True),
    ],
    ids=["outage", "job-died-of-an-outage", "job-failed", "bad-data", "bad-config", "unknown-error"],
)
def test_only_outages_and_unknown_errors_are_retried(exc: BaseException, retried: bool) -> None:
    assert transient_only(None, None, _failed_state(exc)) is retried


def test_an_unreachable_mlflow_server_is_reported_naming_mlflow() -> None:
    import os

    saved = {k: os.environ.get(k) for k in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT")}
    os.environ.update(MLFLOW_HTTP_REQUEST_MAX_RETRIES="0", MLFLOW_HTTP_REQUEST_TIMEOUT="2")
    try:
        client = MlflowClient("http://127.0.0.1:9")  # the discard port: nothing listens
        with pytest.raises(ServiceUnavailableError, match="^MLflow is unavailable") as info:
            with unreachable_as_service_error():
                client.get_experiment_by_name("anything")
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    assert info.value.service == "MLflow"
    assert isinstance(info.value.__cause__, MlflowException)


def test_errors_mlflow_did_answer_are_not_outages() -> None:
    with pytest.raises(MlflowException, match="RESOURCE_DOES_NOT_EXIST|not found"):
        with unreachable_as_service_error():
            raise MlflowException("Registered Model with name=x not found", error_code="RESOURCE_DOES_NOT_EXIST")
