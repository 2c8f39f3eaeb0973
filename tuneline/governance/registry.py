"""The MLflow model registry: candidates, aliases (champion / challenger / previous), rollback.

Aliases are last-writer-wins in MLflow, so promotion is compare-then-set: it refuses to move
``champion`` when the alias no longer points where it pointed at evaluation time. Callers
serialise promotions per model (the flows hold a Prefect global concurrency limit) so that the
compare and the set are not interleaved with another promotion.
"""

from __future__ import annotations

from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from tuneline.errors import PromotionError
from tuneline.lineage import ModelVersionRef

__all__ = [
    "CHALLENGER",
    "CHAMPION",
    "JOB_ID_TAG",
    "PREVIOUS",
    "ModelRegistry",
]

CHAMPION = "champion"
CHALLENGER = "challenger"
PREVIOUS = "previous"
JOB_ID_TAG = "tuneline.job_id"


def _missing(exc: MlflowException) -> bool:
    return exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND") or "not found" in str(exc).lower()


class ModelRegistry:
    def __init__(self, client: MlflowClient) -> None:
        self.client = client

    # --- reading ---------------------------------------------------------------------------
    def alias_version(self, name: str, alias: str) -> ModelVersion | None:
        """The version an alias points to; None when the model or alias does not exist.

        Raises PromotionError when the alias points to a version that was deleted, since then
        nobody can tell what the champion is and a person must repair the alias.
        """
        try:
            return self.client.get_model_version_by_alias(name, alias)
        except MlflowException as exc:
            if not _missing(exc):
                raise
        try:
            model = self.client.get_registered_model(name)
        except MlflowException as exc:
            if _missing(exc):
                return None
            raise
        target = (model.aliases or {}).get(alias)
        if target is None:
            return None
        raise PromotionError(
            f"alias {alias!r} of model {name!r} points to version {target}, which no longer exists; "
            f"run `tuneline rollback {name} --to-version N` to point it at an existing version"
        )

    def client_model(self, name: str) -> object | None:
        """The registered model, or None when there is no such model."""
        try:
            return self.client.get_registered_model(name)
        except MlflowException as exc:
            if _missing(exc):
                return None
            raise

    def version(self, name: str, version: str) -> ModelVersion | None:
        try:
            return self.client.get_model_version(name, version)
        except MlflowException as exc:
            if _missing(exc) or exc.error_code == "INVALID_PARAMETER_VALUE":
                return None
            raise

    def champion(self, name: str) -> ModelVersion | None:
        return self.alias_version(name, CHAMPION)

    def version_for_job(self, name: str, job_id: str) -> ModelVersion | None:
        try:
            versions = self.client.search_model_versions(f"name = '{name}' and tags.`{JOB_ID_TAG}` = '{job_id}'")
        except MlflowException as exc:
            if _missing(exc):
                return None
            raise
        return min(versions, key=lambda v: int(v.version)) if versions else None

    def ref(self, name: str, version: str, promoted: bool = False, previous: str | None = None) -> ModelVersionRef:
        mv = self.client.get_model_version(name, version)
        champion = self.alias_version(name, CHAMPION)
        return ModelVersionRef(
            name=name, version=str(mv.version), aliases=list(mv.aliases or []), promoted=promoted, previous_champion=previous,
            champion=str(champion.version) if champion is not None else None,
        )

    # --- writing ---------------------------------------------------------------------------
    def register(self, name: str, model_uri: str, job_id: str, tags: dict[str, str], run_id: str | None = None) -> ModelVersion:
        """Register a candidate, at most once per job identity (a re-run reuses the version)."""
        existing = self.version_for_job(name, job_id)
        if existing is not None:
            return existing
        try:
            self.client.get_registered_model(name)
        except MlflowException as exc:
            if not _missing(exc):
                raise
            self.client.create_registered_model(name, description="Managed by Tuneline.")
        # MLflow 3 logged models ("models:/m-...") must also be named by id to be registered.
        model_id = model_uri.removeprefix("models:/") if model_uri.startswith("models:/m-") else None
        return self.client.create_model_version(
            name, model_uri, run_id=run_id, tags={**tags, JOB_ID_TAG: job_id}, model_id=model_id
        )

    def set_tags(self, name: str, version: str, tags: dict[str, str]) -> None:
        for key, value in tags.items():
            self.client.set_model_version_tag(name, version, key, value)

    def set_alias(self, name: str, alias: str, version: str) -> None:
        self.client.set_registered_model_alias(name, alias, version)

    def delete_alias(self, name: str, alias: str) -> None:
        try:
            self.client.delete_registered_model_alias(name, alias)
        except MlflowException as exc:
            if not _missing(exc):
                raise

    def promote(self, name: str, version: str, expected_champion: str | None) -> str | None:
        """Move ``champion`` to ``version`` if it still points at ``expected_champion``.

        The old champion keeps the alias ``previous``. Returns the old champion's version.
        """
        current = self.champion(name)
        current_version = str(current.version) if current is not None else None
        if current_version != expected_champion:
            raise PromotionError(
                f"the champion of {name!r} changed since evaluation (expected {expected_champion}, "
                f"found {current_version}); re-run evaluation against the new champion before promoting"
            )
        if current_version == version:
            return current_version
        if current_version is not None:
            self.set_alias(name, PREVIOUS, current_version)
        self.set_alias(name, CHAMPION, version)
        return current_version

    def restore(self, name: str, champion: str | None, previous: str | None) -> None:
        """Put both aliases back as they were (used when a later promotion step fails)."""
        for alias, version in ((CHAMPION, champion), (PREVIOUS, previous)):
            if version is None:
                try:
                    self.client.delete_registered_model_alias(name, alias)
                except MlflowException as exc:
                    if not _missing(exc):
                        raise
            else:
                self.set_alias(name, alias, version)

    def rollback(self, name: str, to_version: str | None = None) -> tuple[str | None, str]:
        """Point ``champion`` at ``to_version`` (default: the ``previous`` alias).

        Returns (old champion, new champion). The old champion becomes ``previous`` so a rollback
        can itself be undone.
        """
        current = self.champion(name)
        if to_version is None:
            previous = self.alias_version(name, PREVIOUS)
            if previous is None:
                raise PromotionError(f"model {name!r} has no 'previous' version to roll back to; pass --to-version")
            to_version = str(previous.version)
        try:
            self.client.get_model_version(name, to_version)
        except MlflowException as exc:
            raise PromotionError(f"model {name!r} has no version {to_version}") from exc
        old = str(current.version) if current is not None else None
        self.set_alias(name, CHAMPION, to_version)
        if old is not None and old != to_version:
            self.set_alias(name, PREVIOUS, old)
        return old, to_version
