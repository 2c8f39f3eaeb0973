"""Loading suites: record shapes, versions, example ids and clear errors."""

from __future__ import annotations

import json

import pytest

from tuneline.config import SuiteConfig, SuiteKind
from tuneline.errors import DataError
from tuneline.evaluation.suites import LoadedSuite, render_prompt

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
