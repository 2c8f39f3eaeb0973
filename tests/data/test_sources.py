"""Reading input files: ragged and unreadable CSV rows, line endings, and row numbers."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from tuneline.config import DataConfig, Target
from tuneline.data import sources
from tuneline.data.prepare import build_dataset

ALL_TRAIN = {"train": 1, "validation": 0, "test": 0}


def _build(path: Path, workdir: Path):
    built = build_dataset(DataConfig(source=str(path), split=ALL_TRAIN), Target.LOCAL, workdir)
    s = built.summary
    assert s.total == s.accepted + s.rejected + s.duplicates + s.filtered
    rejected = [json.loads(x) for x in (workdir / "out" / "rejected.jsonl").read_text().splitlines()]
    train = [json.loads(x) for x in (workdir / "out" / "train.jsonl").read_text().splitlines()]
    return s, rejected, train


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"], ids=["lf", "crlf", "cr-only"])
def test_ragged_csv_rows_are_rejected_one_by_one(tmp_path, newline):
    rows = [
        "prompt,completion",
        "q1,a1",
        "q2,a2,extra,more",  # row 3: too many fields
        '"multi',  # rows count records, not lines: this row spans two lines
        'line q4",a4',
        "q5",  # row 5: too few fields
        "q6,a6",
    ]
    path = tmp_path / "ragged.csv"
    path.write_bytes(newline.join(rows).encode() + newline.encode())

    s, rejected, train = _build(path, tmp_path / "work")

    assert (s.total, s.accepted, s.rejected) == (5, 3, 2)
    assert s.errors == {"ragged_row": 2}
    # The rejected report keeps a digest of the row, never its text (no PII at rest).
    assert [(r["line"], r["original_sha256"]) for r in rejected] == [
        (3, hashlib.sha256(b"q2,a2,extra,more").hexdigest()), (5, hashlib.sha256(b"q5").hexdigest())]
    assert "original" not in rejected[0]
    too_many, too_few = (r["errors"][0] for r in rejected)
    assert too_many["code"] == too_few["code"] == "ragged_row"
    assert "more fields than the header (2: prompt, completion)" in too_many["message"]
    assert too_few["field"] == "completion" and "add the missing fields" in too_few["message"]
    assert [m["messages"][0]["content"] for m in train] == ["q1", f"multi{newline}line q4", "q6"]


def test_a_csv_row_that_is_not_utf8_is_rejected_alone(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes(b"prompt,completion\nq1,a1\ncaf\xe9,a2\nq3,a3\n")

    s, rejected, _ = _build(path, tmp_path / "work")

    assert (s.total, s.accepted, s.errors) == (3, 2, {"not_utf8": 1})
    assert rejected[0]["line"] == 3 and "re-save the file as UTF-8" in rejected[0]["errors"][0]["message"]


def test_cr_only_jsonl_is_read_line_by_line(tmp_path, chat):
    path = tmp_path / "mac.jsonl"
    lines = [json.dumps(chat(0)), '{"messages": [', json.dumps(chat(1)), "", json.dumps(chat(2))]
    path.write_bytes("\r".join(lines).encode() + b"\r")

    s, rejected, train = _build(path, tmp_path / "work")

    assert (s.total, s.accepted, s.errors) == (4, 3, {"invalid_json": 1})
    assert rejected[0]["line"] == 2 and rejected[0]["original_sha256"] == hashlib.sha256(b'{"messages": [').hexdigest()
    assert len(train) == 3


def test_a_raw_cr_inside_a_jsonl_line_is_not_a_line_break(tmp_path, chat):
    # JSON whitespace may be a CR; with LF line ends present it must not split a record.
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(json.dumps(chat(0)).replace(", ", ",\r").encode() + b"\n" + json.dumps(chat(1)).encode())

    s, _, _ = _build(path, tmp_path / "work")

    assert (s.total, s.accepted) == (2, 2)


@pytest.mark.parametrize("chunk_bytes", [5, 64, 333], ids=["line-longer-than-block", "small", "medium"])
def test_lines_are_the_same_whatever_the_block_size(tmp_path, chat, monkeypatch, chunk_bytes):
    # A file read in blocks of any size gives the same records with the same line numbers:
    # lines cut by a block end, lines longer than a block, a BOM, blank and non-UTF-8 lines, and
    # a last line without its newline.
    lines = [json.dumps(chat(i)).encode() for i in range(6)]
    lines[1:1] = [b"", b"  \t"]
    lines.insert(5, b'{"messages": [{"role": "user", "content": "\xff"}]}')
    path = tmp_path / "blocks.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + b"\n".join(lines))

    whole = _build(path, tmp_path / "whole")
    monkeypatch.setattr(sources, "_CHUNK_BYTES", chunk_bytes)
    in_blocks = _build(path, tmp_path / f"blocks-{chunk_bytes}")

    assert in_blocks == whole
    s, rejected, train = in_blocks
    assert (s.total, s.accepted, s.errors) == (7, 6, {"not_utf8": 1})
    assert rejected[0]["line"] == 6
    assert train == [chat(i) for i in range(6)]
