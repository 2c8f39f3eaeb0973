"""Duplicate detection: exact after normalisation (DuckDB), optional near-duplicates (MinHash).

Both keep the first occurrence in input order (file order, then line).
"""

from __future__ import annotations

import re

import duckdb
import pyarrow as pa
from datasketch import MinHash, MinHashLSH

from tuneline.config import DedupeConfig

__all__ = ["conversation_keys", "find_near_duplicates", "near_duplicate_table", "normalize"]

_WS = re.compile(r"\s+")
_SHINGLE = 5  # characters per shingle
_PERMUTATIONS = 128
# LSH finds candidates with a lower bar than the threshold (banding misses pairs just above it);
# each candidate is then confirmed with its estimated Jaccard similarity.
_CANDIDATE_SLACK = 0.8


def normalize(text: str, config: DedupeConfig) -> str:
    """Python twin of the SQL normalisation used for the dedupe and split keys."""
    if config.normalize_whitespace:
        text = _WS.sub(" ", text).strip()
    if config.case_insensitive:
        text = text.lower()
    return text


def _normalize_sql(column: str, config: DedupeConfig) -> str:
    expr = column
    if config.normalize_whitespace:
        # The regex pass is the slow part; most texts have no whitespace to fold, and substring
        # tests (memchr) find those cheaply. RE2's \s is [\t\n\f\r ]. trim() (which strips
        # Unicode space separators) is slow too: a text that starts and ends with a printable
        # ASCII character cannot change under it, so only other texts pay for it.
        unchanged_by_trim = f"regexp_matches({expr}, '^[!-~]') AND regexp_matches({expr}, '[!-~]$')"
        needs = " OR ".join(
            [f"contains({expr}, '  ')", *(f"contains({expr}, chr({c}))" for c in (9, 10, 12, 13))]
            + [f"(CASE WHEN {unchanged_by_trim} THEN false ELSE {expr} <> trim({expr}) END)"]
        )
        # '\s+' -> ' ' would replace every single space by itself (each one a match, ~7x slower
        # on texts with a line break); only longer runs and the other whitespace need replacing.
        expr = (
            f"(CASE WHEN {needs} THEN trim(regexp_replace({expr}, '[\\t\\n\\f\\r ]{{2,}}|[\\t\\n\\f\\r]', ' ', 'g')) "
            f"ELSE {expr} END)"
        )
    if config.case_insensitive:
        expr = f"lower({expr})"
    return expr


def conversation_keys(
    con: duckdb.DuckDBPyConnection, config: DedupeConfig, candidates: str, keep_text: bool = False
) -> None:
    """``keys(rid, key[, conv])``: a 128-bit hash of each candidate record's normalised conversation.

    The key decides both duplicates and the split, so it depends on content alone, never on
    position: a record keeps its split when the dataset grows. The hashed text is each turn's
    ``role chr(31) text`` (the system prompt first, as role "system"), joined by ``chr(30)``;
    with ``keep_text`` it is kept as ``conv`` (for near-duplicate search).
    """
    turn = f"m.role || chr(31) || {_normalize_sql('m.content', config)}"
    system = f"'system' || chr(31) || {_normalize_sql('system', config)}"
    # concat_ws and array_to_string both skip NULLs, as a string_agg over the texts would.
    # Kept metadata (an id, a source) is not content: records differing only there are duplicates.
    trained = "CASE WHEN payload IS NULL THEN messages ELSE list_filter(messages, lambda m: m.role <> 'metadata') END"
    conv = f"concat_ws(chr(30), {system}, array_to_string(list_transform({trained}, lambda m: {turn}), chr(30)))"
    con.execute(
        f"""
        CREATE TABLE keys AS
        SELECT rid, md5_number(conv) AS key{", conv" if keep_text else ""}
        FROM (SELECT rid, {conv} AS conv FROM conversations SEMI JOIN ({candidates}) USING (rid))
        """
    )


def find_near_duplicates(con: duckdb.DuckDBPyConnection, threshold: float, unique_rids: str) -> set[int]:
    """Records whose MinHash Jaccard estimate to an earlier kept record reaches ``threshold``."""
    lsh = MinHashLSH(threshold=threshold * _CANDIDATE_SLACK, num_perm=_PERMUTATIONS)
    kept: dict[str, MinHash] = {}
    near: set[int] = set()
    reader = con.sql(
        f"SELECT k.rid, k.conv FROM keys k SEMI JOIN ({unique_rids}) USING (rid) ORDER BY k.rid"
    ).to_arrow_reader(10_000)
    for batch in reader:
        for rid, conv in zip(batch.column(0).to_pylist(), batch.column(1).to_pylist(), strict=True):
            m = MinHash(num_perm=_PERMUTATIONS)
            shingles = {conv[i : i + _SHINGLE] for i in range(max(1, len(conv) - _SHINGLE + 1))}
            m.update_batch([s.encode("utf-8") for s in shingles])
            if any(kept[c].jaccard(m) >= threshold for c in lsh.query(m)):
                near.add(rid)
            else:
                kept[str(rid)] = m
                lsh.insert(str(rid), m)
    return near


def near_duplicate_table(rids: set[int]) -> pa.Table:
    return pa.table({"rid": pa.array(sorted(rids), pa.int64())})
