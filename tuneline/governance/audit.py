"""The append-only audit log in S3.

S3 objects cannot be appended to, and rewriting a shared log object would race between runs and
could lose records. So each record is its own one-line JSONL object, written once under a key
that sorts by time and never rewritten; reading the log lists and concatenates them.
"""

from __future__ import annotations

import uuid

from tuneline.governance.approval import ApprovalRecord
from tuneline.storage.s3 import ObjectStore

__all__ = ["AuditLog"]


class AuditLog:
    def __init__(self, store: ObjectStore, prefix: str = "audit") -> None:
        self.store = store
        self.prefix = prefix.strip("/")

    def _model_prefix(self, model_name: str) -> str:
        return self.store.uri(f"{self.prefix}/{model_name}/")

    def append(self, record: ApprovalRecord) -> str:
        stamp = record.recorded_at.strftime("%Y%m%dT%H%M%S%fZ")
        key = f"{self.prefix}/{record.model_name}/{stamp}-{record.kind}-{uuid.uuid4().hex[:8]}.jsonl"
        uri = self.store.uri(key)
        if self.store.exists(uri):  # uuid collision: never overwrite a record
            raise RuntimeError(f"audit record {uri} already exists")
        self.store.put_bytes(uri, (record.model_dump_json() + "\n").encode(), "application/jsonl")
        return uri

    def records(self, model_name: str | None = None) -> list[ApprovalRecord]:
        prefix = self._model_prefix(model_name) if model_name else self.store.uri(f"{self.prefix}/")
        keys = sorted(self.store.list_keys(prefix), key=lambda k: k.rsplit("/", 1)[-1])
        out = []
        for key in keys:
            for line in self.store.get_bytes(self.store.uri(key)).decode().splitlines():
                if line.strip():
                    out.append(ApprovalRecord.model_validate_json(line))
        return out
