"""Dataset versions on a real SeaweedFS: s3:// sources, atomic publish, idempotent re-runs."""

from __future__ import annotations

import hashlib
import json

import pytest

from tuneline.config import DataConfig, Target
from tuneline.data.prepare import DatasetLimitError, prepare
from tuneline.data.versions import COMPLETE_MARKER, list_versions, load_dataset_version, read_split
from tuneline.errors import DataError
from tuneline.records import ChatRecord, Message, PreferenceRecord, RftRecord
from tuneline.storage.s3 import S3Uri

pytestmark = pytest.mark.service


@pytest.fixture
def records(chat):
    def make(n: int) -> list[dict]:
        return [chat(i, system="be brief") for i in range(n)]

    return make


def test_prepare_from_s3_source_publishes_a_complete_version(object_store, s3_prefix, write_lines, records):
    src = s3_prefix("src")
    path = write_lines([*records(60), "not json", records(1)[0]])
    object_store.put_file(f"{src}/part-0.jsonl", path)

    result = prepare(DataConfig(source=src + "/"), Target.LOCAL, "s3src", object_store)

    v = result.dataset
    assert (v.total, v.accepted, v.rejected, v.duplicates) == (62, 60, 1, 1)
    assert v.uri == object_store.uri(f"datasets/s3src/{v.version}/")
    keys = {k.rsplit("/", 1)[-1] for k in object_store.list_keys(v.uri)}
    assert {
        "train.jsonl",
        "validation.jsonl",
        "test.jsonl",
        "rejected.jsonl",
        "profile.json",
        "train.parquet",
        "dataset_version.json",
        COMPLETE_MARKER,
    } <= keys
    assert load_dataset_version(object_store, v.uri) == v
    rejected = [json.loads(x) for x in object_store.get_bytes(v.uri + "rejected.jsonl").splitlines()]
    assert rejected == [
        {"file": "part-0.jsonl", "line": 61, "original_sha256": hashlib.sha256(b"not json").hexdigest(),
         "errors": rejected[0]["errors"]}
    ]
    assert rejected[0]["errors"][0]["code"] == "invalid_json"
    back = [r for s in ("train", "validation", "test") for r in read_split(object_store, v.uri, s)]
    expected = {
        ChatRecord(system="be brief", messages=tuple(Message(**m) for m in r["messages"]))
        for r in records(60)
    }
    assert set(back) == expected and len(back) == 60
    assert "## Counts" in result.report_markdown
    # Nothing is left in staging.
    assert not list(object_store.list_keys(object_store.uri("datasets/s3src/_staging/")))


def test_second_run_reuses_the_version_without_rewriting(object_store, write_lines, records):
    path = write_lines(records(40))
    first = prepare(DataConfig(source=str(path)), Target.LOCAL, "again", object_store)
    marker = S3Uri.parse(first.dataset.uri).join(COMPLETE_MARKER)
    before = object_store.client.head_object(Bucket=marker.bucket, Key=marker.key)["LastModified"]

    second = prepare(DataConfig(source=str(path)), Target.LOCAL, "again", object_store)

    assert second.dataset == first.dataset and first.written and not second.written
    after = object_store.client.head_object(Bucket=marker.bucket, Key=marker.key)["LastModified"]
    assert after == before
    assert list_versions(object_store, "again") == [first.dataset.version]


def test_a_changed_config_gives_a_new_version(object_store, write_lines, records):
    path = write_lines(records(40))
    a = prepare(DataConfig(source=str(path)), Target.LOCAL, "cfg", object_store)
    b = prepare(
        DataConfig(source=str(path), dedupe={"case_insensitive": True}), Target.LOCAL, "cfg", object_store
    )
    assert a.dataset.version != b.dataset.version
    assert sorted(list_versions(object_store, "cfg")) == sorted([a.dataset.version, b.dataset.version])


def test_a_version_without_marker_is_absent(object_store):
    half = object_store.uri("datasets/crashed/0123456789abcdef/")
    object_store.put_bytes(half + "train.jsonl", b"{}\n")
    object_store.put_bytes(object_store.uri("datasets/crashed/_staging/x/train.jsonl"), b"{}\n")
    object_store.put_bytes(object_store.uri("datasets/crashed/_staging/x/_COMPLETE"), b"x")

    assert list_versions(object_store, "crashed") == []
    with pytest.raises(DataError, match="no complete dataset version"):
        load_dataset_version(object_store, half)


def test_limit_errors_upload_nothing(object_store, write_lines, records):
    path = write_lines(records(10))
    with pytest.raises(DatasetLimitError, match="too_few_records") as info:
        prepare(DataConfig(source=str(path)), Target.BEDROCK_CLAUDE_HAIKU, "toofew", object_store)
    assert info.value.summary.accepted == 10
    # No version is published; only the rejected report (reason, place, digest), named in the problems.
    keys = list(object_store.list_keys(object_store.uri("datasets/toofew/")))
    assert keys and all(k.startswith("datasets/toofew/_rejected/") for k in keys)
    assert any("_rejected/" in p for p in info.value.summary.problems)


def test_nova_target_writes_nova_records(object_store, write_lines, records):
    path = write_lines(records(50))
    v = prepare(
        DataConfig(source=str(path), split={"train": 1, "validation": 0, "test": 0}),
        Target.BEDROCK_NOVA,
        "nova",
        object_store,
    ).dataset
    lines = [json.loads(x) for x in object_store.get_bytes(v.split_uris["train"]).splitlines()]
    assert len(lines) == 50
    assert lines[0]["schemaVersion"] == "bedrock-conversation-2024"
    assert lines[0]["system"] == [{"text": "be brief"}]
    assert lines[0]["messages"][0]["content"] == [{"text": lines[0]["messages"][0]["content"][0]["text"]}]


def test_read_split_gives_back_each_record_of_its_kind(object_store, tmp_path):
    rows = [{"prompt": f"Ticket {i}: printer jams", "chosen": "priority: high", "rejected": f"priority: low {i}",
             "ticket": i} for i in range(6)]
    rows += [{"messages": [{"role": "user", "content": f"Sum {i} and 2"}], "reference_answer": {"sum": i + 2}}
             for i in range(6)]
    src = tmp_path / "mixed.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = DataConfig(source=str(src), extra_keys="keep")
    v = prepare(cfg, Target.LOCAL, "kinds", object_store).dataset
    back = [r for s in ("train", "validation", "test") for r in read_split(object_store, v.uri, s)]
    assert sorted(type(r).__name__ for r in back) == ["PreferenceRecord"] * 6 + ["RftRecord"] * 6
    pref = sorted((r for r in back if isinstance(r, PreferenceRecord)), key=lambda r: r.metadata["ticket"])
    assert [(r.rejected[0].content, r.metadata) for r in pref] == [(f"priority: low {i}", {"ticket": i}) for i in range(6)]
    rft = sorted((r for r in back if isinstance(r, RftRecord)), key=lambda r: r.reference_answer["sum"])
    assert [r.reference_answer for r in rft] == [{"sum": i + 2} for i in range(6)]
