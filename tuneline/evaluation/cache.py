"""Cached generations, so that re-evaluating an unchanged model costs nothing.

A model's answers depend only on the model, the prompts and the generation settings, so the key
is (model id, suite version, generation settings). ``batch_size`` is left out of the key: it
changes how fast answers come, not what they are under greedy decoding. Each entry is one Parquet
file of (example_id, output, latency_s, output_tokens, batch_size); metrics are recomputed from it,
so adding a metric to a suite reuses the cache too. Entries written before latency was per example
(no ``batch_size`` column) are not read: their latency is a batch's wall time.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from tuneline.backends.base import Generation
from tuneline.config import GenerationConfig
from tuneline.errors import EvaluationError
from tuneline.evaluation.suites import LoadedSuite
from tuneline.storage.s3 import ObjectStore, S3Uri, local_path_or_none

__all__ = ["ResultCache", "generation_config_hash"]

_log = logging.getLogger(__name__)

_SCHEMA = pa.schema(
    [
        ("example_id", pa.string()),
        ("output", pa.string()),
        ("latency_s", pa.float64()),
        ("output_tokens", pa.int64()),
        ("batch_size", pa.int64()),
    ]
)


def generation_config_hash(config: GenerationConfig) -> str:
    """A short hash of the settings that change what a model answers."""
    canonical = json.dumps(config.model_dump(mode="json", exclude={"batch_size"}), sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


class ResultCache:
    """Generations stored as Parquet under an ``s3://`` prefix (through ``store``) or a local folder."""

    def __init__(self, location: str | Path, store: ObjectStore | None = None) -> None:
        self.location = str(location)
        self._dir = local_path_or_none(self.location)
        if self._dir is None:
            S3Uri.parse(self.location)
            if store is None:
                raise EvaluationError(
                    f"result cache {self.location} is in S3: pass an ObjectStore to reach it"
                )
        self._store = store

    @staticmethod
    def key(model_id: str, suite_version: str, generation: GenerationConfig) -> str:
        canonical = json.dumps(
            {"model": model_id, "suite": suite_version, "generation": generation_config_hash(generation)},
            sort_keys=True,
        )
        return hashlib.sha256(canonical.encode()).hexdigest()[:32]

    def _where(self, key: str) -> str:
        name = f"{key}.parquet"
        if self._dir is not None:
            return str(self._dir / name)
        return str(S3Uri.parse(self.location).join(name))

    def get(self, model_id: str, suite: LoadedSuite, generation: GenerationConfig) -> list[Generation] | None:
        """The cached generations for every example of ``suite``, in order; None on a miss."""
        where = self._where(self.key(model_id, suite.version, generation))
        try:
            table = self._read(where)
        except (OSError, pa.ArrowInvalid) as exc:
            # An unreadable entry is regenerated rather than trusted; the new entry replaces it.
            _log.warning("ignoring unreadable result cache entry %s: %s", where, exc)
            return None
        if table is None:
            return None
        if "batch_size" not in table.column_names:
            _log.info("regenerating result cache entry %s: written before latency was per example", where)
            return None
        rows = table.to_pylist()
        if tuple(row["example_id"] for row in rows) != suite.example_ids:
            _log.warning(
                "ignoring result cache entry %s: its examples differ from suite %s", where, suite.name
            )
            return None
        return [
            Generation(
                text=row["output"],
                latency_s=row["latency_s"],
                output_tokens=row["output_tokens"],
                batch_size=row["batch_size"],
            )
            for row in rows
        ]

    def put(
        self,
        model_id: str,
        suite: LoadedSuite,
        generation: GenerationConfig,
        generations: Sequence[Generation],
    ) -> str:
        """Store ``generations`` (one per example of ``suite``); returns the entry's path or URI."""
        if len(generations) != len(suite.records):
            raise EvaluationError(
                f"cannot cache {len(generations)} generations for the {len(suite.records)} examples of suite {suite.name!r}"
            )
        table = pa.Table.from_pydict(
            {
                "example_id": list(suite.example_ids),
                "output": [g.text for g in generations],
                "latency_s": [g.latency_s for g in generations],
                "output_tokens": [g.output_tokens for g in generations],
                "batch_size": [g.batch_size for g in generations],
            },
            schema=_SCHEMA.with_metadata(
                {
                    "model_id": model_id,
                    "suite": suite.name,
                    "suite_version": suite.version,
                    "generation": json.dumps(generation.model_dump(mode="json"), sort_keys=True),
                }
            ),
        )
        where = self._where(self.key(model_id, suite.version, generation))
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        data = sink.getvalue().to_pybytes()
        if self._dir is None:
            assert self._store is not None
            return self._store.put_bytes(where, data, content_type="application/vnd.apache.parquet")
        self._dir.mkdir(parents=True, exist_ok=True)
        # Write then rename, so a reader never sees half a file.
        fd, tmp = tempfile.mkstemp(dir=self._dir, suffix=".tmp")
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, where)
        return where

    def _read(self, where: str) -> pa.Table | None:
        if self._dir is not None:
            path = Path(where)
            return pq.read_table(path) if path.exists() else None
        assert self._store is not None
        if not self._store.exists(where):
            return None
        return pq.read_table(pa.BufferReader(self._store.get_bytes(where)))
