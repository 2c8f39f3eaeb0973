"""Cached generations and evaluation history in S3, against the real SeaweedFS session service."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tuneline.config import EvaluationConfig
from tuneline.evaluation.cache import ResultCache
from tuneline.evaluation.history import metric_history
from tuneline.evaluation.runner import evaluate_models
from tuneline.evaluation.suites import LoadedSuite
from tuneline.storage.s3 import ObjectStore

pytestmark = pytest.mark.service

PAIRS = [(f"q{i}", f"a{i}") for i in range(10)]
CONFIG = EvaluationConfig(bootstrap_samples=100)


def _models(zoo: Any) -> dict[str, Any]:
    return {
        "candidate": zoo.model("candidate", "models:/tickets/2", dict(PAIRS)),
        "champion": zoo.model("champion", "models:/tickets/1", dict(PAIRS[:5])),
    }


def test_cache_in_s3_makes_re_evaluation_free(
    object_store: ObjectStore,
    s3_prefix: Callable[[str], str],
    make_zoo: Callable[[], Any],
    make_suite: Callable[..., LoadedSuite],
) -> None:
    prefix = s3_prefix("eval-cache")
    suite = make_suite(PAIRS)
    first = evaluate_models(_models(make_zoo()), [suite], CONFIG, ResultCache(prefix, object_store))
    assert len(list(object_store.list_keys(prefix))) == 2  # one entry per model

    zoo = make_zoo()
    second = evaluate_models(_models(zoo), [suite], CONFIG, ResultCache(prefix, object_store))
    assert zoo.events == []
    assert second.generated == {"candidate": 0, "champion": 0}
    assert second.rows.column("output").to_pylist() == first.rows.column("output").to_pylist()


def test_history_reads_runs_from_an_s3_prefix(
    object_store: ObjectStore,
    s3_prefix: Callable[[str], str],
    make_zoo: Callable[[], Any],
    make_suite: Callable[..., LoadedSuite],
) -> None:
    prefix = s3_prefix("evals")
    suite = make_suite(PAIRS)
    for run_id in ("run-1", "run-2"):
        result = evaluate_models(_models(make_zoo()), [suite], CONFIG, run_id=run_id)
        uri = result.write_parquet(f"{prefix}/{run_id}/results.parquet", object_store)
        assert object_store.exists(uri)

    rows = metric_history(prefix, model="models:/tickets/2", store=object_store)
    assert [(r["run_id"], r["mean"]) for r in rows if r["metric"] == "exact_match"] == [
        ("run-1", 1.0),
        ("run-2", 1.0),
    ]
