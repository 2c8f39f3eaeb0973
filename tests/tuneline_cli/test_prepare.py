"""`tuneline prepare`: a version in S3 and its summary, for chat and preference data alike."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

import tuneline_cli.main as cli
from tuneline.data.versions import read_split
from tuneline.records import PreferenceRecord
from tuneline.settings import Settings
from tuneline.storage.s3 import ObjectStore

pytestmark = pytest.mark.service


def test_prepare_publishes_a_version_and_prints_where(
    stack_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli, "get_settings", lambda: stack_settings)
    src = tmp_path / "pairs.jsonl"
    src.write_text("".join(json.dumps({"prompt": f"Ticket {i}", "chosen": f"high {i}", "rejected": f"low {i}"}) + "\n"
                           for i in range(20)))
    name = f"cli-{uuid.uuid4().hex[:8]}"
    result = CliRunner().invoke(cli.app, ["prepare", "--input", str(src), "--name", name, "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert (out["accepted"], out["kinds"]) == (20, {"preference": 20})
    assert out["uri"].endswith(f"/datasets/{name}/{out['version']}/")
    store = ObjectStore(stack_settings)
    back = [r for s in ("train", "validation", "test") for r in read_split(store, out["uri"], s)]
    assert len(back) == 20 and all(isinstance(r, PreferenceRecord) for r in back)
    text = CliRunner().invoke(cli.app, ["prepare", "--input", str(src), "--name", name])
    assert text.exit_code == 0 and f"version {out['version']} at {out['uri']}" in text.stdout
