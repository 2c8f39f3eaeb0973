"""Tuneline's graders: exact match, JSON validity and schema, field accuracy, regex, numeric
tolerance, and an LLM judge on Bedrock.

Every grader returns a score in [0, 1] and a short reason; the reason says why an answer lost
points, so a reward curve that stalls can be explained from the Lambda's or the trainer's log.
"""

from __future__ import annotations

import json
import math
import re
import string
from collections.abc import Sequence
from functools import cache
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from tuneline.errors import ConfigError
from tuneline.graders.base import (
    NOT_JSON,
    Grade,
    Grader,
    GradeRecord,
    GraderOptions,
    as_json,
    as_text,
    parse_json,
)

__all__ = [
    "ExactMatchGrader",
    "FieldAccuracyGrader",
    "JsonSchemaGrader",
    "JsonValidGrader",
    "LlmJudgeGrader",
    "NumericGrader",
    "RegexGrader",
    "normalize_text",
]

_PUNCTUATION = str.maketrans("", "", string.punctuation)


def normalize_text(text: str) -> str:
    """Lower-case, drop ASCII punctuation and collapse whitespace (as the evaluation's metrics do)."""
    return " ".join(text.lower().translate(_PUNCTUATION).split())


def _grade(ok: bool, why_not: str) -> Grade:
    return Grade(score=1.0, reason="match") if ok else Grade(score=0.0, reason=why_not)


# --- exact match ------------------------------------------------------------------------------
class ExactMatchOptions(GraderOptions):
    compare: Literal["strip", "normalized", "json"] = Field(
        default="strip",
        description="'strip': equal after trimming surrounding whitespace; 'normalized': also "
        "case, punctuation and inner whitespace ignored; 'json': equal as JSON values (key order "
        "and spacing ignored).",
    )


class ExactMatchGrader(Grader):
    name = "exact_match"
    description = "The answer equals the reference (trimmed, normalised, or as JSON)."
    Options = ExactMatchOptions

    def grade(self, answer: str, record: GradeRecord) -> Grade:
        compare = self.options.compare  # type: ignore[attr-defined]
        if compare == "json":
            expected = as_json(record.reference)
            actual = parse_json(answer)
            if expected is NOT_JSON:
                return _grade(
                    answer.strip() == as_text(record.reference).strip(), "differs from the reference"
                )
            if actual is NOT_JSON:
                return Grade(score=0.0, reason="answer is not JSON")
            return _grade(actual == expected, "JSON differs from the reference")
        reference = as_text(record.reference)
        if compare == "normalized":
            return _grade(normalize_text(answer) == normalize_text(reference), "differs from the reference")
        return _grade(answer.strip() == reference.strip(), "differs from the reference")


# --- JSON -------------------------------------------------------------------------------------
class JsonValidOptions(GraderOptions):
    require_object: bool = Field(default=False, description="Only a JSON object counts.")


class JsonValidGrader(Grader):
    name = "json_valid"
    description = "The answer parses as JSON (optionally: as a JSON object)."
    Options = JsonValidOptions

    def grade(self, answer: str, record: GradeRecord) -> Grade:
        value = parse_json(answer)
        if value is NOT_JSON:
            return Grade(score=0.0, reason="answer is not JSON")
        if self.options.require_object and not isinstance(value, dict):  # type: ignore[attr-defined]
            return Grade(score=0.0, reason=f"answer is a JSON {type(value).__name__}, not an object")
        return Grade(score=1.0, reason="valid JSON")


@cache
def _schema_validator(schema_json: str) -> Any:
    # Keyed by the schema's canonical JSON so each schema is compiled once per process.
    from jsonschema import validators

    schema = json.loads(schema_json)
    cls = validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


class JsonSchemaOptions(GraderOptions):
    json_schema: dict[str, Any] | None = Field(
        default=None,
        alias="schema",
        description="The JSON Schema answers must conform to; unset: the record's own "
        "'json_schema' field (the evaluation suite's schema).",
    )

    @field_validator("json_schema")
    @classmethod
    def _compiles(cls, schema: dict[str, Any] | None) -> dict[str, Any] | None:
        if schema is not None:
            from jsonschema.exceptions import SchemaError

            try:
                _schema_validator(json.dumps(schema, sort_keys=True))
            except SchemaError as exc:
                raise ValueError(f"invalid JSON Schema: {exc.message}") from exc
        return schema


class JsonSchemaGrader(Grader):
    name = "json_schema"
    description = "The answer parses as JSON and conforms to a JSON Schema."
    Options = JsonSchemaOptions

    def grade(self, answer: str, record: GradeRecord) -> Grade:
        schema = self.options.json_schema or record.fields.get("json_schema")  # type: ignore[attr-defined]
        if not isinstance(schema, dict):
            raise ConfigError(
                "grader json_schema has no schema: set its options.schema, or give the record a "
                "json_schema field (the evaluation suite's json_schema)"
            )
        value = parse_json(answer)
        if value is NOT_JSON:
            return Grade(score=0.0, reason="answer is not JSON")
        error = next(iter(_schema_validator(json.dumps(schema, sort_keys=True)).iter_errors(value)), None)
        if error is None:
            return Grade(score=1.0, reason="conforms to the schema")
        where = "/".join(str(p) for p in error.absolute_path) or "(root)"
        return Grade(score=0.0, reason=f"schema violation at {where}: {error.message}")


class FieldAccuracyOptions(GraderOptions):
    fields: tuple[str, ...] | None = Field(
        default=None, description="Top-level fields to compare; unset: every field of the reference."
    )
    normalize_strings: bool = Field(
        default=False, description="Compare string values after lower-casing and trimming."
    )


class FieldAccuracyGrader(Grader):
    name = "field_accuracy"
    description = (
        "Share of the reference object's top-level fields the answer gets exactly right; a "
        "reference that is not an object counts as one field, the whole answer."
    )
    Options = FieldAccuracyOptions

    def _same(self, expected: Any, actual: Any) -> bool:
        if self.options.normalize_strings and isinstance(expected, str) and isinstance(actual, str):  # type: ignore[attr-defined]
            return expected.strip().lower() == actual.strip().lower()
        return bool(expected == actual)

    def grade(self, answer: str, record: GradeRecord) -> Grade:
        expected, actual = as_json(record.reference), parse_json(answer)
        if not isinstance(expected, dict):
            # References mix structured answers with plain ones (a refusal among JSON tickets).
            if expected is NOT_JSON or actual is NOT_JSON:
                same = normalize_text(as_text(record.reference)) == normalize_text(answer)
            else:
                same = actual == expected
            return _grade(same, "differs from the reference")
        if not isinstance(actual, dict):
            return Grade(score=0.0, reason="answer is not a JSON object")
        names = self.options.fields  # type: ignore[attr-defined]
        keys = list(names) if names is not None else list(expected)
        if not keys:
            return _grade(actual == expected, "differs from the empty reference object")
        wrong = [k for k in keys if k not in actual or not self._same(expected.get(k), actual[k])]
        right = len(keys) - len(wrong)
        reason = "all fields right" if not wrong else "wrong or missing: " + ", ".join(wrong)
        return Grade(score=right / len(keys), reason=reason)


# --- regex ------------------------------------------------------------------------------------
class RegexOptions(GraderOptions):
    pattern: str | None = Field(
        default=None, description="Python regular expression; unset: the reference is the pattern."
    )
    mode: Literal["fullmatch", "search"] = "fullmatch"
    ignore_case: bool = False

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, pattern: str | None) -> str | None:
        if pattern is not None:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"invalid regular expression {pattern!r}: {exc}") from exc
        return pattern


class RegexGrader(Grader):
    name = "regex"
    description = "The answer (trimmed) matches a regular expression, whole or in part."
    Options = RegexOptions

    def grade(self, answer: str, record: GradeRecord) -> Grade:
        opts = self.options
        pattern = opts.pattern if opts.pattern is not None else as_text(record.reference)  # type: ignore[attr-defined]
        try:
            compiled = re.compile(pattern, re.IGNORECASE if opts.ignore_case else 0)  # type: ignore[attr-defined]
        except re.error as exc:
            raise ConfigError(
                f"grader regex: the reference {pattern!r} is not a regular expression: {exc}"
            ) from exc
        text = answer.strip()
        found = compiled.fullmatch(text) if opts.mode == "fullmatch" else compiled.search(text)  # type: ignore[attr-defined]
        return _grade(
            found is not None, f"does not {opts.mode.replace('fullmatch', 'fully match')} {pattern!r}"
        )  # type: ignore[attr-defined]


# --- numbers ----------------------------------------------------------------------------------
_NUMBER = re.compile(r"[-+]?(?:\d[\d,]*(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")


def _number_in(value: Any, pick: str) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) if math.isfinite(value) else None
    if not isinstance(value, str):
        return None
    found = _NUMBER.findall(value)
    if not found:
        return None
    raw = (found[-1] if pick == "last" else found[0]).replace(",", "")
    try:
        number = float(raw)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


class NumericOptions(GraderOptions):
    abs_tolerance: float = Field(default=0.0, ge=0, allow_inf_nan=False)
    rel_tolerance: float = Field(default=0.0, ge=0, allow_inf_nan=False)
    field: str | None = Field(
        default=None, description="Read the number from this top-level field of a JSON answer and reference."
    )
    pick: Literal["last", "first"] = Field(
        default="last", description="Which number of a free-text answer counts (worked answers end with it)."
    )


class NumericGrader(Grader):
    name = "numeric"
    description = "The answer's number equals the reference's within an absolute or relative tolerance."
    Options = NumericOptions

    def _value(self, raw: Any, parsed_json: Any) -> float | None:
        field = self.options.field  # type: ignore[attr-defined]
        if field is not None:
            if not isinstance(parsed_json, dict) or field not in parsed_json:
                return None
            raw = parsed_json[field]
        return _number_in(raw, self.options.pick)  # type: ignore[attr-defined]

    def grade(self, answer: str, record: GradeRecord) -> Grade:
        expected = self._value(record.reference, as_json(record.reference))
        if expected is None:
            raise ConfigError(
                f"grader numeric: the reference {as_text(record.reference)[:80]!r} holds no number"
                + (f" in field {self.options.field!r}" if self.options.field else "")  # type: ignore[attr-defined]
            )
        actual = self._value(answer, parse_json(answer))
        if actual is None:
            return Grade(score=0.0, reason="answer holds no number")
        ok = math.isclose(
            actual,
            expected,
            rel_tol=self.options.rel_tolerance,  # type: ignore[attr-defined]
            abs_tol=self.options.abs_tolerance,  # type: ignore[attr-defined]
        )
        return _grade(ok, f"{actual:g} is not {expected:g} within tolerance")


# --- LLM judge --------------------------------------------------------------------------------
class LlmJudgeOptions(GraderOptions):
    model_id: str = Field(description="Bedrock model (or inference profile) that grades the answers.")
    rubric: str = Field(min_length=1)
    min_score: int = 1
    max_score: int = 5
    max_concurrency: int = Field(default=4, ge=1, le=64)

    @model_validator(mode="after")
    def _scale(self) -> LlmJudgeOptions:
        if self.min_score >= self.max_score:
            raise ValueError(f"min_score ({self.min_score}) must be below max_score ({self.max_score})")
        return self


class LlmJudgeGrader(Grader):
    """An LLM judge on Bedrock: the evaluation's ``BedrockJudge``, one Converse call per answer.

    The Bedrock Runtime client is given by the caller (the Lambda's own, a Stubber in tests) or
    made from ``tuneline.settings.Settings`` on first use.
    """

    name = "llm_judge"
    description = "A Bedrock model scores the answer against a rubric (normalised to 0..1)."
    Options = LlmJudgeOptions

    def __init__(
        self, options: GraderOptions | None = None, *, bedrock_runtime_client: Any | None = None
    ) -> None:
        super().__init__(options)
        self._client = bedrock_runtime_client
        self._judge: Any | None = None

    def _bedrock_judge(self) -> Any:
        if self._judge is None:
            # Imported here: the rule-based graders run in a Lambda without boto3's Bedrock code.
            from tuneline.backends.bedrock.runtime import BedrockGenerator, BedrockJudge
            from tuneline.config import JudgeConfig
            from tuneline.settings import Settings

            opts: LlmJudgeOptions = self.options  # type: ignore[assignment]
            config = JudgeConfig(
                model_id=opts.model_id,
                rubric=opts.rubric,
                min_score=opts.min_score,
                max_score=opts.max_score,
                max_concurrency=opts.max_concurrency,
                cache=False,
            )
            generator = BedrockGenerator(
                opts.model_id,
                client=self._client,
                settings=None if self._client is not None else Settings(),
                label=f"grader:{opts.model_id}",
                max_workers=opts.max_concurrency,
            )
            self._judge = BedrockJudge(config, generator, cache_path=None)
        return self._judge

    def grade(self, answer: str, record: GradeRecord) -> Grade:
        return self.grade_many([answer], [record])[0]

    def grade_many(self, answers: Sequence[str], records: Sequence[GradeRecord]) -> list[Grade]:
        from tuneline.backends.bedrock.runtime import JudgeItem

        if len(answers) != len(records):
            raise ValueError(f"{len(answers)} answers but {len(records)} records")
        items = [
            JudgeItem(
                prompt=record.prompt or "",
                answer=answer,
                reference=None if record.reference is None else as_text(record.reference),
            )
            for answer, record in zip(answers, records, strict=True)
        ]
        if not items:
            return []
        verdicts = self._bedrock_judge().score(items)
        return [Grade(score=v.score, reason=v.reason) for v in verdicts]
