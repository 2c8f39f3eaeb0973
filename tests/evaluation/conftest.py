"""Fixtures for the evaluation tests: suites built from records, and a test double of a model."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import pytest

from tuneline.backends.base import Generation
from tuneline.config import GenerationConfig, SuiteConfig, SuiteKind
from tuneline.evaluation.runner import ModelUnderTest
from tuneline.evaluation.suites import LoadedSuite
from tuneline.records import ChatRecord, Message


class LookupGenerator:
    """A test double of a model: answers each prompt from a lookup table, in order.

    It records how often it was asked and whether it was closed, and appends to ``events`` so a
    test can check that models were loaded and freed one at a time.
    """

    def __init__(
        self, label: str, answers: Mapping[str, str], events: list[str], latency_s: float = 0.01
    ) -> None:
        self.label = label
        self.answers = answers
        self.events = events
        self.latency_s = latency_s
        self.calls = 0
        self.prompts_answered = 0
        self.closed = False

    def generate(self, prompts: Sequence[ChatRecord], config: GenerationConfig) -> list[Generation]:
        assert not self.closed, "generate() after close()"
        self.calls += 1
        self.prompts_answered += len(prompts)
        self.events.append(f"generate:{self.label}")
        out = []
        for record in prompts:
            text = self.answers.get(record.prompt_messages[-1].content, "")
            out.append(Generation(text=text, latency_s=self.latency_s, output_tokens=len(text.split())))
        return out

    def close(self) -> None:
        self.closed = True
        self.events.append(f"close:{self.label}")


@pytest.fixture
def make_suite() -> Callable[..., LoadedSuite]:
    def make(
        pairs: Sequence[tuple[str, str]],
        name: str = "task",
        kind: SuiteKind = SuiteKind.TASK,
        metrics: Sequence[str] = ("exact_match", "rouge_l"),
        json_schema: dict | None = None,
    ) -> LoadedSuite:
        records = tuple(
            ChatRecord(messages=(Message(role="user", content=p), Message(role="assistant", content=a)))
            for p, a in pairs
        )
        config = SuiteConfig(name=name, kind=kind, metrics=list(metrics), json_schema=json_schema)
        return LoadedSuite(config=config, records=records)

    return make


class ModelZoo:
    """Builds ``ModelUnderTest`` entries whose factories log loads and keep their generators."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.loaded: list[LookupGenerator] = []

    def model(self, label: str, model_id: str, answers: Mapping[str, str]) -> ModelUnderTest:
        def factory() -> LookupGenerator:
            # every model loaded earlier must have been freed before this one loads
            assert all(g.closed for g in self.loaded), f"{label} loaded while another model is open"
            self.events.append(f"load:{label}")
            generator = LookupGenerator(label, answers, self.events)
            self.loaded.append(generator)
            return generator

        return ModelUnderTest(model_id=model_id, factory=factory)

    @property
    def prompts_answered(self) -> int:
        return sum(g.prompts_answered for g in self.loaded)


@pytest.fixture
def zoo() -> ModelZoo:
    return ModelZoo()


@pytest.fixture
def make_zoo() -> Callable[[], ModelZoo]:
    """For tests that need a fresh set of models per evaluation (a second run on the same cache)."""
    return ModelZoo
