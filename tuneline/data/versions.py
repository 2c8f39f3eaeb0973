"""Dataset versions in S3: atomic publish, idempotent re-runs, and reading versions back.

Layout: ``datasets/<name>/<version>/`` holds the split files, ``rejected.jsonl``, Parquet copies,
``profile.json``, ``dataset_version.json`` and, written last, ``_COMPLETE``. Files are uploaded to
``datasets/<name>/_staging/<uuid>/`` first and copied into place; a version without ``_COMPLETE``
is treated as absent, so a crash never leaves a half version that a later run would use.
"""

from __future__ import annotations

import io
import json
import re
import uuid
from collections.abc import Callable
from pathlib import Path

import pyarrow.parquet as pq

from tuneline.errors import DataError
from tuneline.lineage import DatasetVersion
from tuneline.records import ChatRecord, Message, Record, record_from_dict
from tuneline.storage.s3 import ObjectStore, S3Uri

__all__ = [
    "COMPLETE_MARKER",
    "VERSION_FILE",
    "check_dataset_name",
    "list_versions",
    "load_dataset_version",
    "publish_version",
    "read_split",
    "version_uri",
]

COMPLETE_MARKER = "_COMPLETE"
VERSION_FILE = "dataset_version.json"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


def check_dataset_name(name: str) -> str:
    if not _NAME.match(name):
        raise DataError(
            f"dataset name {name!r} is not allowed: use 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return name


def version_uri(store: ObjectStore, name: str, version: str) -> str:
    return store.uri(f"datasets/{check_dataset_name(name)}/{version}/")


def _is_complete(store: ObjectStore, uri: str) -> bool:
    return store.exists(str(S3Uri.parse(uri).join(COMPLETE_MARKER)))


def publish_version(
    store: ObjectStore, name: str, version: str, files_dir: Path, describe: Callable[[str], DatasetVersion]
) -> tuple[DatasetVersion, bool]:
    """Publish ``files_dir`` as ``version`` of ``name``; returns the version and whether it was written.

    ``describe(uri)`` builds the DatasetVersion for the final location; it is stored beside the data.
    An existing complete version is returned as it is, without rewriting anything.
    """
    final = version_uri(store, name, version)
    if _is_complete(store, final):
        return load_dataset_version(store, final), False
    dataset_version = describe(final)
    (files_dir / VERSION_FILE).write_text(dataset_version.model_dump_json(indent=2), encoding="utf-8")
    staging = store.uri(f"datasets/{name}/_staging/{uuid.uuid4().hex}/")
    try:
        store.put_dir(staging, files_dir)
        staging_key = S3Uri.parse(staging).key
        for key in sorted(store.list_keys(staging)):
            rel = key[len(staging_key) :]
            store.copy(str(S3Uri(store.bucket, key)), str(S3Uri.parse(final).join(rel)))
        store.put_bytes(str(S3Uri.parse(final).join(COMPLETE_MARKER)), version.encode(), "text/plain")
    finally:
        store.delete_prefix(staging)
    return dataset_version, True


def load_dataset_version(store: ObjectStore, uri: str) -> DatasetVersion:
    """The DatasetVersion stored at ``uri``; refuses versions that were never completed."""
    if not uri.endswith("/"):
        uri += "/"
    if not _is_complete(store, uri):
        raise DataError(f"no complete dataset version at {uri}: run prepare again to (re)write it")
    return DatasetVersion.model_validate_json(store.get_bytes(str(S3Uri.parse(uri).join(VERSION_FILE))))


def list_versions(store: ObjectStore, name: str) -> list[str]:
    """Complete versions of ``name`` (staging areas and unfinished versions are never listed)."""
    prefix = f"datasets/{check_dataset_name(name)}/"
    found = []
    for key in store.list_keys(store.uri(prefix)):
        rest = key[len(prefix) :]
        version, _, leaf = rest.partition("/")
        if leaf == COMPLETE_MARKER and version != "_staging":
            found.append(version)
    return sorted(found)


def read_split(store: ObjectStore, version_uri: str, split: str) -> list[Record]:
    """The records of one split of a complete version, from its Parquet copy: each of its kind
    (the ``record`` column holds every record that is more than a text chat, metadata included)."""
    if not version_uri.endswith("/"):
        version_uri += "/"
    if not _is_complete(store, version_uri):
        raise DataError(f"no complete dataset version at {version_uri}")
    table = pq.read_table(io.BytesIO(store.get_bytes(str(S3Uri.parse(version_uri).join(f"{split}.parquet")))))
    return [
        record_from_dict(json.loads(row["record"])) if row.get("record") is not None
        else ChatRecord(system=row["system"], messages=tuple(Message(**m) for m in row["messages"]))
        for row in table.to_pylist()
    ]
