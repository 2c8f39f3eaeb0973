"""Amazon Bedrock model customization as a Tuneline tuning backend.

Idempotency has two layers, because a flow can die at any point between "create" and "record the
job id": (1) before creating, the job is looked up by its name, which is derived from the job
identity, so a re-run re-attaches to whatever the first run started; (2) the create call itself
carries a ``clientRequestToken`` derived from the same identity, so two racing creates (or a create
retried after a lost response) still make one job.

Per-step metrics are not in the API: Bedrock writes CSV files below the job's output prefix. They
are found by listing that prefix and matching file names, because the exact folder differs between
AWS's documentation and its samples.
"""

from __future__ import annotations

import csv
import io
import logging
import re
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from tuneline.backends.base import (
    JobSpec,
    JobStatus,
    MetricPoint,
    MetricsSink,
    ProgressCallback,
    TuningBackend,
)
from tuneline.backends.bedrock.api import BedrockCaller, BedrockServiceError, Sleep, make_bedrock_client
from tuneline.backends.bedrock.models import (
    BedrockModelSpec,
    bare_model_id,
    bedrock_model_spec,
    check_lifecycle,
    hyperparameter_strings,
)
from tuneline.config import BedrockTuneConfig
from tuneline.errors import BackendError, ConfigError, JobFailedError, ValidationFailedError
from tuneline.lineage import JobState, TrainedModel
from tuneline.settings import Settings
from tuneline.storage.s3 import ObjectStore, S3Uri

__all__ = [
    "RFT_MAX_RECORDS",
    "RFT_MIN_RECORDS",
    "BedrockBackend",
    "bedrock_job_name",
    "client_request_token",
    "customization_problems",
    "customization_request",
    "utc_today",
]

RFT_MIN_RECORDS = 100
"""AWS's RFT data page: at least 100 prompts."""
RFT_MAX_RECORDS = 20_000
"""AWS's rft-prepare-data page: "a maximum of 20K prompts" for reinforcement fine-tuning."""


def utc_today() -> date:
    return datetime.now(UTC).date()


_log = logging.getLogger(__name__)

# Bedrock's patterns: jobName ``[a-zA-Z0-9](-*[a-zA-Z0-9\+\-\.])*`` and customModelName
# ``([0-9a-zA-Z][_-]?){1,63}``, both at most 63 characters. Names made of alphanumeric runs joined
# by single hyphens satisfy both, so one derived name serves as job and model name.
_MAX_NAME = 63
_STATES = {
    "InProgress": JobState.RUNNING,
    "Stopping": JobState.RUNNING,
    "Completed": JobState.COMPLETED,
    "Failed": JobState.FAILED,
    "Stopped": JobState.STOPPED,
}
_TRAIN_METRICS_FILE = "step_wise_training_metrics.csv"
_NOT_FOUND = "ResourceNotFoundException"


def bedrock_job_name(run_name: str, identity: str) -> str:
    """``<run name>-<identity>``, cut and cleaned to fit Bedrock's job and model name patterns."""
    suffix = re.sub(r"[^A-Za-z0-9]", "", identity)
    if not suffix:
        raise ValueError(f"job identity {identity!r} has no alphanumeric characters")
    suffix = suffix[: _MAX_NAME - 3]
    slug = re.sub(r"[^A-Za-z0-9]+", "-", run_name).strip("-") or "tuneline"
    slug = slug[: _MAX_NAME - len(suffix) - 1].rstrip("-")
    return f"{slug}-{suffix}" if slug else suffix


def client_request_token(identity: str) -> str:
    """The idempotency token for the job with this identity (pattern ``[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?``)."""
    return "tuneline-" + re.sub(r"[^A-Za-z0-9]", "", identity)


class BedrockBackend(TuningBackend):
    """Tunes Claude 3 Haiku, Amazon Nova or any configured model with CreateModelCustomizationJob.

    ``store`` is the S3 that Bedrock reads training data from and writes output to (AWS S3 in the
    Bedrock region). ``dataset_store`` is where the prepare stage wrote the dataset; when it is a
    different store (say, the local SeaweedFS) the splits are copied into ``store`` first.
    """

    name = "bedrock"

    def __init__(
        self,
        settings: Settings,
        client: Any | None = None,
        store: ObjectStore | None = None,
        *,
        dataset_store: ObjectStore | None = None,
        sleep: Sleep = time.sleep,
        max_attempts: int = 8,
        today: Callable[[], date] = utc_today,
    ) -> None:
        self._today = today
        self.settings = settings
        self.store = store or ObjectStore(settings)
        self.dataset_store = dataset_store or self.store
        self._sleep = sleep
        self._call = BedrockCaller(
            client or make_bedrock_client(settings, "bedrock"), sleep=sleep, max_attempts=max_attempts
        )

    # --- validate ------------------------------------------------------------------------------
    def validate(self, spec: JobSpec) -> None:
        tune = _bedrock_tune(spec)
        try:
            model = bedrock_model_spec(tune.base_model, tune.model_limits)
        except ConfigError as exc:
            raise ValidationFailedError([str(exc)]) from exc
        # Past end of life (the base model, or a distillation's teacher): refused before anything is
        # sent, whatever else is wrong.
        warning = check_lifecycle(model, self._today(), tune.customization_type, tune.teacher_model)
        if warning:
            _log.warning("%s", warning)
        problems = customization_problems(tune, model, region=self.settings.bedrock_region)
        if tune.invocation_logs_s3_uri is None:
            problems.extend(self._data_problems(spec, model))
        try:
            S3Uri.parse(tune.output_s3_uri or spec.output_uri)
        except ConfigError as exc:
            problems.append(f"tune.output_s3_uri: {exc}")
        if problems:
            raise ValidationFailedError(problems)

    @staticmethod
    def _data_problems(spec: JobSpec, model: BedrockModelSpec) -> list[str]:
        dataset = spec.dataset
        problems: list[str] = []
        tune = _bedrock_tune(spec)
        # The target prepare writes this job's lines for: the model's record format for fine-tuning and
        # distillation, Bedrock's RFT lines, Bedrock's {"input"} lines for continued pre-training.
        needed = tune.target
        if dataset.target != needed:
            problems.append(
                f"dataset {dataset.name}@{dataset.version} was prepared for target {dataset.target.value}, "
                f"but a {tune.customization_type} job for {model.model_id} needs {needed.value} records: "
                f"prepare again with data.target: {needed.value}"
            )
        if not dataset.split_uris.get("train"):
            problems.append(f"dataset {dataset.name}@{dataset.version} has no train split")
        train = dataset.splits.get("train", 0)
        validation = dataset.splits.get("validation", 0)
        for label, count, low, high in (
            ("train", train, model.min_train_records, model.max_train_records),
            ("validation", validation, model.min_validation_records, model.max_validation_records),
        ):
            if label == "validation" and count == 0:
                continue  # a validation split is optional
            if low is not None and count < low:
                problems.append(
                    f"dataset split {label} has {count} records; {model.model_id} needs at least {low}"
                )
            if high is not None and count > high:
                problems.append(
                    f"dataset split {label} has {count} records; {model.model_id} allows at most {high}"
                )
        if tune.customization_type == "REINFORCEMENT_FINE_TUNING" and train < RFT_MIN_RECORDS:
            problems.append(
                f"dataset split train has {train} RFT records; Bedrock RFT needs at least {RFT_MIN_RECORDS}"
            )
        if tune.customization_type == "REINFORCEMENT_FINE_TUNING" and train + validation > RFT_MAX_RECORDS:
            problems.append(
                f"train + validation = {train + validation} RFT prompts; Bedrock RFT takes at most "
                f"{RFT_MAX_RECORDS:,}"
            )
        if model.max_total_records is not None and train + validation > model.max_total_records:
            problems.append(
                f"train + validation = {train + validation} records; {model.model_id} allows at most "
                f"{model.max_total_records} together"
            )
        return problems

    # --- submit --------------------------------------------------------------------------------
    def submit(self, spec: JobSpec) -> str:
        self.validate(spec)
        tune = _bedrock_tune(spec)
        name = bedrock_job_name(spec.name, spec.identity)
        existing = self._find_job(name)
        if existing is not None:
            _log.info("re-attaching to Bedrock job %s (%s)", name, existing["status"])
            return str(existing["jobArn"])

        model = bedrock_model_spec(tune.base_model, tune.model_limits)
        root = self._job_root(spec, name)
        if tune.invocation_logs_s3_uri is not None:
            train_uri, validation_uri = None, None  # Bedrock reads the invocation logs instead
        else:
            train_uri, validation_uri = self._stage_data(spec, root)
        params = customization_request(
            tune,
            model,
            name=name,
            token=client_request_token(spec.identity),
            train_uri=train_uri,
            validation_uri=validation_uri,
            output_uri=str(root.join("output")) + "/",
            tags=self._tags(spec),
        )
        try:
            response = self._call("create_model_customization_job", subject=name, **params)
        except BedrockServiceError as exc:
            if exc.code == "ConflictException":
                # Another run created it between our lookup and our create: attach to that one.
                raced = self._find_job(name)
                if raced is not None:
                    return str(raced["jobArn"])
            if exc.code == "ValidationException":
                raise ValidationFailedError([f"Bedrock refused job {name}: {exc.aws_message}"]) from exc
            raise
        _log.info("created Bedrock job %s", response["jobArn"])
        return str(response["jobArn"])

    def _find_job(self, job_name: str) -> dict[str, Any] | None:
        try:
            return self._call("get_model_customization_job", subject=job_name, jobIdentifier=job_name)
        except BedrockServiceError as exc:
            if exc.code == _NOT_FOUND:
                return None
            raise

    def describe_request(self, spec: JobSpec) -> dict[str, Any]:
        """The CreateModelCustomizationJob parameters ``submit`` sends for this spec (no secrets:
        the role ARN and S3 URIs, never credentials); nothing is staged or sent."""
        tune = _bedrock_tune(spec)
        model = bedrock_model_spec(tune.base_model, tune.model_limits)
        name = bedrock_job_name(spec.name, spec.identity)
        root = self._job_root(spec, name)
        uris = {split: self._data_uri(spec, root, split) for split in ("train", "validation")}
        logs = tune.invocation_logs_s3_uri is not None
        return customization_request(
            tune,
            model,
            name=name,
            token=client_request_token(spec.identity),
            train_uri=None if logs else uris["train"],
            validation_uri=None if logs else uris["validation"],
            output_uri=str(root.join("output")) + "/",
            tags=self._tags(spec),
        )

    def _data_uri(self, spec: JobSpec, root: S3Uri, split: str) -> str | None:
        source = spec.dataset.split_uris.get(split)
        if not source or spec.dataset.splits.get(split, 0) == 0:
            return None
        if self.dataset_store is self.store:
            return source  # already in the S3 that Bedrock reads
        return str(root.join("data", f"{split}.jsonl"))

    def _job_root(self, spec: JobSpec, job_name: str) -> S3Uri:
        tune = _bedrock_tune(spec)
        return S3Uri.parse(tune.output_s3_uri or spec.output_uri).join(job_name)

    def _stage_data(self, spec: JobSpec, root: S3Uri) -> tuple[str, str | None]:
        uris: dict[str, str | None] = {}
        for split in ("train", "validation"):
            target = uris[split] = self._data_uri(spec, root, split)
            source = spec.dataset.split_uris.get(split)
            # The key embeds the job identity, hence the dataset version: an object already there
            # is this very file from an earlier attempt (puts are atomic).
            if target is not None and source is not None and target != source and not self.store.exists(target):
                with tempfile.TemporaryDirectory(prefix="tuneline-bedrock-") as tmp:
                    local = self.dataset_store.download_file(source, Path(tmp) / f"{split}.jsonl")
                    self.store.put_file(target, local)
        train = uris["train"]
        if train is None:
            raise ValidationFailedError(
                [f"dataset {spec.dataset.name}@{spec.dataset.version} has no train split"]
            )
        return train, uris["validation"]

    @staticmethod
    def _tags(spec: JobSpec) -> dict[str, str]:
        tune = _bedrock_tune(spec)
        tags = dict(tune.tags)
        tags.update(
            {
                "tuneline:job-identity": spec.identity,
                "tuneline:run": spec.name,
                "tuneline:dataset": spec.dataset.name,
                "tuneline:dataset-version": spec.dataset.version,
            }
        )
        return tags

    # --- status, wait --------------------------------------------------------------------------
    def status(self, job_id: str) -> JobStatus:
        return _job_status(self._get(job_id))

    def _get(self, job_id: str) -> dict[str, Any]:
        return self._call("get_model_customization_job", subject=job_id, jobIdentifier=job_id)

    def wait(
        self,
        spec: JobSpec,
        job_id: str,
        sink: MetricsSink | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> JobStatus:
        tune = _bedrock_tune(spec)
        interval = tune.poll_interval_seconds
        ceiling = max(tune.poll_interval_seconds, tune.max_poll_interval_seconds)
        last: JobStatus | None = None
        while True:
            current = self.status(job_id)
            if on_progress is not None and current != last:
                on_progress(current)
            last = current
            if current.state.finished:
                break
            # Jobs run for hours: back off so a long job costs a few dozen calls, not thousands.
            self._sleep(interval)
            interval = min(interval * 2, ceiling)
        if current.state is not JobState.COMPLETED:
            return current
        points = self.metrics(job_id)
        if sink is not None:
            for step, values in _by_step(points).items():
                sink.log_metrics(values, step=step)
        return _with_metrics(current, points)

    # --- metrics -------------------------------------------------------------------------------
    def metrics(self, job_id: str) -> list[MetricPoint]:
        job = self._get(job_id)
        output = job["outputDataConfig"]["s3Uri"]
        keys = list(self.store.list_keys(output))
        short_id = str(job["jobArn"]).rsplit("/", 1)[-1]
        points: list[MetricPoint] = []
        train_key = _pick_metrics_file(keys, _is_train_metrics, short_id, output)
        validation_key = _pick_metrics_file(keys, _is_validation_metrics, short_id, output)
        if train_key is None:
            _log.warning("no %s below %s (job %s)", _TRAIN_METRICS_FILE, output, job_id)
        bucket = S3Uri.parse(output).bucket
        for key, loss_column, names in (
            (train_key, "training_loss", {"training_loss": "train_loss", "perplexity": "perplexity"}),
            (
                validation_key,
                "validation_loss",
                {"validation_loss": "validation_loss", "perplexity": "validation_perplexity"},
            ),
        ):
            if key is not None:
                uri = str(S3Uri(bucket, key))
                points.extend(_parse_metrics_csv(uri, self.store.get_bytes(uri), loss_column, names))
        return sorted(points, key=lambda p: (p.step, p.name))

    # --- results -------------------------------------------------------------------------------
    def fetch_model(self, spec: JobSpec, job_id: str) -> TrainedModel:
        job = self._get(job_id)
        state = _STATES.get(job["status"], JobState.RUNNING)
        if state is not JobState.COMPLETED:
            if state.finished:
                raise JobFailedError(
                    f"Bedrock job {job['jobName']} ({job['jobArn']}) ended {job['status']}: "
                    f"{job.get('failureMessage') or 'Bedrock gave no failure message'}"
                )
            raise BackendError(f"Bedrock job {job['jobName']} is still {job['status']}; wait for it first")
        model_arn = job.get("outputModelArn")
        if not model_arn:
            raise BackendError(f"Bedrock job {job['jobArn']} completed without an outputModelArn")
        final = _with_metrics(_job_status(job), self.metrics(job_id))
        return TrainedModel(
            backend=self.name,
            job_id=str(job["jobArn"]),
            base_model=_bedrock_tune(spec).base_model,
            model_uri=str(model_arn),
            final_train_loss=final.final_train_loss,
            final_validation_loss=final.final_validation_loss,
            steps=final.steps,
        )

    def cancel(self, job_id: str) -> None:
        try:
            self._call("stop_model_customization_job", subject=job_id, jobIdentifier=job_id)
        except BedrockServiceError as exc:
            # Stopping a job that already ended is refused; that is what the caller wanted anyway.
            if exc.code in ("ConflictException", "ValidationException"):
                job = self._get(job_id)
                if job["status"] in ("Completed", "Failed", "Stopped", "Stopping"):
                    return
            raise


def customization_problems(tune: BedrockTuneConfig, model: BedrockModelSpec, *, region: str) -> list[str]:
    """Everything wrong with this tune config for this base model, one message per problem."""
    problems: list[str] = []
    kind = tune.customization_type
    if kind not in model.customization_types:
        problems.append(
            f"tune.customization_type={kind}: {model.model_id} supports {', '.join(model.customization_types)}"
        )
    try:
        if kind == "REINFORCEMENT_FINE_TUNING":
            model.validate_rft_hyperparameters(dict(tune.hyperparameters))
        else:
            model.validate_hyperparameters(dict(tune.hyperparameters))
    except ValidationFailedError as exc:
        problems.extend(exc.problems)
    if kind == "REINFORCEMENT_FINE_TUNING":
        if tune.grader is None:
            problems.append(
                "tune.grader: RFT needs a grader: {lambda_arn: ...} for an existing Lambda, or "
                "{tuneline: [graders...], lambda_arn: ...} for the Tuneline grader Lambda (infra/terraform/aws)"
            )
        elif tune.grader.lambda_arn is None:
            problems.append(
                "tune.grader.lambda_arn: deploy the Tuneline grader Lambda (infra/terraform/aws, "
                "output rft_grader_lambda_arn) and set its ARN here"
            )
    elif tune.grader is not None or tune.reasoning_effort is not None:
        problems.append(
            f"tune.grader and tune.reasoning_effort apply to REINFORCEMENT_FINE_TUNING only, not {kind}"
        )
    if kind == "DISTILLATION":
        if tune.teacher_model is None:
            teachers = ", ".join(model.teachers) or "none known"
            problems.append(
                f"tune.teacher_model: distillation needs a teacher; {model.model_id} accepts {teachers}"
            )
        elif model.teachers and bare_model_id(tune.teacher_model) not in model.teachers:
            problems.append(
                f"tune.teacher_model={tune.teacher_model}: not a teacher for student {model.model_id}; "
                f"AWS allows {', '.join(model.teachers)}"
            )
    elif tune.teacher_model is not None or tune.max_response_length is not None:
        problems.append(
            f"tune.teacher_model and tune.max_response_length apply to DISTILLATION only, not {kind}"
        )
    problems.extend(_invocation_logs_problems(tune))
    if model.regions and region not in model.regions:
        problems.append(
            f"settings.bedrock_region={region}: {model.model_id} can be customized in "
            f"{', '.join(model.regions)} only; set TUNELINE_BEDROCK_REGION"
        )
    if bool(tune.vpc_subnet_ids) != bool(tune.vpc_security_group_ids):
        problems.append(
            "tune.vpc_subnet_ids and tune.vpc_security_group_ids must be given together (or neither)"
        )
    if tune.max_poll_interval_seconds < tune.poll_interval_seconds:
        problems.append(
            f"tune.max_poll_interval_seconds={tune.max_poll_interval_seconds:g} is below "
            f"tune.poll_interval_seconds={tune.poll_interval_seconds:g}"
        )
    return problems


# botocore's S3Uri pattern for invocationLogSource.s3Uri (the service checks it; botocore does not).
_S3_URI = re.compile(r"s3://[a-z0-9][-.a-z0-9]{1,61}[a-z0-9](?:/[-!_*'().a-z0-9A-Z]+(?:/[-!_*'().a-z0-9A-Z]+)*)?/?")


def _invocation_logs_problems(tune: BedrockTuneConfig) -> list[str]:
    kind = tune.customization_type
    uri = tune.invocation_logs_s3_uri
    if uri is None:
        given = [
            name
            for name, value in (
                ("tune.invocation_logs_use_prompt_response", tune.invocation_logs_use_prompt_response),
                ("tune.invocation_logs_request_metadata_filters", tune.invocation_logs_request_metadata_filters),
            )
            if value
        ]
        return [f"{name} applies only with tune.invocation_logs_s3_uri (the logs to train on)" for name in given]
    problems = []
    if kind not in ("DISTILLATION", "REINFORCEMENT_FINE_TUNING"):
        problems.append(f"tune.invocation_logs_s3_uri: invocation logs train DISTILLATION or RFT jobs, not {kind}")
    if not _S3_URI.fullmatch(uri):
        problems.append(
            f"tune.invocation_logs_s3_uri={uri!r}: not an S3 location Bedrock accepts: s3://<bucket>/<prefix>/ "
            "with a lower-case bucket name (where model invocation logging writes)"
        )
    return problems


def customization_request(
    tune: BedrockTuneConfig,
    model: BedrockModelSpec,
    *,
    name: str,
    token: str,
    train_uri: str | None,
    validation_uri: str | None,
    output_uri: str,
    tags: dict[str, str],
) -> dict[str, Any]:
    """The exact CreateModelCustomizationJob parameters for a validated config (no secrets in it)."""
    tag_list = [{"key": k, "value": v} for k, v in sorted(tags.items())]
    kind = tune.customization_type
    training: dict[str, Any] = {}
    if tune.invocation_logs_s3_uri is not None:
        training["invocationLogsConfig"] = {
            "usePromptResponse": tune.invocation_logs_use_prompt_response,
            "invocationLogSource": {"s3Uri": tune.invocation_logs_s3_uri},
        }
        if tune.invocation_logs_request_metadata_filters is not None:
            training["invocationLogsConfig"]["requestMetadataFilters"] = (
                tune.invocation_logs_request_metadata_filters.to_api()
            )
    elif train_uri is not None:
        training["s3Uri"] = train_uri
    params: dict[str, Any] = {
        "jobName": name,
        "customModelName": name,
        "roleArn": tune.role_arn,
        "clientRequestToken": token,
        "baseModelIdentifier": tune.base_model,
        "customizationType": kind,
        "trainingDataConfig": training,
        "outputDataConfig": {"s3Uri": output_uri},
        "jobTags": tag_list,
        "customModelTags": tag_list,
    }
    if kind == "REINFORCEMENT_FINE_TUNING":
        rft_hyperparameters: dict[str, Any] = dict(
            model.validate_rft_hyperparameters(dict(tune.hyperparameters))
        )
        if tune.reasoning_effort is not None:
            rft_hyperparameters["reasoningEffort"] = tune.reasoning_effort
        grader_arn = tune.grader.lambda_arn if tune.grader is not None else None
        if grader_arn is None:
            raise ValidationFailedError(["tune.grader.lambda_arn: RFT needs the grader Lambda's ARN"])
        params["customizationConfig"] = {
            "rftConfig": {
                "graderConfig": {"lambdaGrader": {"lambdaArn": grader_arn}},
                "hyperParameters": rft_hyperparameters,
            }
        }
    else:
        params["hyperParameters"] = hyperparameter_strings(
            model.validate_hyperparameters(dict(tune.hyperparameters))
        )
    if kind == "DISTILLATION":
        if tune.teacher_model is None:
            raise ValidationFailedError(["tune.teacher_model: distillation needs a teacher model"])
        teacher: dict[str, Any] = {"teacherModelIdentifier": tune.teacher_model}
        if tune.max_response_length is not None:
            teacher["maxResponseLengthForInference"] = tune.max_response_length
        params["customizationConfig"] = {"distillationConfig": {"teacherModelConfig": teacher}}
    if validation_uri:
        params["validationDataConfig"] = {"validators": [{"s3Uri": validation_uri}]}
    if tune.kms_key_id:
        params["customModelKmsKeyId"] = tune.kms_key_id
    if tune.vpc_subnet_ids:
        params["vpcConfig"] = {
            "subnetIds": list(tune.vpc_subnet_ids),
            "securityGroupIds": list(tune.vpc_security_group_ids),
        }
    return params


def _bedrock_tune(spec: JobSpec) -> BedrockTuneConfig:
    if not isinstance(spec.tune, BedrockTuneConfig):
        raise ValidationFailedError(
            [f"tune.backend is {spec.tune.backend!r}; the Bedrock backend needs 'bedrock'"]
        )
    return spec.tune


def _job_status(job: dict[str, Any]) -> JobStatus:
    raw = str(job["status"])
    state = _STATES.get(raw, JobState.RUNNING)
    if state in (JobState.FAILED, JobState.STOPPED):
        message = str(job.get("failureMessage") or raw)
    else:
        details = job.get("statusDetails") or {}
        stages = [
            f"{label} {details[key]['status']}"
            for key, label in (
                ("validationDetails", "validation"),
                ("dataProcessingDetails", "data processing"),
                ("trainingDetails", "training"),
            )
            if key in details and "status" in details[key]
        ]
        message = raw + (f" ({', '.join(stages)})" if stages else "")
    validation = job.get("validationMetrics") or []
    return JobStatus(
        job_id=str(job["jobArn"]),
        state=state,
        message=message,
        final_train_loss=(job.get("trainingMetrics") or {}).get("trainingLoss"),
        final_validation_loss=validation[-1].get("validationLoss") if validation else None,
    )


def _with_metrics(status: JobStatus, points: list[MetricPoint]) -> JobStatus:
    """Fill steps and, where the API gave none, final losses from the step-wise metrics."""
    last: dict[str, float] = {}
    for point in points:  # sorted by step: later points win
        last[point.name] = point.value
    return status.model_copy(
        update={
            "steps": max((p.step for p in points), default=status.steps),
            "final_train_loss": status.final_train_loss
            if status.final_train_loss is not None
            else last.get("train_loss"),
            "final_validation_loss": status.final_validation_loss
            if status.final_validation_loss is not None
            else last.get("validation_loss"),
        }
    )


def _by_step(points: list[MetricPoint]) -> dict[int, dict[str, float]]:
    grouped: dict[int, dict[str, float]] = defaultdict(dict)
    for point in points:
        grouped[point.step][point.name] = point.value
    return dict(sorted(grouped.items()))


def _is_train_metrics(name: str) -> bool:
    return name == _TRAIN_METRICS_FILE


def _is_validation_metrics(name: str) -> bool:
    return name.endswith(".csv") and "validation" in name and "metrics" in name


def _pick_metrics_file(keys: list[str], matches: Any, short_id: str, output: str) -> str | None:
    found = [k for k in keys if matches(PurePosixPath(k).name)]
    if len(found) > 1:
        # A shared output prefix can hold several jobs' folders; Bedrock names them after the job id.
        found = [k for k in found if short_id in k] or found
    if len(found) > 1:
        raise BackendError(f"several candidate metrics files below {output}: {', '.join(sorted(found))}")
    return found[0] if found else None


def _parse_metrics_csv(uri: str, data: bytes, loss_column: str, names: dict[str, str]) -> list[MetricPoint]:
    reader = csv.DictReader(io.StringIO(data.decode("utf-8-sig")))
    columns = {(c or "").strip().lower(): c for c in reader.fieldnames or []}
    for required in ("step_number", loss_column):
        if required not in columns:
            raise BackendError(
                f"metrics file {uri} has no {required!r} column (columns: {', '.join(columns) or 'none'})"
            )
    points: list[MetricPoint] = []
    offset = 0
    previous: int | None = None
    for line, row in enumerate(reader, start=2):
        try:
            raw_step = int(float(row[columns["step_number"]]))
        except (TypeError, ValueError) as exc:
            raise BackendError(f"metrics file {uri} line {line}: step_number is not a number") from exc
        # Some Bedrock outputs restart step_number every epoch; keep steps increasing so the curve
        # lines up with the epoch-continuous steps of the local backend.
        if previous is not None and raw_step + offset <= previous:
            offset = previous + 1 - raw_step
        step = raw_step + offset
        previous = step
        for column, metric in names.items():
            cell = (row.get(columns[column]) or "").strip() if column in columns else ""
            if not cell:
                continue
            try:
                points.append(MetricPoint(step=step, name=metric, value=float(cell)))
            except ValueError as exc:
                raise BackendError(
                    f"metrics file {uri} line {line}: {column}={cell!r} is not a number"
                ) from exc
    return points
