"""Deterministic splits: same content, same split, also when the dataset grows."""

from __future__ import annotations

import json

from tuneline.config import DataConfig, Target
from tuneline.data.prepare import build_dataset


def _splits(tmp_path, name, config):
    built = build_dataset(config, Target.LOCAL, tmp_path / name)
    out = {}
    for split in ("train", "validation", "test"):
        for line in (tmp_path / name / "out" / f"{split}.jsonl").read_text().splitlines():
            out[json.loads(line)["messages"][0]["content"]] = split
    return built.summary, out


def test_split_is_stable_when_the_dataset_grows(tmp_path, write_lines, chat):
    small = write_lines([chat(i) for i in range(300)])
    grown = write_lines([chat(i) for i in range(1000, 1400)] + [chat(i) for i in range(300)])
    s1, a = _splits(tmp_path, "a", DataConfig(source=str(small)))
    _, again = _splits(tmp_path, "again", DataConfig(source=str(small)))
    _, b = _splits(tmp_path, "b", DataConfig(source=str(grown)))
    assert a == again
    assert all(b[k] == v for k, v in a.items())
    # Ratios are roughly honoured.
    assert 200 < s1.splits["train"] < 280 and s1.splits["validation"] > 10 and s1.splits["test"] > 10


def test_caps_filter_and_counts_reconcile(tmp_path, write_lines, chat):
    path = write_lines([chat(i) for i in range(200)])
    s, out = _splits(tmp_path, "c", DataConfig(source=str(path), split={"max_train": 50, "max_test": 5}))
    assert s.splits["train"] == 50 and s.splits["test"] == 5
    assert s.filtered == 200 - s.accepted and s.total == s.accepted + s.filtered
