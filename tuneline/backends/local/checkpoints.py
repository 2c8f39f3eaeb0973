"""Training checkpoints: written locally, mirrored to S3, verified before they are trusted.

A checkpoint is a directory ``step-N/`` holding the trainable weights (``weights.safetensors``),
the optimizer, scheduler and gradient-scaler states, the RNG states, the trainer state (step, data
position, early-stopping counters, elapsed time) and, written last, ``manifest.json`` with the
size and SHA-256 of every other file. A checkpoint without a manifest, or whose files do not match
it, is incomplete (the process died while writing it) or corrupt, and is never loaded: the newest
checkpoint that verifies is used instead, and the skipped ones are logged with the reason.

In S3 the manifest is uploaded after every other file, so the same rule holds there: a prefix
without ``manifest.json`` is a checkpoint whose upload did not finish.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tuneline.storage.s3 import ObjectStore, S3Uri

__all__ = ["CheckpointStore", "MANIFEST"]

MANIFEST = "manifest.json"
_STEP_DIR = re.compile(r"^step-(\d+)$")
_log = logging.getLogger(__name__)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(directory: Path, step: int) -> None:
    files = {
        p.relative_to(directory).as_posix(): {"size": p.stat().st_size, "sha256": _sha256(p)}
        for p in sorted(directory.rglob("*"))
        if p.is_file() and p.name != MANIFEST
    }
    tmp = directory / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps({"step": step, "files": files}, indent=1, sort_keys=True), encoding="utf-8")
    tmp.replace(directory / MANIFEST)


def verify(directory: Path) -> str | None:
    """None when ``directory`` is a complete checkpoint, else why it is not."""
    manifest_path = directory / MANIFEST
    if not manifest_path.is_file():
        return "no manifest.json (the checkpoint was not finished)"
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        files: dict[str, Any] = manifest["files"]
    except (ValueError, KeyError) as exc:
        return f"manifest.json is unreadable ({exc})"
    for name, meta in files.items():
        path = directory / name
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != meta["size"]:
            return f"{name} has {path.stat().st_size} bytes, the manifest says {meta['size']}"
        if _sha256(path) != meta["sha256"]:
            return f"{name} does not match its SHA-256 in the manifest"
    return None


class CheckpointStore:
    """The checkpoints of one job: ``local_root/step-N`` mirrored to ``remote_uri/step-N/``."""

    def __init__(self, local_root: Path, remote_uri: str, store: ObjectStore, keep: int = 2) -> None:
        self.local_root = local_root
        self.remote = S3Uri.parse(remote_uri.rstrip("/") + "/")
        self.store = store
        self.keep = keep

    def staging_dir(self, step: int) -> Path:
        path = self.local_root / f"step-{step}.partial"
        if path.exists():
            shutil.rmtree(path)
        path.mkdir(parents=True)
        return path

    def commit(self, staging: Path, step: int) -> str:
        """Seal a filled staging directory as ``step-N``, upload it, prune old ones; its URI."""
        write_manifest(staging, step)
        final = self.local_root / f"step-{step}"
        if final.exists():
            shutil.rmtree(final)
        staging.rename(final)
        uri = self.remote.join(f"step-{step}")
        for path in sorted(p for p in final.rglob("*") if p.is_file() and p.name != MANIFEST):
            self.store.put_file(str(uri.join(path.relative_to(final).as_posix())), path)
        self.store.put_file(str(uri.join(MANIFEST)), final / MANIFEST)
        self._prune()
        return str(uri) + "/"

    def _local_steps(self) -> set[int]:
        if not self.local_root.is_dir():
            return set()
        return {int(m.group(1)) for p in self.local_root.iterdir() if (m := _STEP_DIR.match(p.name))}

    def _remote_steps(self) -> set[int]:
        steps = set()
        for key in self.store.list_keys(str(self.remote)):
            first = key[len(self.remote.key) :].split("/", 1)[0]
            if m := _STEP_DIR.match(first):
                steps.add(int(m.group(1)))
        return steps

    def _prune(self) -> None:
        for step in sorted(self._local_steps())[: -self.keep]:
            shutil.rmtree(self.local_root / f"step-{step}", ignore_errors=True)
        for step in sorted(self._remote_steps())[: -self.keep]:
            self.store.delete_prefix(str(self.remote.join(f"step-{step}")) + "/")

    def fetch(self, step: int) -> Path:
        """``step-N`` here, verified: the local copy when it verifies, else downloaded from S3."""
        local = self.local_root / f"step-{step}"
        if local.is_dir() and verify(local) is None:
            return local
        shutil.rmtree(local, ignore_errors=True)
        self.store.download_prefix(str(self.remote.join(f"step-{step}")) + "/", local)
        problem = verify(local)
        if problem is not None:
            raise ValueError(f"checkpoint step-{step} from {self.remote} does not verify: {problem}")
        return local

    def candidates(self) -> Iterator[tuple[int, Path]]:
        """Verified checkpoint directories, newest first; skipped ones are logged with the reason.

        A local copy is used when it verifies; otherwise the S3 copy is downloaded and verified.
        """
        for step in sorted(self._local_steps() | self._remote_steps(), reverse=True):
            local = self.local_root / f"step-{step}"
            problem = verify(local) if local.is_dir() else "no local copy"
            if problem is not None:
                remote = str(self.remote.join(f"step-{step}")) + "/"
                shutil.rmtree(local, ignore_errors=True)
                self.store.download_prefix(remote, local)
                remote_problem = verify(local)
                if remote_problem is not None:
                    _log.warning(
                        "checkpoint step-%d is incomplete or corrupt (local: %s; %s: %s); "
                        "falling back to an earlier checkpoint",
                        step,
                        problem,
                        remote,
                        remote_problem,
                    )
                    continue
            yield step, local
