"""Four promotions of the same model at once: serialised by a strict Prefect concurrency limit and
compare-then-set, they leave exactly one champion and every version's record intact."""

from __future__ import annotations

import threading

import pytest
from mlflow.tracking import MlflowClient

from tuneline.errors import PromotionError
from tuneline.governance.audit import AuditLog
from tuneline.settings import Settings
from tuneline.storage.s3 import ObjectStore

pytestmark = [pytest.mark.slow, pytest.mark.service]

SUMMARY = {"task/exact_match": {"candidate": 0.8, "base": 0.1, "delta": 0.7}}


def test_concurrent_promotions_leave_one_champion(lifecycle_settings: Settings, run_config, lineage) -> None:
    from flows.stages import promote

    config = run_config()
    candidates = [lineage() for _ in range(4)]  # each evaluated when there was no champion yet
    outcomes: list[object] = [None] * 4

    def promote_one(i: int) -> None:
        dataset, model, report, decision = candidates[i]
        try:
            outcomes[i] = promote(config, dataset, model, report, decision, SUMMARY)
        except BaseException as exc:  # noqa: BLE001 - collected for the assertions below
            outcomes[i] = exc

    threads = [threading.Thread(target=promote_one, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)

    promoted = [o for o in outcomes if not isinstance(o, BaseException)]
    refused = [o for o in outcomes if isinstance(o, BaseException)]
    assert len(promoted) == 1, outcomes
    assert len(refused) == 3 and all(isinstance(e, PromotionError) for e in refused), refused
    assert all("changed since evaluation" in str(e) for e in refused)

    client = MlflowClient(lifecycle_settings.mlflow_tracking_uri)
    champion = client.get_model_version_by_alias(config.name, "champion")
    assert str(champion.version) == promoted[0].version
    versions = client.search_model_versions(f"name = '{config.name}'")
    assert len(versions) == 4  # every candidate registered once, with its lineage
    assert all(v.tags.get("tuneline.dataset_version") for v in versions)
    records = AuditLog(ObjectStore(lifecycle_settings)).records(config.name)
    assert [r.kind for r in records] == ["promotion"]
    assert records[0].new_champion == promoted[0].version
