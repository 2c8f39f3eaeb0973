"""What a reviewer decides from: a markdown report and a chart of the deltas with their intervals.

Per suite, a table of each model's value and the candidate's delta against the baseline with its
95% interval and sample size; a flag when too few examples were there to call a difference; then
the examples where the candidate lost most against the baseline, with both answers. When the
suites are given, what the PII policy did to each (redacted, rejected) comes first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from tuneline.config import SuiteKind
from tuneline.evaluation.metrics import METRICS, metric_for_comparison
from tuneline.evaluation.runner import BASE, CANDIDATE, CHAMPION, EvaluationResult
from tuneline.evaluation.suites import LoadedSuite
from tuneline.lineage import MetricComparison

__all__ = ["Regression", "largest_regressions", "plot_comparisons", "render_report"]

_MODEL_ORDER = (BASE, CHAMPION, CANDIDATE)
_EXCERPT_CHARS = 400


@dataclass(frozen=True)
class Regression:
    """One example the candidate answered worse than the baseline on ``metric``."""

    suite: str
    example_id: str
    metric: str
    loss: float
    """How much worse, in the metric's units, signed so that larger is a bigger loss."""
    prompt: str
    reference: str
    baseline_output: str
    candidate_output: str


def _informational(name: str) -> bool:
    # Comparisons may carry metrics from outside the registry (an LLM judge): those are scores.
    try:
        return metric_for_comparison(name).informational
    except KeyError:
        return False


def _verdict(c: MetricComparison) -> str:
    if _informational(c.metric):
        return "info"
    if not c.called:
        return "⚠ not called (too few examples)"
    if c.ci_low is None or c.ci_high is None or c.ci_low <= 0 <= c.ci_high:
        return "no clear difference"
    better = (c.ci_low > 0) == c.higher_is_better
    return "✅ better" if better else "❌ worse"


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def _delta(c: MetricComparison) -> str:
    text = f"{c.delta:+.3f}"
    if c.ci_low is not None and c.ci_high is not None:
        text += f" [{c.ci_low:+.3f}, {c.ci_high:+.3f}]"
    return text


def largest_regressions(result: EvaluationResult, suite: str, k: int = 5) -> list[Regression]:
    """The ``k`` examples of ``suite`` where the candidate lost most against the baseline.

    Each example counts once, under the non-informational metric on which it lost most.
    """
    rows = [r for r in result.rows.to_pylist() if r["suite"] == suite]
    by_model = {(r["model"], r["example_id"]): r for r in rows}
    candidate_rows = [r for r in rows if r["model"] == CANDIDATE]
    if not candidate_rows:
        return []
    kind = SuiteKind(candidate_rows[0]["suite_kind"])
    metric_names = [
        name
        for name in METRICS
        if name in rows[0] and not METRICS[name].informational and rows[0][name] is not None
    ]
    worst: list[Regression] = []
    for cand in candidate_rows:
        base = by_model.get((result.baseline, cand["example_id"]))
        if base is None:
            continue
        best: Regression | None = None
        for name in metric_names:
            sign = 1.0 if METRICS[name].higher_is_better_on(kind) else -1.0
            loss = sign * (base[name] - cand[name])
            if loss > 0 and (best is None or loss > best.loss):
                best = Regression(
                    suite=suite,
                    example_id=cand["example_id"],
                    metric=name,
                    loss=loss,
                    prompt=cand["prompt"],
                    reference=cand["reference"],
                    baseline_output=base["output"],
                    candidate_output=cand["output"],
                )
        if best is not None:
            worst.append(best)
    worst.sort(key=lambda r: (-r.loss, r.example_id))
    return worst[:k]


def _block(text: str) -> str:
    if not text.strip():
        return "_(empty)_"
    excerpt = text if len(text) <= _EXCERPT_CHARS else text[:_EXCERPT_CHARS] + " …"
    fence = "````" if "```" in excerpt else "```"
    return f"{fence}\n{excerpt}\n{fence}"


def _pii_section(suites: Sequence[LoadedSuite]) -> list[str]:
    """A table of what the PII policy did to each suite, and a warning per suite that lost records."""
    screened = [s for s in suites if s.pii is not None]
    if not screened:
        return []
    lines = [
        "",
        "## Personal data in the suites",
        "",
        "Suite files go through the run's PII policy (`data.pii`) before any model sees them; "
        "the test split was redacted by prepare.",
        "",
        "| suite | screened | examples | redacted | rejected | found |",
        "|---|---|---|---|---|---|",
    ]
    for suite in screened:
        pii = suite.pii
        assert pii is not None
        found = ", ".join(f"{kind} {n}" for kind, n in pii.found.items()) or "–"
        if pii.screened:
            lines.append(
                f"| {suite.name} | at load | {len(suite.records)} | {pii.redacted} | {pii.rejected} | {found} |"
            )
        else:
            lines.append(f"| {suite.name} | by prepare | {len(suite.records)} | – | – | – |")
    for suite in screened:
        pii = suite.pii
        assert pii is not None
        if pii.rejected:
            kinds = ", ".join(f"{kind.replace('_', ' ')} ({n})" for kind, n in pii.rejected_kinds.items())
            shown = ", ".join(map(str, pii.rejected_lines))
            lines += [
                "",
                f"> ⚠ Suite `{suite.name}`: {pii.rejected} example(s) left out (line(s) {shown} of "
                f"`{suite.config.source}`): they hold {kinds}, which the PII policy rejects. Remove it "
                "from the suite, or set `data.pii.<kind>` to `redact`.",
            ]
    return lines


def render_report(
    result: EvaluationResult,
    *,
    title: str = "Evaluation",
    links: Mapping[str, str] | None = None,
    chart: str | None = None,
    suites: Sequence[LoadedSuite] | None = None,
) -> str:
    """The markdown report. ``links`` maps a label to a URL (MLflow run, model); ``chart`` is the
    path or URL of the image written by :func:`plot_comparisons`; ``suites``, the suites evaluated,
    adds what the PII policy did to each (examples redacted and rejected)."""
    labels = [label for label in _MODEL_ORDER if label in result.model_ids]
    labels += [label for label in result.model_ids if label not in labels]
    lines = [f"# {title}", ""]
    lines.append(
        f"Candidate compared with **{result.baseline}**; delta = candidate − {result.baseline} "
        "with its paired-bootstrap 95% interval; n = examples per model."
    )
    lines.append("")
    for label in labels:
        lines.append(f"- {label}: `{result.model_ids[label]}`")
    if links:
        lines.append("")
        lines += [f"- [{name}]({url})" for name, url in links.items()]
    if chart:
        lines += ["", f"![deltas with 95% intervals]({chart})"]
    lines += _pii_section(suites or ())

    suites = list(dict.fromkeys(c.suite for c in result.comparisons))
    for suite in suites:
        comparisons = [c for c in result.comparisons if c.suite == suite]
        lines += ["", f"## Suite `{suite}`", ""]
        lines.append("| metric | " + " | ".join(labels) + " | delta [95% CI] | n | verdict |")
        lines.append("|---" * (len(labels) + 4) + "|")
        for c in comparisons:
            direction = "↑" if c.higher_is_better else "↓"
            cells = [_fmt(c.values.get(label)) for label in labels]
            lines.append(
                f"| {c.metric} {direction} | "
                + " | ".join(cells)
                + f" | {_delta(c)} | {c.n} | {_verdict(c)} |"
            )
        uncalled = [c.metric for c in comparisons if not c.called]
        if uncalled:
            lines += [
                "",
                f"> ⚠ Too few examples to call a difference on: {', '.join(uncalled)}. "
                "Add examples to this suite before relying on it.",
            ]
        regressions = largest_regressions(result, suite)
        lines += ["", f"### Largest regressions against {result.baseline}", ""]
        if not regressions:
            lines.append("None: the candidate is at least as good on every example.")
        for i, r in enumerate(regressions, start=1):
            lines += [
                f"**{i}. example `{r.example_id}`** — {r.metric} worse by {r.loss:.3f}",
                "",
                "Prompt:",
                _block(r.prompt),
                "Reference:",
                _block(r.reference),
                f"{result.baseline.capitalize()}:",
                _block(r.baseline_output),
                "Candidate:",
                _block(r.candidate_output),
                "",
            ]
    return "\n".join(lines).rstrip() + "\n"


def plot_comparisons(comparisons: Sequence[MetricComparison], path: str | Path) -> Path:
    """A horizontal bar per (suite, metric) of the candidate's delta, with its 95% interval as an
    error bar; green when the interval shows a gain, red a loss, grey otherwise. Informational
    metrics (length, latency) are left out: their units would dwarf the scores. Writes a PNG."""
    shown = [c for c in comparisons if not _informational(c.metric)]
    height = max(2.5, 0.35 * len(shown) + 1.2)
    figure = Figure(figsize=(8, height), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    if not shown:
        axes.text(0.5, 0.5, "no metrics to compare", ha="center", va="center")
        axes.set_axis_off()
    else:
        ys = list(range(len(shown)))[::-1]
        colors = []
        errors = [[], []]
        for c in shown:
            verdict = _verdict(c)
            colors.append(
                "tab:green" if "better" in verdict else "tab:red" if "worse" in verdict else "tab:gray"
            )
            errors[0].append(c.delta - c.ci_low if c.ci_low is not None else 0.0)
            errors[1].append(c.ci_high - c.delta if c.ci_high is not None else 0.0)
        axes.barh(ys, [c.delta for c in shown], xerr=errors, color=colors, capsize=3)
        axes.set_yticks(ys, [f"{c.suite} · {c.metric}" for c in shown])
        axes.axvline(0.0, color="black", linewidth=0.8)
        baseline = shown[0].baseline
        axes.set_xlabel(f"candidate − {baseline} (95% CI)")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png", dpi=100)
    return path
