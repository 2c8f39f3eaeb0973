"""Retraining worth its cost: a scheduled run tunes only when something changed since the champion.

The champion's registry version carries the lineage it was built from (dataset version, base
model, config hash: see ``tuneline.stages.promote.lineage_tags``). Preparing the data is cheap and
deterministic (the dataset version is a content hash), so a scheduled run prepares first and
compares; tuning and evaluating again on the same data, base model and config would only
reproduce the champion.
"""

from __future__ import annotations

from mlflow.entities.model_registry import ModelVersion
from pydantic import BaseModel, ConfigDict

from tuneline.config import RunConfig
from tuneline.governance.registry import ModelRegistry
from tuneline.lineage import DatasetVersion
from tuneline.stages.context import StageContext
from tuneline.stages.evaluate import BASE_MODEL_TAG
from tuneline.stages.prepare import run_prepare
from tuneline.stages.tune import resolve_base_model

__all__ = [
    "CONFIG_HASH_TAG",
    "DATASET_VERSION_TAG",
    "ChampionLineage",
    "RetrainingCheck",
    "RetrainingDecision",
    "check_retraining",
    "decide_retraining",
    "read_champion_lineage",
    "retraining_markdown",
]

DATASET_VERSION_TAG = "tuneline.dataset_version"
CONFIG_HASH_TAG = "tuneline.config_hash"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ChampionLineage(_Frozen):
    """What the current champion was built from, as its registry tags record it."""

    model_name: str
    version: str
    dataset_version: str | None
    base_model: str | None
    config_hash: str | None

    @classmethod
    def from_model_version(cls, mv: ModelVersion) -> ChampionLineage:
        tags = mv.tags or {}
        return cls(
            model_name=mv.name,
            version=str(mv.version),
            dataset_version=tags.get(DATASET_VERSION_TAG),
            base_model=tags.get(BASE_MODEL_TAG),
            config_hash=tags.get(CONFIG_HASH_TAG),
        )


class RetrainingDecision(_Frozen):
    """Whether to tune; ``reasons`` say what changed (or, when nothing did, what was compared)."""

    retrain: bool
    reasons: list[str]
    model_name: str
    champion_version: str | None
    dataset_version: str
    dataset_uri: str


def decide_retraining(
    config: RunConfig, dataset: DatasetVersion, champion: ChampionLineage | None
) -> RetrainingDecision:
    """Retrain unless the champion was built from this dataset version, base model and config.

    A champion missing a lineage tag (registered by hand or by an older Tuneline) counts as
    changed: without the tag nobody can show that a new run would reproduce it.
    """
    base = {"model_name": config.name, "dataset_version": dataset.version, "dataset_uri": dataset.uri}
    if champion is None:
        return RetrainingDecision(
            retrain=True, reasons=[f"model {config.name!r} has no champion yet"], champion_version=None, **base
        )
    wanted = {
        "dataset version": (DATASET_VERSION_TAG, dataset.version, champion.dataset_version),
        "base model": (BASE_MODEL_TAG, config.tune.base_model, champion.base_model),
        "run config": (CONFIG_HASH_TAG, config.config_hash(), champion.config_hash),
    }
    changed = []
    for what, (tag, now, then) in wanted.items():
        if then is None:
            changed.append(f"champion v{champion.version} has no {tag} tag, so its {what} is unknown")
        elif now != then:
            changed.append(f"{what} changed: champion v{champion.version} has {then}, this run has {now}")
    if changed:
        return RetrainingDecision(retrain=True, reasons=changed, champion_version=champion.version, **base)
    same = [f"{what} {now}" for what, (_, now, _then) in wanted.items()]
    return RetrainingDecision(
        retrain=False,
        reasons=[f"champion v{champion.version} was built from the same {', '.join(same)}"],
        champion_version=champion.version,
        **base,
    )


def read_champion_lineage(registry: ModelRegistry, model_name: str) -> ChampionLineage | None:
    champion = registry.champion(model_name)
    return ChampionLineage.from_model_version(champion) if champion is not None else None


class RetrainingCheck(_Frozen):
    decision: RetrainingDecision
    dataset: DatasetVersion
    report_markdown: str


def check_retraining(ctx: StageContext, config: RunConfig) -> RetrainingCheck:
    """Prepare the data (written once per version, so a later run reuses it) and decide.

    ``ctx.run_id`` should be None: this check is not a lifecycle run and logs nothing to MLflow.
    A registered base model (``models:/<name>@<alias>``) is compared as the weights it names now,
    which is what the champion's lineage records and what a run would start from.
    """
    config = resolve_base_model(ctx, config)
    prepared = run_prepare(ctx, config)
    champion = read_champion_lineage(ModelRegistry(ctx.mlflow), config.name)
    decision = decide_retraining(config, prepared.dataset, champion)
    return RetrainingCheck(decision=decision, dataset=prepared.dataset, report_markdown=prepared.report_markdown)


def retraining_markdown(decision: RetrainingDecision) -> str:
    verdict = "retraining" if decision.retrain else "nothing to do: no tuning, no evaluation"
    champion = f"v{decision.champion_version}" if decision.champion_version else "none"
    lines = [
        f"# {decision.model_name}: {verdict}",
        "",
        f"- champion: {champion}",
        f"- prepared dataset: `{decision.dataset_version}` at `{decision.dataset_uri}`",
        "",
        "## Why",
        "",
        *[f"- {reason}" for reason in decision.reasons],
    ]
    return "\n".join(lines) + "\n"
