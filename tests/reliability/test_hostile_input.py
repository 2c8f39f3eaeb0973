"""Hostile and broken input files: ``validate`` never crashes, never hangs, and its counts add up.

The corpus (``corpus/``, written by ``make_corpus.py``) holds one file per class of malformed input.
For every file, ``validate`` either returns a summary whose counts reconcile
(total = accepted + rejected + duplicates + filtered) or refuses the file as a whole with a
``DataError`` naming it; any other exception, or a run past the timeout, fails the test.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tuneline.config import DataConfig, Target
from tuneline.data.prepare import PrepareSummary, validate
from tuneline.errors import DataError

pytestmark = pytest.mark.faults

CORPUS = Path(__file__).resolve().parent / "corpus"
CORPUS_FILES = sorted(p for p in CORPUS.iterdir() if p.is_file())

_GOOD = [
    {
        "messages": [
            {"role": "user", "content": f"ticket {i}: parcel late"},
            {"role": "assistant", "content": f"ok {i}"},
        ]
    }
    for i in range(3)
]


def _reconciles(summary: PrepareSummary) -> bool:
    return summary.total == summary.accepted + summary.rejected + summary.duplicates + summary.filtered


def _validate_or_refuse(source: Path) -> PrepareSummary | None:
    try:
        summary = validate(DataConfig(source=str(source)), Target.LOCAL)
    except DataError as exc:
        assert source.name in str(exc) or str(source) in str(exc) or "no input files" in str(exc), str(exc)
        return None
    assert _reconciles(summary), summary
    return summary


def test_the_corpus_covers_many_classes_of_malformed_input() -> None:
    assert len(CORPUS_FILES) >= 25


@pytest.mark.timeout(60)
@pytest.mark.parametrize("path", CORPUS_FILES, ids=[p.name for p in CORPUS_FILES])
def test_validate_survives_every_corpus_file(path: Path) -> None:
    summary = _validate_or_refuse(path)
    if summary is not None:
        # every record that is not plain valid chat is rejected with a reason, never dropped
        assert sum(summary.errors.values()) >= summary.rejected


# file -> (total, accepted, errors): what validate must make of the files with a definite answer
KNOWN_OUTCOMES = {
    "cr_only.jsonl": (3, 3, {}),
    "crlf.jsonl": (3, 3, {}),
    "cr_only.csv": (3, 2, {"ragged_row": 1}),
    "ragged_rows.csv": (3, 1, {"ragged_row": 2}),
    "ragged_rows_crlf.csv": (4, 2, {"ragged_row": 2}),
    "invalid_utf8.csv": (3, 2, {"not_utf8": 1}),
}


@pytest.mark.parametrize("name", sorted(KNOWN_OUTCOMES), ids=sorted(KNOWN_OUTCOMES))
def test_line_endings_and_bad_rows_have_definite_outcomes(name: str) -> None:
    summary = validate(DataConfig(source=str(CORPUS / name)), Target.LOCAL)
    assert (summary.total, summary.accepted, summary.errors) == KNOWN_OUTCOMES[name]
    assert _reconciles(summary)


def test_every_duplicate_key_in_the_corpus_is_named() -> None:
    summary = validate(DataConfig(source=str(CORPUS / "duplicate_keys.jsonl")), Target.LOCAL)
    assert summary.accepted == 3 and summary.errors["duplicate_key"] == 2


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_directory_with_an_unreadable_file_names_it_and_reads_the_others() -> None:
    summary = validate(DataConfig(source=str(CORPUS)), Target.LOCAL)
    skipped = [f["file"] for f in summary.files_skipped]
    assert skipped and all(f["reason"] for f in summary.files_skipped)
    assert any(name.endswith((".csv", ".parquet")) for name in skipped)
    assert _reconciles(summary) and summary.total > 0


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_readable_corpus_files_together_reconcile(tmp_path: Path) -> None:
    readable = [p for p in CORPUS_FILES if _validate_or_refuse(p) is not None]
    for path in readable:
        (tmp_path / path.name).write_bytes(path.read_bytes())
    summary = validate(DataConfig(source=str(tmp_path)), Target.LOCAL)
    assert _reconciles(summary)
    assert summary.total >= 40 and summary.rejected >= 20


@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.parametrize("size_mb", [2, 40], ids=["2MB-line", "40MB-line-past-the-read-chunk"])
def test_huge_lines_are_rejected_or_read_without_hanging(tmp_path: Path, size_mb: int) -> None:
    path = tmp_path / "huge.jsonl"
    with path.open("wb") as fh:
        fh.write(json.dumps(_GOOD[0]).encode() + b"\n")
        fh.write(b'{"messages": [{"role": "user", "content": "' + b"x" * (size_mb << 20) + b'"}, ')
        fh.write(b'{"role": "assistant", "content": "ok"}]}\n')
        fh.write(json.dumps(_GOOD[1]).encode() + b"\n")
    summary = _validate_or_refuse(path)
    assert summary is not None and summary.total == 3 and summary.accepted >= 2


def test_a_utf8_bom_does_not_cost_the_first_record(tmp_path: Path) -> None:
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + b"".join(json.dumps(r).encode() + b"\n" for r in _GOOD))
    assert validate(DataConfig(source=str(path)), Target.LOCAL).accepted == 3


def test_records_with_duplicate_keys_are_rejected_as_ambiguous(tmp_path: Path) -> None:
    path = tmp_path / "dup.jsonl"
    ambiguous = (
        b'{"messages": [{"role": "user", "content": "shown"}, {"role": "assistant", "content": "a"}], '
        b'"messages": [{"role": "user", "content": "trained"}, {"role": "assistant", "content": "b"}]}\n'
    )
    path.write_bytes(b"".join(json.dumps(r).encode() + b"\n" for r in _GOOD) + ambiguous)
    summary = validate(DataConfig(source=str(path)), Target.LOCAL)
    assert summary.accepted == 3 and summary.rejected == 1
    assert summary.errors == {"duplicate_key": 1}


# --- fuzzing ----------------------------------------------------------------------------------
_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)
_json_leaf = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | _text
_json = st.recursive(
    _json_leaf,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4),
    max_leaves=12,
)
_message = st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "assistant", "system", "tool", ""]) | _text, "content": _text | _json}
)
_record = (
    st.fixed_dictionaries({"messages": st.lists(_message, max_size=4)}, optional={"system": _text | _json})
    | st.dictionaries(
        st.sampled_from(["messages", "prompt", "completion", "system", "schemaVersion", "x"]), _json
    )
    | _json
)
_line = st.one_of(
    _record.map(lambda r: json.dumps(r).encode()),
    st.binary(max_size=80),
    _record.map(lambda r: json.dumps(r).encode()[: len(json.dumps(r)) // 2]),
)


@pytest.mark.slow
@pytest.mark.timeout(300)
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(lines=st.lists(_line, max_size=12), newline=st.sampled_from([b"\n", b"\r\n"]))
def test_fuzzed_jsonl_never_crashes_and_counts_reconcile(
    tmp_path: Path, lines: list[bytes], newline: bytes
) -> None:
    path = tmp_path / "fuzz.jsonl"
    good = [json.dumps(r).encode() for r in _GOOD]
    path.write_bytes(newline.join(good + lines))
    summary = _validate_or_refuse(path)
    assert summary is not None
    assert summary.total >= len(good)
