"""The periodic audit check: what `tuneline audit --verify` does, on a schedule.

Every model's hash chain against its MLflow anchor, the reviewers' enrolment chain and credentials,
and the registry's `champion` aliases and `tuneline.approved` tags against the log. A problem
fails the run (red in the UI, so the failure automation of ``flows.automations`` notifies), and
the run's markdown artifact lists every problem.
"""

from __future__ import annotations

from prefect import flow
from prefect.artifacts import create_markdown_artifact
from prefect.client.schemas.objects import State
from prefect.states import Failed

from tasks.audit import verify_audit_log
from tasks.tracking import artifact_key

__all__ = ["verify_audit"]


@flow(name="verify-audit", persist_result=False)
def verify_audit(model_name: str | None = None) -> list[str] | State:
    """Verify the audit log and the registry; fail naming the problems when there are any.

    Args:
        model_name: check only this model's chain (or the reviewers' enrolment chain by its name,
            `_reviewers-enrolments`); by default every model's and the reviewers'.
    """
    report = verify_audit_log(model_name)
    create_markdown_artifact(
        report.markdown(),
        # the every-chain run has a key no model can own (names start with a letter or digit)
        key=artifact_key(model_name, "audit-verification") if model_name else "audit-verification-all-chains",
        description="What `tuneline audit --verify` found",
    )
    if report.problems:
        first = str(report.problems[0])
        return Failed(message=f"{len(report.problems)} audit problem(s), first: {first} (see the run's artifact, "
                              "or run `tuneline audit --verify`)")
    return report.checked
