"""tuneline.graders: each grader's scores, the config that names them, the weighted set, and the
evaluation metrics built from them (the same numbers the evaluation's own metrics give)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from botocore.stub import ANY, Stubber
from pydantic import ValidationError

from tuneline.errors import ConfigError
from tuneline.evaluation.metrics import METRICS
from tuneline.graders import GRADERS, GraderConfig, GradeRecord, build_grader, build_graders

TICKETS = Path(__file__).parents[2] / "examples" / "support_tickets" / "data" / "tickets.jsonl"


def grade(name: str, answer: str, reference: Any = None, **options: Any) -> float:
    grader = build_grader(GraderConfig(name=name, options=options))
    return grader.grade(answer, GradeRecord(reference=reference)).score


def test_registry_names_every_grader() -> None:
    assert set(GRADERS) == {
        "exact_match",
        "json_valid",
        "json_schema",
        "field_accuracy",
        "regex",
        "numeric",
        "llm_judge",
    }


def test_exact_match_modes() -> None:
    assert grade("exact_match", " Paris\n", "Paris") == 1.0
    assert grade("exact_match", "paris", "Paris") == 0.0
    assert grade("exact_match", "paris!", "Paris", compare="normalized") == 1.0
    # JSON comparison ignores key order and spacing, and reads an object reference as it is.
    assert grade("exact_match", '{"b": 2, "a": 1}', {"a": 1, "b": 2}, compare="json") == 1.0
    assert grade("exact_match", '{"a": 1}', '{"a": 2}', compare="json") == 0.0
    assert grade("exact_match", "not json", {"a": 1}, compare="json") == 0.0


def test_json_valid_refuses_nan_and_optionally_non_objects() -> None:
    assert grade("json_valid", '{"a": 1}') == 1.0
    assert grade("json_valid", "[1, 2]") == 1.0
    assert grade("json_valid", "[1, 2]", require_object=True) == 0.0
    assert grade("json_valid", '{"a": NaN}') == 0.0
    assert grade("json_valid", "{'a': 1}") == 0.0


def test_json_schema_from_options_or_from_the_record() -> None:
    schema = {"type": "object", "required": ["intent"], "properties": {"intent": {"enum": ["billing"]}}}
    grader = build_grader(GraderConfig(name="json_schema", options={"schema": schema}))
    assert grader.grade('{"intent": "billing"}', GradeRecord()).score == 1.0
    missed = grader.grade('{"intent": "other"}', GradeRecord())
    assert missed.score == 0.0 and "intent" in missed.reason
    plain = build_grader(GraderConfig(name="json_schema"))
    assert plain.grade('{"intent": "billing"}', GradeRecord(fields={"json_schema": schema})).score == 1.0
    with pytest.raises(ConfigError, match="has no schema"):
        plain.grade("{}", GradeRecord())


def test_json_schema_options_refuse_an_invalid_schema() -> None:
    with pytest.raises(ValidationError, match="invalid JSON Schema"):
        GraderConfig(name="json_schema", options={"schema": {"type": "no-such-type"}})


def test_field_accuracy_scores_share_of_fields_and_names_the_wrong_ones() -> None:
    reference = {"intent": "billing_issue", "priority": "high", "order_id": "86465"}
    grader = build_grader(GraderConfig(name="field_accuracy"))
    result = grader.grade('{"intent": "billing_issue", "priority": "low"}', GradeRecord(reference=reference))
    assert result.score == pytest.approx(1 / 3)
    assert "priority" in result.reason and "order_id" in result.reason
    assert (
        grade("field_accuracy", '{"intent": "x", "priority": "high"}', reference, fields=["priority"]) == 1.0
    )
    assert grade("field_accuracy", '{"priority": "HIGH "}', reference, fields=["priority"]) == 0.0
    assert (
        grade(
            "field_accuracy", '{"priority": "HIGH "}', reference, fields=["priority"], normalize_strings=True
        )
        == 1.0
    )
    assert grade("field_accuracy", "[1]", reference) == 0.0
    # A plain reference (a refusal among JSON tickets) counts as one field, the whole answer.
    assert grade("field_accuracy", "I can't share that.", "I can't share that") == 1.0


def test_regex_pattern_from_options_or_reference() -> None:
    assert grade("regex", "order 12345", None, pattern=r"order \d{5}") == 1.0
    assert grade("regex", "your order 12345 shipped", None, pattern=r"order \d{5}") == 0.0
    assert grade("regex", "your order 12345 shipped", None, pattern=r"order \d{5}", mode="search") == 1.0
    assert grade("regex", "YES", None, pattern="yes", ignore_case=True) == 1.0
    assert grade("regex", "42", r"\d+") == 1.0
    with pytest.raises(ValidationError, match="invalid regular expression"):
        GraderConfig(name="regex", options={"pattern": "("})


def test_numeric_tolerance_fields_and_free_text() -> None:
    assert grade("numeric", "So the answer is 1,234.5", "1234.5") == 1.0
    assert grade("numeric", "The total is 10.2", 10, abs_tolerance=0.25) == 1.0
    assert grade("numeric", "The total is 10.3", 10, abs_tolerance=0.25) == 0.0
    assert grade("numeric", "105", 100, rel_tolerance=0.05) == 1.0
    assert grade("numeric", "first 3 then 7", 3, pick="first") == 1.0
    assert grade("numeric", "first 3 then 7", 3) == 0.0
    assert grade("numeric", '{"amount": 12.5}', {"amount": 12.5}, field="amount") == 1.0
    assert grade("numeric", '{"amount": "12.50 USD"}', {"amount": 12.5}, field="amount") == 1.0
    assert grade("numeric", "no number here", 3) == 0.0
    with pytest.raises(ConfigError, match="holds no number"):
        grade("numeric", "3", "no reference number")
    with pytest.raises(ValidationError):
        GraderConfig(name="numeric", options={"abs_tolerance": -1})


def test_config_refuses_unknown_graders_and_options() -> None:
    with pytest.raises(ValidationError, match="unknown grader 'exactmatch'; known graders: "):
        GraderConfig(name="exactmatch")
    with pytest.raises(ValidationError, match=r"grader 'regex': options.patern"):
        GraderConfig(name="regex", options={"patern": "x"})
    with pytest.raises(ValidationError):
        GraderConfig(name="json_valid", weight=0)
    with pytest.raises(ConfigError, match="more than once"):
        build_graders([{"name": "json_valid"}, {"name": "json_valid"}])
    with pytest.raises(ConfigError, match="at least one grader"):
        build_graders([])


def test_grader_set_is_the_weighted_mean_with_each_score_by_label() -> None:
    graders = build_graders(
        [
            {"name": "json_valid", "weight": 1},
            {"name": "field_accuracy", "weight": 3, "label": "fields"},
        ]
    )
    reference = {"intent": "billing_issue", "priority": "high"}
    result = graders.grade('{"intent": "billing_issue", "priority": "low"}', GradeRecord(reference=reference))
    assert result.scores == {"json_valid": 1.0, "fields": 0.5}
    assert result.score == pytest.approx((1 * 1.0 + 3 * 0.5) / 4)
    assert graders.grade("nope", GradeRecord(reference=reference)).score == 0.0


def _tickets() -> list[tuple[str, str]]:
    pairs = []
    for line in TICKETS.read_text().splitlines()[:200]:
        record = json.loads(line)
        pairs.append((record["messages"][0]["content"], record["messages"][-1]["content"]))
    return pairs


def _perturb(answer: str, i: int) -> str:
    """Realistic wrong answers: a wrong field, a missing field, broken JSON, or the answer itself."""
    try:
        value = json.loads(answer)
    except ValueError:
        return answer if i % 2 else answer.upper()
    if not isinstance(value, dict):
        return answer
    if i % 4 == 0:
        value["priority"] = "low" if value.get("priority") != "low" else "high"
    elif i % 4 == 1:
        value.pop("order_id", None)
    elif i % 4 == 2:
        return answer[:-1]
    return json.dumps(value)


@pytest.mark.parametrize(
    ("grader_metric", "evaluation_metric"),
    [
        ("grader_field_accuracy", "json_field_accuracy"),
        ("grader_json_valid", "json_valid"),
        ("grader_exact_match", "exact_match"),
    ],
)
def test_grader_metrics_agree_with_the_evaluation_metrics_on_the_example(
    grader_metric: str, evaluation_metric: str
) -> None:
    pairs = _tickets()
    scores = [
        (
            METRICS[grader_metric].score(reference, _perturb(reference, i)),
            METRICS[evaluation_metric].score(reference, _perturb(reference, i)),
        )
        for i, (_, reference) in enumerate(pairs)
    ]
    assert [a for a, _ in scores] == [b for _, b in scores]
    # The perturbations make both right and wrong answers, so the agreement is not all ones.
    assert 0 < sum(a for a, _ in scores) < len(scores)


def test_grader_json_schema_metric_reads_the_suites_schema() -> None:
    schema = {"type": "object", "required": ["intent"]}
    metric = METRICS["grader_json_schema"]
    assert metric.score("", '{"intent": "x"}', json_schema=schema) == 1.0
    assert metric.score("", '{"other": "x"}', json_schema=schema) == 0.0


# --- the LLM judge: the evaluation's BedrockJudge over Converse, through the Stubber --------------
JUDGE_MODEL = "amazon.nova-pro-v1:0"


def _judge_reply(text: str) -> dict[str, Any]:
    return {
        "output": {"message": {"role": "assistant", "content": [{"text": text}]}},
        "stopReason": "end_turn",
        "usage": {"inputTokens": 10, "outputTokens": 5, "totalTokens": 15},
        "metrics": {"latencyMs": 80},
    }


def test_llm_judge_grader_scores_through_bedrock_converse(
    stubbed_aws: Callable[..., tuple[Any, Stubber]],
) -> None:
    client, stubber = stubbed_aws("bedrock-runtime")
    expected = {
        "modelId": JUDGE_MODEL,
        "messages": ANY,
        "inferenceConfig": {"maxTokens": 256, "temperature": 0.0},
        "system": ANY,
    }
    stubber.add_response("converse", _judge_reply('{"score": 4, "reason": "mostly right"}'), expected)
    stubber.add_response("converse", _judge_reply('{"score": 1, "reason": "wrong intent"}'), expected)
    grader = build_grader(
        GraderConfig(
            name="llm_judge",
            options={"model_id": JUDGE_MODEL, "rubric": "Right intent and priority.", "max_concurrency": 1},
        ),
        bedrock_runtime_client=client,
    )
    grades = grader.grade_many(
        ['{"intent": "billing_issue"}', '{"intent": "other"}'],
        [GradeRecord(reference={"intent": "billing_issue"}, prompt="I was charged twice")] * 2,
    )
    assert [g.score for g in grades] == [0.75, 0.0]
    assert grades[1].reason == "wrong intent"


def test_llm_judge_options_are_checked_when_the_config_loads() -> None:
    with pytest.raises(ValidationError, match="min_score"):
        GraderConfig(
            name="llm_judge", options={"model_id": "m", "rubric": "r", "min_score": 5, "max_score": 5}
        )
    with pytest.raises(ValidationError, match="rubric"):
        GraderConfig(name="llm_judge", options={"model_id": "m"})


def test_reward_function_for_trl_scores_conversational_and_plain_completions() -> None:
    from tuneline.graders.rewards import reward_function
    from tuneline.graders.rft_lambda import grade_samples

    graders = [{"name": "json_valid"}, {"name": "field_accuracy", "weight": 3}]
    reward = reward_function(graders)
    assert reward.__name__ == "tuneline_graders"
    references = [{"intent": "billing_issue", "priority": "high"}] * 3
    prompts = [[{"role": "user", "content": "I was charged twice. Urgent!"}]] * 3
    completions = [
        [{"role": "assistant", "content": '{"intent": "billing_issue", "priority": "high"}'}],
        [{"role": "assistant", "content": '{"intent": "billing_issue", "priority": "low"}'}],
        [{"role": "assistant", "content": "billing, high"}],
    ]
    scores = reward(
        prompts=prompts, completions=completions, completion_ids=[[1]] * 3, reference_answer=references
    )
    assert scores == [1.0, pytest.approx((1 + 3 * 0.5) / 4), 0.0]
    # The same numbers as the RFT Lambda gives Bedrock for the same answers.
    samples = [
        {"id": str(i), "messages": prompts[i] + completions[i], "reference_answer": references[i]}
        for i in range(3)
    ]
    assert [r["aggregate_reward_score"] for r in grade_samples(build_graders(graders), samples)] == scores
    plain = reward(
        prompts=["q"],
        completions=['{"intent": "billing_issue", "priority": "high"}'],
        reference_answer=references[:1],
    )
    assert plain == [1.0]
