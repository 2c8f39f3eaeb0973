"""Finding input files (local path, glob, directory, ``s3://`` prefix) and loading their records.

Every file becomes rows of one table, ``raw(rid, file_id, line, text, utf8)``: one row per
non-blank JSONL line or CSV/Parquet row, with its 1-based line (row) number, so that every later
rule can point at the exact place of a problem. CSV and Parquet rows are turned into JSON objects
keyed by the configured column names, so the rules downstream see one shape of input.

``raw`` is an Arrow table registered in the DuckDB connection, which scans it in place: inserting
it into a DuckDB table would copy every byte of the input once more (about 2 s of a 20 s,
1M-record prepare).

A CSV row that cannot be read as a row of its file (more or fewer fields than the header, broken
quoting, bytes that are not UTF-8) is still a record of ``raw``, holding the row as written, and
gets its error in ``load_errs(rid, code, field, message)``; the rules take it from there.

JSONL lines end in ``\n`` (``\r\n`` too: the ``\r`` is JSON whitespace). A file with no ``\n`` but
with ``\r`` (classic Mac OS line endings) is split at ``\r`` instead: a JSON record cannot hold a raw
``\r`` inside a string, so no record is cut apart.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tuneline.config import ColumnMapping
from tuneline.data.codes import ErrorCode
from tuneline.errors import DataError
from tuneline.storage.s3 import ObjectStore, S3Uri, local_path_or_none

__all__ = ["DEFAULT_MAX_RECORD_BYTES", "SkippedFile", "SourceFile", "load_raw", "resolve_source"]

FileKind = Literal["jsonl", "json", "csv", "tsv", "parquet"]
Compression = Literal["gzip", "zstd", "bz2"]

_KINDS: dict[str, FileKind] = {
    ".jsonl": "jsonl",
    ".json": "json",
    ".ndjson": "jsonl",
    ".csv": "csv",
    ".tsv": "tsv",
    ".parquet": "parquet",
}
# Streamed by Arrow's own codecs (C++): nothing else to install.
_COMPRESSIONS: dict[str, Compression] = {".gz": "gzip", ".zst": "zstd", ".zstd": "zstd", ".bz2": "bz2"}
# A record larger than this is rejected as record_too_large (data.max_record_bytes): far above
# any real chat record, far below what would exhaust the DuckDB memory limit.
DEFAULT_MAX_RECORD_BYTES = 16 * 1024 * 1024
# Big enough to amortise per-chunk overhead, small enough to keep peak memory flat.
_CHUNK_BYTES = 32 * 1024 * 1024
# Each block being cut holds a few times its size in temporary arrays: a few at a time are enough.
_SPLIT_THREADS = 4


@dataclass(frozen=True)
class SourceFile:
    name: str  # as shown in error reports: relative to the source root
    path: Path
    kind: FileKind | None  # None: not a data file (named in files_skipped)
    compression: Compression | None = None


@dataclass(frozen=True)
class SkippedFile:
    """A file of the source that was not read, and why (``files_skipped`` in the summary)."""

    file: str
    reason: str


def _kind_of(path: Path) -> tuple[FileKind | None, Compression | None]:
    suffixes = [s.lower() for s in path.suffixes]
    compression = _COMPRESSIONS.get(suffixes[-1]) if suffixes else None
    if compression:
        suffixes = suffixes[:-1]
    return (_KINDS.get(suffixes[-1]) if suffixes else None), compression


def _source_file(name: str, path: Path, *, default: FileKind | None = None) -> SourceFile:
    kind, compression = _kind_of(path)
    return SourceFile(name, path, kind or (default if compression or not path.suffix else None) or default, compression)


def _is_hidden(rel: Path) -> bool:
    # Editor swap files, .DS_Store, _SUCCESS markers of Spark/Hive and the like are not data.
    return any(part.startswith((".", "_")) for part in rel.parts)


def resolve_source(source: str, store: ObjectStore | None, download_dir: Path) -> list[SourceFile]:
    """The input files of ``source`` in a stable order; ``s3://`` objects are downloaded first."""
    local = local_path_or_none(source)
    if local is None:
        if store is None:
            raise DataError(f"{source} is an s3:// source but no object store was given")
        return _resolve_s3(source, store, download_dir)
    if local.is_dir():
        files = sorted(p for p in local.rglob("*") if p.is_file() and not _is_hidden(p.relative_to(local)))
        found = [_source_file(p.relative_to(local).as_posix(), p) for p in files]
    elif local.is_file():
        found = [_source_file(local.name, local, default="jsonl")]
    else:
        matches = sorted(Path(p) for p in glob.glob(str(local), recursive=True) if Path(p).is_file())
        found = [_source_file(p.name, p, default="jsonl") for p in matches]
    if not found:
        raise DataError(
            f"no input files at {source}: give a .jsonl/.json/.csv/.tsv/.parquet file (optionally .gz/.zst/.bz2), "
            "a directory, a glob or s3:// prefix"
        )
    return found


def _resolve_s3(source: str, store: ObjectStore, download_dir: Path) -> list[SourceFile]:
    loc = S3Uri.parse(source)
    keys = sorted(store.list_keys(source))
    if loc.key in keys:  # a single object
        keys = [loc.key]
    prefix = loc.key.rstrip("/") + "/" if loc.key and keys != [loc.key] else ""
    files = []
    for key in keys:
        rel = key[len(prefix) :] if prefix else key.rsplit("/", 1)[-1]
        if not rel or _is_hidden(Path(rel)):
            continue
        target = download_dir / f"{len(files):05d}" / Path(rel).name
        if _kind_of(target)[0] is None and keys != [loc.key]:
            files.append(SourceFile(rel, target, None))  # named in files_skipped, not downloaded
            continue
        store.download_file(str(S3Uri(loc.bucket, key)), target)
        files.append(_source_file(rel, target, default="jsonl"))
    if not files:
        raise DataError(f"no objects under {source}")
    return files


def load_raw(
    con: duckdb.DuckDBPyConnection,
    files: list[SourceFile],
    columns: ColumnMapping,
    *,
    work_dir: Path | None = None,
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
    columns_given: bool = False,
) -> list[SkippedFile]:
    """Create ``raw``, ``files`` and ``load_errs`` in ``con`` from ``files``.

    A file that cannot be read at all is left out, named with its reason in the list returned,
    and never stops the other files from being read.
    """
    con.execute("CREATE TABLE files (file_id INTEGER, name VARCHAR, kind VARCHAR)")
    con.execute("CREATE TABLE load_errs (rid BIGINT, code VARCHAR, field VARCHAR, message VARCHAR)")
    chunks: list[pa.Table] = []
    skipped: list[SkippedFile] = []
    next_rid = 0
    scratch = Path(tempfile.mkdtemp(prefix="tuneline-src-", dir=work_dir))
    try:
        for file_id, src in enumerate(files):
            if src.kind is None:
                skipped.append(SkippedFile(src.name, "not a data file: name it .jsonl, .json, .csv, .tsv or .parquet "
                                                     "(optionally + .gz, .zst or .bz2)"))
                continue
            con.execute("INSERT INTO files VALUES (?, ?, ?)", [file_id, src.name, src.kind])
            mark = len(chunks)
            try:
                path = _decompressed(src, scratch) if src.compression else src.path
                if src.kind == "json" and _is_json_document(path):
                    next_rid = _load_json_document(con, chunks, file_id, src, path, next_rid, max_record_bytes)
                elif src.kind in ("jsonl", "json"):
                    next_rid = _load_jsonl(chunks, file_id, path, next_rid, con, max_record_bytes)
                else:
                    next_rid = _load_table(con, chunks, file_id, src, path, columns, next_rid, columns_given)
            except (DataError, OSError, duckdb.Error, pa.ArrowException, EOFError) as exc:
                del chunks[mark:]
                con.execute("DELETE FROM files WHERE file_id = ?", [file_id])
                reason = str(exc).removeprefix(f"{src.name}: ")
                skipped.append(SkippedFile(src.name, reason))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    con.register("raw", pa.concat_tables(chunks) if chunks else _RAW_SCHEMA.empty_table())
    return skipped


def _decompressed(src: SourceFile, scratch: Path) -> Path:
    """``src`` decompressed into ``scratch`` (streamed by Arrow's C++ codec, 8 MB at a time)."""
    out = scratch / f"{abs(hash(src.name))}-{src.path.name}"
    out = out.with_suffix("") if out.suffix else out
    try:
        with pa.input_stream(str(src.path), compression=src.compression) as stream, out.open("wb") as fh:
            while chunk := stream.read(8 * 1024 * 1024):
                fh.write(chunk)
    except (OSError, pa.ArrowException) as exc:
        raise DataError(f"{src.name}: cannot decompress it as {src.compression} ({exc}): is the file complete?") from exc
    return out


def _is_json_document(path: Path) -> bool:
    """Whether a ``.json`` file is one JSON document (an array, or an object holding a list of
    records), rather than JSON Lines under a .json name: its first line is not a whole value."""
    with path.open("rb") as fh:
        head = fh.read(1 << 16).lstrip(b"\xef\xbb\xbf \t\r\n")
    if head.startswith(b"["):
        return True
    if not head.startswith(b"{"):
        return False
    first = head.split(b"\n", 1)[0]
    try:
        obj = json.loads(first)
    except ValueError:
        return True
    # One line holding {"data": [...]} is the list of records, not one record.
    return isinstance(obj, dict) and any(isinstance(obj.get(k), list) for k in _LIST_KEYS) and not (
        {"messages", "conversations", "prompt", "instruction", "text"} & obj.keys()
    )


_LIST_KEYS = ("data", "train", "records", "examples", "instances", "rows", "items", "samples")


def _load_json_document(
    con: duckdb.DuckDBPyConnection,
    chunks: list[pa.Table],
    file_id: int,
    src: SourceFile,
    path: Path,
    next_rid: int,
    max_record_bytes: int,
) -> int:
    """A JSON array of records, or an object holding one list of records (``{"data": [...]}``).

    Each element becomes one row; its ``line`` is its 1-based position in the list.
    """
    size = max(path.stat().st_size + 1, 1 << 20)
    with path.open("rb") as fh:
        array = fh.read(1 << 16).lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"[")
    if array:
        # Each element is parsed on its own; a larger element fails the file with its reason.
        query = "SELECT json AS text FROM read_json_objects(?, format='array', maximum_object_size=?)"
        params: list[object] = [str(path), max(max_record_bytes, 1 << 20) + 1024]
    else:
        doc = con.execute(
            "SELECT json FROM read_json_objects(?, format='unstructured', maximum_object_size=?)", [str(path), size]
        ).fetchone()[0]
        keys = con.execute("SELECT json_keys(?)", [doc]).fetchone()[0]
        lists = [k for k in keys if con.execute("SELECT json_type(?, ?)", [doc, f'$."{k}"']).fetchone()[0] == "ARRAY"]
        key = next((k for k in _LIST_KEYS if k in lists), lists[0] if len(lists) == 1 else None)
        if key is None:
            # One record spread over several lines: it is the file's only record.
            query, params = "SELECT ? AS text", [doc]
        else:
            query = "SELECT unnest(json_extract(?, ?)) AS text"
            params = [doc, f'$."{key}"[*]']
    keep_order = con.execute("SELECT current_setting('preserve_insertion_order')").fetchone()[0]
    try:
        con.execute("SET preserve_insertion_order = true")
        table = con.sql(f"SELECT CAST(text AS VARCHAR) AS text FROM ({query})", params=params).to_arrow_table()
    except duckdb.Error as exc:
        raise DataError(
            f"{src.name}: not a valid JSON {'array' if array else 'document'} ({str(exc).splitlines()[0]}): "
            "fix the JSON, or write one record per line (JSONL)"
        ) from exc
    finally:
        con.execute(f"SET preserve_insertion_order = {keep_order}")
    n = table.num_rows
    text = table.column("text").combine_chunks().cast(pa.large_string())
    chunks.append(_mark_oversized(con, pa.table(
        {
            "rid": pa.array(np.arange(next_rid, next_rid + n, dtype=np.int64)),
            "file_id": pa.array(np.full(n, file_id, dtype=np.int32)),
            "line": pa.array(np.arange(1, n + 1, dtype=np.int64)),
            "text": text,
            "utf8": pa.array(np.ones(n, dtype=bool)),
        },
        schema=_RAW_SCHEMA,
    ), max_record_bytes))
    return next_rid + n


def _mark_oversized(con: duckdb.DuckDBPyConnection, table: pa.Table, max_record_bytes: int) -> pa.Table:
    """Rows longer than ``max_record_bytes`` lose their text (never parsed) and get record_too_large."""
    lengths = pc.binary_length(table.column("text"))
    over = pc.greater(lengths, max_record_bytes)
    if not pc.any(over).as_py():
        return table
    big = table.filter(over)
    for rid, n in zip(big.column("rid").to_pylist(), pc.binary_length(big.column("text")).to_pylist(), strict=True):
        con.execute(
            "INSERT INTO load_errs VALUES (?, ?, NULL, ?)",
            [rid, ErrorCode.RECORD_TOO_LARGE.value,
             f"the record is {n:,} bytes; data.max_record_bytes allows {max_record_bytes:,}: split it, "
             "or raise data.max_record_bytes if it really is one training example"],
        )
    text = pc.if_else(over, pa.scalar("", pa.large_string()), table.column("text"))
    return table.set_column(table.schema.get_field_index("text"), "text", text)


_RAW_SCHEMA = pa.schema(
    [
        ("rid", pa.int64()),
        ("file_id", pa.int32()),
        ("line", pa.int64()),
        ("text", pa.large_string()),
        ("utf8", pa.bool_()),
    ]
)


def _load_jsonl(
    chunks: list[pa.Table],
    file_id: int,
    path: Path,
    next_rid: int,
    con: duckdb.DuckDBPyConnection | None = None,
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
) -> int:
    # Blocks are cut into lines on all cores while the next block is read: numpy and Arrow
    # release the GIL, so this is real parallelism, and the order of the results is kept.
    with ThreadPoolExecutor(max_workers=min(os.cpu_count() or 1, _SPLIT_THREADS)) as pool:
        pending = [pool.submit(_split_lines, block, newline) for block, newline in _blocks(path)]
        line_no = 0
        for future in pending:
            lines, utf8, blank = future.result()
            n = len(lines)
            table = pa.table(
                {
                    "rid": pa.array(np.arange(next_rid, next_rid + n, dtype=np.int64)),
                    "file_id": pa.array(np.full(n, file_id, dtype=np.int32)),
                    "line": pa.array(np.arange(line_no + 1, line_no + n + 1, dtype=np.int64)),
                    "text": lines,
                    "utf8": utf8,
                },
                schema=_RAW_SCHEMA,
            )
            table = table if blank is None else table.filter(pc.invert(blank))
            chunks.append(table if con is None else _mark_oversized(con, table, max_record_bytes))
            next_rid += n
            line_no += n
    return next_rid


def _blocks(path: Path) -> Iterator[tuple[memoryview | bytes, int]]:
    """``path`` in blocks of about ``_CHUNK_BYTES`` that hold whole lines, each ending in its
    newline byte (one is added to a last line without it), with that byte.

    Each block is read straight into its own buffer, after the end of the previous block's cut
    line: nothing is copied but that line.
    """
    newline = 0
    carry = b""
    with path.open("rb") as fh:
        while True:
            buf = bytearray(len(carry) + _CHUNK_BYTES)
            buf[: len(carry)] = carry
            size = len(carry) + fh.readinto(memoryview(buf)[len(carry) :])
            if size == len(carry):
                break
            start = 0
            if not newline:
                # Editors on Windows start UTF-8 files with a byte-order mark; it is not part of the record.
                start = 3 if buf.startswith(b"\xef\xbb\xbf") else 0
                newline = (
                    ord("\r")
                    if buf.find(b"\n", start, size) < 0 and buf.find(b"\r", start, size) >= 0
                    else ord("\n")
                )
            last = buf.rfind(newline, start, size)
            if last < 0:
                carry = bytes(buf[start:size])
                continue
            yield memoryview(buf)[start : last + 1], newline
            carry = bytes(buf[last + 1 : size])
    if carry:
        yield carry + bytes([newline]), newline


def _split_lines(block: memoryview | bytes, newline: int) -> tuple[pa.Array, pa.Array, pa.Array | None]:
    """The lines of ``block`` as strings (without their newline), whether each was UTF-8, and
    which are blank (None when none is)."""
    ends = np.flatnonzero(np.frombuffer(block, np.uint8) == newline)
    offsets = np.zeros(len(ends) + 1, dtype=np.int64)
    offsets[1:] = ends + 1
    lines, utf8 = _decode(
        pa.Array.from_buffers(
            pa.large_binary(), len(ends), [None, pa.py_buffer(offsets), pa.py_buffer(block)]
        )
    )
    # Blank lines are layout, not records: they neither count nor get rejected. (An
    # anchored RE2 match stops at the first other character, so this costs little.)
    blank = pc.match_substring_regex(lines, r"^[ \t\r]*$")
    return lines, utf8, blank if pc.any(blank).as_py() else None


def _decode(lines: pa.Array) -> tuple[pa.Array, pa.Array]:
    """``lines`` (each ending in its one newline byte) without it, as strings, and which were UTF-8."""
    pieces = pc.binary_slice(lines, 0, -1)
    try:
        # Validating in one C call keeps the common (all UTF-8) case free of per-line Python work.
        return pieces.cast(pa.large_string()), pa.array(np.ones(len(pieces), dtype=bool))
    except pa.ArrowInvalid:
        decoded, ok = [], []
        for raw in pieces.to_pylist():
            try:
                decoded.append(raw.decode("utf-8"))
                ok.append(True)
            except UnicodeDecodeError:
                decoded.append(raw.decode("utf-8", errors="replace"))
                ok.append(False)
        return pa.array(decoded, pa.large_string()), pa.array(ok, pa.bool_())


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# Where DuckDB's CSV reader sets aside the rows it cannot read (``store_rejects``).
_REJECTS = "_csv_rejects"
_REJECT_SCANS = "_csv_reject_scans"
_QUOTING = (
    "a field holding the delimiter, a quote or a line break must be in double quotes, "
    'and a quote inside it doubled ("")'
)


def _load_table(
    con: duckdb.DuckDBPyConnection,
    chunks: list[pa.Table],
    file_id: int,
    src: SourceFile,
    path: Path,
    columns: ColumnMapping,
    next_rid: int,
    columns_given: bool = False,
) -> int:
    """Each CSV/TSV/Parquet row becomes one JSON object of all its columns (nested Parquet
    columns such as ``messages`` stay nested), the columns of ``data.columns`` renamed to
    ``prompt``/``completion``/``system``; the record formats then apply as to JSON records."""
    if src.kind in ("csv", "tsv"):
        # store_rejects: a row that cannot be read is set aside with its row number instead of
        # failing the file; it also keeps a bad first row from misleading the dialect sniffer.
        delim = ", delim='\\t'" if src.kind == "tsv" else ""
        reader = (
            f"read_csv(?, header=true, all_varchar=true{delim}, store_rejects=true, "
            f"rejects_table='{_REJECTS}', rejects_scan='{_REJECT_SCANS}')"
        )
    else:
        reader = "read_parquet(?)"
    label = src.kind.upper() if src.kind else "data"
    try:
        present = [row[0] for row in con.execute(f"DESCRIBE SELECT * FROM {reader}", [str(path)]).fetchall()]
    except duckdb.Error as exc:
        raise DataError(f"{src.name}: cannot read it as {label}: {str(exc).splitlines()[0]}") from exc
    mapping = {"prompt": columns.prompt, "completion": columns.completion, "system": columns.system}
    mapped = {name: col for name, col in mapping.items() if col is not None and col in present}
    missing = [c for c in (columns.prompt, columns.completion, columns.system) if c is not None and c not in present]
    if columns_given and missing:
        raise DataError(
            f"{src.name}: no column(s) {', '.join(missing)}; it has {', '.join(present)}: "
            "give the file's own names in --columns prompt=...,completion=... (data.columns)"
        )
    renamed = [col for name, col in mapped.items() if name != col]
    exclude = f" EXCLUDE ({', '.join(_ident(c) for c in renamed)})" if renamed else ""
    extra = "".join(f", {_ident(col)} AS {_ident(name)}" for name, col in mapped.items() if name != col)
    # Whole-row JSON: the key order is the file's, with renamed columns last.
    row_sql = f"SELECT *{exclude}{extra} FROM {reader}"
    # Row numbers follow the file, and a parallel scan keeps the file's order only when asked to.
    keep_order = con.execute("SELECT current_setting('preserve_insertion_order')").fetchone()[0]
    con.execute(f"DROP TABLE IF EXISTS {_REJECTS}; DROP TABLE IF EXISTS {_REJECT_SCANS}")
    try:
        con.execute("SET preserve_insertion_order = true")
        con.execute(
            f"CREATE TEMP TABLE _rows AS SELECT row_number() OVER () AS k, "
            f"CAST(to_json(t) AS VARCHAR) AS text FROM ({row_sql}) t",
            [str(path)],
        )
    except duckdb.Error as exc:
        raise DataError(f"{src.name}: cannot read it as {label}: {str(exc).splitlines()[0]}") from exc
    finally:
        con.execute(f"SET preserve_insertion_order = {keep_order}")
    try:
        return _number_rows(con, chunks, file_id, src, present, next_rid)
    finally:
        con.execute(
            f"DROP TABLE _rows; DROP TABLE IF EXISTS {_REJECTS}; DROP TABLE IF EXISTS {_REJECT_SCANS}"
        )


def _number_rows(
    con: duckdb.DuckDBPyConnection,
    chunks: list[pa.Table],
    file_id: int,
    src: SourceFile,
    header: list[str],
    next_rid: int,
) -> int:
    """Add ``_rows`` (and the CSV rows set aside) to ``chunks`` of ``raw``, with their row numbers.

    CSV rows start at 2, after the header; Parquet rows at 1. The reader reports each row it set
    aside by its row number, so the rows it read hold the other numbers, in order.
    """
    if src.kind in ("csv", "tsv"):
        con.execute(
            f"""
            CREATE TEMP TABLE _bad AS
            SELECT line, min(error_type)::VARCHAR AS error_type,
                   -- In a CRLF file the reader starts the row after the CR, at the LF.
                   regexp_replace(first(csv_line), '^\\n', '') AS csv_line,
                   first(column_name) FILTER (WHERE error_type = 'MISSING COLUMNS') AS missing,
                   first(error_message) AS detail
            FROM {_REJECTS} GROUP BY line
            """
        )
    else:
        con.execute(
            "CREATE TEMP TABLE _bad (line BIGINT, error_type VARCHAR, csv_line VARCHAR, missing VARCHAR, detail VARCHAR)"
        )
    first_line = 2 if src.kind in ("csv", "tsv") else 1
    con.execute(
        """
        CREATE TEMP TABLE _numbered AS
        WITH good AS (
            SELECT range AS line, row_number() OVER (ORDER BY range) AS k
            FROM range($first, $first + (SELECT count(*) FROM _rows) + (SELECT count(*) FROM _bad))
            WHERE range NOT IN (SELECT line FROM _bad)
        ),
        rows AS (
            SELECT g.line, r.text, true AS utf8 FROM _rows r JOIN good g USING (k)
            UNION ALL
            SELECT line, csv_line, error_type <> 'INVALID ENCODING' FROM _bad
        )
        SELECT $rid + row_number() OVER (ORDER BY line) - 1 AS rid, $file_id::INTEGER AS file_id, line, text, utf8
        FROM rows
        """,
        {"first": first_line, "rid": next_rid, "file_id": file_id},
    )
    chunks.append(con.sql("SELECT * FROM _numbered ORDER BY rid").to_arrow_table().cast(_RAW_SCHEMA))
    shown = ", ".join(header)
    con.execute(
        f"""
        INSERT INTO load_errs
        SELECT n.rid,
               CASE WHEN b.error_type IN ('TOO MANY COLUMNS', 'MISSING COLUMNS') THEN '{ErrorCode.RAGGED_ROW}'
                    WHEN b.error_type = 'INVALID ENCODING' THEN '{ErrorCode.NOT_UTF8}'
                    ELSE '{ErrorCode.INVALID_CSV}' END,
               b.missing,
               CASE b.error_type
                   WHEN 'TOO MANY COLUMNS' THEN 'the row has more fields than the header ({len(header)}: ' || $shown
                        || '): put fields that contain the delimiter in double quotes, or remove the extra fields'
                   WHEN 'MISSING COLUMNS' THEN 'the row has fewer fields than the header ({len(header)}: ' || $shown
                        || '): add the missing fields, or drop the row'
                   WHEN 'INVALID ENCODING' THEN 'the row is not valid UTF-8: re-save the file as UTF-8'
                   ELSE 'the row cannot be read as CSV (' || b.detail || '): check its quoting; ' || $quoting END
        FROM _numbered n JOIN _bad b USING (line)
        """,
        {"shown": shown, "quoting": _QUOTING},
    )
    total = con.execute("SELECT count(*) FROM _numbered").fetchone()[0]
    con.execute("DROP TABLE _bad; DROP TABLE _numbered")
    return next_rid + total
