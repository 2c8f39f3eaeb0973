"""The Bedrock base models Tuneline knows, with their hyperparameter limits, in one table.

Every limit here was copied from AWS documentation (sources in ``BedrockModelSpec.source``); where
AWS's pages disagree, the comment says which one we follow and why. A model that is not in the table
can still be tuned: give its limits in the run config (``tune.model_limits``), in the same shape.

This module depends on pydantic and the error hierarchy only, so that ``tuneline.config`` can use
``BedrockModelSpec`` as a field type without an import cycle.
"""

from __future__ import annotations

import math
import re
from datetime import date
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, model_validator

from tuneline.errors import ConfigError, ValidationFailedError

__all__ = [
    "BEDROCK_MODELS",
    "CUSTOMIZATION_TYPES",
    "TEACHER_MODELS",
    "BedrockModelSpec",
    "CustomizationType",
    "HyperparameterLimit",
    "ModelLifecycle",
    "ModelRetiredError",
    "TeacherModel",
    "active_alternatives",
    "active_teachers",
    "bare_model_id",
    "bedrock_model_spec",
    "check_lifecycle",
    "hyperparameter_strings",
]

CustomizationType = Literal[
    "FINE_TUNING", "CONTINUED_PRE_TRAINING", "DISTILLATION", "REINFORCEMENT_FINE_TUNING"
]
CUSTOMIZATION_TYPES: tuple[str, ...] = (
    "FINE_TUNING",
    "CONTINUED_PRE_TRAINING",
    "DISTILLATION",
    "REINFORCEMENT_FINE_TUNING",
)
"""The ``customizationType`` values Tuneline submits (botocore's enum also has ``IMPORTED``, which is
custom model import, not a training job)."""

# The record kind (tuneline.records.RecordKind value) each customization type trains on.
RECORD_KIND_BY_TYPE: dict[str, str] = {
    "FINE_TUNING": "sft",
    "CONTINUED_PRE_TRAINING": "pretrain",
    # Conversations with answers (sft) or prompts alone (kind prompt: the teacher answers).
    "DISTILLATION": "sft",
    "REINFORCEMENT_FINE_TUNING": "rft",
}


class HyperparameterLimit(BaseModel):
    """One hyperparameter's type and inclusive range, as AWS documents it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["integer", "float"]
    minimum: float
    maximum: float
    default: float

    @model_validator(mode="after")
    def _ordered(self) -> HyperparameterLimit:
        if not self.minimum <= self.default <= self.maximum:
            raise ValueError(f"default {self.default:g} must lie within [{self.minimum:g}, {self.maximum:g}]")
        return self

    def describe(self) -> str:
        return f"{self.kind} from {_fmt(self.minimum)} to {_fmt(self.maximum)} (default {_fmt(self.default)})"


class ModelLifecycle(BaseModel):
    """Where a Bedrock model stands in AWS's lifecycle (active, legacy, past end of life), and on whose
    word: what the base-model table and the teacher table share."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model_id: str = Field(description="The Bedrock model identifier.")
    label: str = ""
    legacy: bool = Field(default=False, description="AWS lists the model as legacy (end of life announced).")
    legacy_since: date | None = Field(default=None, description="When AWS made it legacy, where stated.")
    end_of_life: date | None = Field(
        default=None, description="From this date AWS refuses new jobs for the model: Tuneline refuses them."
    )
    lifecycle_source: str = Field(default="", description="Where the lifecycle dates come from.")

    @model_validator(mode="after")
    def _end_of_life_is_legacy(self) -> ModelLifecycle:
        if self.end_of_life is not None and not self.legacy:
            raise ValueError(f"{self.model_id} has an end_of_life date, so it is legacy: set legacy: true")
        return self

    @property
    def lifecycle(self) -> Literal["active", "legacy"]:
        return "legacy" if self.legacy else "active"

    @property
    def name(self) -> str:
        return f"{self.label} ({self.model_id})" if self.label else self.model_id

    def is_past_end_of_life(self, today: date) -> bool:
        return self.end_of_life is not None and today >= self.end_of_life


class TeacherModel(ModelLifecycle):
    """A distillation teacher: an on-demand model that answers the prompts; only its lifecycle matters here."""


class BedrockModelSpec(ModelLifecycle):
    """What Tuneline needs to know about a Bedrock base model to validate and submit a job."""

    model_id: str = Field(description="Fine-tunable base model identifier, e.g. amazon.nova-micro-v1:0:128k.")
    record_format: Literal["bedrock", "nova"] = Field(
        description="Training record shape: 'bedrock' (Claude: string content) or 'nova' (content blocks)."
    )
    regions: tuple[str, ...] = Field(
        default=(), description="Regions where AWS offers customization of this model; empty: not checked."
    )
    hyperparameters: dict[str, HyperparameterLimit] = Field(
        description="Limits of the string hyperParameters map (fine-tuning, distillation, pre-training)."
    )
    rft_hyperparameters: dict[str, HyperparameterLimit] = Field(
        default_factory=dict,
        description="Limits of customizationConfig.rftConfig.hyperParameters (typed, not strings).",
    )
    customization_types: tuple[CustomizationType, ...] = ("FINE_TUNING",)
    teachers: tuple[str, ...] = Field(
        default=(), description="Teacher models AWS allows when this model is a distillation student."
    )
    serving: Literal["provisioned-throughput", "on-demand-deployment"] = "provisioned-throughput"
    min_train_records: int | None = Field(default=None, ge=1)
    max_train_records: int | None = Field(default=None, ge=1)
    min_validation_records: int | None = Field(default=None, ge=1)
    max_validation_records: int | None = Field(default=None, ge=1)
    max_total_records: int | None = Field(default=None, ge=1)
    max_tokens_per_record: int | None = Field(
        default=None, ge=1, description="Longest training record AWS accepts, in tokens; None: not checked."
    )
    source: str = Field(default="", description="Where the limits come from.")

    @model_validator(mode="after")
    def _consistent(self) -> BedrockModelSpec:
        if "DISTILLATION" in self.customization_types and not self.teachers:
            raise ValueError(f"{self.model_id} is a distillation student but names no teachers")
        if "REINFORCEMENT_FINE_TUNING" in self.customization_types and not self.rft_hyperparameters:
            raise ValueError(f"{self.model_id} offers RFT but gives no rft_hyperparameters limits")
        return self

    def validate_rft_hyperparameters(self, values: dict[str, Any]) -> dict[str, int | float]:
        """Like :meth:`validate_hyperparameters`, against the RFT limits."""
        return self.model_copy(update={"hyperparameters": self.rft_hyperparameters}).validate_hyperparameters(
            values
        )

    def _hyperparameter_model(self) -> type[BaseModel]:
        # One pydantic model per base model: the limits table becomes ordinary field constraints, so
        # pydantic does the type coercion ("2" -> 2, 2.5 refused for integers) and range checks.
        fields: dict[str, Any] = {}
        for name, limit in self.hyperparameters.items():
            kind: type = int if limit.kind == "integer" else float
            fields[name] = (
                kind | None,
                Field(default=None, ge=limit.minimum, le=limit.maximum, allow_inf_nan=False),
            )
        return create_model(
            "BedrockHyperparameters",
            __config__=ConfigDict(extra="forbid", frozen=True),
            **fields,
        )

    def validate_hyperparameters(self, values: dict[str, Any]) -> dict[str, int | float]:
        """The checked values, every default filled in; raises one message per bad value."""
        try:
            given = self._hyperparameter_model().model_validate(values)
        except ValidationError as exc:
            raise ValidationFailedError([self._problem(err, values) for err in exc.errors()]) from exc
        checked: dict[str, int | float] = {}
        for name, limit in self.hyperparameters.items():
            value = getattr(given, name)
            if value is None:
                value = int(limit.default) if limit.kind == "integer" else limit.default
            checked[name] = value
        return checked

    def _problem(self, err: Any, values: dict[str, Any]) -> str:
        name = str(err["loc"][0]) if err["loc"] else "?"
        limit = self.hyperparameters.get(name)
        if limit is None:
            allowed = ", ".join(sorted(self.hyperparameters)) or "none"
            return (
                f"tune.hyperparameters.{name}: {self.model_id} has no hyperparameter {name!r}; "
                f"allowed: {allowed}"
            )
        return (
            f"tune.hyperparameters.{name}={values.get(name)!r}: {self.model_id} allows "
            f"{limit.describe()}; {err['msg']}"
        )


def hyperparameter_strings(values: dict[str, int | float]) -> dict[str, str]:
    """Bedrock's ``hyperParameters`` map takes strings only; floats keep their shortest exact form."""
    out: dict[str, str] = {}
    for name, value in values.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"hyperparameter {name} must be finite, got {value}")
        out[name] = str(value) if isinstance(value, int) else repr(float(value))
    return out


def _fmt(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) >= 1 else f"{value:g}"


_CLAUDE_HP_DOC = "https://docs.aws.amazon.com/bedrock/latest/userguide/cm-hp-anth-claude-3.html"
_NOVA_HP_DOC = "https://docs.aws.amazon.com/bedrock/latest/userguide/cm-hp-nova-mm.html"

# Nova Micro, Lite and Pro share one hyperparameter table in the Bedrock user guide. The older Nova
# user guide page lists learningRateWarmupSteps up to 20; we follow the Bedrock API guide (up to 100)
# because that is the service that validates the request. Nova on Bedrock exposes no batch size.
_NOVA_HYPERPARAMETERS = {
    "epochCount": HyperparameterLimit(kind="integer", minimum=1, maximum=5, default=2),
    "learningRate": HyperparameterLimit(kind="float", minimum=1e-6, maximum=1e-4, default=1e-5),
    "learningRateWarmupSteps": HyperparameterLimit(kind="integer", minimum=0, maximum=100, default=10),
}

_LLAMA_HP_DOC = "https://docs.aws.amazon.com/bedrock/latest/userguide/cm-hp-meta-llama31.html"
_LLAMA32_HP_DOC = "https://docs.aws.amazon.com/bedrock/latest/userguide/cm-hp-meta-llama32.html"
_RFT_DOC = (
    "https://docs.aws.amazon.com/bedrock/latest/userguide/reinforcement-fine-tuning.html; "
    "https://docs.aws.amazon.com/bedrock/latest/APIReference/API_RFTHyperParameters.html"
)
_DISTILLATION_DOC = "https://docs.aws.amazon.com/bedrock/latest/userguide/prequisites-model-distillation.html"
_TITAN_HP_DOC = "https://docs.aws.amazon.com/bedrock/latest/userguide/cm-hp-titan-text.html"
_PREPARE_DOC = "https://docs.aws.amazon.com/bedrock/latest/userguide/model-customization-prepare.html"
_LIFECYCLE_DOC = "https://docs.aws.amazon.com/bedrock/latest/userguide/model-lifecycle.html"

# RFT hyperparameters: the ranges botocore's service model states (RFTHyperParameters: epochCount
# 1-50, batchSize 16-512, learningRate 1e-7-1e-3, trainingSamplePerPrompt 2-16, evalInterval
# 1-100); defaults from AWS's RFT page. maxPromptLength and inferenceMaxTokens have no range in the
# service model: the bounds here are the models' context limits, the service has the last word.
_RFT_HYPERPARAMETERS = {
    "epochCount": HyperparameterLimit(kind="integer", minimum=1, maximum=50, default=1),
    "batchSize": HyperparameterLimit(kind="integer", minimum=16, maximum=512, default=128),
    "learningRate": HyperparameterLimit(kind="float", minimum=1e-7, maximum=1e-3, default=1e-5),
    "trainingSamplePerPrompt": HyperparameterLimit(kind="integer", minimum=2, maximum=16, default=8),
    "evalInterval": HyperparameterLimit(kind="integer", minimum=1, maximum=100, default=10),
    "maxPromptLength": HyperparameterLimit(kind="integer", minimum=1, maximum=32_768, default=4_096),
    "inferenceMaxTokens": HyperparameterLimit(kind="integer", minimum=1, maximum=32_768, default=4_096),
}

_LLAMA_HYPERPARAMETERS = {
    "epochCount": HyperparameterLimit(kind="integer", minimum=1, maximum=10, default=5),
    "batchSize": HyperparameterLimit(kind="integer", minimum=1, maximum=1, default=1),
    "learningRate": HyperparameterLimit(kind="float", minimum=5e-6, maximum=0.1, default=1e-4),
}

# Titan Text G1 - Express and Lite share one table on the cm-hp-titan-text page (Premier, which
# takes fine-tuning only, has its own).
_TITAN_HYPERPARAMETERS = {
    "epochCount": HyperparameterLimit(kind="integer", minimum=1, maximum=10, default=5),
    "batchSize": HyperparameterLimit(kind="integer", minimum=1, maximum=64, default=1),
    "learningRate": HyperparameterLimit(kind="float", minimum=0.0, maximum=1.0, default=1e-5),
    "learningRateWarmupSteps": HyperparameterLimit(kind="integer", minimum=0, maximum=250, default=5),
}

# What is known of the Titan Text models' lifecycle, and from where. No end-of-life date is
# claimed: none was found on an AWS page, so Tuneline warns and does not refuse.
_TITAN_LIFECYCLE = (
    "legacy: AWS's current 'Overview of Amazon Titan models' page (titan-models) no longer lists any "
    "Titan Text model; langchain4j/langchain4j#2532 (2025-02) read them as legacy with an end-of-life "
    "notice on the model-lifecycle page, newrelic/newrelic-dotnet-agent#3373 (2025-12) and "
    "epam/ai-dial-adapter-bedrock#378 (2026-01) as past end of life. The date is not in Tuneline's "
    f"table: check the model card or GetFoundationModel's modelLifecycle ({_LIFECYCLE_DOC})"
)

NOVA_PREMIER = "amazon.nova-premier-v1:0"
NOVA_PRO_TEACHER = "amazon.nova-pro-v1:0"
LLAMA_405B_TEACHER = "meta.llama3-1-405b-instruct-v1:0"
LLAMA_70B_TEACHER = "meta.llama3-1-70b-instruct-v1:0"
CLAUDE_35_SONNET_TEACHERS = (
    "anthropic.claude-3-5-sonnet-20240620-v1:0",
    "anthropic.claude-3-5-sonnet-20241022-v2:0",
)

# Lifecycle facts, read 2026-12-04. An end-of-life date goes in the table (and refuses jobs) only
# when an AWS page states it for that very model; a date that only third parties give, or that
# sources disagree on, stays in the source text and the model only warns as legacy.
_CARD_DOC = "https://docs.aws.amazon.com/bedrock/latest/userguide/model-card-{}.html"
_STARTUPS_PRS = (
    "awslabs/startups#131 (2026-07) and #304 (2026-09), ai-model-lifecycle.md: "
    "'Llama 3.2 all sizes (meta.llama3-2-*-instruct-v1:0) — EOL Jul 7, 2026'"
)
_LLAMA32_90B_LIFECYCLE = (
    f"{_CARD_DOC.format('meta-llama-3-2-90b-instruct')}: 'Model EOL date: July 7, 2026', "
    "'Model lifecycle: Legacy' (read in AWS's zh_tw translation of the card); also " + _STARTUPS_PRS
)
_LLAMA32_SMALL_LIFECYCLE = (
    "legacy, third-party only: " + _STARTUPS_PRS + ". AWS's card for Llama 3.2 90B gives the same "
    "date (2026-07-07), but no AWS page read states it for this size, so the table has no date and "
    f"Tuneline warns instead of refusing: check the model card or GetFoundationModel ({_LIFECYCLE_DOC})"
)

TEACHER_MODELS: dict[str, TeacherModel] = {
    teacher.model_id: teacher
    for teacher in (
        TeacherModel(
            model_id=NOVA_PREMIER,
            label="Amazon Nova Premier",
            legacy=True,
            end_of_life=date(2026, 9, 14),
            lifecycle_source=(
                f"{_CARD_DOC.format('amazon-nova-premier')}: 'Model EOL date: September 14, 2026', "
                "'Model lifecycle: Legacy'; also strands-agents/samples#299 (2026-08) and "
                "awslabs/startups#131 (2026-07, 'within the 90-day exclusion zone')"
            ),
        ),
        TeacherModel(model_id=NOVA_PRO_TEACHER, label="Amazon Nova Pro"),
        TeacherModel(
            model_id=LLAMA_405B_TEACHER,
            label="Llama 3.1 405B Instruct",
            legacy=True,
            lifecycle_source=(
                "legacy, third-party only: awslabs/startups#131 and #304, ai-model-lifecycle.md: "
                "'Llama 3.1 405B Instruct (meta.llama3-1-405b-instruct-v1:0) — EOL Jul 7, 2026'; no AWS "
                "page read states it, so the table has no date and Tuneline warns instead of refusing"
            ),
        ),
        TeacherModel(model_id=LLAMA_70B_TEACHER, label="Llama 3.1 70B Instruct"),
        *(
            TeacherModel(
                model_id=model_id,
                label=label,
                legacy=True,
                lifecycle_source=(
                    "legacy, sources disagree on the date and none is an AWS page: awslabs/startups#304 "
                    "(2026-09) gives EOL 2026-07-30 for v1 and v2; AWS's notice quoted in "
                    "posit-dev/positron#9339 (2025-09) gives 2026-03-01 for v1 in the listed regions; "
                    "run-llama/llama_index#20211 (2025-11) gives 2026-03-01 for both. Every date is "
                    "past, but the table has none and Tuneline warns instead of refusing"
                ),
            )
            for model_id, label in zip(
                CLAUDE_35_SONNET_TEACHERS, ("Claude 3.5 Sonnet", "Claude 3.5 Sonnet v2"), strict=True
            )
        ),
    )
}
"""Distillation teachers with their lifecycle (on-demand model ids; AWS requires teacher and student
of one provider). A teacher past its end of life is refused like a student is."""


def _titan(model_id: str, label: str) -> BedrockModelSpec:
    # Continued pre-training only in this table: AWS fine-tunes these models too, but on
    # {"prompt", "completion"} lines, a shape Tuneline neither writes nor checks. Prepare writes
    # their {"input": text} lines for the bedrock-titan target.
    return BedrockModelSpec(
        model_id=model_id,
        label=label,
        record_format="bedrock",  # not read for continued pre-training: its lines are {"input"}
        regions=(),
        legacy=True,
        lifecycle_source=_TITAN_LIFECYCLE,
        hyperparameters=_TITAN_HYPERPARAMETERS,
        customization_types=("CONTINUED_PRE_TRAINING",),
        # The service refuses longer records ("Maximum input token count 4919 exceeds limit of 4096
        # for train data": aws-samples/amazon-bedrock-workshop#224); Lite's context is 4K tokens.
        max_tokens_per_record=4_096,
        source=f"{_TITAN_HP_DOC}; {_PREPARE_DOC}",
    )


def _nova(model_id: str, label: str, *, teachers: tuple[str, ...]) -> BedrockModelSpec:
    return BedrockModelSpec(
        model_id=model_id,
        label=label,
        record_format="nova",
        # us-east-1 per AWS's fine-tuning page; not enforced (AWS adds regions; the service refuses).
        regions=(),
        hyperparameters=_NOVA_HYPERPARAMETERS,
        customization_types=("FINE_TUNING", "DISTILLATION"),
        teachers=teachers,
        # Nova custom models trained after 2025-07-16 can be served on demand.
        serving="on-demand-deployment",
        # Nova fine-tuning data (the Bedrock user guide's "Prepare your training datasets" pages).
        min_train_records=8,
        max_train_records=20_000,
        min_validation_records=8,
        max_validation_records=1_000,
        max_total_records=20_000,
        max_tokens_per_record=32_000,
        source=f"{_NOVA_HP_DOC}; {_DISTILLATION_DOC}; {_PREPARE_DOC}",
    )


def _llama(
    model_id: str, label: str, *, teachers: tuple[str, ...] = (), doc: str, **lifecycle: Any
) -> BedrockModelSpec:
    return BedrockModelSpec(
        model_id=model_id,
        label=label,
        **lifecycle,
        record_format="bedrock",
        regions=("us-west-2",),
        hyperparameters=_LLAMA_HYPERPARAMETERS,
        customization_types=("FINE_TUNING", "DISTILLATION") if teachers else ("FINE_TUNING",),
        teachers=teachers,
        source=doc + (f"; {_DISTILLATION_DOC}" if teachers else ""),
    )


def _rft_only(model_id: str, label: str, record_format: Literal["bedrock", "nova"]) -> BedrockModelSpec:
    return BedrockModelSpec(
        model_id=model_id,
        label=label,
        record_format=record_format,
        regions=("us-west-2",),
        hyperparameters={},
        rft_hyperparameters=_RFT_HYPERPARAMETERS,
        customization_types=("REINFORCEMENT_FINE_TUNING",),
        min_train_records=100,
        source=_RFT_DOC,
    )


BEDROCK_MODELS: dict[str, BedrockModelSpec] = {
    spec.model_id: spec
    for spec in (
        BedrockModelSpec(
            model_id="anthropic.claude-3-haiku-20240307-v1:0:200k",
            label="Claude 3 Haiku",
            record_format="bedrock",
            regions=("us-west-2",),
            legacy=True,
            # AWS's model card and lifecycle page give the end of life; the legacy date is not
            # stated there, so none is claimed here.
            end_of_life=date(2026, 9, 10),
            lifecycle_source=f"{_LIFECYCLE_DOC} (Claude 3 Haiku: end of life 2026-09-10 in most regions)",
            hyperparameters={
                "epochCount": HyperparameterLimit(kind="integer", minimum=1, maximum=10, default=2),
                "batchSize": HyperparameterLimit(kind="integer", minimum=4, maximum=256, default=32),
                "learningRateMultiplier": HyperparameterLimit(
                    kind="float", minimum=0.1, maximum=2, default=1
                ),
                "earlyStoppingThreshold": HyperparameterLimit(
                    kind="float", minimum=0, maximum=0.1, default=0.001
                ),
                "earlyStoppingPatience": HyperparameterLimit(
                    kind="integer", minimum=1, maximum=10, default=2
                ),
            },
            customization_types=("FINE_TUNING", "DISTILLATION"),
            teachers=CLAUDE_35_SONNET_TEACHERS,
            min_train_records=32,
            max_train_records=10_000,
            min_validation_records=32,
            max_validation_records=1_000,
            max_total_records=10_000,
            max_tokens_per_record=32_000,
            source=_CLAUDE_HP_DOC,
        ),
        _nova("amazon.nova-micro-v1:0:128k", "Amazon Nova Micro", teachers=(NOVA_PREMIER, NOVA_PRO_TEACHER)),
        _nova("amazon.nova-lite-v1:0:300k", "Amazon Nova Lite", teachers=(NOVA_PREMIER, NOVA_PRO_TEACHER)),
        _nova("amazon.nova-pro-v1:0:300k", "Amazon Nova Pro", teachers=(NOVA_PREMIER,)),
        BedrockModelSpec(
            model_id="amazon.nova-2-lite-v1:0:256k",
            label="Amazon Nova 2 Lite",
            record_format="nova",
            regions=(),
            hyperparameters=_NOVA_HYPERPARAMETERS,
            rft_hyperparameters=_RFT_HYPERPARAMETERS,
            customization_types=("FINE_TUNING", "REINFORCEMENT_FINE_TUNING"),
            serving="on-demand-deployment",
            source=f"{_NOVA_HP_DOC}; {_RFT_DOC}",
        ),
        _llama(
            "meta.llama3-1-8b-instruct-v1:0:128k",
            "Llama 3.1 8B Instruct",
            teachers=(LLAMA_405B_TEACHER, LLAMA_70B_TEACHER),
            doc=_LLAMA_HP_DOC,
        ),
        _llama(
            "meta.llama3-1-70b-instruct-v1:0:128k",
            "Llama 3.1 70B Instruct",
            teachers=(LLAMA_405B_TEACHER,),
            doc=_LLAMA_HP_DOC,
        ),
        _llama(
            "meta.llama3-2-1b-instruct-v1:0:128k",
            "Llama 3.2 1B Instruct",
            teachers=(LLAMA_405B_TEACHER, LLAMA_70B_TEACHER),
            doc=_LLAMA32_HP_DOC,
            legacy=True,
            lifecycle_source=_LLAMA32_SMALL_LIFECYCLE,
        ),
        _llama(
            "meta.llama3-2-3b-instruct-v1:0:128k",
            "Llama 3.2 3B Instruct",
            teachers=(LLAMA_405B_TEACHER, LLAMA_70B_TEACHER),
            doc=_LLAMA32_HP_DOC,
            legacy=True,
            lifecycle_source=_LLAMA32_SMALL_LIFECYCLE,
        ),
        _llama(
            "meta.llama3-2-11b-instruct-v1:0:128k",
            "Llama 3.2 11B Instruct",
            doc=_LLAMA32_HP_DOC,
            legacy=True,
            lifecycle_source=_LLAMA32_SMALL_LIFECYCLE,
        ),
        _llama(
            "meta.llama3-2-90b-instruct-v1:0:128k",
            "Llama 3.2 90B Instruct",
            doc=_LLAMA32_HP_DOC,
            legacy=True,
            end_of_life=date(2026, 7, 7),
            lifecycle_source=_LLAMA32_90B_LIFECYCLE,
        ),
        _titan("amazon.titan-text-express-v1:0:8k", "Amazon Titan Text G1 - Express"),
        _titan("amazon.titan-text-lite-v1:0:4k", "Amazon Titan Text G1 - Lite"),
        _rft_only("openai.gpt-oss-20b-1:0", "gpt-oss-20b", "bedrock"),
        _rft_only("qwen.qwen3-32b-v1:0", "Qwen3 32B", "bedrock"),
    )
}


class ModelRetiredError(ConfigError):
    """The base model is past its end of life: AWS takes no new jobs for it."""


def active_alternatives(spec: BedrockModelSpec, customization_type: str | None = None) -> list[str]:
    """Active models in the table offering the same customization type, same provider first."""
    wanted = customization_type or "FINE_TUNING"
    provider = spec.model_id.split(".", 1)[0]
    active = [m for m in BEDROCK_MODELS.values() if not m.legacy and wanted in m.customization_types]
    active.sort(key=lambda m: (m.model_id.split(".", 1)[0] != provider, m.model_id))
    return [m.model_id for m in active]


def active_teachers(student: BedrockModelSpec) -> list[str]:
    """The student's teachers that the teacher table lists as active."""
    return [t for t in student.teachers if t in TEACHER_MODELS and not TEACHER_MODELS[t].legacy]


def bare_model_id(identifier: str) -> str:
    """``arn:aws:bedrock:us-east-1::foundation-model/X`` -> ``X``; a cross-region profile ``us.X`` -> ``X``."""
    bare = identifier.rsplit("/", 1)[-1]
    region_prefix = re.match(r"^(us|eu|apac|global|us-gov)\.(.+\..+)$", bare)
    return region_prefix.group(2) if region_prefix else bare


def check_lifecycle(
    spec: BedrockModelSpec,
    today: date,
    customization_type: str | None = None,
    teacher: str | None = None,
) -> str | None:
    """Raise :class:`ModelRetiredError` when the base model, or a distillation's ``teacher``, is past
    its end of life; the warning for a legacy one; else None."""
    warnings = [_student_lifecycle(spec, today, customization_type)]
    if customization_type == "DISTILLATION" and teacher is not None:
        warnings.append(_teacher_lifecycle(spec, bare_model_id(teacher), today))
    return " ".join(w for w in warnings if w) or None


def _student_lifecycle(spec: BedrockModelSpec, today: date, customization_type: str | None) -> str | None:
    alternatives = ", ".join(active_alternatives(spec, customization_type)) or "none in Tuneline's table"
    if spec.is_past_end_of_life(today):
        raise ModelRetiredError(
            f"{spec.name} reached end of life on {spec.end_of_life.isoformat()}: Bedrock takes no new "
            f"customization jobs for it. Choose an active model in tune.base_model: {alternatives}"
        )
    if spec.legacy:
        return f"{spec.name} is a legacy model{_until(spec)}. Active alternatives: {alternatives}"
    return None


def _teacher_lifecycle(student: BedrockModelSpec, teacher_id: str, today: date) -> str | None:
    teacher = TEACHER_MODELS.get(teacher_id)
    if teacher is None:
        return None  # not in the teacher table: nothing known of its lifecycle
    active = ", ".join(active_teachers(student))
    if not active:
        students = [
            m.model_id
            for m in BEDROCK_MODELS.values()
            if m.model_id != student.model_id
            and not m.legacy
            and active_teachers(m)
            and m.model_id.split(".", 1)[0] == student.model_id.split(".", 1)[0]
        ]
        active = "none in Tuneline's table" + (
            f"; students with an active teacher: {', '.join(students)}" if students else ""
        )
    if teacher.is_past_end_of_life(today):
        raise ModelRetiredError(
            f"teacher {teacher.name} reached end of life on {teacher.end_of_life.isoformat()}: Bedrock "
            f"no longer runs it, so it cannot answer the prompts. Choose an active teacher for "
            f"{student.model_id} in tune.teacher_model: {active}"
        )
    if teacher.legacy:
        return f"teacher {teacher.name} is a legacy model{_until(teacher)}. Active teachers: {active}"
    return None


def _until(model: ModelLifecycle) -> str:
    if model.end_of_life:
        return f"; end of life on {model.end_of_life.isoformat()}"
    return "; Tuneline's table has no end-of-life date for it: check its model card before training"


def bedrock_model_spec(model_id: str, override: BedrockModelSpec | None = None) -> BedrockModelSpec:
    """The limits for ``model_id``: the config's own ``model_limits`` first, then the table."""
    if override is not None:
        if override.model_id != model_id:
            raise ConfigError(
                f"tune.model_limits.model_id is {override.model_id!r} but tune.base_model is "
                f"{model_id!r}; they must name the same model"
            )
        return override
    try:
        return BEDROCK_MODELS[model_id]
    except KeyError:
        known = ", ".join(sorted(BEDROCK_MODELS))
        raise ConfigError(
            f"unknown Bedrock base model {model_id!r}: use one of {known}, or give its limits "
            f"(record_format, hyperparameters with kind/minimum/maximum/default) in tune.model_limits"
        ) from None
