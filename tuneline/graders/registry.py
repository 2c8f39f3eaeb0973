"""Graders by name, the config that names and configures them, and a weighted set of them.

A config names graders the same way wherever they are used::

    graders:
      - {name: json_valid, weight: 0.2}
      - {name: field_accuracy, weight: 0.8, options: {fields: [intent, priority]}}

``GraderConfig`` validates the options against the named grader's own options model when the
config is loaded, so a typo fails before a job is submitted or a Lambda is deployed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tuneline.errors import ConfigError
from tuneline.graders.base import Grade, Grader, GradeRecord
from tuneline.graders.builtin import (
    ExactMatchGrader,
    FieldAccuracyGrader,
    JsonSchemaGrader,
    JsonValidGrader,
    LlmJudgeGrader,
    NumericGrader,
    RegexGrader,
)

__all__ = [
    "GRADERS",
    "GraderConfig",
    "GraderSet",
    "SetGrade",
    "build_grader",
    "build_graders",
    "register_grader",
]

GRADERS: dict[str, type[Grader]] = {}
"""Every grader a config may name, by name."""


def register_grader(cls: type[Grader]) -> type[Grader]:
    """Add a grader class to :data:`GRADERS` (usable as a decorator); names are unique."""
    if cls.name in GRADERS and GRADERS[cls.name] is not cls:
        raise ValueError(f"a grader named {cls.name!r} is already registered ({GRADERS[cls.name].__name__})")
    GRADERS[cls.name] = cls
    return cls


for _cls in (
    ExactMatchGrader,
    JsonValidGrader,
    JsonSchemaGrader,
    FieldAccuracyGrader,
    RegexGrader,
    NumericGrader,
    LlmJudgeGrader,
):
    register_grader(_cls)


class GraderConfig(BaseModel):
    """One grader by name, with its options and its weight in a set."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(description="A registered grader: see tuneline.graders.GRADERS.")
    label: str | None = Field(default=None, description="Name of its score in reports; defaults to name.")
    weight: float = Field(default=1.0, gt=0, allow_inf_nan=False)
    options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _known_with_valid_options(self) -> GraderConfig:
        cls = GRADERS.get(self.name)
        if cls is None:
            raise ValueError(f"unknown grader {self.name!r}; known graders: {', '.join(sorted(GRADERS))}")
        try:
            cls.Options.model_validate(self.options)
        except ValidationError as exc:
            problems = "; ".join(
                f"options.{'.'.join(str(p) for p in err['loc']) or '?'}: {err['msg']}" for err in exc.errors()
            )
            raise ValueError(f"grader {self.name!r}: {problems}") from None
        return self

    @property
    def display_name(self) -> str:
        return self.label or self.name


def build_grader(config: GraderConfig, *, bedrock_runtime_client: Any | None = None) -> Grader:
    """The grader a config names, with its options; service clients go to graders that use them."""
    cls = GRADERS[config.name]
    options = cls.Options.model_validate(config.options)
    if cls is LlmJudgeGrader:
        return LlmJudgeGrader(options, bedrock_runtime_client=bedrock_runtime_client)
    return cls(options)


class SetGrade(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    score: float = Field(ge=0, le=1, description="Weighted mean of the graders' scores.")
    scores: dict[str, float] = Field(description="Each grader's score, by its label.")
    reasons: dict[str, str] = Field(default_factory=dict)


class GraderSet:
    """Several graders combined into one score: the weighted mean of theirs."""

    def __init__(self, configs: Sequence[GraderConfig], *, bedrock_runtime_client: Any | None = None) -> None:
        if not configs:
            raise ConfigError("a grader set needs at least one grader")
        labels = [c.display_name for c in configs]
        duplicates = sorted({label for label in labels if labels.count(label) > 1})
        if duplicates:
            raise ConfigError(
                f"graders {', '.join(duplicates)} appear more than once: give each a distinct label"
            )
        self.configs = tuple(configs)
        self.graders = [build_grader(c, bedrock_runtime_client=bedrock_runtime_client) for c in configs]
        self._total_weight = sum(c.weight for c in configs)

    def grade_many(self, answers: Sequence[str], records: Sequence[GradeRecord]) -> list[SetGrade]:
        per_grader: list[list[Grade]] = [g.grade_many(answers, records) for g in self.graders]
        out: list[SetGrade] = []
        for i in range(len(answers)):
            scores = {
                c.display_name: grades[i].score for c, grades in zip(self.configs, per_grader, strict=True)
            }
            reasons = {
                c.display_name: grades[i].reason for c, grades in zip(self.configs, per_grader, strict=True)
            }
            total = sum(c.weight * scores[c.display_name] for c in self.configs) / self._total_weight
            out.append(SetGrade(score=min(1.0, max(0.0, total)), scores=scores, reasons=reasons))
        return out

    def grade(self, answer: str, record: GradeRecord) -> SetGrade:
        return self.grade_many([answer], [record])[0]


def build_graders(
    configs: Sequence[GraderConfig | Mapping[str, Any]], *, bedrock_runtime_client: Any | None = None
) -> GraderSet:
    """A :class:`GraderSet` from configs or plain mappings (as read from YAML or a Lambda's env)."""
    try:
        parsed = [c if isinstance(c, GraderConfig) else GraderConfig.model_validate(c) for c in configs]
    except ValidationError as exc:
        raise ConfigError(f"invalid grader config: {exc}") from exc
    return GraderSet(parsed, bedrock_runtime_client=bedrock_runtime_client)
