"""The Bedrock RFT grader Lambda: Tuneline's graders behind AWS's reward-function contract.

AWS documents the contract on these pages (read 2026-12-02):

- Bedrock user guide, "Setting up reward functions" (reward-functions.html) and "... for
  open-weight models" (reward-functions-open-weight.html);
- Nova 2 user guide, "Implementing reward functions" (nova-implementing-reward-functions.html);
- SageMaker AI developer guide, Nova RFT (nova-hp-rft-reward-functions.html).

The event is a list of samples; each is a training record with the model's answer appended as the
last (assistant) message and an ``id`` added::

    [{"id": "123",
      "messages": [{"role": "user", "content": "..."}, {"role": "assistant", "content": "..."}],
      "reference_answer": {...}}]

The Bedrock and Nova pages put ``reference_answer`` (and the record's other fields) at the top level;
the SageMaker page nests them under ``metadata``. Both are read. The response is one object per
sample, in order::

    [{"id": "123", "aggregate_reward_score": 0.85,
      "metrics_list": [{"name": "accuracy", "value": 0.9, "type": "Reward"}]}]

Which graders run comes from ``TUNELINE_GRADERS`` (a JSON list of ``GraderConfig``), or from
``graders.json`` beside this module (what ``infra/terraform/aws`` packages). A sample that cannot
be graded (no answer, a reference a grader cannot read) scores 0 and is logged with its id: a bad
sample must not fail the batch, and it is never dropped.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

from tuneline.errors import TunelineError
from tuneline.graders.base import GradeRecord
from tuneline.graders.registry import GraderSet, build_graders

__all__ = ["GRADERS_ENV", "grade_samples", "lambda_handler", "load_grader_set", "sample_to_record"]

GRADERS_ENV = "TUNELINE_GRADERS"
_BUNDLED = Path(__file__).with_name("graders.json")
_RESERVED = {"id", "messages", "reference_answer", "metadata"}

_log = logging.getLogger("tuneline.graders.rft_lambda")
_log.setLevel(logging.INFO)


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content blocks: [{"text": ...}, ...]
        return "".join(str(block.get("text", "")) for block in content if isinstance(block, dict))
    return ""


def sample_to_record(sample: Mapping[str, Any]) -> tuple[str | None, GradeRecord]:
    """(the answer, what the graders see) for one sample; the answer is None when there is none."""
    messages = sample.get("messages")
    messages = messages if isinstance(messages, list) else []
    answer = None
    if messages and isinstance(messages[-1], dict) and messages[-1].get("role") == "assistant":
        answer = _text(messages[-1].get("content"))
    prompt = next(
        (
            _text(m.get("content"))
            for m in reversed(messages)
            if isinstance(m, dict) and m.get("role") == "user"
        ),
        None,
    )
    metadata = sample.get("metadata") if isinstance(sample.get("metadata"), dict) else {}
    reference = sample.get("reference_answer", metadata.get("reference_answer"))
    fields = {k: v for k, v in metadata.items() if k != "reference_answer"}
    fields.update({k: v for k, v in sample.items() if k not in _RESERVED})
    return answer, GradeRecord(reference=reference, prompt=prompt, fields=fields)


def grade_samples(graders: GraderSet, samples: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """AWS's response for a batch of samples: one entry per sample, in order."""
    out: list[dict[str, Any] | None] = [None] * len(samples)
    gradable: list[tuple[int, str, GradeRecord]] = []
    for i, sample in enumerate(samples):
        sample_id = str(sample.get("id", i))
        answer, record = sample_to_record(sample)
        if answer is None:
            _log.warning("sample %s has no assistant answer as its last message: reward 0", sample_id)
            out[i] = _response(sample_id, 0.0, {})
        else:
            gradable.append((i, answer, record))
    if gradable:
        try:
            results = graders.grade_many([a for _, a, _ in gradable], [r for _, _, r in gradable])
        except (TunelineError, ValueError):
            # One unreadable sample must not zero the batch: grade one by one to find it.
            results = []
            for i, answer, record in gradable:
                try:
                    results.append(graders.grade(answer, record))
                except (TunelineError, ValueError) as exc:
                    _log.warning("sample %s could not be graded (%s): reward 0", samples[i].get("id", i), exc)
                    results.append(None)
        for (i, _, _), result in zip(gradable, results, strict=True):
            sample_id = str(samples[i].get("id", i))
            out[i] = (
                _response(sample_id, 0.0, {})
                if result is None
                else _response(sample_id, result.score, result.scores)
            )
    return [entry for entry in out if entry is not None]


def _response(sample_id: str, score: float, scores: Mapping[str, float]) -> dict[str, Any]:
    return {
        "id": sample_id,
        "aggregate_reward_score": float(score),
        "metrics_list": [
            {"name": name, "value": float(value), "type": "Reward"} for name, value in scores.items()
        ],
    }


@cache
def load_grader_set() -> GraderSet:
    """The graders this Lambda runs (``TUNELINE_GRADERS`` first, then the bundled graders.json)."""
    raw = os.environ.get(GRADERS_ENV)
    if raw is None and _BUNDLED.is_file():
        raw = _BUNDLED.read_text()
    if raw is None:
        raise TunelineError(f"no graders configured: set {GRADERS_ENV} or bundle {_BUNDLED.name}")
    return build_graders(json.loads(raw))


def lambda_handler(event: Any, context: Any) -> list[dict[str, Any]]:
    """The Lambda entry point (handler ``tuneline.graders.rft_lambda.lambda_handler``)."""
    if isinstance(event, dict):
        # A single sample, or a wrapper holding the list (tolerated; AWS documents a bare list).
        samples = event.get("samples") if isinstance(event.get("samples"), list) else [event]
    elif isinstance(event, list):
        samples = event
    else:
        raise TypeError(f"expected a list of samples, got {type(event).__name__}")
    return grade_samples(load_grader_set(), samples)
