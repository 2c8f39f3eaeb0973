"""What the end of `tuneline run` says about the decision: rejected with the aliases unchanged, or
nothing new to decide (issue 18), never a bare "done"."""

from __future__ import annotations

import pytest

from tuneline.lineage import LifecycleSummary, ModelVersionRef
from tuneline.settings import Settings
from tuneline.stages.approve import unchanged_decision


def _summary(lineage, decision, version: ModelVersionRef) -> LifecycleSummary:
    dataset, model, _, _ = lineage()
    return LifecycleSummary(
        model_name="m", flow_run_id="f", flow_run_url="http://p/f", mlflow_run_id="r", mlflow_run_url="http://m/r",
        dataset=dataset, model=model, decision=decision, version=version, model_version_url="http://m/v",
        metrics={"task/exact_match": {"base": 0.1, "candidate": 0.8}},
    )


@pytest.mark.parametrize("case", ["rejected", "unchanged", "promoted"])
def test_the_summary_names_the_outcome(lineage, capsys, case: str) -> None:
    from tuneline_cli.main import _print_summary

    _, _, _, approved = lineage()
    _, _, _, rejected = lineage(approved=False)
    decision, version, headline, verdict = {
        "rejected": (rejected, ModelVersionRef(name="m", version="2", champion="1"), "rejected, aliases unchanged", "REJECTED"),
        "unchanged": (unchanged_decision(approved.policy, "1"), ModelVersionRef(name="m", version="1", aliases=["champion"]),
                      "nothing new to decide", "UNCHANGED"),
        "promoted": (approved, ModelVersionRef(name="m", version="3", aliases=["champion"], promoted=True), "promoted", "APPROVED"),
    }[case]
    _print_summary(_summary(lineage, decision, version), Settings())
    out = capsys.readouterr().out
    assert f"Tuneline lifecycle for m: {headline}\n" in out and f"Decision         : {verdict}" in out
    assert ": done" not in out
    if case == "rejected":
        assert "v2 aliases=[] (not promoted: the champion is unchanged, v1)" in out
