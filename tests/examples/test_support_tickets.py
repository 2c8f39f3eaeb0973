"""The bundled example: deterministic data in the chat shape, and run configs that validate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from examples.support_tickets.generate import INTENTS, REFUSAL, generate_all
from tuneline.config import LocalTuneConfig, load_run_config
from tuneline.evaluation.refusal import is_refusal
from tuneline.records import ChatRecord

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "support_tickets"


def test_generation_is_deterministic_and_matches_the_shipped_files(tmp_path: Path) -> None:
    written = generate_all(tmp_path)
    for name, path in written.items():
        assert path.read_bytes() == (EXAMPLE / "data" / path.name).read_bytes(), name


def test_records_are_chat_records_with_json_or_refusal_answers() -> None:
    lines = (EXAMPLE / "data" / "tickets.jsonl").read_text(encoding="utf-8").splitlines()
    records = [ChatRecord.model_validate_json(line) for line in lines]
    refusals = [r for r in records if r.answer == REFUSAL]
    assert 0.05 < len(refusals) / len(records) < 0.15
    for record in records:
        if record.answer == REFUSAL:
            continue
        answer = json.loads(record.answer)
        assert answer["intent"] in INTENTS and answer["priority"] in {"low", "medium", "high"}
        assert answer["order_id"] is None or answer["order_id"] in record.messages[0].content


def test_safety_and_general_sets_are_held_out() -> None:
    train_prompts = {
        json.loads(line)["messages"][0]["content"]
        for line in (EXAMPLE / "data" / "tickets.jsonl").read_text(encoding="utf-8").splitlines()
    }
    for name in ("safety.jsonl", "general.jsonl"):
        records = [ChatRecord.model_validate_json(x) for x in (EXAMPLE / "data" / name).read_text(encoding="utf-8").splitlines()]
        assert records and not {r.messages[0].content for r in records} & train_prompts
    safety = [ChatRecord.model_validate_json(x) for x in (EXAMPLE / "data" / "safety.jsonl").read_text(encoding="utf-8").splitlines()]
    assert all(r.answer == REFUSAL for r in safety) and is_refusal(REFUSAL)


@pytest.mark.parametrize("name", ["run.yaml", "worse.yaml", "dpo.yaml", "grpo.yaml"])
def test_run_configs_validate(name: str) -> None:
    config = load_run_config(EXAMPLE / name)
    assert isinstance(config.tune, LocalTuneConfig) and config.tune.adapter == "full"
    for suite in config.evaluation.suites:
        assert suite.source is None or (EXAMPLE.parents[1] / suite.source).is_file()


def test_preference_pairs_prefer_the_right_triage_over_a_plausible_wrong_one() -> None:
    lines = (EXAMPLE / "data" / "preferences.jsonl").read_text(encoding="utf-8").splitlines()
    pairs = [json.loads(line) for line in lines]
    refusals = [p for p in pairs if p["chosen"] == REFUSAL]
    assert refusals and all(json.loads(p["rejected"])["intent"] in INTENTS for p in refusals)
    for pair in pairs:
        if pair["chosen"] == REFUSAL:
            continue
        chosen, rejected = json.loads(pair["chosen"]), json.loads(pair["rejected"])
        wrong = [k for k in chosen if chosen[k] != rejected[k]]
        assert len(wrong) == 1, pair  # one plausible mistake: priority, intent or the order number
        assert chosen["order_id"] is None or chosen["order_id"] in pair["prompt"]


def test_rft_prompts_end_with_the_ticket_and_hold_the_triage_as_reference() -> None:
    lines = (EXAMPLE / "data" / "rft.jsonl").read_text(encoding="utf-8").splitlines()
    for record in map(json.loads, lines):
        assert [m["role"] for m in record["messages"]] == ["system", "user"]
        reference = record["reference_answer"]
        assert set(reference) == {"intent", "priority", "order_id"} and reference["intent"] in INTENTS
