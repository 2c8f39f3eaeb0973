"""GRPO rewards from :mod:`tuneline.graders`: the same definition of a good answer scores a
sampled completion during training and the model at evaluation, so a GRPO run's reward and its
gate measure the same thing."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from tuneline.graders import GraderConfig, GradeRecord, build_graders

__all__ = ["grader_reward"]


def _text(completion: Any) -> str:
    # Conversational datasets give each completion as a list of messages; plain ones as a string.
    if isinstance(completion, list):
        return "".join(m.get("content", "") for m in completion if m.get("role") == "assistant")
    return str(completion)


def grader_reward(configs: Sequence[GraderConfig]) -> Callable[..., list[float]]:
    """A TRL reward function: each completion's weighted grader score (0..1) against its record's
    reference answer (the ``reference`` column, JSON)."""
    graders = build_graders(list(configs))

    def tuneline_graders(prompts: list[Any], completions: list[Any], reference: list[str], **_: Any) -> list[float]:
        records = [GradeRecord(reference=json.loads(r)) for r in reference]
        return [g.score for g in graders.grade_many([_text(c) for c in completions], records)]

    tuneline_graders.__name__ = "tuneline_graders"
    return tuneline_graders
