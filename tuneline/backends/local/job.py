"""A local job's directory, its status file and lock, and its S3 output prefix.

A job is identified by ``spec.identity`` and lives in ``<settings.home>/jobs/<identity>/``:
``status.json`` (for other processes: ``status()``, a re-run), ``metrics.jsonl`` (one line per
step), ``CANCEL`` (the marker ``cancel()`` leaves), ``checkpoints/step-N/`` (mirrored to
``<output_uri>/checkpoints/step-N/``) and ``model/`` (uploaded to ``<output_uri>/model/``).
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tuneline.backends.base import JobSpec, JobStatus
from tuneline.backends.local.checkpoints import MANIFEST, write_manifest
from tuneline.errors import BackendError
from tuneline.storage.s3 import ObjectStore, S3Uri

__all__ = ["JobDir", "output_uri", "upload_sealed"]


@dataclass(frozen=True)
class JobDir:
    root: Path

    @property
    def status_file(self) -> Path:
        return self.root / "status.json"

    @property
    def metrics_file(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def cancel_file(self) -> Path:
        return self.root / "CANCEL"

    @property
    def model_dir(self) -> Path:
        return self.root / "model"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def trainer_dir(self) -> Path:
        """Where the Trainer writes its own checkpoint-N directories before they are sealed."""
        return self.root / "trainer"

    def read_status(self) -> JobStatus | None:
        if not self.status_file.is_file():
            return None
        return JobStatus.model_validate_json(self.status_file.read_text(encoding="utf-8"))

    def write_status(self, status: JobStatus) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.status_file.with_suffix(".tmp")
        tmp.write_text(status.model_dump_json(), encoding="utf-8")
        tmp.replace(self.status_file)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Only one process trains a job at a time; a second one is refused, not queued."""
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / "lock").open("w") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as exc:
                raise BackendError(
                    f"local job {self.root.name} is being trained by another process; wait for it "
                    "or stop that process"
                ) from exc
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def output_uri(spec: JobSpec, *parts: str) -> str:
    return str(S3Uri.parse(spec.output_uri.rstrip("/") + "/").join(*parts)) + "/"


def upload_sealed(store: ObjectStore, prefix: str, directory: Path) -> None:
    """Upload a directory with ``manifest.json`` last, so a prefix with a manifest is complete."""
    write_manifest(directory, step=0)
    for path in sorted(p for p in directory.rglob("*") if p.is_file() and p.name != MANIFEST):
        store.put_file(prefix + path.relative_to(directory).as_posix(), path)
    store.put_file(prefix + MANIFEST, directory / MANIFEST)
