"""What ``tuneline audit --verify`` and the scheduled ``verify-audit`` flow check, in one place.

For each model: its audit chain against the MLflow anchor (``AuditLog.verify``) and its registry
aliases and approved tags against the log (``registry_drift``). For the reviewers: their
enrolment chain, and every credential object against the enrolment records on it
(``ReviewerRegistry.problems``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tuneline.errors import NotFoundError
from tuneline.governance.audit import AuditLog, AuditProblem, registry_drift
from tuneline.governance.reviewers import ReviewerRegistry
from tuneline.storage.s3 import ObjectStore

__all__ = ["IntegrityReport", "check_integrity"]


@dataclass(frozen=True)
class IntegrityReport:
    checked: list[str]  # the chains checked: model names, and the reviewers' enrolment chain
    problems: list[AuditProblem]

    @property
    def ok(self) -> bool:
        return not self.problems

    def markdown(self) -> str:
        """The report as a Prefect artifact shows it: one table row per problem."""
        chains = ", ".join(f"`{name}`" for name in self.checked) or "none"
        if self.ok:
            return (
                f"## Audit log verified\n\nEvery chain is intact and matches its MLflow anchor, every reviewer "
                f"credential is backed by its enrolment record, and the registry matches the log.\n\n"
                f"Checked: {chains}\n"
            )

        def cell(text: str) -> str:
            return text.replace("|", "\\|").replace("\n", " ")

        rows = "\n".join(f"| `{cell(p.model_name)}` | `{cell(p.key or '-')}` | {cell(p.problem)} |" for p in self.problems)
        return (
            f"## Audit log: {len(self.problems)} problem(s)\n\n"
            "Records rewritten, deleted, inserted or malformed, reviewer credentials written outside "
            "Tuneline, or registry aliases and tags changed outside Tuneline. "
            "`tuneline audit --verify` shows the same.\n\n"
            f"| chain | object | problem |\n| --- | --- | --- |\n{rows}\n\nChecked: {chains}\n"
        )


def check_integrity(store: ObjectStore, mlflow: Any, model_name: str | None = None) -> IntegrityReport:
    """Check one chain (a model's, or the reviewers' enrolment chain by its name), or every one."""
    log = AuditLog(store, mlflow)
    reviewers = ReviewerRegistry(store, mlflow)
    if model_name is not None:
        require_known_chain(log, mlflow, model_name, reviewers.chain)
    names = [model_name] if model_name else [*log.model_names(), reviewers.chain]
    problems: list[AuditProblem] = []
    for name in names:
        if name == reviewers.chain:
            problems.extend(reviewers.problems())
        else:
            problems.extend(log.verify([name]))
            problems.extend(registry_drift(log, mlflow, name))
    return IntegrityReport(checked=names, problems=problems)


def require_known_chain(log: AuditLog, mlflow: Any, model_name: str, enrolments: str) -> None:
    """Raise ``NotFoundError`` for a name that is neither a logged model, a registered model nor the
    reviewers' chain: a mistyped name must not pass as "verified, no problems"."""
    if model_name == enrolments or model_name in log.model_names():
        return
    from mlflow.exceptions import MlflowException

    try:
        mlflow.get_registered_model(model_name)
    except MlflowException:
        known = ", ".join(log.model_names()[:10]) or "none yet"
        raise NotFoundError(f"no such model {model_name!r}: the audit log has no records of it (known: {known})") from None
    # a registered model no decision was ever recorded for: an empty log, whose registry is still checked
