"""A cheap fingerprint of a data source: what a prepare cache key is built from.

Local files are hashed by content; S3 objects by key, ETag and size, so nothing is downloaded to
decide whether the source changed.
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

from tuneline.data.sources import resolve_source
from tuneline.errors import DataError
from tuneline.storage.s3 import ObjectStore, local_path_or_none

__all__ = ["source_fingerprint"]

_CHUNK = 1 << 20


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def source_fingerprint(source: str, store: ObjectStore | None) -> str:
    """A hex digest that changes whenever any input file of ``source`` changes."""
    digest = hashlib.sha256()
    if local_path_or_none(source) is None:
        if store is None:
            raise DataError(f"{source} is an s3:// source but no object store was given")
        listed = sorted(store.list_objects(source))
        if not listed:
            raise DataError(f"no objects under {source}")
        for key, etag, size in listed:
            digest.update(f"{key}\0{etag}\0{size}\n".encode())
        return digest.hexdigest()
    with tempfile.TemporaryDirectory() as unused:  # local sources never download
        for file in resolve_source(source, None, Path(unused)):
            digest.update(f"{file.name}\0{_file_digest(file.path)}\n".encode())
    return digest.hexdigest()
