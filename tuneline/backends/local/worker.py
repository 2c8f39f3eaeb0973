"""One training process of a ``tune.distributed`` job: ``python -m tuneline.backends.local.worker``.

torchrun starts one per process and sets ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE`` and the
rendezvous; the settings come from the ``TUNELINE_*`` environment. Started by
:func:`tuneline.backends.local.distributed.train_in_processes` with ``--job-dir`` (the job's
``spec.json`` is there) and ``--resume`` (the checkpoint directory it chose, or ``none``).

On several machines (a Kubeflow Trainer ``TrainJob``, ``infra/kubernetes/trainjob.yaml``) each
machine's torchrun starts it with ``--spec <s3://.../spec.json>`` (``submit`` writes it next to
the job's status) and ``--resume auto``: rank 0 chooses the newest checkpoint that verifies and
every machine fetches that one; ``--publish-status`` makes rank 0 write the final status to S3, so
the tune stage re-attaches to the finished job.
"""

from __future__ import annotations

import argparse
import fcntl
import logging
from pathlib import Path

from tuneline.backends.base import JobSpec
from tuneline.backends.local.data import read_text
from tuneline.backends.local.hf_models import resolve_model_dir
from tuneline.backends.local.job import JobDir, output_uri
from tuneline.backends.local.ranks import Ranks
from tuneline.backends.local.recipe import AUTO, TrainingRun
from tuneline.settings import get_settings
from tuneline.storage.s3 import ObjectStore

__all__ = ["argument_parser", "main"]

RESULT_FILE = "result.json"  # the same name tuneline.backends.local.distributed reads


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tuneline.backends.local.worker", description=__doc__.splitlines()[0])
    parser.add_argument("--job-dir", type=Path, help="the job's directory (default <home>/jobs/<identity>)")
    parser.add_argument("--spec", help="the job spec (a path or s3:// URI; default <job-dir>/spec.json)")
    parser.add_argument(
        "--resume", default=AUTO, help="a checkpoint directory, 'none', or 'auto' (rank 0 chooses; the default)"
    )
    parser.add_argument("--publish-status", action="store_true", help="rank 0 writes the final status to S3 too")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = argument_parser().parse_args(argv)
    ranks = Ranks.from_env()
    logging.basicConfig(level=logging.INFO, format=f"[rank {ranks.rank}] %(levelname)s %(name)s: %(message)s")
    import torch

    if ranks.distributed and torch.cuda.is_available():
        torch.cuda.set_device(ranks.local_rank)  # before the model is loaded onto "cuda"
    settings = get_settings()
    store = ObjectStore(settings)
    if args.spec is None and args.job_dir is None:
        raise SystemExit("give --job-dir (its spec.json is read) or --spec")
    spec = JobSpec.model_validate_json(read_text(args.spec or str(args.job_dir / "spec.json"), store))
    job = JobDir(args.job_dir or settings.home / "jobs" / spec.identity)
    # The ranks of one machine share its model cache: the first to get here downloads an s3:// base.
    cache = settings.home / "cache" / "models"
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        resolve_model_dir(spec.tune.base_model, store, cache)
        fcntl.flock(lock, fcntl.LOCK_UN)
    resume = None if args.resume == "none" else args.resume
    status = TrainingRun(spec, job, store, settings, sink=None, on_progress=None, ranks=ranks).train(resume=resume)
    if ranks.primary:
        job.write_status(status)
        tmp = job.root / (RESULT_FILE + ".tmp")
        tmp.write_text(status.model_dump_json(), encoding="utf-8")
        tmp.replace(job.root / RESULT_FILE)
        if args.publish_status:
            store.put_bytes(output_uri(spec) + "status.json", status.model_dump_json().encode(), "application/json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
