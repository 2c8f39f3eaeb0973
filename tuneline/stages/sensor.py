"""A data-arrival sensor: which files under a watched S3 prefix have not been seen yet.

The sensor remembers what it has seen in a small JSON state object in S3 (not on the worker's
disk: any worker, any restart, reads the same state). A file is identified by its URI and ETag,
so a file never counts as new twice, while a file overwritten with different content does. Each
arrival also has a deterministic id derived from that identity: the Prefect layer uses it as the
event id, so an event re-sent after a crash between "emit" and "remember" is dropped as a
duplicate by the Prefect server rather than starting a second run.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

from botocore.exceptions import BotoCoreError
from pydantic import BaseModel, ConfigDict, Field

from tuneline.errors import ConfigError, ServiceUnavailableError
from tuneline.storage.s3 import ObjectStore, S3Uri

__all__ = [
    "DATA_SUFFIXES",
    "ArrivedObject",
    "DataSensor",
    "SensorState",
    "default_state_uri",
]

# What prepare can read; anything else under the prefix (notes, partial uploads) is not a dataset.
DATA_SUFFIXES: tuple[str, ...] = (".jsonl", ".json", ".csv", ".parquet")
_ID_NAMESPACE = uuid.UUID("0b5f3c9e-3f47-4d0c-9f0e-7c1e5a2d8b11")


class ArrivedObject(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    uri: str
    etag: str
    size: int
    last_modified: datetime

    @property
    def identity(self) -> uuid.UUID:
        """Stable across polls and processes: the same file (URI and content) gives the same id."""
        return uuid.uuid5(_ID_NAMESPACE, f"{self.uri}#{self.etag}")


class SensorState(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prefix: str
    seen: dict[str, str] = Field(default_factory=dict, description="object URI -> ETag when it was seen")
    updated_at: datetime | None = None


def default_state_uri(store: ObjectStore, prefix: str) -> str:
    """``s3://<bucket>/sensors/<hash of prefix>.json``: outside any watched prefix, one per prefix."""
    digest = hashlib.sha256(prefix.encode()).hexdigest()[:16]
    return store.uri(f"sensors/{digest}.json")


class DataSensor:
    """Poll ``prefix`` for data files not seen before; ``remember`` them once announced."""

    def __init__(
        self,
        store: ObjectStore,
        prefix: str,
        state_uri: str | None = None,
        suffixes: tuple[str, ...] = DATA_SUFFIXES,
    ) -> None:
        loc = S3Uri.parse(prefix)
        if not loc.key:
            raise ConfigError(f"watch a prefix inside a bucket, not a whole bucket: {prefix!r} (e.g. s3://bucket/incoming/)")
        self.store = store
        self.prefix = str(loc)
        self.state_uri = state_uri or default_state_uri(store, self.prefix)
        if self.state_uri.startswith(self.prefix):
            raise ConfigError(f"the sensor state {self.state_uri} must not lie under the watched prefix {self.prefix}")
        self.suffixes = suffixes

    def state(self) -> SensorState:
        if not self.store.exists(self.state_uri):
            return SensorState(prefix=self.prefix)
        state = SensorState.model_validate_json(self.store.get_bytes(self.state_uri))
        if state.prefix != self.prefix:
            raise ConfigError(
                f"sensor state {self.state_uri} belongs to prefix {state.prefix}, not {self.prefix}; "
                "give each watched prefix its own state_uri"
            )
        return state

    def poll(self) -> list[ArrivedObject]:
        """Data files under the prefix that are new or changed since they were last remembered, oldest first."""
        seen = self.state().seen
        arrived = [obj for obj in self._list() if seen.get(obj.uri) != obj.etag]
        return sorted(arrived, key=lambda o: (o.last_modified, o.uri))

    def remember(self, arrived: list[ArrivedObject]) -> SensorState:
        """Record ``arrived`` as seen (read-modify-write: run one sensor per prefix at a time)."""
        state = self.state()
        state.seen.update({obj.uri: obj.etag for obj in arrived})
        state.updated_at = datetime.now(UTC)
        self.store.put_bytes(
            self.state_uri, json.dumps(state.model_dump(mode="json"), indent=1).encode(), "application/json"
        )
        return state

    def _list(self) -> Iterator[ArrivedObject]:
        loc = S3Uri.parse(self.prefix)
        # ObjectStore.list_keys yields keys only; the sensor needs each object's ETag as well.
        try:
            pages = self.store.client.get_paginator("list_objects_v2").paginate(Bucket=loc.bucket, Prefix=loc.key)
            for page in pages:
                for obj in page.get("Contents", []):
                    key = obj["Key"]
                    if key.endswith("/") or not key.lower().endswith(self.suffixes):
                        continue
                    yield ArrivedObject(
                        uri=str(S3Uri(loc.bucket, key)),
                        etag=obj["ETag"].strip('"'),
                        size=obj["Size"],
                        last_modified=obj["LastModified"],
                    )
        except BotoCoreError as exc:
            raise ServiceUnavailableError("S3", str(exc)) from exc
