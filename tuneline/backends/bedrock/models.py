"""The Bedrock base models Tuneline knows, with their hyperparameter limits, in one table.

Every limit here was copied from AWS documentation (sources in ``BedrockModelSpec.source``); where
AWS's pages disagree, the comment says which one we follow and why. A model that is not in the table
can still be tuned: give its limits in the run config (``tune.model_limits``), in the same shape.

This module depends on pydantic and the error hierarchy only, so that ``tuneline.config`` can use
``BedrockModelSpec`` as a field type without an import cycle.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, model_validator

from tuneline.errors import ConfigError, ValidationFailedError

__all__ = [
    "BEDROCK_MODELS",
    "BedrockModelSpec",
    "HyperparameterLimit",
    "bedrock_model_spec",
    "hyperparameter_strings",
]


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


class BedrockModelSpec(BaseModel):
    """What Tuneline needs to know about a Bedrock base model to validate and submit a job."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model_id: str = Field(description="Fine-tunable base model identifier, e.g. amazon.nova-micro-v1:0:128k.")
    label: str = ""
    record_format: Literal["bedrock", "nova"] = Field(
        description="Training record shape: 'bedrock' (Claude: string content) or 'nova' (content blocks)."
    )
    regions: tuple[str, ...] = Field(
        default=(), description="Regions where AWS offers customization of this model; empty: not checked."
    )
    legacy: bool = Field(default=False, description="AWS lists the model as legacy (end of life announced).")
    hyperparameters: dict[str, HyperparameterLimit]
    customization_types: tuple[str, ...] = ("FINE_TUNING",)
    serving: Literal["provisioned-throughput", "on-demand-deployment"] = "provisioned-throughput"
    min_train_records: int | None = Field(default=None, ge=1)
    max_train_records: int | None = Field(default=None, ge=1)
    min_validation_records: int | None = Field(default=None, ge=1)
    max_validation_records: int | None = Field(default=None, ge=1)
    max_total_records: int | None = Field(default=None, ge=1)
    source: str = Field(default="", description="Where the limits come from.")

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

_NOVA_COMMON: dict[str, Any] = {
    "record_format": "nova",
    # AWS's docs list us-east-1 for Nova customization at the time of writing; regions are not
    # enforced here because AWS adds them over time and the service itself refuses a wrong one.
    "regions": (),
    "hyperparameters": _NOVA_HYPERPARAMETERS,
    "customization_types": ("FINE_TUNING", "DISTILLATION"),
    # Nova custom models trained after 2025-07-16 can be served on demand.
    "serving": "on-demand-deployment",
    # Nova's record-count limits are not given in the pages above; AWS's own validator decides.
    "source": _NOVA_HP_DOC,
}

BEDROCK_MODELS: dict[str, BedrockModelSpec] = {
    spec.model_id: spec
    for spec in (
        BedrockModelSpec(
            model_id="anthropic.claude-3-haiku-20240307-v1:0:200k",
            label="Claude 3 Haiku",
            record_format="bedrock",
            regions=("us-west-2",),
            # AWS lists it as legacy with end of life 2026-09-10: one choice among several.
            legacy=True,
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
            min_train_records=32,
            max_train_records=10_000,
            min_validation_records=32,
            max_validation_records=1_000,
            max_total_records=10_000,
            source=_CLAUDE_HP_DOC,
        ),
        BedrockModelSpec(model_id="amazon.nova-micro-v1:0:128k", label="Amazon Nova Micro", **_NOVA_COMMON),
        BedrockModelSpec(model_id="amazon.nova-lite-v1:0:300k", label="Amazon Nova Lite", **_NOVA_COMMON),
        BedrockModelSpec(model_id="amazon.nova-pro-v1:0:300k", label="Amazon Nova Pro", **_NOVA_COMMON),
    )
}


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
