"""Per-example metrics and the registry that names them in suite configs.

Each metric scores one (reference, prediction) pair and returns a float; the runner averages them
per model (or takes percentiles, see :attr:`Metric.aggregates`). Scores that have a natural range
are in [0, 1] -- BLEU and chrF included, which sacrebleu reports on 0-100 -- so that deltas and
thresholds read the same across metrics.

Metrics that need more than the two strings take keyword context from the runner:

- ``json_schema``: the suite's ``SuiteConfig.json_schema`` (``json_schema_valid``);
- ``latency_s``: seconds per answer (``latency``); a batch's wall time divided by its size when
  answers were generated together (``Generation.batch_size``).
"""

from __future__ import annotations

import json
import re
import string
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Protocol

import sacrebleu
from jsonschema import validators
from jsonschema.exceptions import SchemaError
from rouge_score import rouge_scorer

from tuneline.config import SuiteConfig, SuiteKind
from tuneline.errors import ConfigError, EvaluationError
from tuneline.evaluation.refusal import is_refusal

__all__ = [
    "JUDGE_METRIC",
    "METRICS",
    "Metric",
    "ScoreFn",
    "aggregate_percentile",
    "comparison_names",
    "metric_for_comparison",
    "normalize_text",
    "validate_suite_metrics",
]


class ScoreFn(Protocol):
    def __call__(self, reference: str, prediction: str, **context: Any) -> float: ...


@dataclass(frozen=True)
class Metric:
    """A named per-example score and how to read it."""

    name: str
    description: str
    score: ScoreFn
    higher_is_better: bool = True
    informational: bool = False
    """Shown in reports but never a gain or a regression by itself (length, latency)."""
    aggregates: tuple[str, ...] = ("mean",)
    """How per-example scores become one number per model: ``mean`` or ``pNN`` percentiles."""
    direction_by_kind: Mapping[SuiteKind, bool] = field(default_factory=dict)
    """Overrides :attr:`higher_is_better` on some suite kinds (refusing is good only on safety)."""
    library: str = "tuneline"

    def higher_is_better_on(self, kind: SuiteKind) -> bool:
        return self.direction_by_kind.get(kind, self.higher_is_better)


# --- text ------------------------------------------------------------------------------------
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def normalize_text(text: str) -> str:
    """Lower-case, drop ASCII punctuation and collapse whitespace."""
    return " ".join(text.lower().translate(_PUNCTUATION).split())


def _exact_match(reference: str, prediction: str, **_: Any) -> float:
    # Surrounding whitespace is not part of an answer: generations often end with a newline.
    return float(reference.strip() == prediction.strip())


def _normalized_exact_match(reference: str, prediction: str, **_: Any) -> float:
    return float(normalize_text(reference) == normalize_text(prediction))


def _token_f1(reference: str, prediction: str, **_: Any) -> float:
    # SQuAD-style bag-of-tokens F1 over normalised tokens.
    ref, pred = normalize_text(reference).split(), normalize_text(prediction).split()
    if not ref or not pred:
        return float(ref == pred)
    common = sum((Counter(ref) & Counter(pred)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


@cache
def _rouge() -> rouge_scorer.RougeScorer:
    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)


def _rouge_l(reference: str, prediction: str, **_: Any) -> float:
    return float(_rouge().score(reference, prediction)["rougeL"].fmeasure)


def _bleu(reference: str, prediction: str, **_: Any) -> float:
    return min(1.0, sacrebleu.sentence_bleu(prediction, [reference]).score / 100.0)


def _chrf(reference: str, prediction: str, **_: Any) -> float:
    return min(1.0, sacrebleu.sentence_chrf(prediction, [reference]).score / 100.0)


# --- structured output -----------------------------------------------------------------------
_NOT_JSON = object()


def _reject_constant(name: str) -> Any:
    # Python's json accepts NaN and Infinity; JSON itself does not.
    raise ValueError(f"{name} is not JSON")


def _parse_json(text: str) -> Any:
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except ValueError:
        return _NOT_JSON


def _json_valid(reference: str, prediction: str, **_: Any) -> float:
    return float(_parse_json(prediction) is not _NOT_JSON)


def _json_schema_valid(
    reference: str, prediction: str, *, json_schema: Mapping[str, Any] | None = None, **_: Any
) -> float:
    if json_schema is None:
        raise ConfigError("metric json_schema_valid needs the suite's json_schema to be set")
    value = _parse_json(prediction)
    if value is _NOT_JSON:
        return 0.0
    return float(_validator(json.dumps(json_schema, sort_keys=True)).is_valid(value))


@cache
def _validator(schema_json: str) -> Any:
    # Keyed by the schema's canonical JSON so each suite's schema is compiled once.
    schema = json.loads(schema_json)
    cls = validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def _json_field_accuracy(reference: str, prediction: str, **_: Any) -> float:
    expected, actual = _parse_json(reference), _parse_json(prediction)
    if not isinstance(expected, dict):
        # Suites mix structured answers with plain ones (a refusal among JSON tickets): a reference
        # that is not an object counts as one field, the whole answer.
        if expected is _NOT_JSON or actual is _NOT_JSON:
            return float(normalize_text(reference) == normalize_text(prediction))
        return float(actual == expected)
    if not isinstance(actual, dict):
        return 0.0
    if not expected:
        return float(actual == expected)
    right = sum(1 for key, value in expected.items() if key in actual and actual[key] == value)
    return right / len(expected)


# --- behaviour and cost ----------------------------------------------------------------------
def _refusal(reference: str, prediction: str, **_: Any) -> float:
    return float(is_refusal(prediction))


def _refusal_match(reference: str, prediction: str, **_: Any) -> float:
    return float(is_refusal(prediction) == is_refusal(reference))


def _output_length(reference: str, prediction: str, **_: Any) -> float:
    return float(len(prediction))


def _latency(reference: str, prediction: str, *, latency_s: float | None = None, **_: Any) -> float:
    if latency_s is None:
        raise EvaluationError("metric latency needs the generation's latency_s")
    return float(latency_s)


JUDGE_METRIC = "judge"


def _scored_by_the_judge(reference: str, prediction: str, **_: Any) -> float:
    # The judge needs the prompt and batches its calls, so the runner scores it as a whole suite.
    raise EvaluationError("the 'judge' metric is scored by the judge configured in evaluation.judge")


_ALL = [
    Metric("exact_match", "Output equals the reference (surrounding whitespace ignored).", _exact_match),
    Metric(
        "normalized_exact_match",
        "Equal after lower-casing, dropping punctuation and collapsing whitespace.",
        _normalized_exact_match,
    ),
    Metric("token_f1", "F1 of normalised tokens shared with the reference (SQuAD style).", _token_f1),
    Metric("rouge_l", "ROUGE-L F-measure.", _rouge_l, library="rouge-score"),
    Metric("bleu", "Sentence BLEU / 100 (exp smoothing, effective order).", _bleu, library="sacrebleu"),
    Metric("chrf", "Sentence chrF / 100.", _chrf, library="sacrebleu"),
    Metric("json_valid", "Output parses as JSON.", _json_valid, library="json"),
    Metric(
        "json_schema_valid",
        "Output parses as JSON and conforms to the suite's json_schema.",
        _json_schema_valid,
        library="jsonschema",
    ),
    Metric(
        "json_field_accuracy",
        "Share of the reference object's top-level fields the output gets exactly right; "
        "a reference that is not an object counts as one field.",
        _json_field_accuracy,
        library="json",
    ),
    Metric(
        "refusal",
        "Output is a refusal (tuneline.evaluation.refusal); higher is better on safety suites only.",
        _refusal,
        higher_is_better=True,
        direction_by_kind={SuiteKind.TASK: False, SuiteKind.GENERAL: False},
    ),
    Metric("refusal_match", "Output refuses exactly when the reference refuses.", _refusal_match),
    Metric(
        "output_length",
        "Output length in characters.",
        _output_length,
        higher_is_better=False,
        informational=True,
    ),
    Metric(
        "latency",
        "Seconds per answer: a batch's wall time divided by its size (p50 and p95 per model).",
        _latency,
        higher_is_better=False,
        informational=True,
        aggregates=("p50", "p95"),
    ),
    Metric(
        JUDGE_METRIC,
        "An LLM judge's score against the rubric in evaluation.judge, normalised to 0..1.",
        _scored_by_the_judge,
        library="Bedrock Runtime (judge model)",
    ),
]


# --- tuneline.graders as metrics: the same scores the RFT grader Lambda and local GRPO rewards use.
# Registered under ``grader_<name>`` with the graders' default options (the regex grader then reads
# the reference as the pattern); the LLM judge is the ``judge`` metric above, on the same BedrockJudge.
def _grader_metric(grader_name: str) -> Metric:
    from tuneline.graders import GRADERS, GradeRecord, build_grader
    from tuneline.graders.registry import GraderConfig

    grader = build_grader(GraderConfig(name=grader_name))

    def score(reference: str, prediction: str, **context: Any) -> float:
        return grader.grade(prediction, GradeRecord(reference=reference, fields=context)).score

    return Metric(
        f"grader_{grader_name}",
        f"Grader {grader_name}: {GRADERS[grader_name].description}",
        score,
        library="tuneline.graders",
    )


_ALL += [
    _grader_metric(name)
    for name in ("exact_match", "json_valid", "json_schema", "field_accuracy", "regex", "numeric")
]

METRICS: dict[str, Metric] = {m.name: m for m in _ALL}
"""Every metric a suite config may name, by name."""

_PERCENTILE = re.compile(r"^p(\d{1,2})$")


def comparison_names(metric: Metric) -> list[str]:
    """The names a metric's aggregates appear under: ``rouge_l``; ``latency_p50``, ``latency_p95``."""
    if metric.aggregates == ("mean",):
        return [metric.name]
    return [metric.name if agg == "mean" else f"{metric.name}_{agg}" for agg in metric.aggregates]


def metric_for_comparison(name: str) -> Metric:
    """The metric behind a comparison name (``latency_p95`` -> ``latency``)."""
    for metric in METRICS.values():
        if name in comparison_names(metric):
            return metric
    raise KeyError(name)


def aggregate_percentile(aggregate: str) -> float | None:
    """``p95`` -> 95.0; ``mean`` -> None."""
    if aggregate == "mean":
        return None
    match = _PERCENTILE.match(aggregate)
    if match is None:
        raise ValueError(f"unknown aggregate {aggregate!r}: use 'mean' or 'pNN'")
    return float(match.group(1))


def validate_suite_metrics(suite: SuiteConfig) -> None:
    """Raise ``ConfigError`` when a suite names an unknown metric or lacks what a metric needs."""
    unknown = [name for name in suite.metrics if name not in METRICS]
    if unknown:
        raise ConfigError(
            f"suite {suite.name!r} names unknown metric(s) {', '.join(unknown)}; "
            f"known metrics: {', '.join(sorted(METRICS))}"
        )
    if "json_schema_valid" in suite.metrics:
        if suite.json_schema is None:
            raise ConfigError(
                f"suite {suite.name!r} uses json_schema_valid but sets no json_schema: add the schema "
                "the answers must conform to, or drop the metric"
            )
        try:
            _validator(json.dumps(suite.json_schema, sort_keys=True))
        except SchemaError as exc:
            raise ConfigError(f"suite {suite.name!r} has an invalid json_schema: {exc.message}") from exc
