"""What a Bedrock customization job would send, and cost, without sending it.

``dry_run`` validates the run config and a local copy of the prepared data for the target's
customization type, builds the exact ``CreateModelCustomizationJob`` parameters the backend would
send (``tuneline.backends.bedrock.backend.customization_request``, the one builder both use) and
checks them against botocore's service model for ``bedrock``. No credentials, no network: the S3
URIs are the ones the backend would stage the data to.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tuneline.backends.bedrock.backend import (
    RFT_MAX_RECORDS,
    RFT_MIN_RECORDS,
    bedrock_job_name,
    client_request_token,
    customization_problems,
    customization_request,
    utc_today,
)
from tuneline.backends.bedrock.models import (
    BedrockModelSpec,
    ModelRetiredError,
    bedrock_model_spec,
    check_lifecycle,
)
from tuneline.backends.bedrock.prices import PriceTable, estimate_training_cost, load_price_table
from tuneline.config import BedrockTuneConfig, RunConfig
from tuneline.errors import ConfigError, ValidationFailedError
from tuneline.records import NOVA_SCHEMA_VERSION

__all__ = ["DryRun", "check_records", "dry_run", "validate_against_service_model"]

_MAX_LISTED = 20  # record problems listed one by one; the rest are counted
_CHARS_PER_TOKEN = 3  # AWS's validator estimates 3 characters per token


class DryRun(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    request: dict[str, Any] | None = Field(description="The CreateModelCustomizationJob parameters.")
    estimated_cost_usd: float | None = Field(
        description="Training tokens x epochs x the price table's price."
    )
    problems: list[str] = Field(description="Anything that would make Bedrock (or Tuneline) refuse the job.")
    warnings: list[str] = Field(default_factory=list)
    records: dict[str, int] = Field(default_factory=dict, description="split -> records read")
    tokens: int = Field(default=0, description="Estimated training tokens (3 characters per token).")
    epochs: int | None = None
    prices_as_of: date | None = None

    @property
    def ok(self) -> bool:
        return not self.problems


def _splits(dataset: Path) -> dict[str, Path]:
    if dataset.is_file():
        return {"train": dataset}
    if dataset.is_dir():
        found = {split: dataset / f"{split}.jsonl" for split in ("train", "validation")}
        return {split: path for split, path in found.items() if path.is_file()}
    raise ConfigError(f"--dataset {dataset}: no such file or folder (a dry run reads a local prepared JSONL)")


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    with path.open(encoding="utf-8-sig") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                yield number, line


def _texts_of_content(content: Any) -> list[str] | None:
    if isinstance(content, str):
        return [content]
    if isinstance(content, list) and all(isinstance(b, dict) for b in content):
        return [str(b["text"]) for b in content if "text" in b]
    return None


def check_records(record: Any, *, kind: str, record_format: str, single_turn: bool) -> tuple[list[str], int]:
    """Problems of one record for a customization type, and its characters (for the token estimate)."""
    if not isinstance(record, dict):
        return ["is not a JSON object"], 0
    if kind == "CONTINUED_PRE_TRAINING":
        extra = sorted(set(record) - {"input"})
        text = record.get("input")
        problems = (
            [] if isinstance(text, str) and text else ['needs "input": non-empty text (Bedrock\'s shape)']
        )
        if extra:
            problems.append(f'has keys {", ".join(extra)}; continued pre-training takes only "input"')
        return problems, len(text) if isinstance(text, str) else 0
    messages = record.get("messages")
    if not isinstance(messages, list) or not messages:
        return ['needs a non-empty "messages" list'], 0
    problems: list[str] = []
    chars = 0
    roles: list[str] = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or "role" not in message:
            problems.append(f"messages[{i}] needs a role")
            continue
        texts = _texts_of_content(message.get("content"))
        if texts is None:
            problems.append(f"messages[{i}].content is neither text nor content blocks")
            continue
        if (
            (record_format == "nova" or kind == "DISTILLATION")
            and kind != "REINFORCEMENT_FINE_TUNING"
            and isinstance(message["content"], str)
        ):
            shape = "distillation data" if kind == "DISTILLATION" else "Nova"
            problems.append(f"messages[{i}].content must be content blocks [{{'text': ...}}] for {shape}")
        chars += sum(len(t) for t in texts)
        roles.append(str(message["role"]))
    system = record.get("system")
    if isinstance(system, str):
        chars += len(system)
    elif isinstance(system, list):
        chars += sum(len(t) for t in (_texts_of_content(system) or []))
    if kind == "REINFORCEMENT_FINE_TUNING":
        if not problems:
            problems.extend(_rft_record_problems(record))
        if "reference_answer" not in record:
            problems.append('needs "reference_answer" (what the grader compares against)')
        return problems, chars
    if kind == "DISTILLATION" and record_format == "bedrock" and record.get("schemaVersion") != NOVA_SCHEMA_VERSION:
        problems.append(
            f'needs "schemaVersion": "{NOVA_SCHEMA_VERSION}": distillation reads that shape for every student '
            "(prepare writes it for the bedrock-distillation and bedrock-nova targets)"
        )
    if roles and roles[0] != "user":
        problems.append("the first message must be the user's")
    if any(a == b for a, b in zip(roles, roles[1:], strict=False)):
        problems.append("roles must alternate user/assistant")
    if kind == "FINE_TUNING":
        if roles and roles[-1] == "user":
            problems.append(
                "fine-tuning records end with the assistant's answer, and this one ends with the user's "
                "turn (a prompt with no answer): add the answers, or have a teacher model write them with "
                "tune.customization_type: DISTILLATION and tune.teacher_model"
            )
        elif len(roles) < 2 or roles[-1] != "assistant":
            problems.append("fine-tuning records end with the assistant's answer")
    elif kind == "DISTILLATION" and single_turn and len(roles) > 2:
        problems.append("this student takes single-turn prompts only (one user turn, optional answer)")
    if record_format == "bedrock" and kind == "FINE_TUNING":
        extra = sorted(set(record) - {"system", "messages"})
        if extra:
            problems.append(f"has keys {', '.join(extra)}; only system and messages are allowed")
        if any(marker in json.dumps(record) for marker in ("\\nHuman:", "\\nAssistant:")):
            problems.append('contains "\\nHuman:" or "\\nAssistant:", which Bedrock refuses')
    return problems, chars


def _rft_record_problems(record: dict[str, Any]) -> list[str]:
    """Bedrock's RFT line as Tuneline's own RFT record (``tuneline.records.RftRecord``): the same
    conversation rules as prepare (user opens, roles alternate, the user turn closes)."""
    from pydantic import ValidationError

    from tuneline.records import RftRecord

    messages = record["messages"]
    system = "".join(_text(m.get("content")) for m in messages if m.get("role") == "system") or None
    turns = [
        {"role": m["role"], "content": _text(m.get("content"))} for m in messages if m.get("role") != "system"
    ]
    try:
        RftRecord.model_validate(
            {"system": system, "messages": turns, "reference_answer": record.get("reference_answer")}
        )
    except ValidationError as exc:
        return [str(err["msg"]).removeprefix("Value error, ") for err in exc.errors()]
    return []


def _text(content: Any) -> str:
    return "".join(_texts_of_content(content) or [])


def validate_against_service_model(params: dict[str, Any]) -> list[str]:
    """botocore's own parameter validation for CreateModelCustomizationJob, as problem lines."""
    import botocore.session
    from botocore.validate import ParamValidator

    shape = (
        botocore.session.get_session()
        .get_service_model("bedrock")
        .operation_model("CreateModelCustomizationJob")
    )
    report = ParamValidator().validate(params, shape.input_shape)
    if not report.has_errors():
        return []
    return [f"botocore: {line.strip()}" for line in report.generate_report().splitlines()[1:] if line.strip()]


def dry_run(
    config: RunConfig,
    dataset: Path,
    *,
    bucket: str,
    region: str,
    today: date | None = None,
    prices: PriceTable | str | Path | None = None,
) -> DryRun:
    """Validate config and data for the target and build the request; nothing is sent anywhere."""
    tune = config.tune
    if not isinstance(tune, BedrockTuneConfig):
        raise ConfigError(f"tune.backend is {tune.backend!r}: a dry run describes Bedrock jobs only")
    table = prices if isinstance(prices, PriceTable) else load_price_table(prices)
    problems: list[str] = []
    warnings: list[str] = []
    model: BedrockModelSpec = bedrock_model_spec(tune.base_model, tune.model_limits)
    try:
        warning = check_lifecycle(model, today or utc_today(), tune.customization_type, tune.teacher_model)
        if warning:
            warnings.append(warning)
    except ModelRetiredError as exc:
        problems.append(str(exc))
    problems.extend(customization_problems(tune, model, region=region))
    if config.promotion.serving == "on-demand-deployment" and model.serving != "on-demand-deployment":
        problems.append(
            f"promotion.serving=on-demand-deployment: custom {model.label or model.model_id} models are served "
            "through provisioned-throughput only (on demand: Nova custom models)"
        )

    kind = tune.customization_type
    single_turn = not model.model_id.startswith("amazon.")
    records: dict[str, int] = {}
    characters = 0
    digest = hashlib.sha256(tune.model_dump_json().encode())
    record_problems: list[str] = []
    splits = _splits(dataset) if tune.invocation_logs_s3_uri is None else {}
    for split, path in splits.items():
        count = 0
        for number, line in _lines(path):
            count += 1
            digest.update(line.encode())
            try:
                record = json.loads(line)
            except ValueError as exc:
                record_problems.append(f"{path.name} line {number}: not JSON ({exc})")
                continue
            found, chars = check_records(
                record, kind=kind, record_format=model.record_format, single_turn=single_turn
            )
            if split == "train":
                characters += chars
            if model.max_tokens_per_record is not None and chars > model.max_tokens_per_record * _CHARS_PER_TOKEN:
                found.append(
                    f"longer than {model.max_tokens_per_record:,} tokens (AWS's estimate: 3 characters per token)"
                )
            record_problems.extend(f"{path.name} line {number}: {p}" for p in found)
        records[split] = count
    if tune.invocation_logs_s3_uri is None and not records.get("train"):
        problems.append(f"{dataset}: no train records")
    problems.extend(record_problems[:_MAX_LISTED])
    if len(record_problems) > _MAX_LISTED:
        problems.append(f"... and {len(record_problems) - _MAX_LISTED} more record problems")
    train, validation = records.get("train", 0), records.get("validation", 0)
    for label, count, low, high in (
        ("train", train, model.min_train_records, model.max_train_records),
        ("validation", validation, model.min_validation_records, model.max_validation_records),
    ):
        if (label == "validation" and count == 0) or tune.invocation_logs_s3_uri is not None:
            continue
        if low is not None and count < low:
            problems.append(f"split {label} has {count} records; {model.model_id} needs at least {low}")
        if high is not None and count > high:
            problems.append(f"split {label} has {count} records; {model.model_id} allows at most {high}")
    if (
        tune.invocation_logs_s3_uri is None
        and model.max_total_records is not None
        and train + validation > model.max_total_records
    ):
        problems.append(
            f"train + validation = {train + validation} records; {model.model_id} allows at most "
            f"{model.max_total_records} together"
        )
    if (
        kind == "REINFORCEMENT_FINE_TUNING"
        and tune.invocation_logs_s3_uri is None
        and train < RFT_MIN_RECORDS
    ):
        problems.append(f"split train has {train} RFT records; Bedrock RFT needs at least {RFT_MIN_RECORDS}")
    if kind == "REINFORCEMENT_FINE_TUNING" and train + validation > RFT_MAX_RECORDS:
        problems.append(
            f"train + validation = {train + validation} RFT prompts; Bedrock RFT takes at most {RFT_MAX_RECORDS:,}"
        )

    identity = digest.hexdigest()[:16]
    name = bedrock_job_name(config.name, identity)
    root = (tune.output_s3_uri or f"s3://{bucket}/runs/{config.name}").rstrip("/") + f"/{name}"
    request: dict[str, Any] | None
    epochs: int | None = None
    try:
        request = customization_request(
            tune,
            model,
            name=name,
            token=client_request_token(identity),
            train_uri=None if tune.invocation_logs_s3_uri else f"{root}/data/train.jsonl",
            validation_uri=f"{root}/data/validation.jsonl" if validation else None,
            output_uri=f"{root}/output/",
            tags={"tuneline:run": config.name, "tuneline:job-identity": identity},
        )
        problems.extend(validate_against_service_model(request))
        if kind == "REINFORCEMENT_FINE_TUNING":
            epochs = int(request["customizationConfig"]["rftConfig"]["hyperParameters"]["epochCount"])
        else:
            epochs = int(request["hyperParameters"].get("epochCount", "1"))
    except ValidationFailedError as exc:
        request = None
        problems.extend(p for p in exc.problems if p not in problems)
    tokens = math.ceil(characters / _CHARS_PER_TOKEN)
    cost = None
    if tune.invocation_logs_s3_uri is not None:
        # The logs stay in S3: a dry run counts no tokens, so it cannot price the job.
        warnings.append(
            f"the training data is Bedrock's invocation logs at {tune.invocation_logs_s3_uri}, which a dry run "
            "does not read: no record checks, no token count and no cost estimate"
        )
    elif epochs is not None and kind != "REINFORCEMENT_FINE_TUNING":
        cost = estimate_training_cost(table, tune.base_model, tokens, epochs)
    if cost is None and tune.invocation_logs_s3_uri is None:
        warnings.append(
            f"no training price for {tune.base_model} ({kind}) in the price table of {table.as_of}"
        )
    elif cost is not None and kind == "DISTILLATION":
        warnings.append("the estimate covers training the student only, not the teacher's answers")
    return DryRun(
        request=request,
        estimated_cost_usd=cost,
        problems=problems,
        warnings=warnings,
        records=records,
        tokens=tokens,
        epochs=epochs,
        prices_as_of=table.as_of,
    )
