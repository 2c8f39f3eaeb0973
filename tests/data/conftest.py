"""Factories for prepare-stage tests: chat records and input files written in any format."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tuneline.config import DataConfig

SHARED_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


def _chat(i: int, system: str | None = None, turns: int = 1) -> dict[str, Any]:
    """A valid Bedrock-shaped record whose text depends on ``i`` (so records differ)."""
    messages = []
    for t in range(turns):
        messages.append({"role": "user", "content": f"question {i}.{t}: what is {i} + {t}?"})
        messages.append({"role": "assistant", "content": f"answer {i}.{t}: {i + t}"})
    record: dict[str, Any] = {"messages": messages}
    if system is not None:
        record = {"system": system, **record}
    return record


@pytest.fixture
def chat() -> Callable[..., dict[str, Any]]:
    """Factory of valid Bedrock-shaped records: ``chat(i, system=None, turns=1)``."""
    return _chat


@pytest.fixture
def write_lines(tmp_path: Path) -> Callable[..., Path]:
    """Write raw lines (str or bytes, or dicts as JSON) to a new JSONL file; returns its path."""
    counter = {"n": 0}

    def make(lines: list[Any], name: str | None = None) -> Path:
        counter["n"] += 1
        path = tmp_path / (name or f"input-{counter['n']}.jsonl")
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as fh:
            for line in lines:
                if isinstance(line, dict):
                    line = json.dumps(line)
                fh.write((line.encode("utf-8") if isinstance(line, str) else line) + b"\n")
        return path

    return make


@pytest.fixture
def data_config() -> Callable[..., DataConfig]:
    def make(source: Path | str, **overrides: Any) -> DataConfig:
        return DataConfig(source=str(source), **overrides)

    return make
