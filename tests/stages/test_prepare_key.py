"""The prepare cache key changes with the shape of the cached result: a result an older release
wrote (another model) is never found, so it is never decoded into a plain dict."""

from __future__ import annotations

from pathlib import Path

import pytest

import tuneline.stages.prepare as stage
from tuneline.config import RunConfig
from tuneline.data.prepare import PreparedDataset
from tuneline.settings import Settings
from tuneline.stages.context import StageContext


def test_the_key_follows_the_result_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = tmp_path / "d.jsonl"
    source.write_text('{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}\n')
    config = RunConfig.model_validate(
        {"name": "keyed", "data": {"source": str(source)}, "tune": {"backend": "local", "base_model": "m"}}
    )
    ctx = StageContext(Settings(_env_file=None, home=tmp_path))  # type: ignore[call-arg]
    before = stage.prepare_cache_key(ctx, config)
    assert stage.prepare_cache_key(ctx, config) == before

    class Reshaped(PreparedDataset):
        extra: int = 0

    monkeypatch.setattr(stage, "PreparedDataset", Reshaped)
    assert stage.prepare_cache_key(ctx, config) != before
