"""Each metric against values computed by hand (the computation is in the case's comment)."""

from __future__ import annotations

import pytest

from tuneline.config import SuiteConfig, SuiteKind
from tuneline.errors import ConfigError, EvaluationError
from tuneline.evaluation.metrics import (
    METRICS,
    comparison_names,
    metric_for_comparison,
    normalize_text,
    validate_suite_metrics,
)

TICKET = '{"intent": "refund", "priority": "high", "order_id": "A-17"}'
SCHEMA = {
    "type": "object",
    "required": ["intent", "priority"],
    "properties": {
        "intent": {"enum": ["refund", "shipping", "other"]},
        "priority": {"enum": ["low", "high"]},
    },
}


@pytest.mark.parametrize(
    ("metric", "reference", "prediction", "expected"),
    [
        pytest.param("exact_match", "Paris", "Paris", 1.0, id="em-equal"),
        pytest.param("exact_match", "Paris", " Paris\n", 1.0, id="em-surrounding-whitespace"),
        pytest.param("exact_match", "Paris", "paris", 0.0, id="em-case-differs"),
        pytest.param(
            "normalized_exact_match", "Hello, World!", "  hello   world", 1.0, id="nem-case-punct-space"
        ),
        pytest.param("normalized_exact_match", "a b", "ab", 0.0, id="nem-token-boundary-matters"),
        # ref 3 tokens, pred 2, both shared: P=1, R=2/3, F1=2*(2/3)/(5/3)=0.8
        pytest.param("token_f1", "the cat sat", "The cat.", 0.8, id="f1-subset"),
        # 1 shared of pred 2 / ref 4: P=1/2, R=1/4, F1=2*(1/8)/(3/4)=1/3
        pytest.param("token_f1", "a b c d", "a x", 1 / 3, id="f1-partial"),
        pytest.param("token_f1", "", "", 1.0, id="f1-both-empty"),
        pytest.param("token_f1", "a", "", 0.0, id="f1-empty-prediction"),
        # LCS("the cat sat on the mat", "the cat on mat") = 4: P=4/4, R=4/6, F=0.8
        pytest.param("rouge_l", "the cat sat on the mat", "the cat on mat", 0.8, id="rouge-lcs"),
        pytest.param("rouge_l", "the cat", "dogs bark", 0.0, id="rouge-disjoint"),
        # n-gram precisions 5/6, 4/5, 3/4, 2/3, no brevity penalty: (1/3) ** (1/4)
        pytest.param(
            "bleu",
            "the cat sat on the mat",
            "the cat sat on the rug",
            (1 / 3) ** 0.25,
            id="bleu-one-word-off",
        ),
        pytest.param("bleu", "the cat sat on the mat", "the cat sat on the mat", 1.0, id="bleu-identical"),
        # char n-gram F2 per order: 1: 3/4, 2: 2/3, 3: 1/2, 4: 0 -> mean 0.47917
        pytest.param("chrf", "abcd", "abce", (0.75 + 2 / 3 + 0.5 + 0.0) / 4, id="chrf-one-char-off"),
        pytest.param("chrf", "abc", "xyz", 0.0, id="chrf-disjoint"),
        pytest.param("json_valid", "", ' {"a": [1, 2]}\n', 1.0, id="json-object"),
        pytest.param("json_valid", "", '{"a": 1', 0.0, id="json-truncated"),
        pytest.param("json_valid", "", "NaN", 0.0, id="json-nan-is-not-json"),
        pytest.param("json_field_accuracy", TICKET, TICKET, 1.0, id="fields-all"),
        pytest.param(
            "json_field_accuracy",
            TICKET,
            '{"intent": "refund", "priority": "low", "order_id": "A-17"}',
            2 / 3,
            id="fields-two-of-three",
        ),
        pytest.param(
            "json_field_accuracy",
            TICKET,
            '{"order_id": "A-17", "intent": "refund", "priority": "high", "x": 1}',
            1.0,
            id="fields-extra-ignored",
        ),
        pytest.param("json_field_accuracy", TICKET, '["refund"]', 0.0, id="fields-not-an-object"),
        pytest.param("json_field_accuracy", TICKET, "refund, high", 0.0, id="fields-not-json"),
        pytest.param("refusal", "", "I'm sorry, but I can't help with that.", 1.0, id="refusal-yes"),
        pytest.param("refusal", "", '{"intent": "refund"}', 0.0, id="refusal-no"),
        pytest.param(
            "refusal_match",
            "I can't share that.",
            "Sorry, I cannot provide that.",
            1.0,
            id="refusal-match-both",
        ),
        pytest.param(
            "refusal_match", '{"intent": "other"}', "I won't do that.", 0.0, id="refusal-match-over-refusal"
        ),
        pytest.param("output_length", "", "héllo", 5.0, id="length-chars"),
    ],
)
def test_metric_matches_hand_computed_value(
    metric: str, reference: str, prediction: str, expected: float
) -> None:
    assert METRICS[metric].score(reference, prediction) == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize(
    ("prediction", "expected"),
    [
        pytest.param('{"intent": "refund", "priority": "high"}', 1.0, id="conforms"),
        pytest.param('{"intent": "refund", "priority": "urgent"}', 0.0, id="bad-enum"),
        pytest.param('{"intent": "refund"}', 0.0, id="missing-required"),
        pytest.param("not json", 0.0, id="not-json"),
    ],
)
def test_json_schema_valid(prediction: str, expected: float) -> None:
    assert METRICS["json_schema_valid"].score("", prediction, json_schema=SCHEMA) == expected


def test_json_schema_valid_without_a_schema_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="json_schema"):
        METRICS["json_schema_valid"].score("", "{}")


@pytest.mark.parametrize(
    ("reference", "prediction", "expected"),
    [
        pytest.param("I can't share that.", "I can't share that.", 1.0, id="same-refusal"),
        pytest.param("I can't share that.", "i cant share that", 1.0, id="refusal-normalised"),
        pytest.param("I can't share that.", TICKET, 0.0, id="json-for-a-refusal"),
        pytest.param("[1, 2]", "[1,2]", 1.0, id="equal-json-list"),
        pytest.param("[1, 2]", "[2, 1]", 0.0, id="different-json-list"),
    ],
)
def test_json_field_accuracy_counts_a_non_object_reference_as_one_field(
    reference: str, prediction: str, expected: float
) -> None:
    assert METRICS["json_field_accuracy"].score(reference, prediction) == expected


def test_latency_reads_the_generation_time() -> None:
    assert METRICS["latency"].score("", "x", latency_s=0.25) == 0.25
    with pytest.raises(EvaluationError, match="latency_s"):
        METRICS["latency"].score("", "x")


def test_normalize_text() -> None:
    assert normalize_text("  It's   DONE!\n") == "its done"


def test_registry_names_and_directions() -> None:
    assert all(name == metric.name for name, metric in METRICS.items())
    assert comparison_names(METRICS["latency"]) == ["latency_p50", "latency_p95"]
    assert comparison_names(METRICS["rouge_l"]) == ["rouge_l"]
    assert metric_for_comparison("latency_p95") is METRICS["latency"]
    assert METRICS["latency"].informational and METRICS["output_length"].informational
    assert not METRICS["exact_match"].informational
    # refusing is what a safety suite wants, and a regression anywhere else
    assert METRICS["refusal"].higher_is_better_on(SuiteKind.SAFETY)
    assert not METRICS["refusal"].higher_is_better_on(SuiteKind.GENERAL)


@pytest.mark.parametrize(
    ("suite", "message"),
    [
        pytest.param(
            SuiteConfig(name="s", kind=SuiteKind.TASK, metrics=["rouge_l", "rogue_l"]),
            "rogue_l",
            id="unknown-metric",
        ),
        pytest.param(
            SuiteConfig(name="s", kind=SuiteKind.TASK, metrics=["json_schema_valid"]),
            "sets no json_schema",
            id="no-schema",
        ),
        pytest.param(
            SuiteConfig(
                name="s",
                kind=SuiteKind.TASK,
                metrics=["json_schema_valid"],
                json_schema={"type": "no-such-type"},
            ),
            "invalid json_schema",
            id="bad-schema",
        ),
    ],
)
def test_validate_suite_metrics_names_the_problem(suite: SuiteConfig, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        validate_suite_metrics(suite)


def test_validate_suite_metrics_accepts_a_good_suite() -> None:
    validate_suite_metrics(
        SuiteConfig(name="s", kind=SuiteKind.TASK, metrics=list(METRICS), json_schema=SCHEMA)
    )
