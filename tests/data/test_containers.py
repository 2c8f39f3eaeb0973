"""Containers: JSON arrays and {"data": [...]}, compressed files, TSV, whole-row Parquet/CSV,
directories with unreadable files, size limits; and the validate/prepare CLI contract."""

from __future__ import annotations

import bz2
import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from tuneline.config import DataConfig, Target
from tuneline.data.prepare import build_dataset, validate
from tuneline_cli.main import app

FORMATS = Path(__file__).resolve().parents[3] / "shared" / "data" / "formats"
ALL_TRAIN = {"train": 1, "validation": 0, "test": 0}


def _chat(i: int) -> dict:
    return {"messages": [{"role": "user", "content": f"question {i}"}, {"role": "assistant", "content": f"answer {i}"}]}


def _train(tmp_path: Path, source: Path, **kw) -> tuple:
    built = build_dataset(DataConfig(source=str(source), split=ALL_TRAIN, **kw), Target.LOCAL, tmp_path / "work")
    out = tmp_path / "work" / "out"
    lines = [json.loads(x) for x in (out / "train.jsonl").read_text().splitlines()] if out.exists() else []
    return built.summary, lines


def test_a_json_array_is_records_not_lines(tmp_path):
    path = tmp_path / "a.json"
    path.write_text(json.dumps([_chat(0), {"instruction": "Say hi", "input": "", "output": "hi"}], indent=2))
    s, lines = _train(tmp_path, path)
    assert (s.total, s.accepted) == (2, 2)
    assert lines == [_chat(0), {"messages": [{"role": "user", "content": "Say hi"}, {"role": "assistant", "content": "hi"}]}]


def test_an_object_holding_the_list_under_data(tmp_path):
    path = tmp_path / "a.json"
    path.write_text(json.dumps({"version": 1, "data": [_chat(0), _chat(1)]}, indent=1))
    s, lines = _train(tmp_path, path)
    assert s.accepted == 2 and lines == [_chat(0), _chat(1)]


@pytest.mark.parametrize("suffix,opener", [(".gz", gzip.open), (".bz2", bz2.open), (".zst", None)])
def test_compressed_jsonl(tmp_path, suffix, opener):
    body = "".join(json.dumps(_chat(i)) + "\n" for i in range(3)).encode()
    path = tmp_path / f"x.jsonl{suffix}"
    if opener is None:
        with pa.output_stream(str(path), compression="zstd") as out:
            out.write(body)
    else:
        with opener(path, "wb") as fh:
            fh.write(body)
    s, lines = _train(tmp_path, path)
    assert (s.total, s.accepted, s.errors) == (3, 3, {}) and lines == [_chat(i) for i in range(3)]


def test_tsv_with_columns_and_extra_columns_dropped(tmp_path):
    path = tmp_path / "qa.tsv"
    path.write_text("question\tanswer\tsource\nWhat is 2+2?\t4\twiki\nCapital of France?\tParis\tatlas\n")
    s, lines = _train(tmp_path, path, columns={"prompt": "question", "completion": "answer"})
    assert s.dropped_keys == {"source": 2}
    assert lines[0] == {"messages": [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4"}]}


def test_parquet_with_a_nested_messages_column(tmp_path):
    path = tmp_path / "hf.parquet"
    pq.write_table(pa.Table.from_pylist([{**_chat(i), "source": "x"} for i in range(2)]), path)
    s, lines = _train(tmp_path, path)
    assert (s.accepted, s.dropped_keys) == (2, {"source": 2}) and lines == [_chat(0), _chat(1)]


def test_one_bad_file_is_named_and_the_others_read(tmp_path):
    src = tmp_path / "dir"
    src.mkdir()
    (src / "good.jsonl").write_text(json.dumps(_chat(0)) + "\n")
    (src / "broken.jsonl.gz").write_bytes(b"not gzip at all")
    (src / "notes.txt").write_text("hello")
    (src / "qa.csv").write_text("q,a\nx,y\n")
    s = validate(DataConfig(source=str(src), columns={"prompt": "q", "completion": "a"}), Target.LOCAL)
    skipped = {f["file"]: f["reason"] for f in s.files_skipped}
    assert set(skipped) == {"broken.jsonl.gz", "notes.txt"}
    assert "decompress" in skipped["broken.jsonl.gz"] and "not a data file" in skipped["notes.txt"]
    assert (s.total, s.accepted) == (2, 2)


def test_a_csv_without_the_given_columns_is_skipped_not_fatal(tmp_path):
    src = tmp_path / "dir"
    src.mkdir()
    (src / "a.csv").write_text("question,answer\nx,y\n")
    (src / "b.jsonl").write_text(json.dumps(_chat(0)) + "\n")
    s = validate(DataConfig(source=str(src), columns={"prompt": "prompt_text", "completion": "answer"}), Target.LOCAL)
    assert [f["file"] for f in s.files_skipped] == ["a.csv"] and "prompt_text" in s.files_skipped[0]["reason"]
    assert s.accepted == 1


def test_oversized_record_and_too_many_messages_are_rejected_per_record(tmp_path):
    path = tmp_path / "big.jsonl"
    huge = {"messages": [{"role": "user", "content": "x" * 5000}, {"role": "assistant", "content": "a"}]}
    long = {"messages": [m for i in range(5) for m in _chat(i)["messages"]]}
    path.write_text("\n".join(json.dumps(r) for r in (_chat(0), huge, long)) + "\n")
    s = validate(DataConfig(source=str(path), max_record_bytes=4096, max_messages_per_record=4), Target.LOCAL)
    assert s.errors == {"record_too_large": 1, "too_many_messages": 1} and s.accepted == 1
    assert s.examples["record_too_large"][0]["line"] == 2


def test_a_200mb_line_does_not_crash(tmp_path):
    path = tmp_path / "huge.jsonl"
    with path.open("w") as fh:
        fh.write(json.dumps(_chat(0)) + "\n")
        fh.write('{"messages": [{"role": "user", "content": "' + "y" * (200 * 1024 * 1024) + '"}]}\n')
    s = validate(DataConfig(source=str(path)), Target.LOCAL)
    assert (s.accepted, s.errors) == (1, {"record_too_large": 1})


def test_kto_false_with_kind_sft_is_rejected_never_trained(tmp_path):
    if not FORMATS.is_dir():
        pytest.skip("shared data missing")
    s = validate(DataConfig(source=str(FORMATS / "13_kto_en_demo.json"), kind="sft"), Target.LOCAL)
    rows = json.loads((FORMATS / "13_kto_en_demo.json").read_text())
    assert s.errors == {"undesirable_answer": sum(not r["label"] for r in rows)}
    assert s.accepted + s.duplicates == sum(r["label"] for r in rows)


def test_claude_target_rejects_tool_records_with_advice_naming_a_capable_target(tmp_path):
    path = tmp_path / "tools.jsonl"
    rec = {"messages": [{"role": "user", "content": "w?"},
                        {"role": "assistant", "content": None, "tool_calls": [
                            {"id": "1", "type": "function", "function": {"name": "w", "arguments": "{}"}}]},
                        {"role": "tool", "tool_call_id": "1", "content": "sun"},
                        {"role": "assistant", "content": "Sunny."}]}
    path.write_text(json.dumps(rec) + "\n")
    s = validate(DataConfig(source=str(path)), Target.BEDROCK_CLAUDE_HAIKU)
    (example,) = s.examples["unsupported_content"]
    assert "unsupported_content: tools" in example["message"] and "bedrock-nova" in example["message"]
    assert "remove" not in example["message"]


def run(*args: str):
    return CliRunner().invoke(app, list(args))


def test_validate_json_is_one_document_in_every_case(tmp_path):
    missing = run("validate", "--input", str(tmp_path / "nope.jsonl"), "--json")
    assert missing.exit_code == 2
    doc = json.loads(missing.stdout)
    assert doc["total"] == 0 and "no input files" in doc["problems"][0]
    bad = tmp_path / "d.jsonl"
    bad.write_text(json.dumps(_chat(0)) + "\n{broken\n")
    result = run("validate", "--input", str(bad), "--json")
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert {"total", "accepted", "rejected", "duplicates", "filtered", "kinds", "dropped_keys", "files_skipped",
            "errors", "examples"} <= doc.keys()
    assert doc["examples"]["invalid_json"][0]["line"] == 2
    assert run("validate", "--input", str(bad), "--json", "--fail-on-reject").exit_code == 2
    text = run("validate", "--input", str(bad))
    assert "invalid_json: 1" in text.stdout and "d.jsonl:2" in text.stdout


def test_validate_columns_and_extra_keys_options(tmp_path):
    path = tmp_path / "qa.jsonl"
    path.write_text(json.dumps({"question": "q", "answer": "a", "topic": "t"}) + "\n")
    ok = run("validate", "--input", str(path), "--columns", "prompt=question,completion=answer", "--json")
    assert ok.exit_code == 0, ok.stdout
    assert json.loads(ok.stdout)["dropped_keys"] == {"topic": 1}
    rejected = run("validate", "--input", str(path), "--columns", "prompt=question,completion=answer",
                   "--extra-keys", "reject", "--json")
    assert rejected.exit_code == 2 and json.loads(rejected.stdout)["errors"] == {"unexpected_key": 1}


SHAREGPT_EDGE_CASES = [
    {"id": 1, "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]},
    {"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}], "system": "Be kind."},
    {"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}], "system": " "},
    {"conversations": [{"from": "user", "value": "q"}, {"from": "assistant", "value": "a"}]},
    {"conversations": [{"from": "human", "value": "q"}, {"from": "human", "value": "a"}]},
    {"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": " "}]},
    {"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": 3}]},
    {"conversations": [{"from": "system", "value": "s"}, {"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]},
    {"conversations": [{"from": "human", "value": "q", "x": 1}, {"from": "gpt", "value": "a"}]},
]


def test_plain_sharegpt_sql_fast_path_equals_the_python_reader(tmp_path):
    from tuneline.data.formats import FormatProblem, convert
    from tuneline.records import to_bedrock

    rows = list(SHAREGPT_EDGE_CASES)
    if FORMATS.is_dir():
        rows += json.loads((FORMATS / "09_sharegpt_fastchat_dummy.json").read_text())[:50]
    expected, codes = [], {}
    for r in rows:
        try:
            expected.append(to_bedrock(convert(r).record))
        except FormatProblem as exc:
            codes[exc.code] = codes.get(exc.code, 0) + 1
    path = tmp_path / "sg.json"
    path.write_text(json.dumps(rows))
    s, lines = _train(tmp_path, path)
    assert s.errors == codes and s.accepted + s.duplicates == len(expected)
    assert {json.dumps(x) for x in lines} == {json.dumps(x) for x in expected}


from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_records = st.lists(
    st.one_of(
        st.builds(_chat, st.integers(0, 5)),
        st.fixed_dictionaries({"conversations": st.lists(
            st.fixed_dictionaries({"from": st.sampled_from(["human", "gpt", "system", "bot"]),
                                   "value": st.text(max_size=4)}), max_size=4)}),
        st.dictionaries(st.sampled_from(["instruction", "output", "text", "label", "messages", "x"]),
                        st.one_of(st.none(), st.text(max_size=3), st.integers(), st.lists(st.integers(), max_size=2)),
                        max_size=3),
        st.integers(), st.text(max_size=3),
    ),
    max_size=8,
)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=_records, container=st.sampled_from(["array", "data", "jsonl.gz"]), tail=st.binary(max_size=8))
def test_fuzz_containers_never_raise_and_always_reconcile(tmp_path_factory, rows, container, tail):
    tmp = tmp_path_factory.mktemp("fuzz")
    if container == "array":
        path, body = tmp / "f.json", json.dumps(rows).encode() + tail
    elif container == "data":
        path, body = tmp / "f.json", json.dumps({"data": rows}).encode()
    else:
        path = tmp / "f.jsonl.gz"
        body = gzip.compress(b"".join(json.dumps(r).encode() + b"\n" for r in rows) + tail)
    path.write_bytes(body)
    s = validate(DataConfig(source=str(path)), Target.LOCAL)
    assert s.total == s.accepted + s.rejected + s.duplicates + s.filtered
    assert s.files_skipped or s.total == len(rows) or container == "jsonl.gz"
