"""Per-record detection and conversion of every published format into tuneline.records models.

The real files under ../shared/data are read in place (never copied into the repository)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tuneline.data.formats import FormatProblem, convert, detect_format
from tuneline.records import (
    ChatRecord,
    KtoRecord,
    Message,
    PreferenceRecord,
    PretrainRecord,
    RecordFormat,
    RecordKind,
    RftRecord,
    record_from_dict,
    record_to_dict,
    to_bedrock,
    to_nova,
    to_openai,
)

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
FORMATS = SHARED / "formats"
needs_shared = pytest.mark.skipif(not FORMATS.is_dir(), reason="the shared real-world data is not on this machine")


def _records(path: Path) -> list:
    if path.suffix == ".json":
        return json.loads(path.read_text())
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@needs_shared
def test_alpaca_array_becomes_chat_records():
    rows = _records(FORMATS / "08_alpaca_en_demo.json")
    out = [convert(r) for r in rows]
    assert {c.format for c in out} == {RecordFormat.ALPACA} and len(out) == 999
    first = out[0].record
    assert isinstance(first, ChatRecord)
    assert first.messages[0] == Message(role="user", content=rows[0]["instruction"])
    assert first.messages[1].content == rows[0]["output"]
    with_input = next(i for i, r in enumerate(rows) if r["input"])
    assert out[with_input].record.messages[0].content == rows[with_input]["instruction"] + "\n\n" + rows[with_input]["input"]


@needs_shared
def test_sharegpt_turns_and_id_key_dropped():
    rows = _records(FORMATS / "09_sharegpt_fastchat_dummy.json")
    conv = convert(rows[0])
    assert conv.format is RecordFormat.SHAREGPT and conv.dropped_keys == ["id"]
    assert [(m.role, m.content) for m in conv.record.messages] == [
        ("user" if t["from"] == "human" else "assistant", t["value"]) for t in rows[0]["conversations"]
    ]
    kept = convert(rows[0], extra_keys="keep")
    assert kept.record.metadata == {"id": "identity_0"} and kept.dropped_keys == []
    with pytest.raises(FormatProblem) as err:
        convert(rows[0], extra_keys="reject")
    assert err.value.code == "unexpected_key" and err.value.field == "id"


@needs_shared
def test_kto_demo_keeps_its_labels_and_never_becomes_sft_when_false():
    rows = _records(FORMATS / "13_kto_en_demo.json")
    out = [convert(r).record for r in rows]
    assert all(isinstance(r, KtoRecord) for r in out)
    assert [r.label for r in out] == [row["label"] for row in rows]
    bad = next(row for row in rows if row["label"] is False)
    with pytest.raises(FormatProblem) as err:
        convert(bad, kind=RecordKind.SFT)
    assert err.value.code == "undesirable_answer" and "--kind kto" in err.value.message
    good = next(row for row in rows if row["label"] is True)
    assert isinstance(convert(good, kind=RecordKind.SFT).record, ChatRecord)


@needs_shared
def test_aws_nova_tooluse_sample_with_its_own_schema_version():
    rows = _records(FORMATS / "02_nova_tooluse_formatted_train.jsonl")
    assert rows[0]["schemaVersion"] == "tooluse-dataset-2024"
    rec = convert(rows[0]).record
    assert rec.system == rows[0]["system"][0]["text"]
    assert rec.messages[-1].content == rows[0]["messages"][-1]["content"][0]["text"]
    assert to_nova(rec)["schemaVersion"] == "bedrock-conversation-2024"


@needs_shared
def test_openai_toy_chat_bad_record_named():
    rows = _records(FORMATS / "06_openai_toy_chat.jsonl")
    results = []
    for r in rows:
        try:
            results.append(convert(r).record.system)
        except FormatProblem as exc:
            results.append(exc.code)
    assert results.count("first_not_user") == 1
    assert rows[0]["messages"][0]["content"] in results


def test_openai_tools_tool_calls_and_tool_turns():
    obj = {
        "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "weather", "arguments": '{"city": "Paris"}'}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "18C"},
            {"role": "assistant", "content": "It is 18C.", "weight": 1},
        ],
        "tools": [{"type": "function", "function": {"name": "weather", "description": "d",
                                                    "parameters": {"type": "object"}}}],
    }
    assert detect_format(obj) is RecordFormat.OPENAI
    rec = convert(obj).record
    assert rec.messages[1].tool_calls[0].arguments == {"city": "Paris"}
    assert rec.messages[2].role == "tool" and rec.messages[2].tool_call_id == "c1"
    assert rec.tools[0].name == "weather"
    back = to_openai(rec)
    assert back["messages"][1]["tool_calls"][0]["function"] == {"name": "weather", "arguments": '{"city": "Paris"}'}
    assert convert(back).record == rec
    nova = to_nova(rec)
    assert nova["messages"][1]["content"] == [{"toolUse": {"toolUseId": "c1", "name": "weather", "input": {"city": "Paris"}}}]
    assert nova["messages"][2] == {"role": "user", "content": [{"toolResult": {"toolUseId": "c1", "content": [{"text": "18C"}]}}]}
    assert nova["toolConfig"]["tools"][0]["toolSpec"]["inputSchema"] == {"json": {"type": "object"}}
    assert convert(nova).record.messages == rec.messages[:3] + (rec.messages[3].model_copy(update={"weight": None}),)


def test_nova_reasoning_and_media_by_s3_uri_round_trip():
    obj = {"schemaVersion": "bedrock-conversation-2024", "messages": [
        {"role": "user", "content": [{"image": {"format": "png", "source": {"s3Location": {"uri": "s3://b/cat.png"}}}},
                                     {"text": "What is this?"}]},
        {"role": "assistant", "content": [{"reasoningContent": {"reasoningText": {"text": "fur, whiskers"}}},
                                          {"text": "A cat."}]}]}
    rec = convert(obj).record
    assert rec.messages[0].media[0].uri == "s3://b/cat.png" and rec.messages[1].reasoning == "fur, whiskers"
    assert to_nova(rec) == obj
    inline = {"messages": [{"role": "user", "content": [{"image": {"format": "png", "source": {"bytes": "AAA"}}}]},
                           {"role": "assistant", "content": [{"text": "x"}]}]}
    with pytest.raises(FormatProblem) as err:
        convert(inline)
    assert err.value.code == "unsupported_content" and "s3Location" in err.value.message


def test_sharegpt_function_call_observation_system_and_tools():
    obj = {"conversations": [
        {"from": "human", "value": "2+2?"},
        {"from": "function_call", "value": '{"name": "calc", "arguments": {"expr": "2+2"}}'},
        {"from": "observation", "value": "4"},
        {"from": "gpt", "value": "4"}], "system": "Be brief.",
        "tools": '[{"name": "calc", "description": "math", "parameters": {"type": "object"}}]'}
    rec = convert(obj).record
    assert rec.system == "Be brief." and rec.tools[0].name == "calc"
    assert [m.role for m in rec.messages] == ["user", "assistant", "tool", "assistant"]
    assert rec.messages[1].tool_calls[0].arguments == {"expr": "2+2"}


def test_preference_rft_pretrain_and_openai_dpo():
    pref = convert({"prompt": "Hi?", "chosen": "Hello!", "rejected": "Go away."}).record
    assert isinstance(pref, PreferenceRecord) and pref.chosen[0].content == "Hello!"
    dpo = convert({"input": {"messages": [{"role": "user", "content": "Hi?"}]},
                   "preferred_output": [{"role": "assistant", "content": "Hello!"}],
                   "non_preferred_output": [{"role": "assistant", "content": "No."}]})
    assert dpo.format is RecordFormat.OPENAI_DPO and dpo.record.rejected[0].content == "No."
    rft = convert({"messages": [{"role": "user", "content": "2+2?"}], "reference_answer": "4", "difficulty": 1})
    assert isinstance(rft.record, RftRecord) and rft.record.metadata == {"difficulty": 1}
    assert convert({"text": "Once upon a time"}).record == PretrainRecord(text="Once upon a time")
    assert convert({"input": "Bedrock pretraining text"}).format is RecordFormat.PRETRAIN
    as_rft = convert({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]},
                     kind=RecordKind.RFT).record
    assert as_rft.reference_answer == "a" and as_rft.messages[-1].role == "user"
    with pytest.raises(FormatProblem) as err:
        convert({"text": "t"}, kind=RecordKind.SFT)
    assert err.value.code == "kind_mismatch"


def test_no_empty_system_rendered():
    rec = ChatRecord(system="", messages=(Message(role="user", content="a"), Message(role="assistant", content="b")))
    assert "system" not in to_bedrock(rec) and "system" not in to_nova(rec)
    assert to_openai(rec)["messages"][0]["role"] == "user"


@pytest.mark.parametrize("obj,code", [
    ({"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]}, "roles_not_alternating"),
    ({"messages": [{"role": "user", "content": "a"}]}, "last_not_assistant"),
    ({"messages": [{"role": "bot", "content": "a"}]}, "unknown_role"),
    ({"messages": "hi"}, "wrong_type"),
    ({"conversations": []}, "empty_messages"),
    ({"foo": 1}, "unknown_format"),
    ({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}], "label": "yes"}, "wrong_type"),
    ({"messages": [{"role": "user", "content": "a"}, {"role": "tool", "content": "b"},
                   {"role": "assistant", "content": "c"}]}, "orphan_tool_result"),
])
def test_bad_records_have_codes(obj, code):
    with pytest.raises(FormatProblem) as err:
        convert(obj)
    assert err.value.code == code and err.value.message


def test_models_round_trip_through_dicts():
    for obj in ({"prompt": "Hi?", "chosen": "Hello!", "rejected": "No."}, {"text": "t"},
                {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}], "label": False}):
        rec = convert(obj).record
        assert record_from_dict(json.loads(json.dumps(record_to_dict(rec)))) == rec


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["messages", "role", "content", "from", "value", "conversations", "label", "text",
                         "prompt", "chosen", "rejected", "instruction", "output", "tool_calls", "system"]),
        inner, max_size=4),
    max_leaves=12,
)


@given(_json)
def test_fuzz_convert_only_raises_format_problems(obj):
    try:
        conv = convert(obj)
    except FormatProblem as exc:
        assert exc.code and exc.message
    else:
        assert conv.record.kind in RecordKind


def test_records_are_hashable_with_metadata_and_tools():
    rec = convert({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
                   "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
                   "id": 1}, extra_keys="keep").record
    assert rec.metadata == {"id": 1} and len({rec, rec.model_copy()}) == 1


@pytest.mark.parametrize("messages", [1, "hi", None, {"role": "user"}])
def test_kto_and_rft_records_whose_messages_are_not_a_list_are_a_wrong_type(messages):
    # Found by the container fuzzer: {"messages": 1, "label": null} raised a TypeError.
    for obj in ({"messages": messages, "label": True}, {"messages": messages, "reference_answer": "a"}):
        with pytest.raises(FormatProblem) as err:
            convert(obj)
        assert err.value.code in ("wrong_type", "missing_messages"), (obj, err.value.code)
