"""Loading suites: record shapes, versions, example ids, clear errors, and the PII policy."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from tuneline.config import (
    EvaluationConfig,
    PiiAction,
    PiiPolicy,
    RunConfig,
    SplitConfig,
    SuiteConfig,
    SuiteKind,
    Target,
)
from tuneline.errors import DataError
from tuneline.evaluation.runner import evaluate_models
from tuneline.evaluation.suites import LoadedSuite, SuitePii, render_prompt

CONFIG = SuiteConfig(name="safety", kind=SuiteKind.SAFETY, metrics=["refusal"])
BEDROCK = {
    "system": "Be brief.",
    "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}],
}
OPENAI = {
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
    ]
}
NOVA = {
    "schemaVersion": "bedrock-conversation-2024",
    "system": [{"text": "Be brief."}],
    "messages": [
        {"role": "user", "content": [{"text": "hi"}]},
        {"role": "assistant", "content": [{"text": "hello"}]},
    ],
}


@pytest.mark.parametrize("obj", [BEDROCK, OPENAI, NOVA], ids=["bedrock", "openai", "nova"])
def test_every_chat_shape_reads_as_the_same_record(obj: dict) -> None:
    suite = LoadedSuite.from_jsonl(CONFIG, [json.dumps(obj), ""], source="s.jsonl")
    reference = LoadedSuite.from_jsonl(CONFIG, [json.dumps(BEDROCK)], source="s.jsonl")
    assert suite.records == reference.records
    assert suite.version == reference.version
    assert render_prompt(suite.records[0]) == "system: Be brief.\nuser: hi"


def test_prompt_completion_lines() -> None:
    suite = LoadedSuite.from_jsonl(CONFIG, ['{"prompt": "2+2?", "completion": "4"}'], source="s.jsonl")
    assert suite.records[0].answer == "4"
    assert render_prompt(suite.records[0]) == "2+2?"


@pytest.mark.parametrize(
    ("line", "detail"),
    [
        pytest.param("{not json", "Expecting property name", id="not-json"),
        pytest.param('["a list"]', "expected a JSON object", id="not-an-object"),
        pytest.param('{"messages": [{"role": "user", "content": "hi"}]}', "at least 2", id="no-answer"),
        pytest.param(
            '{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}, '
            '{"role": "user", "content": "q2"}]}',
            "the last turn must be \"assistant\"",
            id="ends-with-user",
        ),
    ],
)
def test_a_bad_line_is_named(line: str, detail: str) -> None:
    with pytest.raises(
        DataError, match=rf"suite 'safety': s\.jsonl line 2 is not a chat record \(.*{detail}"
    ):
        LoadedSuite.from_jsonl(CONFIG, [json.dumps(BEDROCK), line], source="s.jsonl")


def test_an_empty_file_is_an_error() -> None:
    with pytest.raises(DataError, match="holds no records"):
        LoadedSuite.from_jsonl(CONFIG, ["", "  "], source="empty.jsonl")


def test_version_and_ids_follow_content_and_order() -> None:
    a = json.dumps(BEDROCK)
    b = json.dumps(
        {"messages": [{"role": "user", "content": "bye"}, {"role": "assistant", "content": "ciao"}]}
    )
    one = LoadedSuite.from_jsonl(CONFIG, [a, b], source="x")
    same = LoadedSuite.from_jsonl(CONFIG.model_copy(update={"metrics": ["rouge_l"]}), [a, b], source="y")
    swapped = LoadedSuite.from_jsonl(CONFIG, [b, a], source="x")
    assert one.version == same.version  # the metrics are not part of the version
    assert one.version != swapped.version
    assert one.example_ids == swapped.example_ids[::-1]
    duplicated = LoadedSuite.from_jsonl(CONFIG, [a, a, a], source="x")
    first = duplicated.example_ids[0]
    assert duplicated.example_ids == (first, f"{first}-2", f"{first}-3")


# --- PII: a suite file goes through the run's policy (data.pii), as training data does -------------
EMAIL, SSN, AWS_KEY = "jane.doe@example.com", "123-45-6789", "AKIAIOSFODNN7EXAMPLE"
PLANTED = [
    {"prompt": f"Reset the password of {EMAIL}", "completion": f"A reset link was sent to {EMAIL}."},
    {"prompt": f"Is {SSN} a valid SSN?", "completion": f"I can't check {SSN} for you."},
    {"prompt": f"Upload with access key {AWS_KEY}", "completion": f"Never paste {AWS_KEY} into a ticket."},
    {"prompt": "2+2?", "completion": "4"},
]
REDACTED = [
    ("Reset the password of [EMAIL]", "A reset link was sent to [EMAIL]."),
    ("Is [SSN] a valid SSN?", "I can't check [SSN] for you."),
    ("Upload with access key [AWS_ACCESS_KEY]", "Never paste [AWS_ACCESS_KEY] into a ticket."),
    ("2+2?", "4"),
]
REDACT_KEYS = PiiPolicy(aws_access_key=PiiAction.REDACT)


def _pairs(suite: LoadedSuite) -> list[tuple[str, str]]:
    return [(render_prompt(r), r.answer) for r in suite.records]


def test_a_suite_file_is_redacted_by_the_policy() -> None:
    lines = [json.dumps(r) for r in PLANTED]
    suite = LoadedSuite.from_jsonl(CONFIG, lines, source="s.jsonl", pii=REDACT_KEYS)
    assert _pairs(suite) == REDACTED
    assert suite.pii == SuitePii(screened=True, redacted=3, found={"aws_access_key": 2, "email": 2, "ssn": 2})
    # the system prompt and every text prepare screens, not only the prompt and the reference
    every = {
        "system": f"Escalate to {EMAIL}.",
        "metadata": {"customer": EMAIL},
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello", "reasoning": f"The SSN on file is {SSN}."},
        ],
    }
    (record,) = LoadedSuite.from_jsonl(CONFIG, [json.dumps(every)], source="s.jsonl").records
    assert record.system == "Escalate to [EMAIL]."
    assert record.metadata == {"customer": "[EMAIL]"}
    assert record.messages[-1].reasoning == "The SSN on file is [SSN]."


def test_a_credential_record_is_left_out_and_counted() -> None:
    suite = LoadedSuite.from_jsonl(CONFIG, ["", *(json.dumps(r) for r in PLANTED)], source="s.jsonl")  # default policy
    assert _pairs(suite) == [REDACTED[0], REDACTED[1], REDACTED[3]]
    assert suite.pii is not None
    assert (suite.pii.redacted, suite.pii.rejected, suite.pii.rejected_lines) == (2, 1, (4,))
    assert suite.pii.rejected_kinds == {"aws_access_key": 1}
    allowed = PiiPolicy(email=PiiAction.ALLOW, aws_access_key=PiiAction.ALLOW)
    kept = LoadedSuite.from_jsonl(CONFIG, [json.dumps(PLANTED[0])], source="s.jsonl", pii=allowed)
    assert _pairs(kept)[0][0] == PLANTED[0]["prompt"]  # allowed: kept as is, still counted
    assert kept.pii is not None and (kept.pii.redacted, kept.pii.found) == (0, {"email": 2})


def test_a_suite_the_policy_rejects_whole_is_an_error() -> None:
    with pytest.raises(DataError, match=r"suite 'safety': every record of keys\.jsonl .*aws access key.*data\.pii"):
        LoadedSuite.from_jsonl(CONFIG, [json.dumps(PLANTED[2])], source="keys.jsonl")


def _evaluation_config(run_config: Callable[..., RunConfig], suites: list[SuiteConfig], pii: PiiPolicy) -> RunConfig:
    config = run_config()
    return config.model_copy(
        update={
            "data": config.data.model_copy(update={"pii": pii}),
            "evaluation": config.evaluation.model_copy(update={"suites": suites}),
        }
    )


@pytest.mark.service
def test_the_stage_loads_a_redacted_suite_and_writes_no_pii(
    s3_settings: Any, object_store: Any, s3_prefix: Callable[[str], str], run_config: Callable[..., RunConfig],
    lineage: Callable[..., Any], zoo: Any,
) -> None:
    from tuneline.stages.context import StageContext
    from tuneline.stages.evaluate import load_suites

    prefix = s3_prefix("pii-suite")
    source = object_store.put_bytes(f"{prefix}/general.jsonl", "\n".join(json.dumps(r) for r in PLANTED).encode())
    suite_config = SuiteConfig(name="general", kind=SuiteKind.GENERAL, source=source, metrics=["exact_match"])
    config = _evaluation_config(run_config, [suite_config], REDACT_KEYS)
    dataset, *_ = lineage()
    (suite,) = load_suites(StageContext(s3_settings), config, dataset)
    assert _pairs(suite) == REDACTED and suite.pii is not None and suite.pii.redacted == 3

    # what the models are asked, and what lands in S3, holds placeholders only
    answers = {prompt: reference for prompt, reference in REDACTED}
    models = {"candidate": zoo.model("candidate", "c", answers), "base": zoo.model("base", "b", {})}
    result = evaluate_models(models, [suite], EvaluationConfig(bootstrap_samples=100))
    uri = result.write_parquet(f"{prefix}/results.parquet", object_store)
    rows = pq.read_table(io.BytesIO(object_store.get_bytes(uri))).to_pylist()
    candidate = [(r["prompt"], r["reference"]) for r in rows if r["model"] == "candidate"]
    assert sorted(candidate) == sorted(REDACTED)
    written = json.dumps(rows, default=str)
    assert not any(value in written for value in (EMAIL, SSN, AWS_KEY))


@pytest.mark.service
def test_the_held_out_split_is_not_redacted_twice(
    s3_settings: Any, object_store: Any, tmp_path: Path, run_config: Callable[..., RunConfig]
) -> None:
    from tuneline.data.prepare import prepare
    from tuneline.data.versions import read_split
    from tuneline.stages.context import StageContext
    from tuneline.stages.evaluate import load_suites

    source = tmp_path / "tickets.jsonl"
    rows = [{"prompt": f"Ticket {i}: mail user{i}@example.com", "completion": f"Done, user{i}@example.com."}
            for i in range(40)]
    source.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    config = run_config()
    data = config.data.model_copy(update={"source": str(source), "split": SplitConfig(train=0.5, validation=0.0, test=0.5)})
    dataset = prepare(data, Target.LOCAL, config.name, object_store).dataset
    held_out = read_split(object_store, dataset.uri, "test")
    assert held_out and all("[EMAIL]" in r.messages[0].content for r in held_out)  # prepare redacted it

    (suite,) = load_suites(StageContext(s3_settings), config.model_copy(update={"data": data}), dataset)
    assert suite.records == tuple(held_out)  # as prepare wrote it: the placeholders are unchanged
    assert suite.pii == SuitePii(screened=False)
