"""Every customization type per model family, at the API-contract level.

botocore's ``Stubber`` answers the ``bedrock`` client and checks each request against the real
service model and against the exact parameters written out below (not built by the code under
test); moto plays S3. Nothing talks to AWS. The dry run's request is checked against botocore's own
parameter validation, and the CLI's ``models`` and ``tune --dry-run`` are driven end to end.

The contract matrix. Rows are ``CASES`` (one per customization type and model family); every case
runs through the three parametrized contract tests (request shape and resubmission; polling to
Completed with the metrics CSVs read and the model fetched; a failed job's message). Refusals:

| type / family | past end of life (``LIFECYCLE_REFUSALS``) | wrong teacher/student pair (``REFUSALS``) |
| --- | --- | --- |
| FINE_TUNING / Claude 3 Haiku | Haiku (EOL 2026-09-10) | a teacher outside distillation |
| FINE_TUNING / Nova | none of its models is past EOL; a table-less model's own date | a teacher outside distillation |
| FINE_TUNING / Llama | Llama 3.2 90B (EOL 2026-07-07) | Llama 3.2 90B is no student |
| DISTILLATION / Claude student | the student, Haiku | a Nova teacher for Haiku |
| DISTILLATION / Nova | the teacher, Nova Premier (EOL 2026-09-14), also by profile id | wrong provider, own teacher, none |
| DISTILLATION / Llama | none past EOL (legacy 3.2 1B/3B and 405B warn) | 70B as its own teacher |
| RFT / Nova 2 Lite, gpt-oss, Qwen | none past EOL; a table-less RFT model's own date | a teacher for RFT |
| CPT / Titan Text | no AWS date: legacy, warns | a teacher for CPT |

Claude 3 Haiku's cases run as of a day before its end of life, when AWS still took its jobs.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from botocore.stub import Stubber
from moto import mock_aws
from pydantic import SecretStr, ValidationError
from typer.testing import CliRunner

from tuneline.backends.base import JobSpec
from tuneline.backends.bedrock import BEDROCK_MODELS, BedrockBackend, bedrock_job_name, client_request_token
from tuneline.backends.bedrock.dry_run import dry_run, validate_against_service_model
from tuneline.backends.bedrock.models import TEACHER_MODELS, ModelRetiredError, check_lifecycle
from tuneline.backends.bedrock.prices import DEFAULT_PRICES, PriceTable
from tuneline.config import BedrockTuneConfig, RunConfig, Target
from tuneline.errors import JobFailedError, ValidationFailedError
from tuneline.lineage import DatasetVersion, JobState
from tuneline.settings import Settings
from tuneline.storage.s3 import ObjectStore

TODAY = date(2026, 12, 2)
BEFORE_HAIKU_EOL = date(2026, 6, 1)
ROLE = "arn:aws:iam::123456789012:role/BedrockTuning"
BUCKET = "tl-bedrock-custom"
GRADER_ARN = "arn:aws:lambda:us-east-1:123456789012:function:tuneline-rft-grader"
SHORT_ID = "0a1b2c3d4e5f"
HAIKU = "anthropic.claude-3-haiku-20240307-v1:0:200k"
SONNET_V2 = "anthropic.claude-3-5-sonnet-20241022-v2:0"
NOVA_PREMIER = "amazon.nova-premier-v1:0"
NOVA_PRO = "amazon.nova-pro-v1:0"
LOGS = "s3://tl-invocation-logs/bedrock/"
TICKETS = Path(__file__).parents[2] / "examples" / "support_tickets" / "data" / "tickets.jsonl"

# The models of the table that offer continued pre-training (Amazon Titan Text G1).
CPT_MODEL = "amazon.titan-text-express-v1:0:8k"
CPT_LITE = "amazon.titan-text-lite-v1:0:4k"
TITAN_DEFAULTS = {"epochCount": "5", "batchSize": "1", "learningRate": "1e-05", "learningRateWarmupSteps": "5"}


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Settings:
    for name in list(os.environ):
        if name.startswith("TUNELINE_"):
            monkeypatch.delenv(name)
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
        yield store


@pytest.fixture
def stubbed(stubbed_aws: Callable[..., tuple[Any, Stubber]]) -> tuple[Any, Stubber]:
    return stubbed_aws("bedrock")


def _backend(
    settings: Settings, store: ObjectStore, client: Any, region: str = "us-west-2", today: date = TODAY
) -> BedrockBackend:
    regional = settings.model_copy(update={"bedrock_region": region})
    return BedrockBackend(regional, client, store, sleep=lambda s: None, today=lambda: today)


@pytest.fixture
def make_spec(store: ObjectStore) -> Callable[..., JobSpec]:
    def make(base_model: str, *, train: int = 120, validation: int = 0, **tune: Any) -> JobSpec:
        name = "support-tickets"
        prefix = f"s3://{BUCKET}/datasets/{name}/v{train}"
        split_uris = {"train": f"{prefix}/train.jsonl"}
        store.put_bytes(split_uris["train"], b'{"input": "x"}\n' * train)
        if validation:
            split_uris["validation"] = f"{prefix}/validation.jsonl"
            store.put_bytes(split_uris["validation"], b'{"input": "x"}\n' * validation)
        config = BedrockTuneConfig(base_model=base_model, role_arn=ROLE, **tune)
        dataset = DatasetVersion(
            name=name,
            version=f"v{train}",
            uri=prefix + "/",
            target=config.target,
            total=train + validation,
            accepted=train + validation,
            rejected=0,
            duplicates=0,
            splits={"train": train, "validation": validation},
            split_uris=split_uris,
            tokens=1000,
        )
        return JobSpec(name=name, dataset=dataset, tune=config, output_uri=f"s3://{BUCKET}/runs/{name}/")

    return make


def _tags(spec: JobSpec) -> list[dict[str, str]]:
    return [
        {"key": "tuneline:dataset", "value": spec.dataset.name},
        {"key": "tuneline:dataset-version", "value": spec.dataset.version},
        {"key": "tuneline:job-identity", "value": spec.identity},
        {"key": "tuneline:run", "value": spec.name},
    ]


def _output_uri(spec: JobSpec) -> str:
    return f"s3://{BUCKET}/runs/{spec.name}/{bedrock_job_name(spec.name, spec.identity)}/output/"


def _expected(spec: JobSpec, kind: str, **specific: Any) -> dict[str, Any]:
    name = bedrock_job_name(spec.name, spec.identity)
    params: dict[str, Any] = {
        "jobName": name,
        "customModelName": name,
        "roleArn": ROLE,
        "clientRequestToken": client_request_token(spec.identity),
        "baseModelIdentifier": spec.tune.base_model,
        "customizationType": kind,
        "trainingDataConfig": {"s3Uri": spec.dataset.split_uris["train"]},
        "outputDataConfig": {"s3Uri": _output_uri(spec)},
        "jobTags": _tags(spec),
        "customModelTags": _tags(spec),
    }
    params.update(specific)
    return params


def _job_arn(spec: JobSpec) -> str:
    return f"arn:aws:bedrock:us-west-2:123456789012:model-customization-job/{spec.tune.base_model}/{SHORT_ID}"


def _job(spec: JobSpec, status: str, **extra: Any) -> dict[str, Any]:
    name = bedrock_job_name(spec.name, spec.identity)
    return {
        "jobArn": _job_arn(spec),
        "jobName": name,
        "outputModelName": name,
        "roleArn": ROLE,
        "creationTime": datetime(2026, 12, 1, tzinfo=UTC),
        "baseModelArn": f"arn:aws:bedrock:us-west-2::foundation-model/{spec.tune.base_model}",
        "trainingDataConfig": {"s3Uri": spec.dataset.split_uris["train"]},
        "validationDataConfig": {"validators": []},
        "outputDataConfig": {"s3Uri": _output_uri(spec)},
        "status": status,
        **extra,
    }


def _not_found(stubber: Stubber, spec: JobSpec) -> None:
    name = bedrock_job_name(spec.name, spec.identity)
    stubber.add_client_error(
        "get_model_customization_job",
        service_error_code="ResourceNotFoundException",
        service_message=f"Could not find job {name}",
        http_status_code=404,
        expected_params={"jobIdentifier": name},
    )


HAIKU_FT = {
    "epochCount": "2",
    "batchSize": "32",
    "learningRateMultiplier": "1.0",
    "earlyStoppingThreshold": "0.001",
    "earlyStoppingPatience": "2",
}
NOVA_FT = {"epochCount": "2", "learningRate": "1e-05", "learningRateWarmupSteps": "10"}
LLAMA_FT = {"epochCount": "5", "batchSize": "1", "learningRate": "0.0001"}
RFT_DEFAULTS = {
    "epochCount": 1,
    "batchSize": 128,
    "learningRate": 1e-05,
    "trainingSamplePerPrompt": 8,
    "evalInterval": 10,
    "maxPromptLength": 4096,
    "inferenceMaxTokens": 4096,
}


def _distillation(teacher: str, **config: Any) -> dict[str, Any]:
    return {"distillationConfig": {"teacherModelConfig": {"teacherModelIdentifier": teacher, **config}}}


def _rft(**hyperparameters: Any) -> dict[str, Any]:
    return {
        "rftConfig": {
            "graderConfig": {"lambdaGrader": {"lambdaArn": GRADER_ARN}},
            "hyperParameters": RFT_DEFAULTS | hyperparameters,
        }
    }


@dataclass(frozen=True)
class Case:
    """One row of the matrix: a customization type on a model family, and what its request carries."""

    id: str
    region: str
    base_model: str
    tune: dict[str, Any]
    specific: dict[str, Any] = field(repr=False)  # the type-specific request members
    today: date = TODAY


CASES = [
    Case("claude-fine-tuning", "us-west-2", HAIKU, {}, {"hyperParameters": HAIKU_FT}, BEFORE_HAIKU_EOL),
    Case(
        "claude-distillation",
        "us-west-2",
        HAIKU,
        {"customization_type": "DISTILLATION", "teacher_model": SONNET_V2},
        {"hyperParameters": HAIKU_FT, "customizationConfig": _distillation(SONNET_V2)},
        BEFORE_HAIKU_EOL,
    ),
    Case("nova-fine-tuning", "us-east-1", "amazon.nova-micro-v1:0:128k", {}, {"hyperParameters": NOVA_FT}),
    Case(
        "nova-distillation",
        "us-east-1",
        "amazon.nova-lite-v1:0:300k",
        {"customization_type": "DISTILLATION", "teacher_model": NOVA_PRO, "max_response_length": 1000},
        {
            "hyperParameters": NOVA_FT,
            "customizationConfig": _distillation(NOVA_PRO, maxResponseLengthForInference=1000),
        },
    ),
    Case(
        # Issue 17, item 3: the teacher's logged traffic as the distillation source.
        "nova-distillation-from-invocation-logs",
        "us-east-1",
        "amazon.nova-micro-v1:0:128k",
        {
            "customization_type": "DISTILLATION",
            "teacher_model": NOVA_PRO,
            "invocation_logs_s3_uri": LOGS,
            "invocation_logs_use_prompt_response": True,
            "invocation_logs_request_metadata_filters": {
                "and_all": [{"equals": {"project": "support-tickets"}}, {"not_equals": {"stage": "test"}}]
            },
        },
        {
            "trainingDataConfig": {
                "invocationLogsConfig": {
                    "usePromptResponse": True,
                    "invocationLogSource": {"s3Uri": LOGS},
                    "requestMetadataFilters": {
                        "andAll": [{"equals": {"project": "support-tickets"}}, {"notEquals": {"stage": "test"}}]
                    },
                }
            },
            "hyperParameters": NOVA_FT,
            "customizationConfig": _distillation(NOVA_PRO),
        },
    ),
    Case(
        "nova2-rft",
        "us-east-1",
        "amazon.nova-2-lite-v1:0:256k",
        {
            "customization_type": "REINFORCEMENT_FINE_TUNING",
            "grader": {"lambda_arn": GRADER_ARN, "tuneline": [{"name": "field_accuracy"}]},
            "hyperparameters": {"epochCount": 3, "batchSize": "64"},
            "reasoning_effort": "low",
        },
        {"customizationConfig": _rft(epochCount=3, batchSize=64, reasoningEffort="low")},
    ),
    Case("llama-fine-tuning", "us-west-2", "meta.llama3-1-8b-instruct-v1:0:128k", {}, {"hyperParameters": LLAMA_FT}),
    Case(
        "llama-distillation",
        "us-west-2",
        "meta.llama3-1-8b-instruct-v1:0:128k",
        {"customization_type": "DISTILLATION", "teacher_model": "meta.llama3-1-70b-instruct-v1:0"},
        {"hyperParameters": LLAMA_FT, "customizationConfig": _distillation("meta.llama3-1-70b-instruct-v1:0")},
    ),
    Case(
        "gpt-oss-rft",
        "us-west-2",
        "openai.gpt-oss-20b-1:0",
        {"customization_type": "REINFORCEMENT_FINE_TUNING", "grader": {"lambda_arn": GRADER_ARN}},
        {"customizationConfig": _rft()},
    ),
    Case(
        "qwen-rft",
        "us-west-2",
        "qwen.qwen3-32b-v1:0",
        {"customization_type": "REINFORCEMENT_FINE_TUNING", "grader": {"lambda_arn": GRADER_ARN}},
        {"customizationConfig": _rft()},
    ),
    Case(
        "titan-express-continued-pre-training",
        "us-east-1",
        CPT_MODEL,
        {"customization_type": "CONTINUED_PRE_TRAINING"},
        {"hyperParameters": TITAN_DEFAULTS},
    ),
    Case(
        "titan-lite-continued-pre-training",
        "us-west-2",
        CPT_LITE,
        {
            "customization_type": "CONTINUED_PRE_TRAINING",
            "hyperparameters": {"epochCount": 1, "batchSize": "64", "learningRateWarmupSteps": 250},
        },
        {
            "hyperParameters": TITAN_DEFAULTS
            | {"epochCount": "1", "batchSize": "64", "learningRateWarmupSteps": "250"}
        },
    ),
]
each_case = pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])


@each_case
def test_each_case_sends_its_exact_request_and_resubmits_idempotently(
    settings: Settings,
    store: ObjectStore,
    stubbed: tuple[Any, Stubber],
    make_spec: Callable[..., JobSpec],
    case: Case,
) -> None:
    client, stubber = stubbed
    spec = make_spec(case.base_model, **case.tune)
    _not_found(stubber, spec)
    stubber.add_response(
        "create_model_customization_job",
        {"jobArn": _job_arn(spec)},
        _expected(spec, spec.tune.customization_type, **case.specific),
    )
    # The re-run (same identity) finds the job by name and creates nothing.
    stubber.add_response(
        "get_model_customization_job",
        _job(spec, "InProgress"),
        {"jobIdentifier": bedrock_job_name(spec.name, spec.identity)},
    )
    backend = _backend(settings, store, client, case.region, case.today)
    assert backend.submit(spec) == _job_arn(spec)
    assert backend.submit(spec) == _job_arn(spec)


class _Sink:
    def __init__(self) -> None:
        self.logged: list[tuple[int, dict[str, float]]] = []

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self.logged.append((step, dict(metrics)))


@each_case
def test_each_case_polls_to_completed_reads_its_metrics_files_and_fetches_the_model(
    settings: Settings,
    store: ObjectStore,
    stubbed: tuple[Any, Stubber],
    make_spec: Callable[..., JobSpec],
    case: Case,
) -> None:
    client, stubber = stubbed
    spec = make_spec(case.base_model, **case.tune)
    arn = _job_arn(spec)
    model_arn = f"arn:aws:bedrock:{case.region}:123456789012:custom-model/{case.base_model}/abc123def456"
    get = {"jobIdentifier": arn}
    running = _job(spec, "InProgress", statusDetails={"trainingDetails": {"status": "InProgress"}})
    stubber.add_response("get_model_customization_job", running, get)
    # The poll that sees it done and metrics(); then fetch_model: the job and metrics() again.
    for _ in range(4):
        stubber.add_response("get_model_customization_job", _job(spec, "Completed", outputModelArn=model_arn), get)
    folder = _output_uri(spec) + f"model-customization-job-{SHORT_ID}"
    store.put_bytes(
        f"{folder}/training_artifacts/step_wise_training_metrics.csv",
        b"step_number,epoch_number,training_loss,perplexity\n0,0,2.0,7.39\n1,0,1.5,4.48\n2,1,1.0,2.72\n",
    )
    store.put_bytes(
        f"{folder}/validation_artifacts/post_fine_tuning_validation/validation/validation_metrics.csv",
        b"step_number,epoch_number,validation_loss,perplexity\n2,1,1.2,3.32\n",
    )
    backend = _backend(settings, store, client, case.region, case.today)
    sink, seen = _Sink(), []
    status = backend.wait(spec, arn, sink=sink, on_progress=lambda s: seen.append(s.message))
    assert status.state is JobState.COMPLETED
    assert (status.steps, status.final_train_loss, status.final_validation_loss) == (2, 1.0, 1.2)
    assert seen == ["InProgress (training InProgress)", "Completed"]
    assert sink.logged[0] == (0, {"train_loss": 2.0, "perplexity": 7.39})
    assert sink.logged[-1] == (
        2,
        {"train_loss": 1.0, "perplexity": 2.72, "validation_loss": 1.2, "validation_perplexity": 3.32},
    )
    model = backend.fetch_model(spec, arn)
    assert (model.model_uri, model.base_model, model.steps) == (model_arn, case.base_model, 2)


@each_case
def test_each_case_surfaces_a_failed_jobs_message(
    settings: Settings,
    store: ObjectStore,
    stubbed: tuple[Any, Stubber],
    make_spec: Callable[..., JobSpec],
    case: Case,
) -> None:
    client, stubber = stubbed
    spec = make_spec(case.base_model, **case.tune)
    message = f"{spec.tune.customization_type} job for {case.base_model}: training data line 7 is invalid."
    failed = _job(spec, "Failed", failureMessage=message)
    stubber.add_response("get_model_customization_job", _job(spec, "InProgress"))
    stubber.add_response("get_model_customization_job", failed)
    stubber.add_response("get_model_customization_job", failed)
    backend = _backend(settings, store, client, case.region, case.today)
    sink = _Sink()
    status = backend.wait(spec, _job_arn(spec), sink=sink)
    assert (status.state, status.message) == (JobState.FAILED, message)
    assert sink.logged == []  # no metrics for a failed job
    with pytest.raises(JobFailedError) as err:
        backend.fetch_model(spec, _job_arn(spec))
    assert f"ended Failed: {message}" in str(err.value)


def _refusal(
    name: str, base_model: str, tune: dict[str, Any], fragment: str, *, today: date = TODAY, **spec: Any
) -> Any:
    return pytest.param(base_model, tune, spec, fragment, today, id=name)


DISTIL = "DISTILLATION"
RFT = "REINFORCEMENT_FINE_TUNING"
REFUSALS = [
    _refusal(
        "nova-wrong-provider-teacher",
        "amazon.nova-micro-v1:0:128k",
        {"customization_type": DISTIL, "teacher_model": "meta.llama3-1-405b-instruct-v1:0"},
        "not a teacher for student amazon.nova-micro-v1:0:128k; AWS allows amazon.nova-premier-v1:0, amazon.nova-pro-v1:0",
    ),
    _refusal(
        "nova-student-as-own-teacher",
        "amazon.nova-pro-v1:0:300k",
        {"customization_type": DISTIL, "teacher_model": NOVA_PRO},
        "AWS allows amazon.nova-premier-v1:0",
    ),
    _refusal("nova-no-teacher", "amazon.nova-micro-v1:0:128k", {"customization_type": DISTIL}, "distillation needs a teacher"),
    _refusal(
        "llama-not-a-student",
        "meta.llama3-2-11b-instruct-v1:0:128k",
        {"customization_type": DISTIL, "teacher_model": "meta.llama3-1-405b-instruct-v1:0"},
        "meta.llama3-2-11b-instruct-v1:0:128k supports FINE_TUNING",
    ),
    _refusal(
        "llama-student-as-own-teacher",
        "meta.llama3-1-70b-instruct-v1:0:128k",
        {"customization_type": DISTIL, "teacher_model": "meta.llama3-1-70b-instruct-v1:0"},
        "not a teacher for student meta.llama3-1-70b-instruct-v1:0:128k; AWS allows meta.llama3-1-405b-instruct-v1:0",
    ),
    _refusal(
        "claude-wrong-provider-teacher",
        HAIKU,
        {"customization_type": DISTIL, "teacher_model": NOVA_PRO},
        f"not a teacher for student {HAIKU}; AWS allows anthropic.claude-3-5-sonnet-20240620-v1:0, {SONNET_V2}",
        today=BEFORE_HAIKU_EOL,
    ),
    _refusal(
        "claude-teacher-outside-distillation",
        HAIKU,
        {"teacher_model": SONNET_V2},
        "apply to DISTILLATION only, not FINE_TUNING",
        today=BEFORE_HAIKU_EOL,
    ),
    _refusal(
        "nova-teacher-outside-distillation",
        "amazon.nova-micro-v1:0:128k",
        {"teacher_model": NOVA_PRO},
        "apply to DISTILLATION only, not FINE_TUNING",
    ),
    _refusal(
        "rft-teacher",
        "openai.gpt-oss-20b-1:0",
        {"customization_type": RFT, "grader": {"lambda_arn": GRADER_ARN}, "teacher_model": NOVA_PRO},
        "apply to DISTILLATION only, not REINFORCEMENT_FINE_TUNING",
    ),
    _refusal(
        "cpt-teacher",
        CPT_MODEL,
        {"customization_type": "CONTINUED_PRE_TRAINING", "max_response_length": 100},
        "apply to DISTILLATION only, not CONTINUED_PRE_TRAINING",
    ),
    _refusal("rft-no-grader", "amazon.nova-2-lite-v1:0:256k", {"customization_type": RFT}, "RFT needs a grader"),
    _refusal(
        "rft-grader-not-deployed",
        "amazon.nova-2-lite-v1:0:256k",
        {"customization_type": RFT, "grader": {"tuneline": [{"name": "json_valid"}]}},
        "deploy the Tuneline grader Lambda",
    ),
    _refusal(
        "rft-too-few-prompts",
        "amazon.nova-2-lite-v1:0:256k",
        {"customization_type": RFT, "grader": {"lambda_arn": GRADER_ARN}},
        "Bedrock RFT needs at least 100",
        train=99,
    ),
    _refusal(
        "rft-too-many-prompts",
        "openai.gpt-oss-20b-1:0",
        {"customization_type": RFT, "grader": {"lambda_arn": GRADER_ARN}},
        "train + validation = 20001 RFT prompts; Bedrock RFT takes at most 20,000",
        train=20_001,
    ),
    _refusal(
        "rft-batch-below-16",
        "amazon.nova-2-lite-v1:0:256k",
        {"customization_type": RFT, "grader": {"lambda_arn": GRADER_ARN}, "hyperparameters": {"batchSize": 8}},
        "tune.hyperparameters.batchSize=8",
    ),
    _refusal("rft-only-model", "qwen.qwen3-32b-v1:0", {}, "supports REINFORCEMENT_FINE_TUNING"),
    _refusal(
        "titan-takes-no-fine-tuning-here",
        CPT_MODEL,
        {},
        f"tune.customization_type=FINE_TUNING: {CPT_MODEL} supports CONTINUED_PRE_TRAINING",
    ),
    _refusal(
        "nova-takes-no-continued-pre-training",
        "amazon.nova-micro-v1:0:128k",
        {"customization_type": "CONTINUED_PRE_TRAINING"},
        "tune.customization_type=CONTINUED_PRE_TRAINING: amazon.nova-micro-v1:0:128k supports FINE_TUNING, DISTILLATION",
    ),
    _refusal(
        "titan-batch-above-64",
        CPT_LITE,
        {"customization_type": "CONTINUED_PRE_TRAINING", "hyperparameters": {"batchSize": 65}},
        f"tune.hyperparameters.batchSize=65: {CPT_LITE} allows integer from 1 to 64",
    ),
    _refusal(
        "invocation-logs-for-fine-tuning",
        "amazon.nova-micro-v1:0:128k",
        {"invocation_logs_s3_uri": LOGS},
        "tune.invocation_logs_s3_uri: invocation logs train DISTILLATION or RFT jobs, not FINE_TUNING",
    ),
    _refusal(
        "invocation-logs-not-an-s3-prefix",
        "amazon.nova-micro-v1:0:128k",
        {"customization_type": DISTIL, "teacher_model": NOVA_PRO, "invocation_logs_s3_uri": "s3://Logs_Bucket/x"},
        "tune.invocation_logs_s3_uri='s3://Logs_Bucket/x': not an S3 location Bedrock accepts",
    ),
    _refusal(
        "invocation-log-filters-without-logs",
        "amazon.nova-micro-v1:0:128k",
        {
            "customization_type": DISTIL,
            "teacher_model": NOVA_PRO,
            "invocation_logs_request_metadata_filters": {"equals": {"project": "tickets"}},
        },
        "tune.invocation_logs_request_metadata_filters applies only with tune.invocation_logs_s3_uri",
    ),
]


@pytest.mark.parametrize(("base_model", "tune", "spec_kwargs", "fragment", "today"), REFUSALS)
def test_refusals_name_the_field_and_what_is_allowed(
    settings: Settings,
    store: ObjectStore,
    stubbed: tuple[Any, Stubber],
    make_spec: Callable[..., JobSpec],
    base_model: str,
    tune: dict[str, Any],
    spec_kwargs: dict[str, Any],
    fragment: str,
    today: date,
) -> None:
    region = "us-west-2" if base_model.startswith(("meta.", "qwen.", "openai.", "anthropic.")) else "us-east-1"
    spec = make_spec(base_model, **spec_kwargs, **tune)
    with pytest.raises(ValidationFailedError) as err:
        _backend(settings, store, stubbed[0], region, today).submit(spec)  # no call queued: none may be made
    assert any(fragment in p for p in err.value.problems), err.value.problems


def _past_eol_limits(kind: str) -> dict[str, Any]:
    """``tune.model_limits`` of a model the table lacks, with an end of life in the past."""
    hyper = {"epochCount": {"kind": "integer", "minimum": 1, "maximum": 5, "default": 1}}
    return {
        "model_id": "example.retired-model-v1:0",
        "record_format": "nova",
        "legacy": True,
        "end_of_life": "2026-11-01",
        "customization_types": [kind],
        "hyperparameters": {} if kind == RFT else hyper,
        "rft_hyperparameters": hyper if kind == RFT else {},
    }


def _retired(name: str, base_model: str, tune: dict[str, Any], who: str, eol: str, instead: str) -> Any:
    return pytest.param(base_model, tune, who, f"reached end of life on {eol}", instead, id=name)


def _retired_teacher(name: str, student: str, teacher: str, instead: str) -> Any:
    premier = "teacher Amazon Nova Premier (amazon.nova-premier-v1:0)"
    return _retired(name, student, {"customization_type": DISTIL, "teacher_model": teacher}, premier, "2026-09-14", instead)


NOVA_ARN = f"arn:aws:bedrock:us-east-1::foundation-model/{NOVA_PREMIER}"
LIFECYCLE_REFUSALS = [
    _retired("claude-fine-tuning", HAIKU, {}, "Claude 3 Haiku (", "2026-09-10", "amazon.nova-micro-v1:0:128k"),
    _retired(
        "claude-distillation-student",
        HAIKU,
        {"customization_type": DISTIL, "teacher_model": SONNET_V2},
        "Claude 3 Haiku (",
        "2026-09-10",
        "amazon.nova-lite-v1:0:300k",
    ),
    _retired(
        "llama-fine-tuning",
        "meta.llama3-2-90b-instruct-v1:0:128k",
        {},
        "Llama 3.2 90B Instruct (",
        "2026-07-07",
        "Choose an active model in tune.base_model: meta.llama3-1-70b-instruct-v1:0:128k, meta.llama3-1-8b",
    ),
    _retired_teacher(
        "nova-distillation-teacher",
        "amazon.nova-lite-v1:0:300k",
        NOVA_PREMIER,
        "Choose an active teacher for amazon.nova-lite-v1:0:300k in tune.teacher_model: amazon.nova-pro-v1:0",
    ),
    _retired_teacher("teacher-by-inference-profile", "amazon.nova-micro-v1:0:128k", f"us.{NOVA_PREMIER}", "tune.teacher_model: amazon.nova-pro-v1:0"),
    _retired_teacher("teacher-by-arn", "amazon.nova-micro-v1:0:128k", NOVA_ARN, "tune.teacher_model: amazon.nova-pro-v1:0"),
    _retired_teacher(
        "nova-pro-student-whose-only-teacher-is-retired",
        "amazon.nova-pro-v1:0:300k",
        NOVA_PREMIER,
        "none in Tuneline's table; students with an active teacher: amazon.nova-micro-v1:0:128k, amazon.nova-lite-v1:0:300k",
    ),
    _retired(
        "table-less-model-fine-tuning",
        "example.retired-model-v1:0",
        {"model_limits": _past_eol_limits("FINE_TUNING")},
        "example.retired-model-v1:0",
        "2026-11-01",
        "amazon.nova-lite-v1:0:300k",
    ),
    _retired(
        "table-less-model-rft",
        "example.retired-model-v1:0",
        {"customization_type": RFT, "grader": {"lambda_arn": GRADER_ARN}, "model_limits": _past_eol_limits(RFT)},
        "example.retired-model-v1:0",
        "2026-11-01",
        "amazon.nova-2-lite-v1:0:256k, openai.gpt-oss-20b-1:0, qwen.qwen3-32b-v1:0",
    ),
]


@pytest.mark.parametrize(("base_model", "tune", "who", "when", "instead"), LIFECYCLE_REFUSALS)
def test_past_end_of_life_models_and_teachers_are_refused_before_any_call(
    settings: Settings,
    store: ObjectStore,
    stubbed: tuple[Any, Stubber],
    make_spec: Callable[..., JobSpec],
    base_model: str,
    tune: dict[str, Any],
    who: str,
    when: str,
    instead: str,
) -> None:
    spec = make_spec(base_model, **tune)
    with pytest.raises(ModelRetiredError) as err:
        _backend(settings, store, stubbed[0]).submit(spec)  # no call queued: none may be made
    message = str(err.value)
    assert message.startswith(who) and when in message and instead in message, message
    retired = NOVA_PREMIER if who.startswith("teacher") else base_model
    assert retired not in message.split(" in tune.", 1)[1]  # never named as the way out


def test_legacy_models_and_teachers_warn_and_still_submit(
    settings: Settings,
    store: ObjectStore,
    stubbed: tuple[Any, Stubber],
    make_spec: Callable[..., JobSpec],
    caplog: pytest.LogCaptureFixture,
) -> None:
    client, stubber = stubbed
    # Llama 3.2 3B and Llama 3.1 405B: third-party sources only give their end of life, so legacy.
    spec = make_spec(
        "meta.llama3-2-3b-instruct-v1:0:128k",
        customization_type=DISTIL,
        teacher_model="meta.llama3-1-405b-instruct-v1:0",
    )
    _not_found(stubber, spec)
    stubber.add_response(
        "create_model_customization_job",
        {"jobArn": _job_arn(spec)},
        _expected(
            spec,
            DISTIL,
            hyperParameters=LLAMA_FT,
            customizationConfig=_distillation("meta.llama3-1-405b-instruct-v1:0"),
        ),
    )
    with caplog.at_level(logging.WARNING, logger="tuneline.backends.bedrock.backend"):
        _backend(settings, store, client).submit(spec)
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "Llama 3.2 3B Instruct (meta.llama3-2-3b-instruct-v1:0:128k) is a legacy model" in warning
    assert "Active alternatives: meta.llama3-1-70b-instruct-v1:0:128k, meta.llama3-1-8b-instruct-v1:0:128k" in warning
    assert "teacher Llama 3.1 405B Instruct (meta.llama3-1-405b-instruct-v1:0) is a legacy model" in warning
    assert warning.endswith("Active teachers: meta.llama3-1-70b-instruct-v1:0")
    # Claude 3.5 Sonnet (sources disagree on its end of life): a warning, on Haiku's last days.
    claude = check_lifecycle(BEDROCK_MODELS[HAIKU], date(2026, 9, 9), DISTIL, SONNET_V2)
    assert claude is not None and "end of life on 2026-09-10" in claude
    assert f"teacher Claude 3.5 Sonnet v2 ({SONNET_V2}) is a legacy model" in claude
    assert "Active teachers: none in Tuneline's table" in claude
    # An active teacher of an active student: nothing to say; a teacher outside the table: nothing known.
    nova = BEDROCK_MODELS["amazon.nova-micro-v1:0:128k"]
    assert check_lifecycle(nova, TODAY, DISTIL, NOVA_PRO) is None
    assert check_lifecycle(nova, TODAY, DISTIL, "amazon.nova-9-v1:0") is None
    # The teacher is read for distillation only.
    assert check_lifecycle(nova, TODAY, "FINE_TUNING", NOVA_PREMIER) is None


def test_lifecycle_warns_for_legacy_before_eol_and_says_nothing_for_active() -> None:
    haiku = BEDROCK_MODELS[HAIKU]
    assert haiku.lifecycle == "legacy" and haiku.end_of_life == date(2026, 9, 10)
    warning = check_lifecycle(haiku, date(2026, 9, 9))
    assert warning is not None and "legacy" in warning and "end of life on 2026-09-10" in warning
    with pytest.raises(ModelRetiredError):
        check_lifecycle(haiku, date(2026, 9, 10))
    assert check_lifecycle(BEDROCK_MODELS["amazon.nova-micro-v1:0:128k"], TODAY) is None
    # Titan Text is legacy, but no end-of-life date was found on an AWS page: a warning, never a
    # refusal on a guessed date.
    titan = BEDROCK_MODELS[CPT_MODEL]
    assert titan.lifecycle == "legacy" and titan.end_of_life is None and "modelLifecycle" in titan.lifecycle_source
    warning = check_lifecycle(titan, date(2030, 1, 1), "CONTINUED_PRE_TRAINING")
    assert warning is not None and "no end-of-life date" in warning
    assert "Active alternatives: none in Tuneline's table" in warning


def test_every_table_model_and_teacher_names_its_sources_and_teachers_are_same_provider() -> None:
    for spec in BEDROCK_MODELS.values():
        assert spec.source.startswith("https://docs.aws.amazon.com/"), spec.model_id
        if spec.legacy:
            assert spec.lifecycle_source, spec.model_id
        provider = spec.model_id.split(".")[0]
        assert all(t.split(".")[0] == provider for t in spec.teachers), spec.model_id
        assert all(t in TEACHER_MODELS for t in spec.teachers), spec.model_id
    for teacher in TEACHER_MODELS.values():
        if teacher.legacy:
            assert teacher.lifecycle_source, teacher.model_id
        if teacher.end_of_life:  # a refusing date comes from an AWS page
            assert "https://docs.aws.amazon.com/" in teacher.lifecycle_source, teacher.model_id


def test_invocation_log_filters_follow_botocores_union() -> None:
    def tune(filters: dict[str, Any]) -> BedrockTuneConfig:
        return BedrockTuneConfig(
            base_model="amazon.nova-micro-v1:0:128k",
            role_arn=ROLE,
            customization_type=DISTIL,
            teacher_model=NOVA_PRO,
            invocation_logs_s3_uri=LOGS,
            invocation_logs_request_metadata_filters=filters,
        )

    assert tune({"not_equals": {"stage": "test"}}).invocation_logs_request_metadata_filters.to_api() == {
        "notEquals": {"stage": "test"}
    }
    for bad, fragment in (
        ({"equals": {"a": "1"}, "not_equals": {"b": "2"}}, "exactly one of equals, not_equals, and_all or or_all"),
        ({}, "exactly one of"),
        ({"equals": {"a": "1", "b": "2"}}, "at most 1 item"),
        ({"or_all": []}, "at least 1 item"),
        ({"or_all": [{}]}, "a condition needs equals"),
        ({"equals": {"a b!": "1"}}, "should match pattern"),
        ({"or_all": [{"equals": {"k": "v"}}] * 17}, "at most 16 items"),
    ):
        with pytest.raises(ValidationError, match=fragment):
            tune(bad)


# --- dry run -------------------------------------------------------------------------------------
def _nova_file(tmp_path: Path, n: int = 150, *, prompts_only: bool = False) -> Path:
    out = tmp_path / "train.jsonl"
    lines = []
    for line in TICKETS.read_text().splitlines()[:n]:
        record = json.loads(line)
        turns = record["messages"][:1] if prompts_only else record["messages"]
        lines.append(
            json.dumps(
                {
                    "schemaVersion": "bedrock-conversation-2024",
                    "system": [{"text": record["system"]}],
                    "messages": [{"role": m["role"], "content": [{"text": m["content"]}]} for m in turns],
                }
            )
        )
    out.write_text("\n".join(lines) + "\n")
    return out


def _rft_file(tmp_path: Path, n: int = 120) -> Path:
    out = tmp_path / "rft.jsonl"
    lines = []
    for line in TICKETS.read_text().splitlines()[:n]:
        record = json.loads(line)
        answer = record["messages"][-1]["content"]
        lines.append(
            json.dumps(
                {
                    "messages": [
                        {"role": "system", "content": record["system"]},
                        {"role": "user", "content": record["messages"][0]["content"]},
                    ],
                    "reference_answer": answer,
                }
            )
        )
    out.write_text("\n".join(lines) + "\n")
    return out


def _config(base_model: str, **tune: Any) -> RunConfig:
    return RunConfig.model_validate(
        {
            "name": "support-tickets",
            "data": {"source": str(TICKETS)},
            "tune": {"backend": "bedrock", "base_model": base_model, "role_arn": ROLE, **tune},
        }
    )


def test_dry_run_of_distillation_on_prompts_only_is_a_valid_request_with_a_cost(tmp_path: Path) -> None:
    config = _config(
        "amazon.nova-lite-v1:0:300k",
        customization_type="DISTILLATION",
        teacher_model=NOVA_PRO,
        max_response_length=512,
    )
    prompts = _nova_file(tmp_path, prompts_only=True)
    result = dry_run(config, prompts, bucket=BUCKET, region="us-east-1", today=TODAY)
    assert result.problems == []
    assert result.request["customizationConfig"]["distillationConfig"]["teacherModelConfig"] == {
        "teacherModelIdentifier": NOVA_PRO,
        "maxResponseLengthForInference": 512,
    }
    # The same job with a teacher past its end of life: the request is shown, and refused.
    retired = config.model_copy(update={"tune": config.tune.model_copy(update={"teacher_model": NOVA_PREMIER})})
    refused = dry_run(retired, prompts, bucket=BUCKET, region="us-east-1", today=TODAY)
    assert refused.problems == [
        "teacher Amazon Nova Premier (amazon.nova-premier-v1:0) reached end of life on 2026-09-14: Bedrock no "
        "longer runs it, so it cannot answer the prompts. Choose an active teacher for amazon.nova-lite-v1:0:300k "
        "in tune.teacher_model: amazon.nova-pro-v1:0"
    ]
    assert refused.request is not None
    assert validate_against_service_model(result.request) == []
    price = DEFAULT_PRICES.training_per_1k_tokens["amazon.nova-lite-v1:0:300k"]
    assert result.epochs == 2 and result.records == {"train": 150}
    assert result.estimated_cost_usd == pytest.approx(result.tokens * 2 / 1000 * price)
    assert any("student only" in w for w in result.warnings)


def test_dry_run_of_distillation_from_invocation_logs_reads_no_dataset_and_prices_nothing(tmp_path: Path) -> None:
    (case,) = [c for c in CASES if c.id == "nova-distillation-from-invocation-logs"]
    result = dry_run(
        _config(case.base_model, **case.tune), tmp_path / "absent", bucket=BUCKET, region="us-east-1", today=TODAY
    )
    assert result.problems == [] and result.records == {} and result.estimated_cost_usd is None
    assert result.request["trainingDataConfig"] == case.specific["trainingDataConfig"]
    assert "validationDataConfig" not in result.request
    assert validate_against_service_model(result.request) == []
    assert result.warnings == [
        f"the training data is Bedrock's invocation logs at {LOGS}, which a dry run does not read: no record "
        "checks, no token count and no cost estimate"
    ]
    # botocore checks neither the filters' union nor one-entry maps: the config model does.
    assert validate_against_service_model(
        result.request
        | {
            "trainingDataConfig": {
                "invocationLogsConfig": {
                    "invocationLogSource": {"s3Uri": LOGS},
                    "requestMetadataFilters": {"equals": {"a": "1", "b": "2"}, "andAll": [{"equals": {"c": "3"}}]},
                }
            }
        }
    ) == []


def test_dry_run_of_rft_on_the_example_and_a_price_override(tmp_path: Path) -> None:
    config = _config(
        "amazon.nova-2-lite-v1:0:256k",
        customization_type="REINFORCEMENT_FINE_TUNING",
        grader={"lambda_arn": GRADER_ARN, "tuneline": [{"name": "field_accuracy"}]},
    )
    result = dry_run(config, _rft_file(tmp_path), bucket=BUCKET, region="us-east-1", today=TODAY)
    assert result.problems == [] and result.records == {"train": 120}
    assert result.request["customizationConfig"]["rftConfig"]["graderConfig"] == {
        "lambdaGrader": {"lambdaArn": GRADER_ARN}
    }
    assert result.estimated_cost_usd is None  # RFT is not billed per token in the table
    ft = _config("amazon.nova-micro-v1:0:128k")
    mine = PriceTable(
        as_of=date(2026, 11, 1),
        source="my contract",
        training_per_1k_tokens={"amazon.nova-micro-v1:0:128k": 1.0},
    )
    priced = dry_run(ft, _nova_file(tmp_path), bucket=BUCKET, region="us-east-1", today=TODAY, prices=mine)
    assert priced.estimated_cost_usd == pytest.approx(priced.tokens * 2 / 1000)
    assert priced.prices_as_of == date(2026, 11, 1)


def test_dry_run_counts_train_and_validation_together_against_the_models_total(tmp_path: Path) -> None:
    """Nova takes 20,000 records in all: 19,500 + 600 passes each split's own limit, not the total."""
    line = _nova_file(tmp_path, n=1).read_text()
    data = tmp_path / "version"
    data.mkdir()
    (data / "train.jsonl").write_text(line * 19_500)
    (data / "validation.jsonl").write_text(line * 600)
    config = _config("amazon.nova-micro-v1:0:128k")
    problems = dry_run(config, data, bucket=BUCKET, region="us-east-1", today=TODAY).problems
    assert problems == [
        "train + validation = 20100 records; amazon.nova-micro-v1:0:128k allows at most 20000 together"
    ]
    (data / "validation.jsonl").write_text(line * 500)
    assert dry_run(config, data, bucket=BUCKET, region="us-east-1", today=TODAY).problems == []


def test_dry_run_lists_record_problems_by_line_and_the_eol_refusal(tmp_path: Path) -> None:
    rft_data = _rft_file(tmp_path, n=50)
    config = _config(
        "amazon.nova-2-lite-v1:0:256k",
        customization_type="REINFORCEMENT_FINE_TUNING",
        grader={"lambda_arn": GRADER_ARN},
    )
    with rft_data.open("a") as handle:
        handle.write(
            '{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "x"}]}\n'
        )
    result = dry_run(config, rft_data, bucket=BUCKET, region="us-east-1", today=TODAY)
    # The conversation rules are tuneline.records.RftRecord's, the same as prepare applies.
    assert any(
        p.startswith("rft.jsonl line 51: ") and 'the last turn must be "user"' in p for p in result.problems
    ), result.problems
    assert 'rft.jsonl line 51: needs "reference_answer" (what the grader compares against)' in result.problems
    assert any("needs at least 100" in p for p in result.problems)
    retired = dry_run(_config(HAIKU), TICKETS, bucket=BUCKET, region="us-west-2", today=TODAY)
    assert any("end of life on 2026-09-10" in p for p in retired.problems)


def test_continued_pre_training_dry_run_reads_the_input_shape(tmp_path: Path) -> None:
    data = tmp_path / "pretrain.jsonl"
    long = json.dumps({"input": "x" * (4_096 * 3 + 1)})
    data.write_text(f'{{"input": "Tickets about refunds go to billing."}}\n{{"text": "wrong key"}}\n{long}\n')
    config = _config(CPT_MODEL, customization_type="CONTINUED_PRE_TRAINING")
    result = dry_run(config, data, bucket=BUCKET, region="us-west-2", today=TODAY)
    assert result.request["customizationType"] == "CONTINUED_PRE_TRAINING"
    assert any("line 2" in p and '"input"' in p for p in result.problems)
    assert "pretrain.jsonl line 3: longer than 4,096 tokens (AWS's estimate: 3 characters per token)" in (
        result.problems
    )
    # No Titan price in the dated table: no estimate, and the dry run says why.
    assert result.estimated_cost_usd is None and any("no training price" in w for w in result.warnings)


def _prepare(tmp_path: Path, rows: list[dict[str, Any]], target: Target, **data: Any) -> Path:
    """Prepare ``rows`` for ``target`` with the real prepare stage; the train split's JSONL."""
    from tuneline.config import DataConfig
    from tuneline.data.prepare import build_dataset

    tmp_path.mkdir(parents=True, exist_ok=True)
    src = tmp_path / f"in-{target.value}.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    split = {"train": 1, "validation": 0, "test": 0}
    built = build_dataset(DataConfig(source=str(src), split=split, **data), target, tmp_path / f"w-{target.value}")
    assert built.summary.problems == [] and built.summary.errors == {}, built.summary
    return tmp_path / f"w-{target.value}" / "out" / "train.jsonl"


def _ticket_prompts(n: int = 150) -> list[dict[str, Any]]:
    """The example's tickets as prompts alone: the system prompt and the user turn, no answer."""
    out = []
    for line in TICKETS.read_text().splitlines()[:n]:
        record = json.loads(line)
        out.append({"system": record["system"], "messages": record["messages"][:1]})
    return out


def test_prepared_pretrain_text_is_bedrocks_input_lines_and_the_titan_dry_run_accepts_them(
    tmp_path: Path,
) -> None:
    rows = [{"text": json.loads(line)["messages"][0]["content"]} for line in TICKETS.read_text().splitlines()[:40]]
    train = _prepare(tmp_path, rows, Target.BEDROCK_TITAN)
    lines = [json.loads(x) for x in train.read_text().splitlines()]
    assert len(lines) == 40 and all(set(line) == {"input"} for line in lines)
    assert lines[0] == {"input": rows[0]["text"]}
    for model_id in (CPT_MODEL, CPT_LITE):
        result = dry_run(
            _config(model_id, customization_type="CONTINUED_PRE_TRAINING"),
            train,
            bucket=BUCKET,
            region="us-east-1",
            today=TODAY,
        )
        assert result.problems == [], result.problems
        assert result.request["customizationType"] == "CONTINUED_PRE_TRAINING"
        assert result.request["hyperParameters"] == TITAN_DEFAULTS and result.epochs == 5
        assert any("legacy model" in w for w in result.warnings)
        assert validate_against_service_model(result.request) == []
    # The same lines are no fine-tuning data, and Tuneline's table offers no Titan fine-tuning.
    ft = dry_run(_config(CPT_MODEL), train, bucket=BUCKET, region="us-east-1", today=TODAY)
    assert any("supports CONTINUED_PRE_TRAINING" in p for p in ft.problems)
    assert any(p.startswith("train.jsonl line 1: needs a non-empty \"messages\" list") for p in ft.problems)


def test_prompts_only_data_prepares_for_distillation_and_is_refused_for_fine_tuning(tmp_path: Path) -> None:
    prompts = _ticket_prompts()
    # Read as prompts (data.kind: prompt), they become bedrock-conversation-2024 lines ending with
    # the user turn: the teacher writes the answers.
    train = _prepare(tmp_path, prompts, Target.BEDROCK_NOVA, kind="prompt")
    first = json.loads(train.read_text().splitlines()[0])
    assert first == {
        "schemaVersion": "bedrock-conversation-2024",
        "system": [{"text": prompts[0]["system"]}],
        "messages": [{"role": "user", "content": [{"text": prompts[0]["messages"][0]["content"]}]}],
    }
    distill = _config("amazon.nova-lite-v1:0:300k", customization_type="DISTILLATION", teacher_model=NOVA_PRO)
    result = dry_run(distill, train, bucket=BUCKET, region="us-east-1", today=TODAY)
    assert result.problems == [] and result.records == {"train": 150}
    assert validate_against_service_model(result.request) == []
    # The same file for fine-tuning: refused line by line, saying what to do.
    refused = dry_run(_config("amazon.nova-lite-v1:0:300k"), train, bucket=BUCKET, region="us-east-1", today=TODAY)
    assert refused.problems[0] == (
        "train.jsonl line 1: fine-tuning records end with the assistant's answer, and this one ends with "
        "the user's turn (a prompt with no answer): add the answers, or have a teacher model write them "
        "with tune.customization_type: DISTILLATION and tune.teacher_model"
    )
    assert refused.problems[-1] == "... and 130 more record problems"


def test_distillation_into_a_llama_student_is_conversation_2024_lines_single_turn_only(
    tmp_path: Path,
) -> None:
    """Every distillation line is bedrock-conversation-2024, whatever the student (AWS's
    distillation-data-prep-option-1 page): prompts, and prompts with the answer wanted, both; Claude
    and Llama students take one user turn. Claude's fine-tuning lines are refused by the dry run."""
    from tuneline.config import DataConfig
    from tuneline.data.prepare import build_dataset

    llama = _config(
        "meta.llama3-1-8b-instruct-v1:0:128k",
        customization_type="DISTILLATION",
        teacher_model="meta.llama3-1-405b-instruct-v1:0",
    )
    assert llama.tune.target is Target.BEDROCK_DISTILLATION
    prompts = _prepare(tmp_path / "prompts", _ticket_prompts(40), Target.BEDROCK_DISTILLATION, kind="prompt")
    answered_rows = [json.loads(line) for line in TICKETS.read_text().splitlines()[:40]]
    answered = _prepare(tmp_path / "answered", answered_rows, Target.BEDROCK_DISTILLATION)
    for train in (prompts, answered):
        lines = [json.loads(x) for x in train.read_text().splitlines()]
        assert len(lines) == 40 and all(line["schemaVersion"] == "bedrock-conversation-2024" for line in lines)
        assert dry_run(llama, train, bucket=BUCKET, region="us-west-2", today=TODAY).problems == []
    first = json.loads(answered.read_text().splitlines()[0])
    assert [m["role"] for m in first["messages"]] == ["user", "assistant"]
    assert first["messages"][1]["content"] == [{"text": answered_rows[0]["messages"][1]["content"]}]

    # A follow-up question is two user turns: prepare refuses it for this target, naming what to do.
    follow_up = {"messages": [
        {"role": "user", "content": "My order is late."},
        {"role": "assistant", "content": "Which order?"},
        {"role": "user", "content": "Order 1234."},
    ]}
    src = tmp_path / "multi.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in [*_ticket_prompts(39), follow_up]))
    built = build_dataset(DataConfig(source=str(src), kind="prompt"), Target.BEDROCK_DISTILLATION, tmp_path / "w-multi")
    assert (built.summary.accepted, built.summary.rejected) == (39, 1)
    assert built.summary.errors == {"too_many_messages": 1}
    (example,) = built.summary.examples["too_many_messages"]
    assert example["line"] == 40
    assert "the record has 3 turns; bedrock-distillation takes single-turn records" in example["message"]
    assert "distil into a Nova student" in example["message"]
    # Over data.max_messages_per_record as well: one error, that rule's, not two.
    long_chat = {"messages": [{"role": r, "content": "t"} for r in ("user", "assistant") * 2]}
    src.write_text(json.dumps(long_chat) + "\n")
    built = build_dataset(DataConfig(source=str(src), max_messages_per_record=3), Target.BEDROCK_DISTILLATION,
                          tmp_path / "w-long")
    assert [e["message"] for e in built.summary.examples["too_many_messages"]] == [
        "the record has 4 turns; data.max_messages_per_record allows 3: split the conversation"
    ]

    # Lines written by hand in the wrong shape or turns are caught before a paid job, too.
    claude_line = {"messages": [{"role": "user", "content": "Where is my order?"}]}
    multi_line = {"schemaVersion": "bedrock-conversation-2024",
                  "messages": [{"role": r, "content": [{"text": "t"}]} for r in ("user", "assistant", "user")]}
    hand = tmp_path / "hand" / "train.jsonl"
    hand.parent.mkdir()
    hand.write_text("".join(json.dumps(r) + "\n" for r in [*([claude_line] * 2), multi_line]))
    problems = dry_run(llama, hand, bucket=BUCKET, region="us-west-2", today=TODAY).problems
    assert problems[0].startswith("train.jsonl line 1: messages[0].content must be content blocks")
    assert any(p.startswith('train.jsonl line 1: needs "schemaVersion": "bedrock-conversation-2024"') for p in problems)
    assert "train.jsonl line 3: this student takes single-turn prompts only (one user turn, optional answer)" in problems


def test_botocore_validation_catches_what_the_service_model_refuses() -> None:
    problems = validate_against_service_model(
        {
            "jobName": "x",
            "customizationType": "FINE_TUNING",
            "customizationConfig": {"rftConfig": {"hyperParameters": {"batchSize": 8}}},
        }
    )
    assert any("batchSize" in p for p in problems)
    assert any("roleArn" in p for p in problems)


# --- CLI -----------------------------------------------------------------------------------------
def test_cli_models_and_dry_run(tmp_path: Path, settings: Settings) -> None:
    from tuneline_cli.main import app

    runner = CliRunner()
    listed = runner.invoke(app, ["models", "--json"])
    assert listed.exit_code == 0, listed.output
    rows = {row["model_id"]: row for row in json.loads(listed.output.strip().splitlines()[-1])}
    assert rows[HAIKU]["lifecycle"] == "legacy" and rows[HAIKU]["end_of_life"] == "2026-09-10"
    assert set(rows[HAIKU]) >= {
        "model_id",
        "label",
        "customization_types",
        "regions",
        "lifecycle",
        "end_of_life",
        "teachers",
    }
    assert "amazon.nova-premier-v1:0" in rows["amazon.nova-micro-v1:0:128k"]["teachers"]

    config = tmp_path / "run.yaml"
    config.write_text(
        "name: support-tickets\ndata: {source: tickets.jsonl}\n"
        f"tune: {{backend: bedrock, base_model: '{HAIKU}', role_arn: '{ROLE}'}}\n"
    )
    refused = runner.invoke(
        app, ["tune", "--config", str(config), "--dataset", str(TICKETS), "--dry-run", "--json"]
    )
    assert refused.exit_code == 2
    out = json.loads(refused.stdout.strip().splitlines()[-1])
    assert any("end of life on 2026-09-10" in p for p in out["problems"])
    assert out["request"]["baseModelIdentifier"] == HAIKU  # the request is still shown, never sent
    assert "AWS_SECRET_ACCESS_KEY" not in refused.stdout and "testing" not in json.dumps(out["request"])


# --- what the tune stage logs, and what the model card says -------------------------------------
def test_the_described_request_is_exactly_what_submit_sends(
    settings: Settings, store: ObjectStore, stubbed: tuple[Any, Stubber], make_spec: Callable[..., JobSpec]
) -> None:
    client, stubber = stubbed
    spec = make_spec(
        "amazon.nova-2-lite-v1:0:256k",
        customization_type="REINFORCEMENT_FINE_TUNING",
        grader={"lambda_arn": GRADER_ARN},
    )
    backend = _backend(settings, store, client, "us-east-1")
    described = backend.describe_request(spec)
    assert "testing" not in json.dumps(described)  # no credentials in the logged artifact
    _not_found(stubber, spec)
    stubber.add_response("create_model_customization_job", {"jobArn": _job_arn(spec)}, described)
    backend.submit(spec)


def test_the_model_card_says_how_the_model_was_customized(lineage: Callable[..., Any]) -> None:
    from tuneline.governance.model_card import render_model_card
    from tuneline.records import RecordKind

    dataset, model, report, decision = lineage()
    distilled = _config("amazon.nova-micro-v1:0:128k", customization_type="DISTILLATION", teacher_model=NOVA_PRO)
    card = render_model_card(distilled, "3", dataset, model, report, decision)
    assert "- Customized by: Bedrock DISTILLATION; teacher `amazon.nova-pro-v1:0`; data: sft records" in card
    prompts = distilled.model_copy(update={"data": distilled.data.model_copy(update={"kind": RecordKind.PROMPT})})
    card = render_model_card(prompts, "3", dataset, model, report, decision)
    assert "- Customized by: Bedrock DISTILLATION; teacher `amazon.nova-pro-v1:0`; data: prompt records" in card
    rft = _config(
        "amazon.nova-2-lite-v1:0:256k",
        customization_type="REINFORCEMENT_FINE_TUNING",
        grader={"lambda_arn": GRADER_ARN, "tuneline": [{"name": "json_valid"}, {"name": "field_accuracy"}]},
    )
    card = render_model_card(rft, "4", dataset, model, report, decision)
    assert (
        f"Bedrock REINFORCEMENT_FINE_TUNING; grader Lambda `{GRADER_ARN}` running Tuneline graders "
        "json_valid, field_accuracy; data: rft records"
    ) in card


def test_dry_run_checks_the_serving_mode_against_the_model(tmp_path: Path) -> None:
    data = _nova_file(tmp_path)
    nova = _config("amazon.nova-micro-v1:0:128k").model_copy(
        update={
            "promotion": _config("amazon.nova-micro-v1:0:128k").promotion.model_copy(
                update={"serving": "on-demand-deployment"}
            )
        }
    )
    assert dry_run(nova, data, bucket=BUCKET, region="us-east-1", today=TODAY).problems == []
    llama = RunConfig.model_validate(
        {
            "name": "support-tickets",
            "data": {"source": str(TICKETS)},
            "tune": {
                "backend": "bedrock",
                "base_model": "meta.llama3-1-8b-instruct-v1:0:128k",
                "role_arn": ROLE,
            },
            "promotion": {"serving": "on-demand-deployment"},
        }
    )
    problems = dry_run(llama, TICKETS, bucket=BUCKET, region="us-west-2", today=TODAY).problems
    assert any("provisioned-throughput only" in p for p in problems), problems


class _RecordingMlflow:
    """Just the MlflowClient calls the tune stage makes before a failed job ends it."""

    def __init__(self) -> None:
        self.dicts: dict[str, Any] = {}
        self.tags: dict[str, str] = {}

    def log_dict(self, run_id: str, value: Any, artifact_file: str) -> None:
        self.dicts[artifact_file] = json.loads(json.dumps(value))

    def set_tag(self, run_id: str, key: str, value: str) -> None:
        self.tags[key] = value

    def get_run(self, run_id: str) -> Any:
        from types import SimpleNamespace

        return SimpleNamespace(data=SimpleNamespace(metrics={}))

    def get_metric_history(self, run_id: str, key: str) -> list[Any]:
        return []

    def log_batch(self, *args: Any, **kwargs: Any) -> None:
        pass


def test_the_tune_stage_logs_the_request_it_sends_as_an_mlflow_artifact(
    settings: Settings,
    store: ObjectStore,
    stubbed: tuple[Any, Stubber],
    make_spec: Callable[..., JobSpec],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tuneline.stages import tune as tune_stage
    from tuneline.stages.context import StageContext

    client, stubber = stubbed
    spec = make_spec(
        "amazon.nova-micro-v1:0:128k", customization_type="DISTILLATION", teacher_model="amazon.nova-pro-v1:0"
    )
    config = RunConfig.model_validate(
        {
            "name": spec.name,
            "data": {"source": str(TICKETS)},
            "tune": spec.tune.model_dump(mode="json"),
        }
    )
    backend = _backend(settings, store, client, "us-east-1")
    ctx = StageContext(settings.model_copy(update={"bedrock_region": "us-east-1"}), run_id="run-1")
    mlflow = _RecordingMlflow()
    ctx.__dict__.update(mlflow=mlflow, store=store)  # the cached properties, filled in
    monkeypatch.setattr(tune_stage, "make_backend", lambda ctx, config: backend)
    monkeypatch.setattr(tune_stage, "job_spec", lambda ctx, config, dataset: spec)
    _not_found(stubber, spec)
    expected = _expected(
        spec,
        "DISTILLATION",
        hyperParameters=NOVA_FT,
        customizationConfig={
            "distillationConfig": {"teacherModelConfig": {"teacherModelIdentifier": "amazon.nova-pro-v1:0"}}
        },
    )
    stubber.add_response("create_model_customization_job", {"jobArn": _job_arn(spec)}, expected)
    stubber.add_response(
        "get_model_customization_job", _job(spec, "Failed", failureMessage="teacher not enabled")
    )
    with pytest.raises(JobFailedError, match="teacher not enabled"):
        tune_stage.run_tune(ctx, config, spec.dataset)
    assert mlflow.dicts["tune/request.json"] == expected
    assert "testing" not in json.dumps(mlflow.dicts["tune/request.json"])


@pytest.mark.parametrize(
    ("base_model", "tune", "needed"),
    [
        ("openai.gpt-oss-20b-1:0", {"customization_type": RFT, "grader": {"lambda_arn": GRADER_ARN}}, "bedrock-nova"),
        ("amazon.nova-2-lite-v1:0:256k", {"customization_type": RFT, "grader": {"lambda_arn": GRADER_ARN}}, "bedrock-nova"),
        (CPT_MODEL, {"customization_type": "CONTINUED_PRE_TRAINING"}, "bedrock-titan"),
        (CPT_LITE, {"customization_type": "CONTINUED_PRE_TRAINING"}, "bedrock-titan"),
    ],
    ids=["gpt-oss-rft", "nova2-rft", "titan-express-cpt", "titan-lite-cpt"],
)
@pytest.mark.parametrize("prepared_for", [Target.LOCAL, Target.BEDROCK_NOVA, Target.BEDROCK_CLAUDE_HAIKU])
def test_rft_and_continued_pre_training_need_records_prepared_in_bedrocks_shape_for_them(
    settings: Settings,
    store: ObjectStore,
    stubbed: tuple[Any, Stubber],
    make_spec: Callable[..., JobSpec],
    base_model: str,
    tune: dict[str, Any],
    needed: str,
    prepared_for: Target,
) -> None:
    spec = make_spec(base_model, **tune)
    assert spec.tune.target.value == needed  # what the lifecycle prepares the data for
    if prepared_for.value == needed:
        return  # the right lines: nothing to refuse (the contract tests above submit them)
    wrong = spec.model_copy(update={"dataset": spec.dataset.model_copy(update={"target": prepared_for})})
    region = "us-west-2" if base_model.startswith("openai.") else "us-east-1"
    with pytest.raises(ValidationFailedError) as err:
        _backend(settings, store, stubbed[0], region).submit(wrong)  # no call queued: none may be made
    assert (
        f"was prepared for target {prepared_for.value}, but a {tune['customization_type']} job for {base_model} "
        f"needs {needed} records: prepare again with data.target: {needed}"
    ) in err.value.problems[0], err.value.problems
