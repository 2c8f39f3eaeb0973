"""evaluate_models with a test double of the model: comparisons, model lifecycle, caching."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from tuneline.backends.base import Generation
from tuneline.config import EvaluationConfig, GenerationConfig, SuiteKind
from tuneline.errors import ConfigError, EvaluationError
from tuneline.evaluation.cache import ResultCache
from tuneline.evaluation.metrics import METRICS, Metric
from tuneline.evaluation.runner import ModelUnderTest, evaluate_models
from tuneline.evaluation.suites import LoadedSuite
from tuneline.records import ChatRecord

PAIRS = [(f"question {i}", f"answer {i}") for i in range(20)]
RIGHT = dict(PAIRS)
HALF_RIGHT = {p: (a if i % 2 == 0 else "no idea") for i, (p, a) in enumerate(PAIRS)}
CONFIG = EvaluationConfig(bootstrap_samples=200, min_examples=10)


def test_candidate_is_compared_with_base_when_there_is_no_champion(
    zoo: Any, make_suite: Callable[..., LoadedSuite]
) -> None:
    suite = make_suite(PAIRS)
    models = {
        "candidate": zoo.model("candidate", "cand", RIGHT),
        "base": zoo.model("base", "base", HALF_RIGHT),
    }
    result = evaluate_models(models, [suite], CONFIG)

    assert result.baseline == "base"
    em = result.comparison("task", "exact_match")
    assert em is not None
    assert em.values == {"candidate": 1.0, "base": 0.5}
    assert em.baseline == "base"
    assert em.delta == pytest.approx(0.5)
    assert em.n == 20 and em.called
    assert em.ci_low is not None and em.ci_high is not None
    assert 0.0 < em.ci_low <= 0.5 <= em.ci_high <= 1.0
    assert result.comparison("task", "latency_p95") is not None
    assert result.comparison("task", "output_length") is not None


def test_candidate_is_compared_with_the_champion_when_there_is_one(
    zoo: Any, make_suite: Callable[..., LoadedSuite]
) -> None:
    suite = make_suite(PAIRS)
    models = {
        "candidate": zoo.model("candidate", "cand", HALF_RIGHT),
        "base": zoo.model("base", "base", {}),
        "champion": zoo.model("champion", "champ", RIGHT),
    }
    result = evaluate_models(models, [suite], CONFIG)

    em = result.comparison("task", "exact_match")
    assert em is not None
    assert result.baseline == em.baseline == "champion"
    assert em.values == {"candidate": 0.5, "base": 0.0, "champion": 1.0}
    assert em.delta == pytest.approx(-0.5)
    assert em.ci_high is not None and em.ci_high < 0


def test_models_are_loaded_and_freed_one_at_a_time(zoo: Any, make_suite: Callable[..., LoadedSuite]) -> None:
    suites = [make_suite(PAIRS, name="a"), make_suite(PAIRS[:12], name="b")]
    models = {
        "candidate": zoo.model("candidate", "cand", RIGHT),
        "base": zoo.model("base", "base", RIGHT),
        "champion": zoo.model("champion", "champ", RIGHT),
    }
    evaluate_models(models, suites, CONFIG)
    assert zoo.events == [
        "load:candidate", "generate:candidate", "generate:candidate", "close:candidate",
        "load:base", "generate:base", "generate:base", "close:base",
        "load:champion", "generate:champion", "generate:champion", "close:champion",
    ]  # fmt: skip


def test_a_model_is_closed_when_generation_fails(make_suite: Callable[..., LoadedSuite]) -> None:
    closed = []

    class Broken:
        label = "candidate"

        def generate(self, prompts: Sequence[ChatRecord], config: GenerationConfig) -> list[Generation]:
            raise RuntimeError("out of memory")

        def close(self) -> None:
            closed.append(True)

    models = {"candidate": ModelUnderTest("c", Broken), "base": ModelUnderTest("b", Broken)}
    with pytest.raises(RuntimeError, match="out of memory"):
        evaluate_models(models, [make_suite(PAIRS)], CONFIG)
    assert closed == [True]


def test_a_wrong_number_of_answers_is_an_error(make_suite: Callable[..., LoadedSuite]) -> None:
    class Short:
        label = "candidate"

        def generate(self, prompts: Sequence[ChatRecord], config: GenerationConfig) -> list[Generation]:
            return []

        def close(self) -> None:
            pass

    models = {"candidate": ModelUnderTest("c", Short), "base": ModelUnderTest("b", Short)}
    with pytest.raises(EvaluationError, match="returned 0 answers for the 20 prompts"):
        evaluate_models(models, [make_suite(PAIRS)], CONFIG)


def test_rows_hold_every_example_of_every_model(zoo: Any, make_suite: Callable[..., LoadedSuite]) -> None:
    suites = [
        make_suite(PAIRS, name="task", metrics=["exact_match"]),
        make_suite(PAIRS[:5], name="safety", kind=SuiteKind.SAFETY, metrics=["refusal"]),
    ]
    models = {
        "candidate": zoo.model("candidate", "cand", RIGHT),
        "base": zoo.model("base", "base", HALF_RIGHT),
    }
    result = evaluate_models(models, suites, CONFIG, run_id="run-1")

    assert result.rows.num_rows == 2 * (20 + 5)
    rows = result.rows.to_pylist()
    first = next(
        r for r in rows if r["model"] == "base" and r["suite"] == "task" and r["reference"] == "answer 1"
    )
    assert first["prompt"] == "question 1"
    assert first["output"] == "no idea"
    assert first["exact_match"] == 0.0
    assert first["refusal"] is None  # not a metric of this suite
    assert first["latency_s"] == first["latency"] == 0.01
    assert first["run_id"] == "run-1" and first["model_id"] == "base" and first["cached"] is False
    refusal = result.comparison("safety", "refusal")
    assert refusal is not None and refusal.higher_is_better and not refusal.called  # 5 < min_examples


def test_summary_and_mlflow_metrics(zoo: Any, make_suite: Callable[..., LoadedSuite]) -> None:
    models = {
        "candidate": zoo.model("candidate", "cand", RIGHT),
        "base": zoo.model("base", "base", HALF_RIGHT),
    }
    result = evaluate_models(models, [make_suite(PAIRS, name="task v1")], CONFIG)

    summary = result.summary()["task v1"]["exact_match"]
    assert summary["values"] == {"candidate": 1.0, "base": 0.5}
    assert summary["n"] == 20 and summary["called"] is True and len(summary["ci"]) == 2
    metrics = result.mlflow_metrics()
    # only the gate's deltas: each model's values belong to its own evaluation run
    assert metrics["task v1/delta/exact_match"] == pytest.approx(0.5)
    assert all(key.startswith("task v1/delta/") for key in metrics), sorted(metrics)


def test_a_metric_failure_names_the_suite_and_example(
    zoo: Any, make_suite: Callable[..., LoadedSuite], monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(reference: str, prediction: str, **context: Any) -> float:
        raise EvaluationError("reference is unusable")

    monkeypatch.setitem(METRICS, "fragile", Metric("fragile", "always fails", fail))
    suite = make_suite([("q", "a")], metrics=["fragile"])
    models = {"candidate": zoo.model("candidate", "c", {}), "base": zoo.model("base", "b", {})}
    message = rf"suite 'task', example {suite.example_ids[0]} \(candidate\): reference is unusable"
    with pytest.raises(EvaluationError, match=message):
        evaluate_models(models, [suite], CONFIG)


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        pytest.param(["base", "champion"], "labelled 'candidate'", id="no-candidate"),
        pytest.param(["candidate"], "'base' or 'champion'", id="no-baseline"),
    ],
)
def test_models_must_include_a_candidate_and_a_baseline(
    zoo: Any, make_suite: Callable[..., LoadedSuite], labels: list[str], message: str
) -> None:
    models = {label: zoo.model(label, label, {}) for label in labels}
    with pytest.raises(ConfigError, match=message):
        evaluate_models(models, [make_suite(PAIRS)], CONFIG)
    assert zoo.events == []


def test_suite_problems_are_found_before_any_model_loads(
    zoo: Any, make_suite: Callable[..., LoadedSuite]
) -> None:
    models = {"candidate": zoo.model("candidate", "c", {}), "base": zoo.model("base", "b", {})}
    with pytest.raises(ConfigError, match="repeated: task"):
        evaluate_models(models, [make_suite(PAIRS), make_suite(PAIRS)], CONFIG)
    with pytest.raises(ConfigError, match="unknown metric"):
        evaluate_models(models, [make_suite(PAIRS, metrics=["accuracy"])], CONFIG)
    assert zoo.events == []


# --- cache ---------------------------------------------------------------------------------------
def _models(zoo: Any) -> dict[str, ModelUnderTest]:
    return {
        "candidate": zoo.model("candidate", "run-7/candidate", RIGHT),
        "base": zoo.model("base", "tiny-base", HALF_RIGHT),
        "champion": zoo.model("champion", "models:/tickets/3", HALF_RIGHT),
    }


def test_cached_re_evaluation_does_no_generation(
    tmp_path: Path, make_suite: Callable[..., LoadedSuite], make_zoo: Callable[[], Any]
) -> None:
    suite = make_suite(PAIRS)
    cache = ResultCache(tmp_path / "cache")
    first_zoo = make_zoo()
    first = evaluate_models(_models(first_zoo), [suite], CONFIG, cache)
    assert first.generated == {"candidate": 20, "base": 20, "champion": 20}

    again = make_zoo()
    second = evaluate_models(_models(again), [suite], CONFIG, cache)

    assert again.events == []  # no model was even loaded
    assert again.prompts_answered == 0
    assert second.generated == {"candidate": 0, "base": 0, "champion": 0}
    assert all(second.rows.column("cached").to_pylist())
    assert second.rows.column("output").to_pylist() == first.rows.column("output").to_pylist()
    assert [c.model_dump() for c in second.comparisons] == [c.model_dump() for c in first.comparisons]


def test_only_a_changed_model_is_regenerated(
    tmp_path: Path, make_suite: Callable[..., LoadedSuite], make_zoo: Callable[[], Any]
) -> None:
    suite = make_suite(PAIRS)
    cache = ResultCache(tmp_path / "cache")
    evaluate_models(_models(make_zoo()), [suite], CONFIG, cache)

    zoo = make_zoo()
    models = _models(zoo) | {"candidate": zoo.model("candidate", "run-8/candidate", RIGHT)}
    result = evaluate_models(models, [suite], CONFIG, cache)
    assert zoo.events == ["load:candidate", "generate:candidate", "close:candidate"]
    assert result.generated == {"candidate": 20, "base": 0, "champion": 0}


@pytest.mark.parametrize(
    ("generation", "regenerates"),
    [
        pytest.param(GenerationConfig(batch_size=3), False, id="batch-size-is-not-in-the-key"),
        pytest.param(GenerationConfig(max_new_tokens=7), True, id="max-new-tokens-is"),
        pytest.param(GenerationConfig(stop=["\n"]), True, id="stop-sequences-are"),
    ],
)
def test_cache_key_follows_the_generation_settings(
    tmp_path: Path,
    make_suite: Callable[..., LoadedSuite],
    make_zoo: Callable[[], Any],
    generation: GenerationConfig,
    regenerates: bool,
) -> None:
    suite = make_suite(PAIRS)
    cache = ResultCache(tmp_path / "cache")
    evaluate_models(_models(make_zoo()), [suite], CONFIG, cache)
    zoo = make_zoo()
    evaluate_models(_models(zoo), [suite], CONFIG.model_copy(update={"generation": generation}), cache)
    assert (zoo.prompts_answered > 0) is regenerates


def test_a_changed_suite_is_regenerated(
    tmp_path: Path, make_suite: Callable[..., LoadedSuite], make_zoo: Callable[[], Any]
) -> None:
    cache = ResultCache(tmp_path / "cache")
    evaluate_models(_models(make_zoo()), [make_suite(PAIRS)], CONFIG, cache)
    zoo = make_zoo()
    evaluate_models(_models(zoo), [make_suite([*PAIRS, ("question 99", "answer 99")])], CONFIG, cache)
    assert zoo.prompts_answered == 3 * 21


def test_an_unreadable_cache_entry_is_regenerated(
    tmp_path: Path, make_suite: Callable[..., LoadedSuite], make_zoo: Callable[[], Any]
) -> None:
    suite = make_suite(PAIRS)
    cache = ResultCache(tmp_path / "cache")
    evaluate_models(_models(make_zoo()), [suite], CONFIG, cache)
    for entry in (tmp_path / "cache").iterdir():
        entry.write_bytes(b"not parquet")
    zoo = make_zoo()
    evaluate_models(_models(zoo), [suite], CONFIG, cache)
    assert zoo.prompts_answered == 3 * 20
    assert ResultCache(tmp_path / "cache").get("tiny-base", suite, CONFIG.generation) is not None


def test_an_s3_cache_needs_a_store() -> None:
    with pytest.raises(EvaluationError, match="pass an ObjectStore"):
        ResultCache("s3://bucket/eval-cache")


def test_the_judge_metric_is_scored_by_the_configured_judge(
    zoo: Any, make_suite: Callable[..., LoadedSuite]
) -> None:
    suite = make_suite(PAIRS, metrics=("judge",))
    models = {"candidate": zoo.model("candidate", "cand", RIGHT), "base": zoo.model("base", "base", HALF_RIGHT)}
    seen: list[tuple[str, str, str]] = []

    def judge(items):  # a stand-in for the judge model: full marks for the reference answer
        seen.extend(items)
        return [1.0 if answer == reference else 0.2 for _prompt, answer, reference in items]

    result = evaluate_models(models, [suite], CONFIG, judge=judge)
    comparison = result.comparison("task", "judge")
    assert comparison.values["candidate"] == pytest.approx(1.0)
    assert comparison.values["base"] == pytest.approx(0.6)
    assert len(seen) == 2 * len(PAIRS)
    assert PAIRS[0][0] in seen[0][0]  # the judge sees the prompt


def test_the_judge_metric_without_a_judge_is_a_clear_error(
    zoo: Any, make_suite: Callable[..., LoadedSuite]
) -> None:
    suite = make_suite(PAIRS, metrics=("judge",))
    models = {"candidate": zoo.model("candidate", "cand", RIGHT), "base": zoo.model("base", "base", RIGHT)}
    with pytest.raises(ConfigError, match="evaluation.judge is not set"):
        evaluate_models(models, [suite], CONFIG)
