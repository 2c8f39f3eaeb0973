"""Finding input files (local path, glob, directory, ``s3://`` prefix) and loading their records.

Every file becomes rows of one DuckDB table, ``raw(rid, file_id, line, text, utf8)``: one row per
non-blank JSONL line or CSV/Parquet row, with its 1-based line (row) number, so that every later
rule can point at the exact place of a problem. CSV and Parquet rows are turned into JSON objects
keyed by the configured column names, so the rules downstream see one shape of input.
"""

from __future__ import annotations

import glob
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tuneline.config import ColumnMapping
from tuneline.errors import DataError
from tuneline.storage.s3 import ObjectStore, S3Uri, local_path_or_none

__all__ = ["SourceFile", "load_raw", "resolve_source"]

FileKind = Literal["jsonl", "csv", "parquet"]

_KINDS: dict[str, FileKind] = {
    ".jsonl": "jsonl",
    ".json": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
    ".parquet": "parquet",
}
# Big enough to amortise per-chunk overhead, small enough to keep peak memory flat.
_CHUNK_BYTES = 32 * 1024 * 1024


@dataclass(frozen=True)
class SourceFile:
    name: str  # as shown in error reports: relative to the source root
    path: Path
    kind: FileKind


def _kind_of(path: Path) -> FileKind | None:
    return _KINDS.get(path.suffix.lower())


def resolve_source(source: str, store: ObjectStore | None, download_dir: Path) -> list[SourceFile]:
    """The input files of ``source`` in a stable order; ``s3://`` objects are downloaded first."""
    local = local_path_or_none(source)
    if local is None:
        if store is None:
            raise DataError(f"{source} is an s3:// source but no object store was given")
        return _resolve_s3(source, store, download_dir)
    if local.is_dir():
        files = sorted(p for p in local.rglob("*") if p.is_file() and _kind_of(p))
        found = [SourceFile(p.relative_to(local).as_posix(), p, _kind_of(p)) for p in files]  # type: ignore[arg-type]
    elif local.is_file():
        kind = _kind_of(local) or "jsonl"
        found = [SourceFile(local.name, local, kind)]
    else:
        matches = sorted(Path(p) for p in glob.glob(str(local), recursive=True) if Path(p).is_file())
        found = [SourceFile(p.name, p, _kind_of(p) or "jsonl") for p in matches]
    if not found:
        raise DataError(
            f"no input files at {source}: give a .jsonl/.json/.csv/.parquet file, a directory, a glob or s3:// prefix"
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
        if not rel or _kind_of(Path(rel)) is None:
            continue
        target = download_dir / f"{len(files):05d}" / Path(rel).name
        store.download_file(str(S3Uri(loc.bucket, key)), target)
        files.append(SourceFile(rel, target, _kind_of(target)))  # type: ignore[arg-type]
    if not files:
        raise DataError(f"no .jsonl/.json/.csv/.parquet objects under {source}")
    return files


def load_raw(con: duckdb.DuckDBPyConnection, files: list[SourceFile], columns: ColumnMapping) -> None:
    """Create ``raw`` and ``files`` in ``con`` from ``files``."""
    con.execute("CREATE TABLE files (file_id INTEGER, name VARCHAR, kind VARCHAR)")
    con.execute("CREATE TABLE raw (rid BIGINT, file_id INTEGER, line BIGINT, text VARCHAR, utf8 BOOLEAN)")
    next_rid = 0
    for file_id, src in enumerate(files):
        con.execute("INSERT INTO files VALUES (?, ?, ?)", [file_id, src.name, src.kind])
        if src.kind == "jsonl":
            next_rid = _load_jsonl(con, file_id, src.path, next_rid)
        else:
            next_rid = _load_table(con, file_id, src, columns, next_rid)


def _load_jsonl(con: duckdb.DuckDBPyConnection, file_id: int, path: Path, next_rid: int) -> int:
    line_no = 0
    carry = b""
    with path.open("rb") as fh:
        while True:
            block = fh.read(_CHUNK_BYTES)
            data = carry + block
            if not block:
                carry = b""
            else:
                cut = data.rfind(b"\n")
                if cut < 0:
                    carry = data
                    continue
                data, carry = data[: cut + 1], data[cut + 1 :]
            if data:
                lines, utf8 = _split_lines(data)
                n = len(lines)
                table = pa.table(
                    {
                        "rid": pa.array(np.arange(next_rid, next_rid + n, dtype=np.int64)),
                        "file_id": pa.array(np.full(n, file_id, dtype=np.int32)),
                        "line": pa.array(np.arange(line_no + 1, line_no + n + 1, dtype=np.int64)),
                        "text": lines,
                        "utf8": utf8,
                    }
                )
                # Blank lines are layout, not records: they neither count nor get rejected. (An
                # anchored RE2 match stops at the first other character, so this costs little.)
                blank = pc.match_substring_regex(lines, r"^[ \t\r]*$")
                if pc.any(blank).as_py():
                    table = table.filter(pc.invert(blank))
                con.register("_chunk", table)
                con.execute("INSERT INTO raw SELECT * FROM _chunk")
                con.unregister("_chunk")
                next_rid += n
                line_no += n
            if not block:
                return next_rid


def _split_lines(data: bytes) -> tuple[pa.Array, pa.Array]:
    """Lines of ``data`` (without their newline) as Arrow strings, and whether each was UTF-8."""
    # Editors on Windows start UTF-8 files with a byte-order mark; it is not part of the record.
    data = data.removeprefix(b"\xef\xbb\xbf")
    if data.endswith(b"\n"):
        data = data[:-1]
    pieces = pc.split_pattern(pa.array([data], pa.large_binary()), b"\n").flatten()
    try:
        # Validating in one C call keeps the common (all UTF-8) case free of per-line Python work.
        text = pieces.cast(pa.large_string())
        return text, pa.array([True] * len(pieces), pa.bool_())
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


def _load_table(
    con: duckdb.DuckDBPyConnection, file_id: int, src: SourceFile, columns: ColumnMapping, next_rid: int
) -> int:
    reader = "read_csv(?, header=true, all_varchar=true)" if src.kind == "csv" else "read_parquet(?)"
    try:
        present = [
            row[0] for row in con.execute(f"DESCRIBE SELECT * FROM {reader}", [str(src.path)]).fetchall()
        ]
    except duckdb.Error as exc:
        raise DataError(f"{src.name}: cannot read it as {src.kind.upper()}: {exc}") from exc
    wanted = [c for c in (columns.prompt, columns.completion, columns.system) if c is not None]
    missing = [c for c in wanted if c not in present]
    if missing:
        raise DataError(
            f"{src.name}: no column(s) {', '.join(missing)}; it has {', '.join(present)}. "
            "Set data.columns to the names of the prompt/completion (and system) columns."
        )
    pairs = ", ".join(f"'{c.replace(chr(39), chr(39) * 2)}', {_ident(c)}" for c in wanted)
    # CSV rows start on line 2, after the header; Parquet rows are numbered from 1.
    first_line = 2 if src.kind == "csv" else 1
    try:
        con.execute(
            f"""
            INSERT INTO raw
            SELECT ? + row_number() OVER () - 1, ?, row_number() OVER () + ? - 1,
                   CAST(json_object({pairs}) AS VARCHAR), true
            FROM {reader}
            """,
            [next_rid, file_id, first_line, str(src.path)],
        )
    except duckdb.Error as exc:
        raise DataError(f"{src.name}: cannot read it as {src.kind.upper()}: {exc}") from exc
    return con.execute("SELECT coalesce(max(rid) + 1, ?) FROM raw", [next_rid]).fetchone()[0]
