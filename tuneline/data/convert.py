"""The per-record step between reading and the SQL rules: every record that is not a plain chat
record is detected and converted by :mod:`tuneline.data.formats` (the one reader of all formats).

Plain Bedrock chat records (nearly all lines of a typical file) never get here: ``rules.py``
parses them straight into ``conversations``. Every other JSON object of ``slow_raw`` is decoded
in Python, converted into its kind's model and checked against the target's capabilities. Then:

- a text-only SFT record without kept metadata is rewritten in place as the canonical chat line
  the SQL rules read (and re-check);
- any other record (preference, KTO, RFT, pretraining; tools, reasoning or media; kept metadata)
  goes straight into ``conversations`` as its texts (:func:`tuneline.records.record_texts`, one
  row of ``messages`` per text, ``paths`` naming each one's field) and its canonical JSON
  (``payload``), from which the output is written. Every text rule (PII, reserved strings,
  tokens, dedupe) reads the texts; redaction writes them back into ``payload``.

Creates:

``rec_meta(rid, fmt, kind)``   the detected format and kind of every converted record
``dropped(rid, key)``          each extra key dropped (``data.extra_keys: drop``)
"""

from __future__ import annotations

import json

import duckdb
import pyarrow as pa

from tuneline.config import DataConfig
from tuneline.data.codes import ErrorCode as E
from tuneline.data.formats import ExtraKeys, FormatProblem, convert
from tuneline.data.targets import TargetLimits, targets_that_train
from tuneline.records import (
    ChatRecord,
    PreferenceRecord,
    PretrainRecord,
    Record,
    RecordFormat,
    RecordKind,
    record_texts,
    record_to_dict,
    to_bedrock,
)

__all__ = [
    "MESSAGES_TYPE",
    "content_of",
    "convert_slow_rows",
    "decode_record",
    "is_plain_chat",
    "needs_conversion_only",
    "payload_json",
    "unsupported_kind_message",
]

# ``conversations.messages``: each text of a record with its role (see tuneline.records.TextField).
MESSAGES_TYPE = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))


class _Duplicated(dict):
    """An object in which some key appeared more than once (``dups``)."""

    dups: list[str]


def _pairs(pairs: list[tuple[str, object]]) -> dict:
    obj = dict(pairs)
    if len(obj) == len(pairs):
        return obj
    seen: set[str] = set()
    marked = _Duplicated(obj)
    marked.dups = [k for k, _ in pairs if k in seen or seen.add(k)]  # type: ignore[func-returns-value]
    return marked


def _first_duplicate(value: object, path: str = "") -> tuple[str, str, int] | None:
    if isinstance(value, dict):
        if isinstance(value, _Duplicated):
            return path, value.dups[0], value.dups.count(value.dups[0]) + 1
        items = ((f"{path}.{k}" if path else k, v) for k, v in value.items())
    elif isinstance(value, list):
        items = ((f"{path}[{i}]", v) for i, v in enumerate(value))
    else:
        return None
    for sub, v in items:
        if found := _first_duplicate(v, sub):
            return found
    return None


def decode_record(text: str) -> object:
    """``json.loads``, but a key given twice in one object is a ``duplicate_key`` problem: JSON
    readers disagree which value counts, so what a reviewer reads may not be what is trained on."""
    try:
        obj = json.loads(text, object_pairs_hook=_pairs)
        found = _first_duplicate(obj)
    except RecursionError:
        raise FormatProblem(
            E.WRONG_TYPE, None,
            "the record nests lists/objects deeper than any record format does (hundreds of levels): "
            "it cannot be a training record; check how the file was written",
        ) from None
    if found:
        where, key, n = found
        field = f"{where}.{key}" if where else key
        raise FormatProblem(
            E.DUPLICATE_KEY, field,
            f'key "{key}" appears {n} times in {where or "the record"}: JSON readers disagree which value counts '
            f'(some keep the first, others the last), so the record is ambiguous: keep one "{key}" and delete the others',
        )
    return obj


def needs_conversion_only(config: DataConfig) -> bool:
    """Whether even plain chat lines must take the Python path (a forced non-chat format or kind)."""
    chat = ("auto", RecordFormat.BEDROCK, RecordFormat.OPENAI)
    return config.format not in chat or config.kind not in (None, RecordKind.SFT)


def content_of(record: Record) -> list[str]:
    """What a record holds beyond plain text: tools, reasoning, image, video, document."""
    if not isinstance(record, ChatRecord):
        messages = getattr(record, "messages", ()) or (
            (*getattr(record, "prompt", ()), *getattr(record, "chosen", ()), *getattr(record, "rejected", ()))
        )
    else:
        messages = record.messages
    found: list[str] = []
    if getattr(record, "tools", ()) or any(m.tool_calls or m.role == "tool" for m in messages):
        found.append("tools")
    if any(m.reasoning is not None for m in messages):
        found.append("reasoning")
    for kind in ("image", "video", "document"):
        if any(b.type == kind for m in messages for b in m.media):
            found.append(kind)
    return found


def unsupported_kind_message(kind: RecordKind, limits: TargetLimits) -> str:
    """Why the target refuses records of ``kind``, naming the targets that train them."""
    others = ", ".join(t.value for t in targets_that_train(kind=kind)) or "none yet"
    return (
        f"unsupported_kind: {kind.value} — {limits.target.value} does not train {kind.value} records; "
        f"targets that do: {others}"
    )


def _capability_problem(record: Record, limits: TargetLimits) -> FormatProblem | None:
    target = limits.target.value
    if record.kind not in limits.kinds:
        return FormatProblem(E.UNSUPPORTED_KIND, None, unsupported_kind_message(record.kind, limits))
    allowed = limits.content_for(record.kind)
    for content in content_of(record):
        if content not in allowed:
            others = ", ".join(t.value for t in targets_that_train(kind=record.kind, content=content))
            return FormatProblem(
                E.UNSUPPORTED_CONTENT, None,
                f"unsupported_content: {content} — {target} trains only {', '.join(sorted(allowed))} content "
                f"in {record.kind.value} records; train this record with target {others or 'none yet'}",
            )
    return None


def is_plain_chat(record: Record) -> bool:
    """Text-only SFT without kept metadata: what the SQL rules read as a canonical chat line."""
    return isinstance(record, ChatRecord) and not content_of(record) and not record.metadata


def payload_json(record: Record) -> str:
    """The record's canonical JSON (``kind`` included), compact: the same record, the same bytes."""
    return json.dumps(record_to_dict(record), ensure_ascii=False, separators=(",", ":"))


def _turns(record: Record) -> int:
    if isinstance(record, PretrainRecord):
        return 0
    if isinstance(record, PreferenceRecord):
        return len(record.prompt) + len(record.chosen) + len(record.rejected)
    return len(record.messages)


_PLAIN_SHAREGPT = '{"conversations": [{"from": "VARCHAR", "value": "VARCHAR"}], "system": "VARCHAR"}'


def _parse_plain_sharegpt(con: duckdb.DuckDBPyConnection, config: DataConfig) -> None:
    """Plain ShareGPT records straight into ``conversations``, in SQL: the same result the Python
    reader gives them, without a Python object per record (a 1M-record ShareGPT file is common).

    Plain: ``conversations`` of ``{"from", "value"}`` string pairs only, human/gpt (or user/
    assistant) alternating from the user's turn to the assistant's, no blank value, an optional
    string ``system``, no key twice; other top-level keys are dropped and counted (only under
    ``extra_keys: drop``). Anything else takes the Python path, which names its problem.
    """
    if config.extra_keys != "drop" or config.format not in ("auto", RecordFormat.SHAREGPT):
        return
    con.execute(
        f"""
        CREATE TEMP TABLE _sg AS
        SELECT rid, file_id, keys, s FROM (
            SELECT rid, file_id, keys, turns, json_transform(text, '{_PLAIN_SHAREGPT}') AS s,
                   json_type(text, '$.system') AS system_type
            FROM (
                SELECT rid, file_id, text, json_keys(text) AS keys, json_extract(text, '$.conversations[*]') AS turns
                FROM slow_raw
                WHERE utf8 AND json_valid(text) AND json_type(text) = 'OBJECT' AND json_type(text, '$.conversations') = 'ARRAY'
            )
        )
        WHERE len(keys) = len(list_distinct(keys))
          AND (system_type IS NULL OR system_type = 'VARCHAR')
          AND len(turns) >= 2 AND len(turns) % 2 = 0
          AND list_bool_and(list_transform(turns, lambda t: coalesce(
                  json_type(t) = 'OBJECT' AND len(json_keys(t)) = 2
                  AND json_type(t, '$.from') = 'VARCHAR' AND json_type(t, '$.value') = 'VARCHAR', false)))
          AND list_bool_and(list_transform(s.conversations, lambda t, i: coalesce(
                  t."from" IN (CASE WHEN i % 2 = 1 THEN 'human' ELSE 'gpt' END, CASE WHEN i % 2 = 1 THEN 'user' ELSE 'assistant' END)
                  AND trim(t.value) <> '', false)))
        """
    )
    con.execute(
        """
        INSERT INTO conversations
        SELECT rid, file_id, CASE WHEN trim(s.system) = '' THEN NULL ELSE s.system END,
               list_transform(s.conversations, lambda t, i: {'role': CASE WHEN i % 2 = 1 THEN 'user' ELSE 'assistant' END,
                                                              'content': t.value}), 0, NULL, NULL
        FROM _sg
        """
    )
    con.execute("INSERT INTO rec_meta SELECT rid, 'sharegpt', 'sft' FROM _sg")
    con.execute(
        "INSERT INTO dropped SELECT rid, k FROM (SELECT rid, unnest(keys) AS k FROM _sg) "
        "WHERE k NOT IN ('conversations', 'system')"
    )
    con.execute("DELETE FROM slow_raw WHERE rid IN (SELECT rid FROM _sg)")
    con.execute("DROP TABLE _sg")


def convert_slow_rows(con: duckdb.DuckDBPyConnection, config: DataConfig, limits: TargetLimits) -> None:
    """Convert every JSON object of ``slow_raw`` in place (see the module docstring)."""
    con.execute("CREATE TABLE rec_meta (rid BIGINT, fmt VARCHAR, kind VARCHAR)")
    con.execute("CREATE TABLE dropped (rid BIGINT, key VARCHAR)")
    if not needs_conversion_only(config):
        _parse_plain_sharegpt(con, config)
    rows = con.execute(
        "SELECT rid, file_id, text FROM slow_raw WHERE utf8 AND json_valid(text) AND json_type(text) = 'OBJECT'"
    ).fetchall()
    fmt = None if config.format == "auto" else RecordFormat(config.format)
    extra: ExtraKeys = config.extra_keys
    # data.columns names the prompt/completion/system keys of JSON records as of CSV columns.
    cols = config.columns
    renames = {src: dst for dst, src in (("prompt", cols.prompt), ("completion", cols.completion),
                                         ("system", cols.system)) if src and src != dst}
    new_rid: list[int] = []
    new_text: list[str] = []
    rich: dict[str, list] = {"rid": [], "file_id": [], "system": [], "messages": [], "payload": [], "paths": []}
    meta: list[tuple[int, str, str]] = []
    dropped: list[tuple[int, str]] = []
    errors: list[tuple[int, str, str | None, str]] = []
    for rid, file_id, text in rows:
        try:
            obj = decode_record(text)
            if renames and isinstance(obj, dict):
                obj = {renames.get(k, k): v for k, v in obj.items()}
            result = convert(obj, fmt, kind=config.kind, extra_keys=extra)
        except FormatProblem as problem:
            errors.append((rid, problem.code, problem.field, problem.message))
            continue
        record = result.record
        meta.append((rid, result.format.value, record.kind.value))
        dropped.extend((rid, key) for key in result.dropped_keys)
        if problem := _capability_problem(record, limits):
            errors.append((rid, problem.code, problem.field, problem.message))
            continue
        if (n := _turns(record)) > config.max_messages_per_record:
            errors.append((rid, E.TOO_MANY_MESSAGES.value, "messages",
                           f"the record has {n} turns; data.max_messages_per_record allows "
                           f"{config.max_messages_per_record}: split the conversation"))
            continue
        if is_plain_chat(record):
            new_rid.append(rid)
            new_text.append(json.dumps(to_bedrock(record), ensure_ascii=False))  # type: ignore[arg-type]
            continue
        fields = record_texts(record)
        system = getattr(record, "system", None)
        rich["rid"].append(rid)
        rich["file_id"].append(file_id)
        rich["system"].append(system if system is not None and system.strip() else None)
        rich["messages"].append([{"role": f.role, "content": f.text} for f in fields])
        rich["payload"].append(payload_json(record))
        rich["paths"].append([f.field for f in fields])
    if meta:
        _insert(con, "rec_meta", {"rid": [m[0] for m in meta], "fmt": [m[1] for m in meta], "kind": [m[2] for m in meta]})
    if dropped:
        _insert(con, "dropped", {"rid": [d[0] for d in dropped], "key": [d[1] for d in dropped]})
    if errors:
        _insert(con, "errs", {"rid": [e[0] for e in errors], "code": [str(e[1]) for e in errors],
                              "field": [e[2] for e in errors], "message": [e[3] for e in errors]})
        con.execute("DELETE FROM slow_raw WHERE rid IN (SELECT rid FROM errs)")
    if rich["rid"]:
        table = pa.table(
            {**rich, "shift": [0] * len(rich["rid"])},
            schema=pa.schema([("rid", pa.int64()), ("file_id", pa.int64()), ("system", pa.string()),
                              ("messages", MESSAGES_TYPE), ("payload", pa.string()),
                              ("paths", pa.list_(pa.string())), ("shift", pa.int32())]),
        )
        con.register("_rich", table)
        con.execute("INSERT INTO conversations SELECT rid, file_id, system, messages, shift, payload, paths FROM _rich")
        con.execute("DELETE FROM slow_raw WHERE rid IN (SELECT rid FROM _rich)")
        con.unregister("_rich")
    if new_rid:
        _insert(con, "_converted", {"rid": new_rid, "text": new_text}, create=True)
        con.execute("UPDATE slow_raw SET text = c.text FROM _converted c WHERE slow_raw.rid = c.rid")
        con.execute("DROP TABLE _converted")


def _insert(con: duckdb.DuckDBPyConnection, table: str, columns: dict[str, list], create: bool = False) -> None:
    arrow = pa.table(columns)
    con.register("_batch", arrow)
    try:
        if create:
            con.execute(f"CREATE TEMP TABLE {table} AS SELECT * FROM _batch")
        else:
            con.execute(f"INSERT INTO {table} SELECT * FROM _batch")
    finally:
        con.unregister("_batch")
