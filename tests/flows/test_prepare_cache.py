"""The prepare task is a cache hit for the same input and config, and a miss when either changes."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from prefect import flow

from tasks.prepare import build_dataset
from tuneline.config import RunConfig
from tuneline.settings import Settings

pytestmark = [pytest.mark.slow, pytest.mark.service]


@flow
def build_twice(first: RunConfig, second: RunConfig) -> list[str]:
    states = [build_dataset(c, return_state=True) for c in (first, second)]
    return [s.name for s in states]


def test_same_input_is_a_cache_hit_and_changed_input_is_not(
    lifecycle_settings: Settings, example_dir: Path, run_config, tmp_path: Path
) -> None:
    source = tmp_path / "tickets.jsonl"
    shutil.copy(example_dir / "data" / "tickets.jsonl", source)
    base = run_config()
    config = base.model_copy(update={
        "data": base.data.model_copy(update={"source": str(source)}),
        "tune": base.tune.model_copy(update={"base_model": str(example_dir / "tiny-base")}),
    })
    assert build_twice(config, config) == ["Completed", "Cached"]

    with source.open("a", encoding="utf-8") as handle:  # the source changes: a new version
        handle.write('{"messages": [{"role": "user", "content": "new"}, {"role": "assistant", "content": "ok"}]}\n')
    assert build_twice(config, config) == ["Completed", "Cached"]
