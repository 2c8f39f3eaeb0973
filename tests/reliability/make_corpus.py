"""Writes the hostile-input corpus in ``corpus/`` (committed; re-run to regenerate it).

Each file is one class of malformed input that real exports contain. Files that would be large
(multi-megabyte lines) are made at test time by ``test_hostile_input.py`` instead of committed.

    python -m tests.reliability.make_corpus
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

CORPUS = Path(__file__).resolve().parent / "corpus"

_GOOD = {
    "messages": [
        {"role": "user", "content": "where is order 12345?"},
        {"role": "assistant", "content": "It shipped."},
    ]
}


def _good(i: int) -> dict:
    return {
        "messages": [
            {"role": "user", "content": f"ticket {i}: my parcel {i} is late"},
            {"role": "assistant", "content": f'{{"intent": "late", "id": {i}}}'},
        ]
    }


def _line(obj: object) -> bytes:
    return json.dumps(obj).encode() + b"\n"


def _parquet(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def corpus_files() -> dict[str, bytes]:
    good = b"".join(_line(_good(i)) for i in range(3))
    deep = b'{"messages": ' + b"[" * 20_000 + b"]" * 20_000 + b"}\n"
    deep_obj = (
        b'{"messages": [{"role": "user", "content": ' + b'{"a":' * 5_000 + b"1" + b"}" * 5_000 + b"}]}\n"
    )
    return {
        "empty.jsonl": b"",
        "whitespace_only.jsonl": b"\n\n   \n\t\n",
        "nul_bytes.jsonl": good
        + b'{"messages": [{"role": "user", "content": "a\x00b"}]}\n\x00\x00\x00\n'
        + _line(
            {
                "messages": [
                    {"role": "user", "content": "nul \u0000 escaped"},
                    {"role": "assistant", "content": "ok"},
                ]
            }
        ),
        "invalid_utf8.jsonl": good
        + b'{"messages": [{"role": "user", "content": "caf\xe9 \xff\xfe"}, {"role": "assistant", "content": "x"}]}\n',
        "utf8_bom.jsonl": b"\xef\xbb\xbf" + good,
        "utf16_bom.jsonl": "\n".join(json.dumps(_good(i)) for i in range(3)).encode("utf-16"),
        "crlf.jsonl": good.replace(b"\n", b"\r\n"),
        "cr_only.jsonl": good.replace(b"\n", b"\r"),
        "no_trailing_newline.jsonl": good.rstrip(b"\n"),
        "deep_nesting_array.jsonl": good + deep,
        "deep_nesting_object.jsonl": good + deep_obj,
        "duplicate_keys.jsonl": good
        + b'{"messages": [{"role": "user", "content": "a"}], "messages": [{"role": "user", "content": "b"}, {"role": "assistant", "content": "c"}]}\n'
        + b'{"messages": [{"role": "user", "role": "assistant", "content": "dup role"}]}\n',
        "truncated_json.jsonl": good + b'{"messages": [{"role": "user", "content": "cut he',
        "not_objects.jsonl": good + b'[1, 2, 3]\n42\n"a string"\nnull\ntrue\n{}\n',
        "wrong_types.jsonl": good
        + _line({"messages": "not a list"})
        + _line({"messages": [{"role": "user", "content": 42}, {"role": "assistant", "content": None}]})
        + _line({"messages": [{"role": "wizard", "content": "hi"}, {"role": "assistant", "content": "x"}]})
        + _line({"messages": [{"role": "user", "content": ["nested", {"list": 1}]}]})
        + _line({"messages": []})
        + _line({"system": {"not": "a string"}, "messages": _GOOD["messages"]}),
        "mixed_formats.jsonl": _line(_good(1))
        + _line({"prompt": "hello", "completion": "world"})
        + _line(
            {
                "messages": [
                    {"role": "system", "content": "be brief"},
                    {"role": "user", "content": "q"},
                    {"role": "assistant", "content": "a"},
                ]
            }
        )
        + _line(
            {
                "schemaVersion": "bedrock-conversation-2024",
                "system": [{"text": "s"}],
                "messages": [
                    {"role": "user", "content": [{"text": "q"}]},
                    {"role": "assistant", "content": [{"text": "a"}]},
                ],
            }
        )
        + _line({"input": "x", "output": "y"}),
        "lone_surrogates.jsonl": good
        + b'{"messages": [{"role": "user", "content": "\\ud800 lone"}, {"role": "assistant", "content": "\\udfff"}]}\n',
        "control_and_bidi.jsonl": good
        + _line(
            {
                "messages": [
                    {"role": "user", "content": "\x1b[31mred\x1b[0m \u202eevil\u202c \u200b\ufeff"},
                    {"role": "assistant", "content": "\x07\x08"},
                ]
            }
        ),
        "nan_and_huge_numbers.jsonl": good
        + b'{"messages": NaN}\n{"messages": [{"role": "user", "content": 1e999}]}\n{"n": Infinity}\n{"n": 123456789012345678901234567890}\n',
        "binary_garbage.jsonl": bytes(range(256)) * 8,
        "parquet_bytes_named_jsonl.jsonl": _parquet(pa.table({"prompt": ["a"], "completion": ["b"]})),
        "unbalanced_quotes.csv": b'prompt,completion\n"open quote,never closed\nq2,a2\n',
        "ragged_rows.csv": b"prompt,completion\nq1,a1,extra,more\nq2\nq3,a3\n",
        "ragged_rows_crlf.csv": b"prompt,completion\r\nq1,a1\r\nq2,a2,extra\r\nq3\r\nq4,a4\r\n",
        "cr_only.csv": b"prompt,completion\rq1,a1\rq2,a2,extra\rq3,a3\r",
        "invalid_utf8.csv": b"prompt,completion\nq1,a1\ncaf\xe9,a2\nq3,a3\n",
        "header_only.csv": b"prompt,completion\n",
        "empty.csv": b"",
        "wrong_columns.csv": b"foo,bar\n1,2\n",
        "truncated.parquet": _parquet(pa.table({"prompt": ["a"] * 50, "completion": ["b"] * 50}))[:200],
        "wrong_schema.parquet": _parquet(pa.table({"prompt": [1, 2], "completion": [[1.5], [2.5]]})),
        "text_named_parquet.parquet": b"this is not parquet at all\n",
    }


def main() -> None:
    CORPUS.mkdir(exist_ok=True)
    for name, data in corpus_files().items():
        (CORPUS / name).write_bytes(data)


if __name__ == "__main__":
    main()
