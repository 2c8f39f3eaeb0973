"""Graders as reward functions for TRL's ``GRPOTrainer`` (the local RFT/GRPO path).

TRL calls each reward function as ``f(prompts=..., completions=..., completion_ids=..., **columns)``
where ``columns`` are the dataset's other columns, one value per completion; it names the reward
after ``__name__``. Prompts and completions are strings, or (conversational datasets) lists of
``{"role", "content"}`` messages. The reward is the grader set's weighted score, the very number the
Bedrock RFT grader Lambda returns for the same answer and record.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from tuneline.graders.base import GradeRecord
from tuneline.graders.registry import GraderConfig, GraderSet, build_graders

__all__ = ["reward_function"]

RewardFunction = Callable[..., list[float]]


def _text(value: Any, role: str | None = None) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):  # messages: the last one (of ``role`` when given)
        for message in reversed(value):
            if isinstance(message, dict) and (role is None or message.get("role") == role):
                content = message.get("content")
                if isinstance(content, list):
                    return "".join(str(b.get("text", "")) for b in content if isinstance(b, dict))
                return str(content or "")
    return ""


def reward_function(
    graders: GraderSet | Sequence[GraderConfig | dict[str, Any]],
    *,
    reference_column: str = "reference_answer",
    name: str = "tuneline_graders",
) -> RewardFunction:
    """A TRL reward function scoring each completion against its row's ``reference_column``."""
    grader_set = graders if isinstance(graders, GraderSet) else build_graders(graders)

    def reward(prompts: Sequence[Any], completions: Sequence[Any], **columns: Any) -> list[float]:
        references = columns.get(reference_column) or [None] * len(completions)
        other = {
            k: v for k, v in columns.items() if k not in (reference_column, "completion_ids", "trainer_state")
        }
        records = []
        for i, reference in enumerate(references):
            fields = {
                k: v[i]
                for k, v in other.items()
                if isinstance(v, list | tuple) and len(v) == len(completions)
            }
            records.append(GradeRecord(reference=reference, prompt=_text(prompts[i], "user"), fields=fields))
        answers = [_text(c) for c in completions]
        return [g.score for g in grader_set.grade_many(answers, records)]

    reward.__name__ = name
    return reward
