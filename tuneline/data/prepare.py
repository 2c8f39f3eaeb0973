"""The prepare stage: any supported input in, a validated, cleaned, split, versioned dataset out.

``validate`` runs every check and reports; ``prepare`` also writes the dataset version. Both load
the input into DuckDB and apply the rules there (see ``rules.py``); every input record ends in
exactly one of accepted / rejected / duplicate / filtered, and the counts are asserted to add up.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from tuneline.backends.bedrock.prices import DEFAULT_PRICES
from tuneline.config import ColumnMapping, DataConfig, Target
from tuneline.data import rules
from tuneline.data.codes import ErrorCode
from tuneline.data.convert import unsupported_kind_message
from tuneline.data.dedupe import conversation_keys, find_near_duplicates, near_duplicate_table
from tuneline.data.report import render_report
from tuneline.data.sources import SkippedFile, load_raw, resolve_source
from tuneline.data.split import SPLITS, split_sql
from tuneline.data.targets import TargetLimits, estimate_cost_usd, limits_for, training_price, training_shape
from tuneline.data.tokens import CharEstimateCounter, TokenCounter
from tuneline.data.versions import check_dataset_name, publish_version
from tuneline.errors import DataError
from tuneline.lineage import DatasetCounts, DatasetVersion
from tuneline.records import NOVA_SCHEMA_VERSION, RecordFormat, RecordKind, record_from_dict
from tuneline.storage.s3 import ObjectStore, S3Uri

__all__ = [
    "PIPELINE_REVISION",
    "DatasetLimitError",
    "PrepareSummary",
    "PreparedDataset",
    "build_dataset",
    "prepare",
    "validate",
]

# Bump when a rule changes what gets written, so old versions are not mistaken for new output.
# 2: duplicate keys rejected, ragged CSV rows rejected per row; 3: every format detected per record;
# 4: every kind and content a target trains is written (preference, KTO, RFT, pretrain, tools, media)
# 5: prompts prepare for bedrock-distillation and bedrock-nova only (not bedrock-claude-haiku)
PIPELINE_REVISION = "5"
_MEMORY_LIMIT = os.environ.get("TUNELINE_DUCKDB_MEMORY_LIMIT", "3GB")
_TOKEN_BATCH = 4096
_WRITE_BATCH = 65_536
_EXAMPLES_PER_CODE = 3


class PrepareSummary(DatasetCounts):
    """The counts of one prepare/validate run (``DatasetCounts``, which each version keeps) and
    what only the run itself knows: formats, kinds, dropped keys, skipped files, examples."""

    formats: dict[str, str] = Field(default_factory=dict, description="input file -> its most common record format")
    kinds: dict[str, int] = Field(default_factory=dict, description="record kind -> records read as that kind")
    dropped_keys: dict[str, int] = Field(
        default_factory=dict, description="extra key -> records it was dropped from (data.extra_keys: drop)"
    )
    files_skipped: list[dict[str, str]] = Field(
        default_factory=list, description='files not read: [{"file", "reason"}]; their records are in no count'
    )
    examples: dict[str, list[dict[str, Any]]] = Field(
        default_factory=dict, description='error code -> up to 3 {"file", "line", "field", "message"}'
    )
    problems: list[str] = Field(
        default_factory=list, description="file-level problems (too few/many records)"
    )

    def to_json_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class PreparedDataset(BaseModel):
    """A published dataset version with what this run learnt about its input: the one result of
    prepare, from the core up to the lifecycle task's cache (small and JSON-serialisable)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    dataset: DatasetVersion
    summary: PrepareSummary
    report_markdown: str
    written: bool = Field(description="False when the version already existed and was reused as is.")


class DatasetLimitError(DataError):
    """The input as a whole breaks the target's limits; ``summary`` has the full counts."""

    def __init__(self, summary: PrepareSummary) -> None:
        super().__init__("; ".join(summary.problems))
        self.summary = summary
        self.problems = summary.problems


@dataclass
class BuiltDataset:
    """What :func:`build_dataset` leaves in its output folder, before any upload."""

    summary: PrepareSummary
    profile: dict[str, Any]
    files_dir: Path | None
    content_digest: str | None = None
    split_tokens: dict[str, int] = field(default_factory=dict)


def validate(
    config: DataConfig,
    target: Target,
    store: ObjectStore | None = None,
    token_counter: TokenCounter | None = None,
) -> PrepareSummary:
    """Every check, PII scan and dedupe of ``prepare``, writing nothing. File-level problems are
    reported in ``summary.problems`` (``prepare`` raises :class:`DatasetLimitError` for them)."""
    with tempfile.TemporaryDirectory(prefix="tuneline-validate-") as tmp:
        return build_dataset(config, target, Path(tmp), store, token_counter, write=False).summary


def prepare(
    config: DataConfig,
    target: Target,
    name: str,
    store: ObjectStore,
    token_counter: TokenCounter | None = None,
) -> PreparedDataset:
    """Validate, clean, split and publish ``config.source`` as a version of dataset ``name``.

    Raises :class:`DatasetLimitError` (a ``DataError``) before uploading anything when the data as a
    whole breaks the target's limits. The same input and config always give the same version, and
    an existing complete version is reused without rewriting it.
    """
    check_dataset_name(name)
    with tempfile.TemporaryDirectory(prefix="tuneline-prepare-") as tmp:
        built = build_dataset(config, target, Path(tmp), store, token_counter, write=True)
        if built.summary.problems:
            if built.files_dir is not None:
                # Nothing is published, but what was wrong with each record is: beside the versions.
                base = store.uri(f"datasets/{name}/_rejected/{built.content_digest or 'none'}/")
                store.put_dir(base, built.files_dir)
                built.summary = built.summary.model_copy(
                    update={"problems": [*built.summary.problems, f"rejected records and report: {base}"]}
                )
            raise DatasetLimitError(built.summary)
        assert built.files_dir is not None and built.content_digest is not None
        version = _version_id(config, target, token_counter, built.content_digest)
        built.profile["name"], built.profile["version"] = name, version
        (built.files_dir / "profile.json").write_text(json.dumps(built.profile, indent=2), encoding="utf-8")
        summary = built.summary

        def describe(uri: str) -> DatasetVersion:
            base = S3Uri.parse(uri)
            return DatasetVersion(
                name=name,
                version=version,
                uri=uri,
                split_uris={s: str(base.join(f"{s}.jsonl")) for s in SPLITS},
                **summary.model_dump(include=set(DatasetCounts.model_fields)),
            )

        dataset_version, written = publish_version(store, name, version, built.files_dir, describe)
    return PreparedDataset(
        dataset=dataset_version,
        summary=summary,
        report_markdown=render_report(built.profile),
        written=written,
    )


def _version_id(config: DataConfig, target: Target, counter: TokenCounter | None, digest: str) -> str:
    # The source location is left out on purpose: the same bytes read from a local copy or from
    # S3 are the same dataset.
    identity = {
        "pipeline": PIPELINE_REVISION,
        "target": str(target),
        "config": config.model_dump(mode="json", exclude={"source", "name", "target"}),
        "token_counter": _counter(counter, limits_for(target)).name,
        "content": digest,
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def _counter(counter: TokenCounter | None, limits: TargetLimits) -> TokenCounter:
    return counter if counter is not None else CharEstimateCounter(limits.chars_per_token)


def _connect(workdir: Path) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    (workdir / "duckdb-tmp").mkdir(parents=True, exist_ok=True)
    con.execute(f"SET temp_directory = '{workdir / 'duckdb-tmp'}'")
    con.execute(f"SET memory_limit = '{_MEMORY_LIMIT}'")
    # Output order is always imposed with ORDER BY, so DuckDB may scan in parallel freely.
    con.execute("SET preserve_insertion_order = false")
    return con


def build_dataset(
    config: DataConfig,
    target: Target,
    workdir: Path,
    store: ObjectStore | None = None,
    token_counter: TokenCounter | None = None,
    write: bool = True,
) -> BuiltDataset:
    """Run every rule; with ``write``, leave the version's files in ``workdir/out`` (no upload)."""
    limits = limits_for(target)
    counter = _counter(token_counter, limits)
    files = resolve_source(config.source, store, workdir / "source")
    con = _connect(workdir)
    try:
        skipped = load_raw(
            con, files, config.columns, work_dir=workdir, max_record_bytes=config.max_record_bytes,
            columns_given=config.columns != ColumnMapping(),
        )
        rules.check_structure(con, config, limits)
        rules.build_conversations(con)
        con.execute(
            f"""
            INSERT INTO errs
            SELECT rid, '{ErrorCode.TOO_MANY_MESSAGES}', 'messages',
                   format('the record has {{}} turns; data.max_messages_per_record allows '
                          || '{config.max_messages_per_record}: split the conversation', len(messages))
            FROM conversations WHERE payload IS NULL AND len(messages) > {config.max_messages_per_record}
            """
        )
        if limits.max_messages_per_record is not None and limits.max_messages_per_record < config.max_messages_per_record:
            _refuse_long_conversations(con, target, limits.max_messages_per_record)
        if RecordKind.SFT not in limits.kinds:
            # Chat records skip the per-record conversion (the SQL rules read them directly), so a
            # target that trains no chats refuses them here.
            con.execute(
                f"INSERT INTO errs SELECT rid, '{ErrorCode.UNSUPPORTED_KIND}', NULL, ? "
                "FROM conversations WHERE payload IS NULL",
                [unsupported_kind_message(RecordKind.SFT, limits)],
            )
        rules.check_records(con, limits)
        rules.apply_pii(con, config.pii)
        _count_tokens(con, counter)
        if limits.max_tokens_per_record is not None:
            con.execute(
                f"""
                INSERT INTO errs
                SELECT rid, '{ErrorCode.TOO_MANY_TOKENS}', NULL,
                       format('the record has {{}} tokens ({counter.name}); {target.value} allows at most '
                              || '{limits.max_tokens_per_record}: shorten it or split the conversation', tokens)
                FROM tok WHERE tokens > {limits.max_tokens_per_record}
                """
            )
        _dedupe_and_split(con, config)
        summary, profile, split_tokens = _summarize(con, config, target, limits, counter, skipped)
        built = BuiltDataset(summary=summary, profile=profile, files_dir=None, split_tokens=split_tokens)
        if write and summary.problems:
            # No version, but the rejected records (reason, place, digest) and the report still go out.
            out = workdir / "rejected-out"
            out.mkdir(parents=True)
            _write_rejected(con, out)
            (out / "report.md").write_text(render_report(profile), encoding="utf-8")
            built.content_digest = hashlib.sha256((out / "rejected.jsonl").read_bytes()).hexdigest()[:16]
            built.files_dir = out
        if write and not summary.problems:
            out = workdir / "out"
            out.mkdir(parents=True)
            _write_rejected(con, out)
            # The input's text is not read again: its memory goes to the output lines. (Arrow's
            # allocator keeps freed pages for reuse until told otherwise.)
            con.unregister("raw")
            pa.default_memory_pool().release_unused()
            built.content_digest = _write_splits(con, limits, out)
            built.files_dir = out
        return built
    finally:
        con.close()


def _count_tokens(con: duckdb.DuckDBPyConnection, counter: TokenCounter) -> None:
    if isinstance(counter, CharEstimateCounter):
        con.execute(
            f"""
            CREATE TABLE tok AS
            SELECT rid, ceil(list_sum(list_prepend(length(system), list_transform(
                             CASE WHEN payload IS NULL THEN messages ELSE list_filter(messages, lambda m: m.role <> 'metadata') END,
                             lambda m: length(m.content))))
                             / {counter.chars_per_token!r})::BIGINT AS tokens
            FROM conversations
            """
        )
        return
    rids: list[int] = []
    counts: list[int] = []
    reader = con.sql(
        f"SELECT rid, text FROM ({rules.conversation_texts()}) WHERE role <> 'metadata' ORDER BY rid, idx"
    ).to_arrow_reader(_TOKEN_BATCH)
    for batch in reader:
        rids.extend(batch.column(0).to_pylist())
        counts.extend(counter.count(batch.column(1).to_pylist()))
    per_text = pa.table({"rid": pa.array(rids, pa.int64()), "n": pa.array(counts, pa.int64())})
    con.register("_per_text", per_text)
    con.execute("CREATE TABLE tok AS SELECT rid, sum(n)::BIGINT AS tokens FROM _per_text GROUP BY rid")
    con.unregister("_per_text")


def _dedupe_and_split(con: duckdb.DuckDBPyConnection, config: DataConfig) -> None:
    conversation_keys(
        con,
        config.dedupe,
        "SELECT rid FROM tok ANTI JOIN errs USING (rid)",
        keep_text=config.dedupe.near_duplicate_threshold is not None,
    )
    con.execute("CREATE TABLE firsts AS SELECT min(rid) AS rid, key FROM keys GROUP BY key")
    near = set()
    if config.dedupe.near_duplicate_threshold is not None:
        near = find_near_duplicates(con, config.dedupe.near_duplicate_threshold, "SELECT rid FROM firsts")
    con.register("_near", near_duplicate_table(near))
    con.execute("CREATE TABLE near AS SELECT rid FROM _near")
    con.unregister("_near")
    split = config.split
    caps = {"train": split.max_train, "validation": split.max_validation, "test": split.max_test}
    cap_sql = (
        "CASE split "
        + " ".join(f"WHEN '{s}' THEN {c if c is not None else 'NULL'}" for s, c in caps.items())
        + " END"
    )
    # Ranking every record within its split is a full sort: only worth it when a cap is set.
    over_cap = (
        f"({cap_sql}) IS NOT NULL AND row_number() OVER (PARTITION BY split ORDER BY key, rid) > ({cap_sql})"
        if any(c is not None for c in caps.values())
        else "false"
    )
    con.execute(
        f"""
        CREATE TABLE assigned AS
        SELECT rid, split, {over_cap} AS over_cap
        FROM (SELECT rid, key, {split_sql("key", split)} AS split FROM firsts ANTI JOIN near USING (rid))
        """
    )
    con.execute(
        """
        CREATE TABLE status AS
        SELECT r.rid, r.file_id, r.line,
               CASE WHEN e.rid IS NOT NULL THEN 'rejected'
                    WHEN a.rid IS NULL THEN 'duplicate'
                    WHEN a.over_cap THEN 'filtered'
                    ELSE 'accepted' END AS status,
               CASE WHEN e.rid IS NULL AND NOT a.over_cap THEN a.split END AS split
        FROM raw r
        LEFT JOIN (SELECT DISTINCT rid FROM errs) e USING (rid)
        LEFT JOIN assigned a USING (rid)
        """
    )


def _summarize(
    con: duckdb.DuckDBPyConnection,
    config: DataConfig,
    target: Target,
    limits: TargetLimits,
    counter: TokenCounter,
    skipped: list[SkippedFile] | None = None,
) -> tuple[PrepareSummary, dict[str, Any], dict[str, int]]:
    counts = dict(con.execute("SELECT status, count(*) FROM status GROUP BY status").fetchall())
    total = con.execute("SELECT count(*) FROM raw").fetchone()[0]
    splits = {s: 0 for s in SPLITS}
    split_tokens = {s: 0 for s in SPLITS}
    for split, n, tokens in con.execute(
        "SELECT split, count(*), coalesce(sum(t.tokens), 0) FROM status s JOIN tok t USING (rid) "
        "WHERE status = 'accepted' GROUP BY split"
    ).fetchall():
        splits[split], split_tokens[split] = n, int(tokens)
    accepted, rejected = counts.get("accepted", 0), counts.get("rejected", 0)
    duplicates, filtered = counts.get("duplicate", 0), counts.get("filtered", 0)
    # Nothing may be lost or counted twice; a failure here is a bug in the rules, not in the data.
    assert total == accepted + rejected + duplicates + filtered, (total, counts)
    assert accepted == sum(splits.values()), (accepted, splits)
    errors = dict(
        con.execute("SELECT code, count(DISTINCT rid) FROM errs GROUP BY code ORDER BY code").fetchall()
    )
    pii = dict(
        con.execute("SELECT type, sum(n)::BIGINT FROM pii_found GROUP BY type ORDER BY type").fetchall()
    )
    # Plain chat lines never reach the converter: they are Bedrock chat SFT records.
    con.execute(
        """
        CREATE TEMP TABLE rec_fmt AS
        SELECT r.rid, r.file_id, coalesce(m.fmt, CASE WHEN c.rid IS NOT NULL THEN 'bedrock' END) AS fmt,
               coalesce(m.kind, CASE WHEN c.rid IS NOT NULL THEN 'sft' END) AS kind
        FROM raw r LEFT JOIN rec_meta m USING (rid) LEFT JOIN conversations c USING (rid)
        """
    )
    formats = dict(
        con.execute(
            "SELECT f.name, coalesce((SELECT first(fmt ORDER BY n DESC, fmt) FROM (SELECT fmt, count(*) AS n "
            "FROM rec_fmt WHERE file_id = f.file_id AND fmt IS NOT NULL GROUP BY fmt)), 'unknown') "
            "FROM files f ORDER BY f.file_id"
        ).fetchall()
    )
    kinds = dict(con.execute("SELECT kind, count(*) FROM rec_fmt WHERE kind IS NOT NULL GROUP BY kind ORDER BY kind").fetchall())
    dropped_keys = dict(
        con.execute("SELECT key, count(DISTINCT rid) FROM dropped GROUP BY key ORDER BY key").fetchall()
    )
    tokens = sum(split_tokens.values())
    cost = estimate_cost_usd(target, split_tokens["train"])
    problems = _limit_problems(total, accepted, splits, limits)
    summary = PrepareSummary(
        target=target,
        total=total,
        accepted=accepted,
        rejected=rejected,
        duplicates=duplicates,
        filtered=filtered,
        errors=errors,
        pii=pii,
        splits=splits,
        tokens=tokens,
        estimated_cost_usd=cost,
        formats=formats,
        kinds=kinds,
        dropped_keys=dropped_keys,
        files_skipped=[{"file": f.file, "reason": f.reason} for f in skipped or []],
        problems=problems,
    )
    profile = _profile(con, config, summary, limits, counter, split_tokens)
    summary = summary.model_copy(update={"examples": profile["error_examples"]})
    profile["summary"] = summary.to_json_dict()
    return summary, profile, split_tokens


def _limit_problems(total: int, accepted: int, splits: dict[str, int], limits: TargetLimits) -> list[str]:
    t = limits.target.value
    problems = []
    if total == 0:
        return ["the input holds no records"]
    if accepted == 0:
        return [f"no record passed the checks ({total} read): the errors list each code with examples"]
    train, val = splits["train"], splits["validation"]
    if train < limits.min_train_records:
        problems.append(
            f"{ErrorCode.TOO_FEW_RECORDS}: the train split has {train} records; {t} needs at least "
            f"{limits.min_train_records}: add records or raise data.split.train"
        )
    if limits.max_train_records is not None and train > limits.max_train_records:
        problems.append(
            f"{ErrorCode.TOO_MANY_RECORDS}: the train split has {train} records; {t} allows at most "
            f"{limits.max_train_records}: set data.split.max_train"
        )
    if val and limits.min_validation_records is not None and val < limits.min_validation_records:
        problems.append(
            f"{ErrorCode.TOO_FEW_RECORDS}: the validation split has {val} records; {t} needs at least "
            f"{limits.min_validation_records} when there is one: add records, raise data.split.validation, "
            "or set it to 0"
        )
    if limits.max_validation_records is not None and val > limits.max_validation_records:
        problems.append(
            f"{ErrorCode.TOO_MANY_RECORDS}: the validation split has {val} records; {t} allows at most "
            f"{limits.max_validation_records}: set data.split.max_validation"
        )
    if limits.max_total_records is not None and train + val > limits.max_total_records:
        problems.append(
            f"{ErrorCode.TOO_MANY_RECORDS}: train and validation hold {train + val} records together; {t} allows "
            f"at most {limits.max_total_records}: set data.split.max_train / max_validation"
        )
    return problems


def _profile(
    con: duckdb.DuckDBPyConnection,
    config: DataConfig,
    summary: PrepareSummary,
    limits: TargetLimits,
    counter: TokenCounter,
    split_tokens: dict[str, int],
) -> dict[str, Any]:
    examples: dict[str, list[dict[str, Any]]] = {}
    for code, file, line, fld, message in con.execute(
        f"""
        SELECT code, f.name, r.line, e.field, e.message
        FROM (SELECT *, row_number() OVER (PARTITION BY code ORDER BY rid, field) AS k FROM errs) e
        JOIN raw r USING (rid) JOIN files f USING (file_id)
        WHERE k <= {_EXAMPLES_PER_CODE} ORDER BY code, k
        """
    ).fetchall():
        examples.setdefault(code, []).append({"file": file, "line": line, "field": fld, "message": message})
    histogram = [
        {"bucket": f"{lo}-{hi - 1}", "records": n}
        for lo, hi, n in con.execute(
            """
            SELECT lo, lo * 2, count(*) FROM (
                SELECT CASE WHEN tokens < 16 THEN 0 ELSE (2 ** floor(log2(tokens)))::BIGINT END AS lo
                FROM tok JOIN status USING (rid) WHERE status = 'accepted')
            GROUP BY lo ORDER BY lo
            """
        ).fetchall()
    ]
    for h in histogram:
        if h["bucket"].startswith("0-"):
            h["bucket"] = "0-15"
    turns = [
        {"turns": t, "records": n}
        for t, n in con.execute(
            """
            SELECT turns, count(*) FROM (
                -- A record of another kind holds one text per field (paths name them): its turns
                -- are the contents of its conversation, the chosen answer standing for the pair's.
                SELECT CASE WHEN paths IS NULL THEN len(messages) ELSE len(list_filter(
                    paths, lambda p: regexp_full_match(p, '(messages|prompt|chosen)\\[[0-9]+\\]\\.content'))) END AS turns
                FROM conversations SEMI JOIN (SELECT rid FROM status WHERE status = 'accepted') USING (rid))
            WHERE turns > 0  -- pretraining text is no conversation
            GROUP BY turns ORDER BY turns
            """
        ).fetchall()
    ]
    roles = [
        {"role": r, "messages": n, "mean_chars": round(m, 1)}
        for r, n, m in con.execute(
            """
            WITH accepted AS (
                SELECT * FROM conversations SEMI JOIN (SELECT rid FROM status WHERE status = 'accepted') USING (rid)
            )
            SELECT role, count(*), avg(n) FROM (
                SELECT 'system' AS role, length(system) AS n FROM accepted WHERE system IS NOT NULL
                UNION ALL
                SELECT m.role, length(m.content) FROM (SELECT unnest(messages) AS m FROM accepted))
            GROUP BY role ORDER BY role
            """
        ).fetchall()
    ]
    return {
        "summary": summary.to_json_dict(),
        "source": config.source,
        "config": config.model_dump(mode="json"),
        "limits": limits.model_dump(mode="json"),
        "token_counter": counter.name,
        "split_tokens": split_tokens,
        "error_examples": examples,
        "pii_policy": config.pii.model_dump(mode="json"),
        "token_histogram": histogram,
        "turns": turns,
        "roles": roles,
        "cost": {
            "training_tokens": split_tokens["train"],
            "epochs": limits.default_epochs,
            "model_id": limits.price_model_id,
            "price_per_1k_tokens_usd": training_price(limits),
            "note": limits.price_note,
            "prices_taken_on": DEFAULT_PRICES.as_of.isoformat(),
            "price_source": DEFAULT_PRICES.source,
        },
    }


def _write_rejected(con: duckdb.DuckDBPyConnection, out: Path) -> None:
    rejected = """
        SELECT f.name AS file, r.line, e.errors, sha256(r.text) AS original_sha256
        FROM (SELECT rid, list({'code': code, 'field': field, 'message': message} ORDER BY code, field) AS errors
              FROM errs GROUP BY rid) e
        JOIN raw r USING (rid) JOIN files f USING (file_id)
        ORDER BY r.rid
    """
    con.execute(f"COPY ({rejected}) TO '{out / 'rejected.jsonl'}' (FORMAT JSON)")
    con.execute(f"COPY ({rejected}) TO '{out / 'rejected.parquet'}' (FORMAT PARQUET)")


def _refuse_long_conversations(con: duckdb.DuckDBPyConnection, target: Target, most: int) -> None:
    """Records with more turns than ``target`` takes (a prompt record's turns end with the user's)."""
    turns = "json_array_length(payload, '$.messages')"
    con.execute(
        f"""
        INSERT INTO errs
        SELECT rid, '{ErrorCode.TOO_MANY_MESSAGES}', 'messages',
               format('the record has {{}} turns; {target.value} takes single-turn records (one user turn and '
                      || 'its answer): distil into a Nova student (bedrock-nova takes whole conversations), '
                      || 'or fine-tune instead of distilling', n)
        FROM (SELECT rid, CASE WHEN payload IS NULL THEN len(messages) ELSE {turns} END AS n FROM conversations) c
        WHERE n > {most}  -- one error a record: not again where data.max_messages_per_record refused it
          AND NOT EXISTS (SELECT 1 FROM errs e WHERE e.rid = c.rid AND e.code = '{ErrorCode.TOO_MANY_MESSAGES}')
        """
    )


def _write_splits(con: duckdb.DuckDBPyConnection, limits: TargetLimits, out: Path) -> str:
    """Write each split as JSONL in the target's format, and a Parquet copy, into ``out``.

    Returns the digest of the version's JSONL files, ``rejected.jsonl`` (written before) last.
    """
    con.execute(
        """
        CREATE TEMP VIEW outrec AS
        SELECT rid, s.split, c.system, c.messages, c.payload
        FROM conversations c JOIN status s USING (rid) WHERE s.status = 'accepted'
        """
    )
    # Each line is spelled out by concatenation around to_json: the same compact JSON that
    # json_object would build, without json_object parsing its JSON arguments a second time.
    if limits.output_format is RecordFormat.NOVA:
        msgs = (
            "to_json(list_transform(messages, lambda m: {'role': m.role, 'content': [{'text': m.content}]}))"
        )
        head = f'{{"schemaVersion":"{NOVA_SCHEMA_VERSION}",'
        line = f"""CASE WHEN system IS NULL THEN '{head}"messages":' || {msgs} || '}}'
                ELSE '{head}"system":[{{"text":' || to_json(system) || '}}],"messages":' || {msgs} || '}}' END"""
    else:
        line = """CASE WHEN system IS NULL THEN '{"messages":' || to_json(messages) || '}'
               ELSE '{"system":' || to_json(system) || ',"messages":' || to_json(messages) || '}' END"""
    # A record that is more than a text chat is written from its payload: as it is for the local
    # trainers (the payload is training_shape's canonical record), else in the target's shape.
    rich_line, source = "payload", "outrec"
    if limits.target is not Target.LOCAL:
        _render_rich_lines(con, limits)
        rich_line, source = "rich.line", "outrec LEFT JOIN rich_line rich USING (rid)"
    line = f"CASE WHEN payload IS NULL THEN {line} ELSE {rich_line} END"
    # Built in parallel first: in a streamed ORDER BY query DuckDB would spell the lines out after
    # the sort, on the one thread that hands out the result.
    con.execute(f"CREATE TEMP TABLE outline AS SELECT rid, split, ({line}) || chr(10) AS line FROM {source}")
    digest = hashlib.sha256()
    # The bytes are hashed on another core as they are written (hashlib releases the GIL), in
    # the order written: a one-worker pool runs its tasks in turn.
    with ThreadPoolExecutor(max_workers=1) as hashing:
        hashed = []
        for split in SPLITS:
            name = f"{split}.jsonl"
            hashed.append(hashing.submit(digest.update, name.encode() + b"\0"))
            _write_lines(
                con,
                f"SELECT line FROM outline WHERE split = '{split}' ORDER BY rid",
                out / name,
                lambda chunk: hashed.append(hashing.submit(digest.update, chunk)),
            )
            con.execute(
                f"COPY (SELECT system, messages, payload AS record FROM outrec WHERE split = '{split}' ORDER BY rid) "
                f"TO '{out / f'{split}.parquet'}' (FORMAT PARQUET)"
            )
        hashed.append(hashing.submit(_hash_file, digest.update, out / "rejected.jsonl"))
        for future in hashed:
            future.result()
    con.execute("DROP TABLE outline")
    return digest.hexdigest()


def _render_rich_lines(con: duckdb.DuckDBPyConnection, limits: TargetLimits) -> None:
    """``rich_line(rid, line)``: each accepted record with a payload in the target's training shape."""
    rids: list[int] = []
    lines: list[str] = []
    for rid, payload in con.execute("SELECT rid, payload FROM outrec WHERE payload IS NOT NULL").fetchall():
        rids.append(rid)
        shape = training_shape(record_from_dict(json.loads(payload)), limits)
        lines.append(json.dumps(shape, ensure_ascii=False, separators=(",", ":")))
    con.register("_rich_lines", pa.table({"rid": pa.array(rids, pa.int64()), "line": pa.array(lines, pa.string())}))
    con.execute("CREATE TEMP TABLE rich_line AS SELECT * FROM _rich_lines")
    con.unregister("_rich_lines")


def _write_lines(
    con: duckdb.DuckDBPyConnection, sql: str, path: Path, on_chunk: Callable[[memoryview], object]
) -> None:
    """Write the values of the one VARCHAR column of ``sql`` (each ending in a newline) to ``path``,
    handing each chunk of bytes written to ``on_chunk`` too.

    The JSON encoder has already escaped every newline and control character, so the bytes of a
    batch are its Arrow data buffer as it is: no per-row work, no quoting pass of a CSV writer.
    """
    batches = iter(con.sql(sql).to_arrow_reader(_WRITE_BATCH))
    # The next batch is fetched while this one is written: both let go of the GIL.
    with path.open("wb") as fh, ThreadPoolExecutor(max_workers=1) as fetching:
        upcoming = fetching.submit(next, batches, None)
        while (batch := upcoming.result()) is not None:
            upcoming = fetching.submit(next, batches, None)
            col = batch.column(0)
            if len(col) == 0:
                continue
            assert col.null_count == 0, "an output line is NULL"
            offsets_type = np.int64 if pa.types.is_large_string(col.type) else np.int32
            offsets = np.frombuffer(col.buffers()[1], dtype=offsets_type)
            start, end = offsets[col.offset], offsets[col.offset + len(col)]
            chunk = memoryview(col.buffers()[2])[start:end]
            fh.write(chunk)
            on_chunk(chunk)


def _hash_file(update: Callable[[bytes], object], path: Path) -> None:
    update(path.name.encode() + b"\0")
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            update(chunk)
