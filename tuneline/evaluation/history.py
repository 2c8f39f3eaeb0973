"""Evaluation history: SQL through DuckDB over every run's per-example Parquet files.

Each evaluation run writes its rows (see ``EvaluationResult.write_parquet``) under one prefix,
``s3://<bucket>/evals/`` by convention. The files are read as one table -- their metric columns
may differ, as suites differ -- and unpivoted into (run, model, suite, metric, value), so one
query gives every metric's mean per model version and run, oldest first.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import duckdb

from tuneline.errors import EvaluationError
from tuneline.evaluation.metrics import METRICS
from tuneline.storage.s3 import ObjectStore, local_path_or_none

__all__ = ["metric_history"]


def metric_history(
    source: str | Path,
    model: str | None = None,
    suite: str | None = None,
    store: ObjectStore | None = None,
) -> list[dict[str, Any]]:
    """Per run, model and suite, each metric's mean over the run's examples, oldest run first.

    ``source`` is a local folder or an ``s3://`` prefix (read through ``store``) holding the runs'
    Parquet files, at any depth. ``model`` keeps rows whose model label (``candidate``...) or
    model id equals it, or whose model id starts with it (``models:/name`` matches every
    version). Each row: run_id, evaluated_at (ISO 8601), model, model_id, suite, suite_version,
    metric, mean, n.
    """
    path = local_path_or_none(str(source))
    if path is not None:
        return _query(path, model, suite)
    if store is None:
        raise EvaluationError(f"evaluation history {source} is in S3: pass an ObjectStore to read it")
    with tempfile.TemporaryDirectory(prefix="tuneline-history-") as tmp:
        store.download_prefix(str(source), Path(tmp))
        return _query(Path(tmp), model, suite)


def _query(directory: Path, model: str | None, suite: str | None) -> list[dict[str, Any]]:
    if not directory.is_dir():
        raise EvaluationError(f"evaluation history folder {directory} does not exist")
    if not any(directory.rglob("*.parquet")):
        return []
    glob = str(directory / "**" / "*.parquet")
    with duckdb.connect() as con:
        results = con.read_parquet(glob, union_by_name=True)
        results.create_view("results")
        columns = set(results.columns)
        metrics = [name for name in METRICS if name in columns]
        if not metrics:
            return []
        unpivot_on = ", ".join(f'"{name}"' for name in metrics)
        # Metric names come from the registry, never from the files, so quoting them here is safe.
        sql = f"""
            WITH scores AS (
                UNPIVOT (
                    SELECT run_id, evaluated_at, model, model_id, suite, suite_version, {unpivot_on}
                    FROM results
                    WHERE ($model IS NULL OR model = $model OR starts_with(model_id, $model))
                      AND ($suite IS NULL OR suite = $suite)
                ) ON {unpivot_on} INTO NAME metric VALUE value
            )
            SELECT run_id, min(evaluated_at) AS evaluated_at, model, model_id, suite, suite_version,
                   metric, avg(value) AS mean, count(*) AS n
            FROM scores
            GROUP BY run_id, model, model_id, suite, suite_version, metric
            ORDER BY evaluated_at, run_id, suite, model_id, model, metric
        """
        cursor = con.execute(sql, {"model": model, "suite": suite})
        names = [d[0] for d in cursor.description]
        rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    for row in rows:
        row["evaluated_at"] = row["evaluated_at"].isoformat()
    return rows
