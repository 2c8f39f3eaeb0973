"""The RFT grader Lambda on AWS's documented payloads and on the support-ticket example's data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tuneline.graders import build_graders, rft_lambda
from tuneline.graders.rft_lambda import grade_samples, lambda_handler, sample_to_record

TICKETS = Path(__file__).parents[2] / "examples" / "support_tickets" / "data" / "tickets.jsonl"

# The payload on the Bedrock "Setting up reward functions" and Nova 2 "Implementing reward functions"
# pages: reference_answer at the top level, the model's answer as the last message.
BEDROCK_DOC_EVENT = [
    {
        "id": "123",
        "messages": [
            {"role": "user", "content": "Do you have a dedicated security team?"},
            {
                "role": "assistant",
                "content": "As an AI developed by Amazon, I don not have a dedicated security team...",
            },
        ],
        "reference_answer": {
            "compliant": "No",
            "explanation": "As an AI developed by Company, I do not have a traditional security team...",
        },
    }
]
# The SageMaker AI Nova RFT page nests the reference (and other record fields) under metadata.
SAGEMAKER_DOC_EVENT = [
    {
        "id": "123",
        "messages": BEDROCK_DOC_EVENT[0]["messages"],
        "metadata": {"reference_answer": BEDROCK_DOC_EVENT[0]["reference_answer"], "my_key": "sample-001"},
    }
]


@pytest.fixture(autouse=True)
def _fresh_graders(monkeypatch: pytest.MonkeyPatch) -> None:
    rft_lambda.load_grader_set.cache_clear()
    monkeypatch.delenv(rft_lambda.GRADERS_ENV, raising=False)


def _configure(monkeypatch: pytest.MonkeyPatch, graders: list[dict[str, Any]]) -> None:
    monkeypatch.setenv(rft_lambda.GRADERS_ENV, json.dumps(graders))
    rft_lambda.load_grader_set.cache_clear()


def _assert_response_shape(response: list[dict[str, Any]], ids: list[str]) -> None:
    # AWS's documented output: id, aggregate_reward_score, metrics_list of {name, value, type}.
    assert [r["id"] for r in response] == ids
    for entry in response:
        assert set(entry) == {"id", "aggregate_reward_score", "metrics_list"}
        assert isinstance(entry["aggregate_reward_score"], float)
        for metric in entry["metrics_list"]:
            assert set(metric) == {"name", "value", "type"} and metric["type"] in ("Reward", "Metric")


@pytest.mark.parametrize(
    "event", [BEDROCK_DOC_EVENT, SAGEMAKER_DOC_EVENT], ids=["bedrock-doc", "sagemaker-doc"]
)
def test_documented_payloads_get_documented_responses(monkeypatch: pytest.MonkeyPatch, event: list) -> None:
    _configure(
        monkeypatch,
        [
            {
                "name": "regex",
                "label": "says_no",
                "options": {"pattern": r"\b(don ?not|do not)\b", "mode": "search"},
            },
            {"name": "json_valid", "weight": 1},
        ],
    )
    response = lambda_handler(event, None)
    _assert_response_shape(response, ["123"])
    scores = {m["name"]: m["value"] for m in response[0]["metrics_list"]}
    assert scores == {"says_no": 1.0, "json_valid": 0.0}
    assert response[0]["aggregate_reward_score"] == 0.5


def test_both_documented_shapes_give_the_grader_the_same_record() -> None:
    answer_a, record_a = sample_to_record(BEDROCK_DOC_EVENT[0])
    answer_b, record_b = sample_to_record(SAGEMAKER_DOC_EVENT[0])
    assert answer_a == answer_b and answer_a.startswith("As an AI developed by Amazon")
    assert record_a.reference == record_b.reference == BEDROCK_DOC_EVENT[0]["reference_answer"]
    assert record_a.prompt == "Do you have a dedicated security team?"
    assert record_b.fields == {"my_key": "sample-001"}


def _ticket_samples(n: int = 120) -> list[dict[str, Any]]:
    """The example's tickets as Bedrock would send them: prompt, a model answer, reference_answer."""
    samples = []
    for i, line in enumerate(TICKETS.read_text().splitlines()[:n]):
        record = json.loads(line)
        reference = record["messages"][-1]["content"]
        try:
            parsed = json.loads(reference)
        except ValueError:
            parsed = reference  # the refusals are plain text
        answer = reference
        if i % 3 == 1 and isinstance(parsed, dict):
            answer = json.dumps({**parsed, "priority": "wrong"})
        elif i % 3 == 2:
            answer = "I think this is about billing."
        samples.append(
            {
                "id": f"ticket-{i}",
                "messages": [
                    {"role": "system", "content": record["system"]},
                    {"role": "user", "content": record["messages"][0]["content"]},
                    {"role": "assistant", "content": answer},
                ],
                "reference_answer": parsed,
            }
        )
    return samples


def test_example_tickets_are_rewarded_by_json_validity_and_field_accuracy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    graders = [
        {"name": "json_valid", "weight": 1},
        {"name": "field_accuracy", "weight": 3, "options": {"fields": ["intent", "priority", "order_id"]}},
    ]
    _configure(monkeypatch, graders)
    samples = _ticket_samples()
    response = lambda_handler(samples, None)
    _assert_response_shape(response, [s["id"] for s in samples])
    # Every sample is answered, and the reward is exactly the grader set's own score for it.
    direct = build_graders(graders)
    for sample, entry in zip(samples, response, strict=True):
        answer, record = sample_to_record(sample)
        assert entry["aggregate_reward_score"] == pytest.approx(direct.grade(answer, record).score)
    by_kind = {i % 3: [] for i in range(3)}
    for i, entry in enumerate(response):
        by_kind[i % 3].append(entry["aggregate_reward_score"])
    exact = [
        e["aggregate_reward_score"]
        for i, (s, e) in enumerate(zip(samples, response, strict=True))
        if i % 3 == 0 and isinstance(s["reference_answer"], dict)
    ]
    assert exact and min(exact) == 1.0  # the JSON reference itself (refusals are not JSON: 0.75)
    assert max(by_kind[2]) < 0.5  # free text where JSON was asked for
    assert sum(by_kind[0]) > sum(by_kind[1]) > sum(by_kind[2])


def test_a_sample_without_an_answer_or_with_an_unreadable_reference_scores_zero_not_the_batch(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _configure(monkeypatch, [{"name": "numeric", "options": {"abs_tolerance": 0.01}}])
    samples = [
        {
            "id": "a",
            "messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}],
            "reference_answer": 4,
        },
        {"id": "b", "messages": [{"role": "user", "content": "2+2?"}], "reference_answer": 4},
        {
            "id": "c",
            "messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "4"}],
            "reference_answer": "no number",
        },
        {
            "id": "d",
            "messages": [
                {"role": "user", "content": "x"},
                {"role": "assistant", "content": [{"text": "about 3.999"}]},
            ],
            "reference_answer": 4,
        },
    ]
    with caplog.at_level("WARNING", logger="tuneline.graders.rft_lambda"):
        response = lambda_handler(samples, None)
    assert [(r["id"], r["aggregate_reward_score"]) for r in response] == [
        ("a", 1.0),
        ("b", 0.0),
        ("c", 0.0),
        ("d", 1.0),
    ]
    assert "sample b has no assistant answer" in caplog.text
    assert "sample c could not be graded" in caplog.text


def test_without_any_grader_configuration_the_handler_says_so() -> None:
    with pytest.raises(Exception, match="TUNELINE_GRADERS"):
        lambda_handler(BEDROCK_DOC_EVENT, None)


def test_grade_samples_keeps_order_and_count() -> None:
    graders = build_graders([{"name": "exact_match"}])
    samples = [
        {
            "id": str(i),
            "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": str(i % 2)}],
            "reference_answer": "1",
        }
        for i in range(10)
    ]
    assert [r["aggregate_reward_score"] for r in grade_samples(graders, samples)] == [
        float(i % 2) for i in range(10)
    ]
