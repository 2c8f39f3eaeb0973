"""What a grader is: a named score of one answer against one record, in [0, 1].

The same grader object serves three callers, so each sees the same number for the same answer:

- the local GRPO trainer (rewards for sampled completions),
- the evaluation (per-example metrics, ``tuneline.evaluation.metrics``),
- the Bedrock RFT grader Lambda (``tuneline.graders.rft_lambda``).

This module depends on pydantic only: the RFT Lambda ships it without the rest of Tuneline's
dependencies.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "NOT_JSON",
    "Grade",
    "GradeRecord",
    "Grader",
    "GraderOptions",
    "as_json",
    "as_text",
    "parse_json",
]


class GradeRecord(BaseModel):
    """What a grader may look at besides the answer.

    ``reference`` is the expected answer as the data gives it: a string (an SFT record's final
    turn, an evaluation reference) or any JSON value (an RFT record's ``reference_answer``).
    ``fields`` are the record's other fields (RFT passes every extra field of a record on to the
    grader; the evaluation passes its context, e.g. ``json_schema``).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    reference: Any = None
    prompt: str | None = Field(default=None, description="The last user turn, for graders that need it.")
    fields: Mapping[str, Any] = Field(default_factory=dict)


class Grade(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    score: float = Field(ge=0, le=1, allow_inf_nan=False)
    reason: str = ""


class GraderOptions(BaseModel):
    """Base of every grader's options model: unknown options are refused, values are frozen."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class Grader:
    """Base class of every grader. Subclasses set ``name``, ``description``, ``Options``, ``grade``."""

    name: ClassVar[str]
    description: ClassVar[str]
    Options: ClassVar[type[GraderOptions]] = GraderOptions

    def __init__(self, options: GraderOptions | None = None) -> None:
        self.options = options if options is not None else self.Options()

    def grade(self, answer: str, record: GradeRecord) -> Grade:
        raise NotImplementedError

    def grade_many(self, answers: Sequence[str], records: Sequence[GradeRecord]) -> list[Grade]:
        """One grade per (answer, record); graders that call a service override this to batch."""
        if len(answers) != len(records):
            raise ValueError(f"{len(answers)} answers but {len(records)} records")
        return [self.grade(answer, record) for answer, record in zip(answers, records, strict=True)]


_NOT_JSON: Any = object()


def _reject_constant(name: str) -> Any:
    # Python's json accepts NaN and Infinity; JSON itself does not.
    raise ValueError(f"{name} is not JSON")


def parse_json(text: str) -> Any:
    """The JSON value in ``text``, or ``NOT_JSON``."""
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except (ValueError, TypeError):
        return _NOT_JSON


NOT_JSON = _NOT_JSON


def as_json(value: Any) -> Any:
    """A reference as a JSON value: strings are parsed when they hold JSON, other values kept."""
    if isinstance(value, str):
        return parse_json(value)
    return value


def as_text(value: Any) -> str:
    """A reference as text: strings as they are, other JSON values in compact canonical form."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
