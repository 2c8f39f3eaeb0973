"""Graders: one definition of "how good is this answer" for local GRPO rewards, evaluation
metrics and the Bedrock RFT grader Lambda.

>>> from tuneline.graders import GradeRecord, build_graders
>>> graders = build_graders([{"name": "json_valid"}, {"name": "field_accuracy", "weight": 3}])
>>> graders.grade('{"intent": "billing"}', GradeRecord(reference={"intent": "billing"})).score
1.0
"""

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
from tuneline.graders.builtin import (
    ExactMatchGrader,
    FieldAccuracyGrader,
    JsonSchemaGrader,
    JsonValidGrader,
    LlmJudgeGrader,
    NumericGrader,
    RegexGrader,
    normalize_text,
)
from tuneline.graders.registry import (
    GRADERS,
    GraderConfig,
    GraderSet,
    SetGrade,
    build_grader,
    build_graders,
    register_grader,
)

__all__ = [
    "GRADERS",
    "NOT_JSON",
    "ExactMatchGrader",
    "FieldAccuracyGrader",
    "Grade",
    "GradeRecord",
    "Grader",
    "GraderConfig",
    "GraderOptions",
    "GraderSet",
    "JsonSchemaGrader",
    "JsonValidGrader",
    "LlmJudgeGrader",
    "NumericGrader",
    "RegexGrader",
    "SetGrade",
    "as_json",
    "as_text",
    "build_grader",
    "build_graders",
    "normalize_text",
    "parse_json",
    "register_grader",
]
