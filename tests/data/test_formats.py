"""Every input format converts to the target's format with the conversation kept exactly."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tuneline.config import DataConfig, Target
from tuneline.data.prepare import build_dataset
from tuneline.records import ChatRecord, Message, from_nova, to_bedrock, to_nova, to_openai

RECORDS = [
    ChatRecord(
        system="Answer in JSON.",
        messages=(
            Message(role="user", content='Quote: "a"\n\tb ü 😀'),
            Message(role="assistant", content='{"x": 1}'),
        ),
    ),
    ChatRecord(
        messages=(
            Message(role="user", content="one"),
            Message(role="assistant", content="two"),
            Message(role="user", content="three"),
            Message(role="assistant", content="four"),
        )
    ),
]
ALL_TRAIN = {"train": 1, "validation": 0, "test": 0}


def _read_out(path, target):
    parse = from_nova if target is Target.BEDROCK_NOVA else ChatRecord.model_validate
    return [parse(json.loads(line)) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.mark.parametrize("writer", [to_bedrock, to_nova, to_openai], ids=["bedrock", "nova", "openai"])
@pytest.mark.parametrize("target", [Target.LOCAL, Target.BEDROCK_NOVA], ids=["to-bedrock", "to-nova"])
def test_chat_formats_round_trip(write_lines, tmp_path, writer, target, monkeypatch):
    from tuneline.data import targets

    monkeypatch.setitem(
        targets._LIMITS, target, targets.limits_for(target).model_copy(update={"min_train_records": 1})
    )
    path = write_lines([writer(r) for r in RECORDS])
    built = build_dataset(DataConfig(source=str(path), split=ALL_TRAIN), target, tmp_path / "w")
    assert built.summary.errors == {} and built.summary.accepted == 2
    out = _read_out(tmp_path / "w" / "out" / "train.jsonl", target)
    assert sorted(out, key=str) == sorted(RECORDS, key=str)
    if target is Target.BEDROCK_NOVA:
        first = json.loads((tmp_path / "w" / "out" / "train.jsonl").read_text().splitlines()[0])
        assert first == to_nova(out[0])


@pytest.mark.parametrize("kind", ["jsonl", "csv", "parquet"])
def test_prompt_completion_with_column_mapping(tmp_path, kind):
    rows = {
        "q": ["What is 2+2?", 'Say "hi",\nplease'],
        "a": ["4", "hi"],
        "sys": ["math", "greet"],
        "id": [1, 2],
    }
    path = tmp_path / f"pc.{kind}"
    if kind == "jsonl":
        path.write_text(
            "".join(
                json.dumps({"q": q, "a": a, "sys": s}) + "\n"
                for q, a, s in zip(rows["q"], rows["a"], rows["sys"], strict=False)
            )
        )
    elif kind == "csv":
        import csv

        with path.open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["id", "q", "a", "sys"])
            w.writerows(zip(rows["id"], rows["q"], rows["a"], rows["sys"], strict=False))
    else:
        pq.write_table(pa.table(rows), path)
    config = DataConfig(
        source=str(path), columns={"prompt": "q", "completion": "a", "system": "sys"}, split=ALL_TRAIN
    )
    built = build_dataset(config, Target.LOCAL, tmp_path / "w")
    assert built.summary.formats == {path.name: "prompt-completion"} and built.summary.accepted == 2
    out = sorted(_read_out(tmp_path / "w" / "out" / "train.jsonl", Target.LOCAL), key=lambda r: r.system)
    assert out == [
        ChatRecord(
            system="greet",
            messages=(
                Message(role="user", content='Say "hi",\nplease'),
                Message(role="assistant", content="hi"),
            ),
        ),
        ChatRecord(
            system="math",
            messages=(Message(role="user", content="What is 2+2?"), Message(role="assistant", content="4")),
        ),
    ]


def test_a_directory_of_mixed_files(tmp_path, write_lines, chat):
    write_lines([to_nova(RECORDS[0])], name="d/a.jsonl")
    write_lines([chat(1)], name="d/sub/b.jsonl")
    built = build_dataset(
        DataConfig(source=str(tmp_path / "d"), split=ALL_TRAIN), Target.LOCAL, tmp_path / "w"
    )
    assert built.summary.formats == {"a.jsonl": "nova", "sub/b.jsonl": "bedrock"}
    assert built.summary.accepted == 2
