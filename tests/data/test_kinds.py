"""Every kind and content a target trains is written into the dataset version, in the shape that
target's trainer reads: preference, KTO, RFT and pretraining records, tool use, kept metadata;
PII is redacted inside all of them, and dedupe tells their labels apart."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tuneline.backends.bedrock.dry_run import check_records
from tuneline.backends.local.data import read_records
from tuneline.config import DataConfig, Target
from tuneline.data.prepare import build_dataset
from tuneline.records import (
    KtoRecord,
    PreferenceRecord,
    PretrainRecord,
    PromptRecord,
    RftRecord,
    record_from_dict,
)

FORMATS = Path(__file__).resolve().parents[3] / "shared" / "data" / "formats"
ALL_TRAIN = {"train": 1, "validation": 0, "test": 0}


def _build(tmp_path: Path, rows: list[dict], target: Target = Target.LOCAL, **kw):
    run = tmp_path / f"run-{len(list(tmp_path.iterdir()))}"
    run.mkdir()
    src = run / "in.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    work = run / "work"
    built = build_dataset(DataConfig(source=str(src), split=ALL_TRAIN, **kw), target, work)
    out = work / "out"
    text = (out / "train.jsonl").read_text() if out.exists() else ""
    return built.summary, text, out


def _user(text: str) -> dict:
    return {"role": "user", "content": text}


def _assistant(text: str) -> dict:
    return {"role": "assistant", "content": text}


def test_preference_records_are_written_as_the_dpo_trainer_reads_them(tmp_path):
    rows = [
        {"prompt": f"Triage ticket {i}", "chosen": f"priority: high {i}", "rejected": f"priority: low {i}"}
        for i in range(3)
    ] + [{"input": {"messages": [_user("Refund?")]}, "preferred_output": [_assistant("Yes, within 30 days.")],
          "non_preferred_output": [_assistant("No.")]}]
    s, text, _ = _build(tmp_path, rows)
    assert (s.total, s.accepted, s.kinds) == (4, 4, {"preference": 4})
    records = read_records(text, "train.jsonl", "dpo")
    assert all(isinstance(r, PreferenceRecord) for r in records)
    assert [(r.prompt[0].content, r.chosen[0].content, r.rejected[0].content) for r in records] == [
        ("Triage ticket 0", "priority: high 0", "priority: low 0"),
        ("Triage ticket 1", "priority: high 1", "priority: low 1"),
        ("Triage ticket 2", "priority: high 2", "priority: low 2"),
        ("Refund?", "Yes, within 30 days.", "No."),
    ]


def test_kto_records_keep_their_label_and_a_good_and_a_bad_label_are_not_duplicates(tmp_path):
    conv = [_user("Is the sky green?"), _assistant("Yes.")]
    rows = [{"messages": conv, "label": False}, {"messages": conv, "label": True},
            {"messages": conv, "label": False}]
    s, text, _ = _build(tmp_path, rows)
    assert (s.accepted, s.duplicates, s.kinds) == (2, 1, {"kto": 3})
    records = read_records(text, "train.jsonl", "kto")
    assert [(type(r), r.label, r.messages[-1].content) for r in records] == [
        (KtoRecord, False, "Yes."), (KtoRecord, True, "Yes.")
    ]


def test_the_llama_factory_kto_demo_is_read_as_kto_with_every_label(tmp_path):
    if not FORMATS.is_dir():
        pytest.skip("shared data missing")
    source = json.loads((FORMATS / "13_kto_en_demo.json").read_text())
    s, text, _ = _build(tmp_path, source)
    assert s.kinds == {"kto": len(source)}
    # One demo answer holds a URL with a password in it, which the default PII policy rejects.
    assert s.errors == {"pii": 1} and "url_credentials" in s.examples["pii"][0]["message"]
    assert s.total == s.accepted + s.duplicates + s.rejected
    records = read_records(text, "train.jsonl", "kto")
    # Every written label is the one the file gave that conversation (records were not relabelled).
    given = {(r["messages"][0]["content"], r["messages"][-1]["content"][:20], r["label"]) for r in source}
    assert all((r.messages[0].content, r.messages[-1].content[:20], r.label) in given for r in records)
    assert sum(not r.label for r in records) > 0


def test_rft_and_pretrain_records_for_the_local_trainers(tmp_path):
    rows = [
        {"messages": [{"role": "system", "content": "Reply in JSON."}, _user("Classify: printer on fire")],
         "reference_answer": {"category": "hardware"}, "ticket_id": "T-1"},
        {"text": "Continued pre-training reads plain text."},
        {"input": "Bedrock's pretraining shape."},
    ]
    s, text, _ = _build(tmp_path, rows)
    assert s.kinds == {"pretrain": 2, "rft": 1} and s.accepted == 3
    lines = [json.loads(x) for x in text.splitlines()]
    (rft,) = read_records("\n".join(json.dumps(x) for x in lines if x["kind"] == "rft"), "train.jsonl", "grpo")
    assert isinstance(rft, RftRecord)
    assert (rft.system, rft.messages[-1].content) == ("Reply in JSON.", "Classify: printer on fire")
    assert rft.reference_answer == {"category": "hardware"} and rft.metadata == {"ticket_id": "T-1"}
    pretrain = [record_from_dict(x) for x in lines if x["kind"] == "pretrain"]
    assert [p.text for p in pretrain if isinstance(p, PretrainRecord)] == [
        "Continued pre-training reads plain text.", "Bedrock's pretraining shape."
    ]


def test_pii_is_redacted_inside_every_kind_and_named_by_its_field(tmp_path):
    rows = [
        {"prompt": "Write to jane.doe@example.com", "chosen": "Done: jane.doe@example.com", "rejected": "No."},
        {"messages": [_user("Account?")], "reference_answer": "mail bob@example.org", "owner": "ann@example.net"},
        {"messages": [_user("Mail x"),
                      {"role": "assistant", "content": None, "tool_calls": [
                          {"id": "c1", "type": "function",
                           "function": {"name": "send", "arguments": json.dumps({"to": "x@example.com"})}}]},
                      {"role": "tool", "tool_call_id": "c1", "content": "sent"}, _assistant("Sent.")]},
    ]
    s, text, _ = _build(tmp_path, rows)
    assert s.accepted == 3 and s.pii == {"email": 5}
    assert "@example" not in text and text.count("[EMAIL]") == 5
    sent = json.loads(text.splitlines()[2])
    assert sent["messages"][1]["tool_calls"][0]["arguments"] == {"to": "[EMAIL]"}
    rejecting, _, _ = _build(tmp_path, rows[:1], pii={"email": "reject"})
    assert {e["field"] for e in rejecting.examples["pii"]} == {"prompt[0].content", "chosen[0].content"}
    assert rejecting.errors == {"pii": 1}


def test_kept_metadata_travels_with_the_record_and_is_no_reason_to_keep_a_duplicate(tmp_path):
    conv = [_user("Where is my order 1234?"), _assistant("It ships today.")]
    rows = [{"messages": conv, "conversation_id": "a"}, {"messages": conv, "conversation_id": "b"}]
    s, text, out = _build(tmp_path, rows, extra_keys="keep")
    assert (s.accepted, s.duplicates) == (1, 1)
    (line,) = [json.loads(x) for x in text.splitlines()]
    assert line == {"kind": "sft", "messages": conv, "metadata": {"conversation_id": "a"}}
    dropped, _, _ = _build(tmp_path, rows[:1])
    assert s.tokens == dropped.tokens  # metadata counts no tokens
    # Bedrock's Claude shape has no place for metadata: the JSONL is exact, the Parquet keeps it.
    rows = [{"messages": [_user(f"Q{i}?"), _assistant(f"A{i}.")], "conversation_id": str(i)} for i in range(32)]
    s, text, out = _build(tmp_path, rows, Target.BEDROCK_CLAUDE_HAIKU, extra_keys="keep")
    assert s.accepted == 32 and s.problems == []
    assert json.loads(text.splitlines()[0]) == {"messages": [_user("Q0?"), _assistant("A0.")]}
    kept = pq.read_table(out / "train.parquet").column("record").to_pylist()
    assert json.loads(kept[0])["metadata"] == {"conversation_id": "0"}


def test_nova_gets_rft_lines_and_tool_use_in_bedrocks_own_shapes(tmp_path):
    rft = [{"messages": [_user(f"Sum {i} and 1")], "reference_answer": str(i + 1), "level": "easy"} for i in range(8)]
    s, text, _ = _build(tmp_path, rft, Target.BEDROCK_NOVA)
    assert (s.accepted, s.problems) == (8, [])
    lines = [json.loads(x) for x in text.splitlines()]
    assert lines[0] == {"messages": [_user("Sum 0 and 1")], "reference_answer": "1", "level": "easy"}
    for line in lines:  # the contract checker of the Bedrock provider agrees
        assert check_records(line, kind="REINFORCEMENT_FINE_TUNING", record_format="nova", single_turn=False)[0] == []
    tools = [{"messages": [_user(f"Weather in city {i}?"),
                           {"role": "assistant", "content": None, "tool_calls": [
                               {"id": f"t{i}", "type": "function",
                                "function": {"name": "weather", "arguments": json.dumps({"city": str(i)})}}]},
                           {"role": "tool", "tool_call_id": f"t{i}", "content": "sunny"},
                           _assistant("Sunny.")]} for i in range(8)]
    s, text, _ = _build(tmp_path, tools, Target.BEDROCK_NOVA)
    assert (s.accepted, s.problems) == (8, [])
    first = json.loads(text.splitlines()[0])
    assert first["messages"][1]["content"] == [{"toolUse": {"toolUseId": "t0", "name": "weather", "input": {"city": "0"}}}]
    assert first["messages"][2] == {"role": "user", "content": [
        {"toolResult": {"toolUseId": "t0", "content": [{"text": "sunny"}]}}]}
    assert check_records(first, kind="FINE_TUNING", record_format="nova", single_turn=False)[0] == []


def test_a_target_that_cannot_train_a_kind_names_one_that_can(tmp_path):
    rows = [{"prompt": "q", "chosen": "a", "rejected": "b"}, {"messages": [_user("q"), _assistant("a")], "label": True}]
    s, _, _ = _build(tmp_path, rows, Target.BEDROCK_NOVA)
    assert s.errors == {"unsupported_kind": 2}
    assert all("targets that do: local" in e["message"] for e in s.examples["unsupported_kind"])


def test_each_kind_is_evaluated_against_its_reference_answer():
    from tuneline.records import ChatRecord, Message, reference_chat

    user, good, bad = Message(role="user", content="q"), Message(role="assistant", content="a"), \
        Message(role="assistant", content="b")
    pref = PreferenceRecord(prompt=(user,), chosen=(good,), rejected=(bad,))
    assert reference_chat(pref) == ChatRecord(messages=(user, good))
    assert reference_chat(KtoRecord(messages=(user, bad), label=False)) is None
    assert reference_chat(KtoRecord(messages=(user, good), label=True)) == ChatRecord(messages=(user, good))
    rft = RftRecord(system="JSON only", messages=(user,), reference_answer={"category": "billing"})
    assert reference_chat(rft) == ChatRecord(
        system="JSON only", messages=(user, Message(role="assistant", content='{"category":"billing"}')))
    assert reference_chat(PretrainRecord(text="t")) is None


def test_nova_rft_lines_are_text_only_so_an_rft_record_with_tools_names_local(tmp_path):
    rows = [{"messages": [_user("Weather?")], "reference_answer": "sunny",
             "tools": [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}]}]
    s, _, _ = _build(tmp_path, rows, Target.BEDROCK_NOVA)
    (example,) = s.examples["unsupported_content"]
    assert "tools" in example["message"] and "in rft records" in example["message"]
    assert example["message"].endswith("train this record with target local")


def test_the_profile_counts_each_kinds_conversation_turns_not_its_texts(tmp_path):
    rows = [
        {"prompt": "Triage ticket 1", "chosen": "high", "rejected": "low", "ticket": "T-1"},  # 2 turns
        {"messages": [_user("Classify"), _assistant("ok"), _user("And this?")],
         "reference_answer": {"category": "hardware", "team": "it"}},  # 3 turns
        {"messages": [_user("q"), _assistant("a")]},  # plain chat: 2 turns
        {"text": "Plain text is no conversation."},
    ]
    run = tmp_path / "run"
    run.mkdir()
    (run / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    built = build_dataset(
        DataConfig(source=str(run / "in.jsonl"), split=ALL_TRAIN, extra_keys="keep"), Target.LOCAL, run / "work"
    )
    assert built.summary.accepted == 4
    assert built.profile["turns"] == [{"turns": 2, "records": 2}, {"turns": 3, "records": 1}]


def test_prompts_alone_are_read_only_when_asked_and_only_where_a_teacher_answers_them(tmp_path):
    prompts = [{"system": "Triage tickets.", "messages": [_user(f"Ticket {i}: the printer is on fire")]}
               for i in range(8)]
    # Unasked, a conversation without its answer is no SFT record: refused, saying what to do.
    s, _, _ = _build(tmp_path, prompts, Target.BEDROCK_NOVA)
    assert s.accepted == 0 and s.errors == {"last_not_assistant": 8}
    (example, *_) = s.examples["last_not_assistant"]
    assert example["message"] == (
        'the conversation ends with "user": the last turn must be "assistant" (add the assistant answer it '
        "lacks; prompts a teacher model answers, for distillation, are read with data.kind: prompt)"
    )
    # Asked (data.kind: prompt): bedrock-conversation-2024 lines that end with the user turn.
    s, text, out = _build(tmp_path, prompts, Target.BEDROCK_NOVA, kind="prompt")
    assert (s.accepted, s.kinds, s.problems) == (8, {"prompt": 8}, [])
    assert json.loads(text.splitlines()[0]) == {
        "schemaVersion": "bedrock-conversation-2024", "system": [{"text": "Triage tickets."}],
        "messages": [{"role": "user", "content": [{"text": "Ticket 0: the printer is on fire"}]}]}
    kept = pq.read_table(out / "train.parquet").column("record").to_pylist()
    assert isinstance(record_from_dict(json.loads(kept[0])), PromptRecord)
    # An answered conversation read as a prompt would lose its answer: refused, not cut.
    answered = [{"messages": [_user("q"), _assistant("a")]}]
    s, _, _ = _build(tmp_path, answered, Target.BEDROCK_NOVA, kind="prompt")
    assert s.errors == {"last_not_user": 1}
    # No local trainer learns from prompts alone; the advice names the targets that do.
    s, _, _ = _build(tmp_path, prompts[:1], Target.LOCAL, kind="prompt")
    assert [e["message"] for e in s.examples["unsupported_kind"]] == [
        "unsupported_kind: prompt — local does not train prompt records; targets that do: "
        "bedrock-nova, bedrock-distillation"
    ]
    # Nor does Claude's fine-tuning target (prompts serve distillation, which has its own shape).
    s, _, _ = _build(tmp_path, prompts[:1], Target.BEDROCK_CLAUDE_HAIKU, kind="prompt")
    assert s.errors == {"unsupported_kind": 1}


def test_titan_trains_pretraining_text_only_and_the_advice_for_pretrain_names_it(tmp_path):
    rows = [{"text": "Refunds go to billing."}, {"input": "Printers go to hardware."},
            {"messages": [_user("q"), _assistant("a")]}, {"text": "x" * (4_096 * 3 + 3)}]
    s, text, _ = _build(tmp_path, rows, Target.BEDROCK_TITAN)
    assert s.accepted == 2
    assert [json.loads(x) for x in text.splitlines()] == [
        {"input": "Refunds go to billing."}, {"input": "Printers go to hardware."}]
    assert s.errors == {"unsupported_kind": 1, "too_many_tokens": 1}
    assert s.examples["unsupported_kind"][0]["message"] == (
        "unsupported_kind: sft — bedrock-titan does not train sft records; targets that do: "
        "bedrock-claude-haiku, bedrock-nova, bedrock-distillation, local")
    assert "bedrock-titan allows at most 4096" in s.examples["too_many_tokens"][0]["message"]
    s, _, _ = _build(tmp_path, rows[:2], Target.BEDROCK_CLAUDE_HAIKU)
    assert all(e["message"].endswith("targets that do: bedrock-titan, local") for e in s.examples["unsupported_kind"])
