"""Per-model hyperparameter limits: every bound of every hyperparameter of every model in the table;
the lifecycle facts and their sources; docs/bedrock.md's tables saying the same as the table."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from tuneline.backends.bedrock.models import (
    BEDROCK_MODELS,
    TEACHER_MODELS,
    BedrockModelSpec,
    HyperparameterLimit,
    ModelLifecycle,
    TeacherModel,
    bedrock_model_spec,
    hyperparameter_strings,
)
from tuneline.config import BedrockTuneConfig, Target
from tuneline.errors import ConfigError, ValidationFailedError

ROLE = "arn:aws:iam::123456789012:role/BedrockTuning"


def _outside(limit: HyperparameterLimit, side: str) -> int | float:
    if side == "below":
        return (
            int(limit.minimum) - 1
            if limit.kind == "integer"
            else (limit.minimum / 2 if limit.minimum > 0 else -1e-3)
        )
    return int(limit.maximum) + 1 if limit.kind == "integer" else limit.maximum * 1.5


_BOUNDS = [
    pytest.param(model_id, name, side, id=f"{model_id}-{name}-{side}")
    for model_id, spec in BEDROCK_MODELS.items()
    for name in spec.hyperparameters
    for side in ("below", "above")
]


@pytest.mark.parametrize(("model_id", "name", "side"), _BOUNDS)
def test_every_bound_is_enforced_with_a_message_naming_value_and_range(
    model_id: str, name: str, side: str
) -> None:
    spec = BEDROCK_MODELS[model_id]
    limit = spec.hyperparameters[name]
    value = _outside(limit, side)
    with pytest.raises(ValidationFailedError) as err:
        spec.validate_hyperparameters({name: value})
    assert len(err.value.problems) == 1
    problem = err.value.problems[0]
    assert f"tune.hyperparameters.{name}={value!r}" in problem
    assert f"{model_id} allows {limit.describe()}" in problem


@pytest.mark.parametrize(
    ("model_id", "name", "side"), [p for p in _BOUNDS if p.values[2] == "below"], ids=lambda v: str(v)
)
def test_both_bounds_themselves_are_accepted(model_id: str, name: str, side: str) -> None:
    spec = BEDROCK_MODELS[model_id]
    limit = spec.hyperparameters[name]
    kind = int if limit.kind == "integer" else float
    for edge in (limit.minimum, limit.maximum):
        assert spec.validate_hyperparameters({name: kind(edge)})[name] == kind(edge)
        # the API takes strings, and config files may give them as strings too
        assert spec.validate_hyperparameters({name: str(kind(edge))})[name] == kind(edge)


def test_published_limits_are_the_ones_in_the_table() -> None:
    haiku = BEDROCK_MODELS["anthropic.claude-3-haiku-20240307-v1:0:200k"].hyperparameters
    assert {k: (v.minimum, v.maximum, v.default) for k, v in haiku.items()} == {
        "epochCount": (1, 10, 2),
        "batchSize": (4, 256, 32),
        "learningRateMultiplier": (0.1, 2, 1),
        "earlyStoppingThreshold": (0, 0.1, 0.001),
        "earlyStoppingPatience": (1, 10, 2),
    }
    for model_id in (
        "amazon.nova-micro-v1:0:128k",
        "amazon.nova-lite-v1:0:300k",
        "amazon.nova-pro-v1:0:300k",
    ):
        nova = BEDROCK_MODELS[model_id]
        assert nova.record_format == "nova"
        assert {k: (v.minimum, v.maximum, v.default) for k, v in nova.hyperparameters.items()} == {
            "epochCount": (1, 5, 2),
            "learningRate": (1e-6, 1e-4, 1e-5),
            "learningRateWarmupSteps": (0, 100, 10),
        }


def test_titan_text_continued_pre_training_limits_are_the_published_ones() -> None:
    for model_id in ("amazon.titan-text-express-v1:0:8k", "amazon.titan-text-lite-v1:0:4k"):
        titan = BEDROCK_MODELS[model_id]
        assert titan.customization_types == ("CONTINUED_PRE_TRAINING",)
        assert {k: (v.kind, v.minimum, v.maximum, v.default) for k, v in titan.hyperparameters.items()} == {
            "epochCount": ("integer", 1, 10, 5),
            "batchSize": ("integer", 1, 64, 1),
            "learningRate": ("float", 0.0, 1.0, 1e-5),
            "learningRateWarmupSteps": ("integer", 0, 250, 5),
        }
        assert titan.max_tokens_per_record == 4_096 and titan.serving == "provisioned-throughput"
        assert "cm-hp-titan-text" in titan.source and "model-customization-prepare" in titan.source
    assert BEDROCK_MODELS["anthropic.claude-3-haiku-20240307-v1:0:200k"].max_tokens_per_record == 32_000


@pytest.mark.parametrize(
    ("values", "fragment"),
    [
        ({"epochCount": 2.5}, "fractional part"),
        ({"epochCount": "two"}, "valid integer"),
        ({"learningRateMultiplier": float("nan")}, "finite number"),
        ({"learningRate": 1e-5}, "has no hyperparameter 'learningRate'; allowed: batchSize"),
    ],
    ids=["fractional-integer", "word", "nan", "other-models-name"],
)
def test_wrong_types_and_unknown_names_are_refused(values: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValidationFailedError, match=fragment):
        BEDROCK_MODELS["anthropic.claude-3-haiku-20240307-v1:0:200k"].validate_hyperparameters(values)


def test_every_bad_value_is_reported_at_once() -> None:
    with pytest.raises(ValidationFailedError) as err:
        BEDROCK_MODELS["amazon.nova-lite-v1:0:300k"].validate_hyperparameters(
            {"epochCount": 6, "learningRate": 1, "batchSize": 8}
        )
    assert len(err.value.problems) == 3


def test_defaults_fill_unset_values_and_everything_is_sent_as_strings() -> None:
    checked = BEDROCK_MODELS["amazon.nova-pro-v1:0:300k"].validate_hyperparameters({"epochCount": "3"})
    assert hyperparameter_strings(checked) == {
        "epochCount": "3",
        "learningRate": "1e-05",
        "learningRateWarmupSteps": "10",
    }


def test_limits_for_another_model_come_from_config() -> None:
    limits = {
        "model_id": "meta.llama3-1-8b-instruct-v1:0:128k",
        "record_format": "bedrock",
        "hyperparameters": {"epochCount": {"kind": "integer", "minimum": 1, "maximum": 5, "default": 2}},
    }
    tune = BedrockTuneConfig.model_validate(
        {"base_model": "meta.llama3-1-8b-instruct-v1:0:128k", "role_arn": ROLE, "model_limits": limits}
    )
    assert tune.target is Target.BEDROCK_CLAUDE_HAIKU
    spec = bedrock_model_spec(tune.base_model, tune.model_limits)
    assert spec.validate_hyperparameters({"epochCount": 5}) == {"epochCount": 5}
    with pytest.raises(ValidationFailedError, match="integer from 1 to 5"):
        spec.validate_hyperparameters({"epochCount": 6})


def test_config_limits_must_name_the_base_model_and_be_consistent() -> None:
    other = BEDROCK_MODELS["amazon.nova-micro-v1:0:128k"]
    with pytest.raises(ConfigError, match="must name the same model"):
        bedrock_model_spec("amazon.nova-lite-v1:0:300k", other)
    with pytest.raises(ConfigError, match="tune.model_limits"):
        bedrock_model_spec("no.such-model-v1:0")
    with pytest.raises(ValidationError, match="default 11 must lie within"):
        BedrockModelSpec(
            model_id="x.y",
            record_format="nova",
            hyperparameters={"epochCount": {"kind": "integer", "minimum": 1, "maximum": 10, "default": 11}},
        )


AWS_CARD = "https://docs.aws.amazon.com/bedrock/latest/userguide/model-card-"


@pytest.mark.parametrize(
    ("model_id", "end_of_life", "source"),
    [
        ("anthropic.claude-3-haiku-20240307-v1:0:200k", date(2026, 9, 10), "model-lifecycle.html"),
        ("meta.llama3-2-90b-instruct-v1:0:128k", date(2026, 7, 7), AWS_CARD + "meta-llama-3-2-90b-instruct"),
        ("meta.llama3-2-1b-instruct-v1:0:128k", None, "awslabs/startups#131"),
        ("meta.llama3-2-3b-instruct-v1:0:128k", None, "awslabs/startups#131"),
        ("meta.llama3-2-11b-instruct-v1:0:128k", None, "awslabs/startups#131"),
        ("amazon.titan-text-express-v1:0:8k", None, "langchain4j/langchain4j#2532"),
        ("amazon.titan-text-lite-v1:0:4k", None, "langchain4j/langchain4j#2532"),
        ("amazon.nova-premier-v1:0", date(2026, 9, 14), AWS_CARD + "amazon-nova-premier"),
        ("meta.llama3-1-405b-instruct-v1:0", None, "awslabs/startups#131"),
        ("anthropic.claude-3-5-sonnet-20240620-v1:0", None, "posit-dev/positron#9339"),
        ("anthropic.claude-3-5-sonnet-20241022-v2:0", None, "run-llama/llama_index#20211"),
    ],
)
def test_legacy_models_and_teachers_carry_the_sourced_dates(
    model_id: str, end_of_life: date | None, source: str
) -> None:
    entry: ModelLifecycle = BEDROCK_MODELS.get(model_id) or TEACHER_MODELS[model_id]
    assert entry.legacy and entry.lifecycle == "legacy"
    assert (entry.end_of_life, entry.legacy_since) == (end_of_life, None)  # no AWS page gives a legacy date
    assert source in entry.lifecycle_source
    if end_of_life is None:  # the table refuses only on a date an AWS page states
        assert "Tuneline warns" in entry.lifecycle_source or "check the model card" in entry.lifecycle_source


def test_every_other_model_and_teacher_is_active() -> None:
    legacy = {m.model_id for m in [*BEDROCK_MODELS.values(), *TEACHER_MODELS.values()] if m.legacy}
    assert {m for m in BEDROCK_MODELS if m not in legacy} == {
        "amazon.nova-micro-v1:0:128k",
        "amazon.nova-lite-v1:0:300k",
        "amazon.nova-pro-v1:0:300k",
        "amazon.nova-2-lite-v1:0:256k",
        "meta.llama3-1-8b-instruct-v1:0:128k",
        "meta.llama3-1-70b-instruct-v1:0:128k",
        "openai.gpt-oss-20b-1:0",
        "qwen.qwen3-32b-v1:0",
    }
    assert {t for t in TEACHER_MODELS if t not in legacy} == {
        "amazon.nova-pro-v1:0",
        "meta.llama3-1-70b-instruct-v1:0",
    }


def test_a_lifecycle_with_an_end_of_life_must_be_legacy() -> None:
    with pytest.raises(ValidationError, match="has an end_of_life date, so it is legacy"):
        TeacherModel(model_id="x.teacher-v1:0", end_of_life=date(2027, 1, 1))
    with pytest.raises(ValidationError, match="has an end_of_life date, so it is legacy"):
        BedrockModelSpec(model_id="x.y", record_format="nova", hyperparameters={}, end_of_life=date(2027, 1, 1))


def _doc_rows() -> dict[str, str]:
    """docs/bedrock.md's tables: each backticked model id -> its row's Lifecycle cell."""
    doc = (Path(__file__).parents[2] / "docs" / "bedrock.md").read_text()
    rows: dict[str, str] = {}
    header: list[str] | None = None
    for line in doc.splitlines():
        if not line.startswith("|"):
            header = None
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        if header is None:
            header = cells
        elif "Lifecycle" in header and not set(cells[0]) <= {"-", " "}:
            lifecycle = cells[header.index("Lifecycle")]
            for model_id in re.findall(r"`([^`]+)`", cells[header.index("Id")]):
                rows[model_id] = lifecycle
    return rows


def _says(entry: ModelLifecycle) -> str:
    if entry.end_of_life is not None:
        return f"**legacy, end of life {entry.end_of_life.isoformat()}** (refused)"
    return "**legacy, no end-of-life date in the table** (warns)" if entry.legacy else "active"


def test_the_docs_tables_say_what_the_model_and_teacher_tables_say() -> None:
    rows = _doc_rows()
    entries = {**BEDROCK_MODELS, **TEACHER_MODELS}
    assert set(rows) == set(entries)
    assert {model_id: rows[model_id] for model_id in entries} == {
        model_id: _says(entry) for model_id, entry in entries.items()
    }
