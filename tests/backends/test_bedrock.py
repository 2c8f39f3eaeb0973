"""The Bedrock backend at the API-contract level.

botocore's ``Stubber`` answers the ``bedrock`` client and checks every request against the real
service model (and the exact parameters we expect); moto's ``mock_aws`` plays S3, where the training
data is staged and the job's metrics CSVs are read from. Nothing talks to AWS.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

import pytest
from botocore.stub import Stubber
from hypothesis import given
from hypothesis import strategies as st
from moto import mock_aws
from pydantic import SecretStr

from tuneline.backends.base import JobSpec, JobStatus, job_identity
from tuneline.backends.bedrock import BedrockBackend, bedrock_job_name, client_request_token
from tuneline.config import BedrockTuneConfig, LocalTuneConfig, Target
from tuneline.errors import BackendError, JobFailedError, ServiceUnavailableError, ValidationFailedError
from tuneline.lineage import DatasetVersion, JobState
from tuneline.settings import Settings
from tuneline.storage.s3 import ObjectStore

if TYPE_CHECKING:
    from tests.conftest import SleepRecorder

HAIKU = "anthropic.claude-3-haiku-20240307-v1:0:200k"
BEFORE_HAIKU_EOL = date(2026, 6, 1)
NOVA_MICRO = "amazon.nova-micro-v1:0:128k"
ROLE = "arn:aws:iam::123456789012:role/BedrockTuning"
BUCKET = "tl-bedrock-test"
DATA_BUCKET = "tl-prepared-data"
SHORT_ID = "a1b2c3d4e5f6"
JOB_NAME_PATTERN = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9\+\-\.])*")
MODEL_NAME_PATTERN = re.compile(r"([0-9a-zA-Z][_-]?){1,63}")


# --- fixtures --------------------------------------------------------------------------------
@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> Settings:
    for name in list(__import__("os").environ):
        if name.startswith("TUNELINE_"):
            monkeypatch.delenv(name)
    # Fake credentials: boto3 must never find real ones, and moto accepts any.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        home=tmp_path,
        s3_endpoint_url="",
        s3_bucket=BUCKET,
        aws_region="us-east-1",
        aws_access_key_id=SecretStr("testing"),
        aws_secret_access_key=SecretStr("testing"),
        bedrock_region="us-west-2",
    )


@pytest.fixture
def store(settings: Settings) -> Iterator[ObjectStore]:
    with mock_aws():
        store = ObjectStore(settings)
        store.ensure_bucket()
        store.client.create_bucket(Bucket=DATA_BUCKET)
        yield store


@pytest.fixture
def stubbed(stubbed_aws: Callable[..., tuple[Any, Stubber]]) -> tuple[Any, Stubber]:
    return stubbed_aws("bedrock")


@pytest.fixture
def backend(
    settings: Settings, store: ObjectStore, stubbed: tuple[Any, Stubber], sleeps: SleepRecorder
) -> BedrockBackend:
    # These contract tests use Claude 3 Haiku as it was before its end of life (2026-09-10), when
    # AWS still took jobs for it; the refusal after that date is tested in test_bedrock_customization.
    return BedrockBackend(settings, stubbed[0], store, sleep=sleeps, today=lambda: BEFORE_HAIKU_EOL)


def _records(n: int, nova: bool) -> bytes:
    lines = []
    for i in range(n):
        if nova:
            rec: dict[str, Any] = {
                "schemaVersion": "bedrock-conversation-2024",
                "messages": [
                    {"role": "user", "content": [{"text": f"question {i}"}]},
                    {"role": "assistant", "content": [{"text": f"answer {i}"}]},
                ],
            }
        else:
            rec = {
                "messages": [
                    {"role": "user", "content": f"question {i}"},
                    {"role": "assistant", "content": f"answer {i}"},
                ]
            }
        lines.append(json.dumps(rec))
    return ("\n".join(lines) + "\n").encode()


@pytest.fixture
def make_spec(store: ObjectStore) -> Callable[..., JobSpec]:
    """Factory: a JobSpec over a prepared dataset written to (mock) S3."""

    def make(
        name: str = "support-bot",
        *,
        base_model: str = HAIKU,
        bucket: str = BUCKET,
        train: int = 40,
        validation: int = 32,
        target: Target | None = None,
        **tune: Any,
    ) -> JobSpec:
        nova = ".nova" in base_model
        version = "v" + str(train) + str(validation) + ("n" if nova else "c")
        prefix = f"s3://{bucket}/datasets/{name}/{version}"
        split_uris = {"train": f"{prefix}/train.jsonl"}
        store.put_bytes(split_uris["train"], _records(train, nova))
        if validation:
            split_uris["validation"] = f"{prefix}/validation.jsonl"
            store.put_bytes(split_uris["validation"], _records(validation, nova))
        dataset = DatasetVersion(
            name=name,
            version=version,
            uri=prefix + "/",
            target=target or (Target.BEDROCK_NOVA if nova else Target.BEDROCK_CLAUDE_HAIKU),
            total=train + validation,
            accepted=train + validation,
            rejected=0,
            duplicates=0,
            splits={"train": train, "validation": validation},
            split_uris=split_uris,
            tokens=1000,
        )
        config = BedrockTuneConfig(base_model=base_model, role_arn=ROLE, **tune)
        return JobSpec(name=name, dataset=dataset, tune=config, output_uri=f"s3://{BUCKET}/runs/{name}/")

    return make


def _job_arn(base_model: str = HAIKU) -> str:
    return f"arn:aws:bedrock:us-west-2:123456789012:model-customization-job/{base_model}/{SHORT_ID}"


def _job(spec: JobSpec, status: str, **extra: Any) -> dict[str, Any]:
    """A GetModelCustomizationJob response (every member the service model requires)."""
    name = bedrock_job_name(spec.name, spec.identity)
    response = {
        "jobArn": _job_arn(spec.tune.base_model),
        "jobName": name,
        "outputModelName": name,
        "roleArn": ROLE,
        "clientRequestToken": client_request_token(spec.identity),
        "creationTime": datetime(2025, 1, 1, tzinfo=UTC),
        "baseModelArn": f"arn:aws:bedrock:us-west-2::foundation-model/{spec.tune.base_model}",
        "trainingDataConfig": {"s3Uri": spec.dataset.split_uris["train"]},
        "validationDataConfig": {"validators": [{"s3Uri": spec.dataset.split_uris.get("validation", "")}]},
        "outputDataConfig": {"s3Uri": _output_uri(spec)},
        "status": status,
    }
    response.update(extra)
    return response


def _output_uri(spec: JobSpec) -> str:
    return f"s3://{BUCKET}/runs/{spec.name}/{bedrock_job_name(spec.name, spec.identity)}/output/"


def _not_found(stubber: Stubber, job_name: str) -> None:
    stubber.add_client_error(
        "get_model_customization_job",
        service_error_code="ResourceNotFoundException",
        service_message=f"Could not find job {job_name}",
        http_status_code=404,
        expected_params={"jobIdentifier": job_name},
    )


def _expected_create(spec: JobSpec, hyper: dict[str, str], **extra: Any) -> dict[str, Any]:
    name = bedrock_job_name(spec.name, spec.identity)
    tags = [
        {"key": "tuneline:dataset", "value": spec.dataset.name},
        {"key": "tuneline:dataset-version", "value": spec.dataset.version},
        {"key": "tuneline:job-identity", "value": spec.identity},
        {"key": "tuneline:run", "value": spec.name},
    ]
    params = {
        "jobName": name,
        "customModelName": name,
        "roleArn": ROLE,
        "clientRequestToken": client_request_token(spec.identity),
        "baseModelIdentifier": spec.tune.base_model,
        "customizationType": "FINE_TUNING",
        "trainingDataConfig": {"s3Uri": spec.dataset.split_uris["train"]},
        "validationDataConfig": {"validators": [{"s3Uri": spec.dataset.split_uris["validation"]}]},
        "outputDataConfig": {"s3Uri": _output_uri(spec)},
        "hyperParameters": hyper,
        "jobTags": tags,
        "customModelTags": tags,
    }
    params.update(extra)
    return params


HAIKU_DEFAULTS = {
    "epochCount": "2",
    "batchSize": "32",
    "learningRateMultiplier": "1.0",
    "earlyStoppingThreshold": "0.001",
    "earlyStoppingPatience": "2",
}


def _csv(header: list[str], rows: list[list[Any]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode()


def _put_metrics(store: ObjectStore, spec: JobSpec) -> None:
    job_folder = _output_uri(spec) + f"model-customization-job-{SHORT_ID}"
    store.put_bytes(
        f"{job_folder}/training_artifacts/step_wise_training_metrics.csv",
        _csv(
            ["step_number", "epoch_number", "training_loss", "perplexity"],
            [[0, 0, 2.5, 12.18], [1, 0, 2.0, 7.39], [2, 1, 1.5, 4.48]],
        ),
    )
    # Nested the way AWS's samples show it; the backend must find it by listing, not by path.
    store.put_bytes(
        f"{job_folder}/validation_artifacts/post_fine_tuning_validation/validation/validation_metrics.csv",
        _csv(
            ["step_number", "epoch_number", "validation_loss", "perplexity"],
            [[1, 0, 2.2, 9.03], [2, 1, 1.8, 6.05]],
        ),
    )
    store.put_bytes(f"{job_folder}/training_artifacts/notes.csv", b"unrelated,file\n1,2\n")


class RecordingSink:
    def __init__(self) -> None:
        self.logged: list[tuple[int, dict[str, float]]] = []

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self.logged.append((step, dict(metrics)))


# --- the whole life ----------------------------------------------------------------------------
def test_submit_wait_complete_reads_metrics_and_fetches_model(
    backend: BedrockBackend,
    stubbed: tuple[Any, Stubber],
    store: ObjectStore,
    sleeps: SleepRecorder,
    make_spec: Callable[..., JobSpec],
) -> None:
    spec = make_spec(hyperparameters={"epochCount": 3, "learningRateMultiplier": "0.5"})
    _, stubber = stubbed
    name = bedrock_job_name(spec.name, spec.identity)
    _not_found(stubber, name)
    hyper = HAIKU_DEFAULTS | {"epochCount": "3", "learningRateMultiplier": "0.5"}
    stubber.add_response(
        "create_model_customization_job", {"jobArn": _job_arn()}, _expected_create(spec, hyper)
    )
    get = {"jobIdentifier": _job_arn()}
    details = {"trainingDetails": {"status": "InProgress"}, "validationDetails": {"status": "Completed"}}
    stubber.add_response("get_model_customization_job", _job(spec, "InProgress"), get)
    stubber.add_response("get_model_customization_job", _job(spec, "InProgress", statusDetails=details), get)
    completed = _job(
        spec,
        "Completed",
        outputModelArn=f"arn:aws:bedrock:us-west-2:123456789012:custom-model/{HAIKU}/abcdef123456",
        trainingMetrics={"trainingLoss": 1.5},
        validationMetrics=[{"validationLoss": 1.8}],
    )
    stubber.add_response("get_model_customization_job", completed, get)  # the poll that sees it done
    stubber.add_response("get_model_customization_job", completed, get)  # metrics(): output prefix
    _put_metrics(store, spec)

    job_id = backend.submit(spec)
    assert job_id == _job_arn()
    progress: list[JobStatus] = []
    sink = RecordingSink()
    final = backend.wait(spec, job_id, sink=sink, on_progress=progress.append)

    assert final.state is JobState.COMPLETED
    assert (final.steps, final.final_train_loss, final.final_validation_loss) == (2, 1.5, 1.8)
    assert [p.message for p in progress] == [
        "InProgress",
        "InProgress (validation Completed, training InProgress)",
        "Completed",
    ]
    assert sleeps.calls == [60.0, 120.0]  # backs off between polls, never spins
    assert sink.logged == [
        (0, {"perplexity": 12.18, "train_loss": 2.5}),
        (1, {"perplexity": 7.39, "train_loss": 2.0, "validation_loss": 2.2, "validation_perplexity": 9.03}),
        (2, {"perplexity": 4.48, "train_loss": 1.5, "validation_loss": 1.8, "validation_perplexity": 6.05}),
    ]

    stubber.add_response("get_model_customization_job", completed, get)
    stubber.add_response("get_model_customization_job", completed, get)
    model = backend.fetch_model(spec, job_id)
    assert model.model_uri == completed["outputModelArn"]
    assert (model.backend, model.job_id, model.base_model, model.steps) == ("bedrock", _job_arn(), HAIKU, 2)


def test_poll_interval_doubles_up_to_the_ceiling(
    backend: BedrockBackend,
    stubbed: tuple[Any, Stubber],
    sleeps: SleepRecorder,
    make_spec: Callable[..., JobSpec],
) -> None:
    spec = make_spec(poll_interval_seconds=10, max_poll_interval_seconds=50)
    _, stubber = stubbed
    for _ in range(5):
        stubber.add_response("get_model_customization_job", _job(spec, "InProgress"))
    stubber.add_response(
        "get_model_customization_job", _job(spec, "Stopped", failureMessage="Stopped by user")
    )
    final = backend.wait(spec, _job_arn())
    assert sleeps.calls == [10, 20, 40, 50, 50]
    assert (final.state, final.message) == (JobState.STOPPED, "Stopped by user")


def test_failed_job_surfaces_failure_message_verbatim(
    backend: BedrockBackend, stubbed: tuple[Any, Stubber], make_spec: Callable[..., JobSpec]
) -> None:
    spec = make_spec()
    _, stubber = stubbed
    message = (
        'Training data line 7: "messages" must alternate user/assistant. Found 2 consecutive user turns.'
    )
    failed = _job(spec, "Failed", failureMessage=message)
    stubber.add_response("get_model_customization_job", _job(spec, "InProgress"))
    stubber.add_response("get_model_customization_job", failed)
    sink = RecordingSink()
    final = backend.wait(spec, _job_arn(), sink=sink)
    assert (final.state, final.message) == (JobState.FAILED, message)
    assert sink.logged == []

    stubber.add_response("get_model_customization_job", failed)
    with pytest.raises(JobFailedError) as err:
        backend.fetch_model(spec, _job_arn())
    assert message in str(err.value)
    assert "Failed" in str(err.value)


def test_fetch_model_of_running_job_refuses(
    backend: BedrockBackend, stubbed: tuple[Any, Stubber], make_spec: Callable[..., JobSpec]
) -> None:
    spec = make_spec()
    stubbed[1].add_response("get_model_customization_job", _job(spec, "InProgress"))
    with pytest.raises(BackendError, match="still InProgress") as err:
        backend.fetch_model(spec, _job_arn())
    assert not isinstance(err.value, JobFailedError)


# --- idempotency ---------------------------------------------------------------------------------
def test_rerun_with_same_identity_attaches_without_a_second_create(
    settings: Settings,
    store: ObjectStore,
    stubbed: tuple[Any, Stubber],
    sleeps: SleepRecorder,
    make_spec: Callable[..., JobSpec],
) -> None:
    client, stubber = stubbed
    spec = make_spec()
    name = bedrock_job_name(spec.name, spec.identity)
    _not_found(stubber, name)
    stubber.add_response(
        "create_model_customization_job", {"jobArn": _job_arn()}, _expected_create(spec, HAIKU_DEFAULTS)
    )
    first = BedrockBackend(settings, client, store, sleep=sleeps, today=lambda: BEFORE_HAIKU_EOL).submit(spec)

    # The flow crashed after submitting; a new process re-runs with the same inputs. The Stubber
    # has no create queued, so a second CreateModelCustomizationJob would fail this test.
    stubber.add_response("get_model_customization_job", _job(spec, "InProgress"), {"jobIdentifier": name})
    again = BedrockBackend(settings, client, store, sleep=sleeps, today=lambda: BEFORE_HAIKU_EOL).submit(
        make_spec()
    )
    assert again == first == _job_arn()


def test_create_conflict_from_a_racing_run_attaches_to_its_job(
    backend: BedrockBackend, stubbed: tuple[Any, Stubber], make_spec: Callable[..., JobSpec]
) -> None:
    spec = make_spec()
    _, stubber = stubbed
    name = bedrock_job_name(spec.name, spec.identity)
    _not_found(stubber, name)
    stubber.add_client_error(
        "create_model_customization_job", "ConflictException", "A job with this name already exists", 409
    )
    stubber.add_response("get_model_customization_job", _job(spec, "InProgress"), {"jobIdentifier": name})
    assert backend.submit(spec) == _job_arn()


def test_identity_changes_with_config_so_names_and_tokens_differ(make_spec: Callable[..., JobSpec]) -> None:
    a = make_spec()
    b = make_spec(hyperparameters={"epochCount": 4})
    assert a.identity == job_identity(a.dataset.version, a.tune)
    assert bedrock_job_name(a.name, a.identity) != bedrock_job_name(b.name, b.identity)
    assert client_request_token(a.identity) != client_request_token(b.identity)


def test_a_later_release_adding_an_unset_option_keeps_the_job_identity(make_spec: Callable[..., JobSpec]) -> None:
    """A job submitted before an upgrade that adds an optional setting re-attaches after it."""
    spec = make_spec()

    class LaterTuneConfig(type(spec.tune)):
        some_new_option: str | None = None

    later = LaterTuneConfig(**spec.tune.model_dump())
    assert job_identity(spec.dataset.version, later) == spec.identity
    assert job_identity(spec.dataset.version, later.model_copy(update={"some_new_option": "x"})) != spec.identity


# --- retries -------------------------------------------------------------------------------------
def test_throttling_is_retried_with_backoff_then_succeeds(
    backend: BedrockBackend,
    stubbed: tuple[Any, Stubber],
    sleeps: SleepRecorder,
    make_spec: Callable[..., JobSpec],
) -> None:
    spec = make_spec()
    _, stubber = stubbed
    name = bedrock_job_name(spec.name, spec.identity)
    stubber.add_client_error("get_model_customization_job", "ThrottlingException", "Rate exceeded", 400)
    stubber.add_client_error("get_model_customization_job", "ThrottlingException", "Rate exceeded", 400)
    _not_found(stubber, name)
    stubber.add_client_error("create_model_customization_job", "ThrottlingException", "Rate exceeded", 400)
    stubber.add_response(
        "create_model_customization_job", {"jobArn": _job_arn()}, _expected_create(spec, HAIKU_DEFAULTS)
    )
    assert backend.submit(spec) == _job_arn()
    assert len(sleeps.calls) >= 3  # one back-off per throttled call at least
    assert all(0 < s <= 60 for s in sleeps.calls)


def test_throttling_gives_up_after_bounded_attempts(
    settings: Settings, store: ObjectStore, stubbed: tuple[Any, Stubber], sleeps: SleepRecorder
) -> None:
    client, stubber = stubbed
    backend = BedrockBackend(
        settings, client, store, sleep=sleeps, max_attempts=3, today=lambda: BEFORE_HAIKU_EOL
    )
    for _ in range(3):
        stubber.add_client_error("get_model_customization_job", "ThrottlingException", "Rate exceeded", 400)
    with pytest.raises(ServiceUnavailableError, match="gave up after 3 attempts.*Rate exceeded"):
        backend.status(_job_arn())


def test_validation_error_from_bedrock_is_not_retried(
    backend: BedrockBackend,
    stubbed: tuple[Any, Stubber],
    sleeps: SleepRecorder,
    make_spec: Callable[..., JobSpec],
) -> None:
    spec = make_spec()
    _, stubber = stubbed
    _not_found(stubber, bedrock_job_name(spec.name, spec.identity))
    stubber.add_client_error(
        "create_model_customization_job", "ValidationException", "The role cannot be assumed by Bedrock", 400
    )
    with pytest.raises(ValidationFailedError, match="The role cannot be assumed by Bedrock"):
        backend.submit(spec)
    assert sleeps.calls == []  # exactly one create, no back-off (the Stubber has nothing left)


def test_access_denied_is_a_backend_error_naming_the_operation(
    backend: BedrockBackend, stubbed: tuple[Any, Stubber]
) -> None:
    stubbed[1].add_client_error("get_model_customization_job", "AccessDeniedException", "not authorized", 403)
    with pytest.raises(
        BackendError, match=r"get_model_customization_job.*AccessDeniedException.*not authorized"
    ):
        backend.status(_job_arn())


# --- data staging, options -----------------------------------------------------------------------
def test_data_from_another_store_is_staged_into_bedrocks_bucket(
    settings: Settings,
    store: ObjectStore,
    stubbed: tuple[Any, Stubber],
    sleeps: SleepRecorder,
    make_spec: Callable[..., JobSpec],
) -> None:
    client, stubber = stubbed
    spec = make_spec(
        bucket=DATA_BUCKET,
        kms_key_id="alias/tuneline",
        vpc_subnet_ids=["subnet-0abc"],
        vpc_security_group_ids=["sg-0abc"],
        tags={"team": "support"},
    )
    # A separate store object stands for a different S3 (e.g. local SeaweedFS vs AWS).
    dataset_store = ObjectStore(settings, client=store.client)
    backend = BedrockBackend(
        settings, client, store, dataset_store=dataset_store, sleep=sleeps, today=lambda: BEFORE_HAIKU_EOL
    )
    name = bedrock_job_name(spec.name, spec.identity)
    staged = f"s3://{BUCKET}/runs/{spec.name}/{name}/data"
    tags = _expected_create(spec, HAIKU_DEFAULTS)["jobTags"] + [{"key": "team", "value": "support"}]
    tags.sort(key=lambda t: t["key"])
    expected = _expected_create(
        spec,
        HAIKU_DEFAULTS,
        trainingDataConfig={"s3Uri": f"{staged}/train.jsonl"},
        validationDataConfig={"validators": [{"s3Uri": f"{staged}/validation.jsonl"}]},
        customModelKmsKeyId="alias/tuneline",
        vpcConfig={"subnetIds": ["subnet-0abc"], "securityGroupIds": ["sg-0abc"]},
        jobTags=tags,
        customModelTags=tags,
    )
    _not_found(stubber, name)
    stubber.add_response("create_model_customization_job", {"jobArn": _job_arn()}, expected)
    backend.submit(spec)
    assert store.get_bytes(f"{staged}/train.jsonl") == store.get_bytes(spec.dataset.split_uris["train"])
    assert store.get_bytes(f"{staged}/validation.jsonl") == store.get_bytes(
        spec.dataset.split_uris["validation"]
    )


def test_nova_job_sends_nova_hyperparameters_as_strings(
    backend: BedrockBackend, stubbed: tuple[Any, Stubber], make_spec: Callable[..., JobSpec]
) -> None:
    spec = make_spec(
        base_model=NOVA_MICRO, hyperparameters={"learningRate": 2e-5, "learningRateWarmupSteps": "0"}
    )
    _, stubber = stubbed
    _not_found(stubber, bedrock_job_name(spec.name, spec.identity))
    hyper = {"epochCount": "2", "learningRate": "2e-05", "learningRateWarmupSteps": "0"}
    stubber.add_response(
        "create_model_customization_job", {"jobArn": _job_arn(NOVA_MICRO)}, _expected_create(spec, hyper)
    )
    assert backend.submit(spec) == _job_arn(NOVA_MICRO)


def test_cancel_stops_the_job_and_tolerates_an_already_finished_one(
    backend: BedrockBackend, stubbed: tuple[Any, Stubber], make_spec: Callable[..., JobSpec]
) -> None:
    spec = make_spec()
    _, stubber = stubbed
    stubber.add_response("stop_model_customization_job", {}, {"jobIdentifier": _job_arn()})
    backend.cancel(_job_arn())
    stubber.add_client_error(
        "stop_model_customization_job", "ValidationException", "Job is not in progress", 400
    )
    stubber.add_response("get_model_customization_job", _job(spec, "Completed"))
    backend.cancel(_job_arn())
    stubber.add_client_error("stop_model_customization_job", "ValidationException", "Bad identifier", 400)
    stubber.add_response("get_model_customization_job", _job(spec, "InProgress"))
    with pytest.raises(BackendError, match="Bad identifier"):
        backend.cancel(_job_arn())


# --- metrics files -------------------------------------------------------------------------------
def test_metrics_restarting_step_numbers_per_epoch_stay_increasing(
    backend: BedrockBackend,
    stubbed: tuple[Any, Stubber],
    store: ObjectStore,
    make_spec: Callable[..., JobSpec],
) -> None:
    spec = make_spec()
    stubbed[1].add_response("get_model_customization_job", _job(spec, "Completed"))
    store.put_bytes(
        _output_uri(spec)
        + f"model-customization-job-{SHORT_ID}/training_artifacts/step_wise_training_metrics.csv",
        _csv(
            ["step_number", "epoch_number", "training_loss", "perplexity"],
            [[0, 0, 3, ""], [1, 0, 2, ""], [0, 1, 1, ""]],
        ),
    )
    points = backend.metrics(_job_arn())
    assert [(p.step, p.name, p.value) for p in points] == [
        (0, "train_loss", 3),
        (1, "train_loss", 2),
        (2, "train_loss", 1),
    ]


def test_metrics_without_loss_column_is_a_clear_error(
    backend: BedrockBackend,
    stubbed: tuple[Any, Stubber],
    store: ObjectStore,
    make_spec: Callable[..., JobSpec],
) -> None:
    spec = make_spec()
    stubbed[1].add_response("get_model_customization_job", _job(spec, "Completed"))
    store.put_bytes(
        _output_uri(spec) + "x/step_wise_training_metrics.csv", _csv(["step_number", "loss"], [[0, 1]])
    )
    with pytest.raises(BackendError, match="no 'training_loss' column"):
        backend.metrics(_job_arn())


def test_metrics_pick_this_jobs_folder_in_a_shared_prefix(
    backend: BedrockBackend,
    stubbed: tuple[Any, Stubber],
    store: ObjectStore,
    make_spec: Callable[..., JobSpec],
) -> None:
    spec = make_spec()
    stubbed[1].add_response("get_model_customization_job", _job(spec, "Completed"))
    header = ["step_number", "epoch_number", "training_loss", "perplexity"]
    out = _output_uri(spec)
    store.put_bytes(
        out + "model-customization-job-zzzzzzzzzzzz/step_wise_training_metrics.csv",
        _csv(header, [[0, 0, 9, 9]]),
    )
    store.put_bytes(
        out + f"model-customization-job-{SHORT_ID}/step_wise_training_metrics.csv",
        _csv(header, [[0, 0, 1, 2]]),
    )
    assert {p.name: p.value for p in backend.metrics(_job_arn())} == {"train_loss": 1, "perplexity": 2}


# --- validation ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("overrides", "spec_kwargs", "fragment"),
    [
        (
            {},
            {"train": 31},
            "split train has 31 records; anthropic.claude-3-haiku-20240307-v1:0:200k needs at least 32",
        ),
        ({}, {"train": 10_001, "validation": 0}, "allows at most 10000"),
        ({}, {"validation": 1001}, "split validation has 1001 records"),
        ({}, {"train": 9_500, "validation": 600}, "train + validation = 10100"),
        # Nova's limits live in the model table with Claude's: the backend checks them as prepare does
        ({}, {"base_model": "amazon.nova-micro-v1:0:128k", "train": 7},
         "split train has 7 records; amazon.nova-micro-v1:0:128k needs at least 8"),
        ({}, {"base_model": "amazon.nova-lite-v1:0:300k", "train": 19_500, "validation": 600},
         "train + validation = 20100"),
        ({}, {"target": Target.BEDROCK_NOVA}, "prepared for target bedrock-nova"),
        ({"customization_type": "CONTINUED_PRE_TRAINING"}, {}, "supports FINE_TUNING, DISTILLATION"),
        ({"vpc_subnet_ids": ["subnet-1"]}, {}, "must be given together"),
        (
            {"poll_interval_seconds": 100, "max_poll_interval_seconds": 10},
            {},
            "below tune.poll_interval_seconds",
        ),
        ({"base_model": "meta.llama3-3-70b-instruct-v1:0:128k"}, {}, "give its limits"),
        ({"hyperparameters": {"epochCount": 0}}, {}, "tune.hyperparameters.epochCount=0"),
    ],
    ids=[
        "too-few-train",
        "too-many-train",
        "too-many-validation",
        "too-many-total",
        "nova-too-few-train",
        "nova-too-many-total",
        "wrong-record-format",
        "unsupported-customization",
        "vpc-half-given",
        "poll-ceiling-below-start",
        "unknown-model",
        "bad-hyperparameter",
    ],
)
def test_validate_refuses_bad_specs_with_a_message_naming_the_value(
    backend: BedrockBackend,
    make_spec: Callable[..., JobSpec],
    overrides: dict[str, Any],
    spec_kwargs: dict[str, Any],
    fragment: str,
) -> None:
    spec = make_spec(**spec_kwargs, **overrides)
    with pytest.raises(ValidationFailedError) as err:
        backend.validate(spec)
    assert any(fragment in p for p in err.value.problems), err.value.problems


def test_validate_accepts_a_good_spec_and_refuses_wrong_region(
    settings: Settings, store: ObjectStore, stubbed: tuple[Any, Stubber], make_spec: Callable[..., JobSpec]
) -> None:
    spec = make_spec()
    BedrockBackend(settings, stubbed[0], store, today=lambda: BEFORE_HAIKU_EOL).validate(spec)
    east = settings.model_copy(update={"bedrock_region": "us-east-1"})
    with pytest.raises(ValidationFailedError, match="us-west-2 only"):
        BedrockBackend(east, stubbed[0], store, today=lambda: BEFORE_HAIKU_EOL).validate(spec)


def test_validate_refuses_a_local_tune_config(
    backend: BedrockBackend, make_spec: Callable[..., JobSpec]
) -> None:
    spec = make_spec()
    local = spec.model_copy(update={"tune": LocalTuneConfig(base_model="/models/tiny")})
    with pytest.raises(ValidationFailedError, match="needs 'bedrock'"):
        backend.validate(local)


# --- names -----------------------------------------------------------------------------------------
def _valid_name(name: str) -> bool:
    return (
        len(name) <= 63
        and bool(JOB_NAME_PATTERN.fullmatch(name))
        and bool(MODEL_NAME_PATTERN.fullmatch(name))
    )


@pytest.mark.parametrize(
    "run_name",
    ["support-bot", "", "---", "a" * 200, "Ünïcödé name!", "x.y+z", "trailing-", "-leading", "a--b__c"],
    ids=[
        "plain",
        "empty",
        "only-hyphens",
        "very-long",
        "unicode",
        "dots-plus",
        "trailing",
        "leading",
        "doubled",
    ],
)
def test_job_name_edge_cases_are_valid_for_bedrock(run_name: str) -> None:
    identity = "0123456789abcdef0123"
    name = bedrock_job_name(run_name, identity)
    assert _valid_name(name), name
    assert name.endswith(identity)


@given(run_name=st.text(max_size=120), identity=st.text(alphabet="0123456789abcdef", min_size=1, max_size=64))
def test_job_names_always_match_bedrocks_patterns(run_name: str, identity: str) -> None:
    name = bedrock_job_name(run_name, identity)
    assert _valid_name(name), name
    assert bedrock_job_name(run_name, identity) == name
    token = client_request_token(identity)
    assert re.fullmatch(r"[a-zA-Z0-9]([-a-zA-Z0-9]{0,254}[a-zA-Z0-9])?", token)
