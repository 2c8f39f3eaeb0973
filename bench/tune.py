"""Benchmark: the local backend's training throughput against a bare transformers loop.

The same tiny model (the example's base), the same examples (the support-ticket train split,
one epoch) and so the same useful tokens, trained four ways:

1. ``bare_naive``: a hand-written loop -- chat template, every example right-padded to the
   configured maximum length (``padding="max_length"``, the tokenizer tutorials' loop),
   ``model(labels=...)``, AdamW -- with no checkpoints, metrics or anything else. This is the
   issue's "bare loop with naive padding", the baseline of both targets;
2. ``bare_dynamic``: the same loop padding each batch only to its longest example
   (``padding=True``), a stronger baseline reported beside it;
3. ``tuneline_padded``: ``LocalBackend`` with ``packing: false`` (same batch size), with its
   per-step metrics, progress updates and step bookkeeping, and a checkpoint at the end;
4. ``tuneline_packed``: ``LocalBackend`` with ``packing: true``.

And ``ddp`` (``--ddp-processes``, 2 by default; 0 skips it): the packed run once more in one
process and in that many (``tune.distributed: {processes: N, strategy: ddp}``, torchrun, gloo on
CPU) with the same global batch, once each after the rounds: ``completed``, ``tokens_per_second``
of the N-process run and ``loss_vs_single``, its final training loss over the one-process run's.
On a machine with fewer cores than twice the processes the processes share them, so the figure
measures the machinery (launch, gradient all-reduce), not a speed-up.

Useful tokens/s counts real (non-padding) tokens. The Tuneline runs are timed by their own
``elapsed_s`` at the last step: everything from loading the data plan to the last optimizer step,
logging included, the final checkpoint and model upload excluded (they happen once per job, not
per token). The runs need S3 for checkpoints: the configured one, started with ``tuneline stack
up`` semantics (an already healthy SeaweedFS is reused).

Other work on the machine slows whichever run it overlaps: the four are run in interleaved
rounds and each figure is the median over the rounds; the load average before and after is in
the output.

Prints one JSON line at the end. Targets: padded >= 0.95x bare; packed >= 1.5x bare (both
against ``bare_naive``; the ratios against ``bare_dynamic`` are reported too).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from examples.support_tickets.base_model import EXAMPLE_MODEL_SIZE
from examples.support_tickets.generate import generate_dataset, ticket_corpus
from tuneline import stack
from tuneline.backends.base import JobSpec
from tuneline.backends.local.backend import LocalBackend
from tuneline.backends.local.tiny_model import build_tiny_model
from tuneline.config import LocalTuneConfig, Target
from tuneline.lineage import DatasetVersion, JobState
from tuneline.settings import get_settings
from tuneline.storage.s3 import ObjectStore


def bare_loop(
    model_dir: Path, lines: list[str], batch_size: int, lr: float, seed: int, pad_to: int | None
) -> dict[str, float]:
    """``pad_to=None``: pad each batch to its longest example; else every example to ``pad_to``."""
    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    records = [json.loads(line) for line in lines]
    order = torch.randperm(len(records), generator=torch.Generator().manual_seed(seed)).tolist()
    padding: dict[str, Any] = (
        {"padding": True}
        if pad_to is None
        else {"padding": "max_length", "max_length": pad_to, "truncation": True}
    )
    useful = padded = 0
    started = time.perf_counter()
    for start in range(0, len(order), batch_size):
        texts = [
            tokenizer.apply_chat_template(
                [{"role": "system", "content": records[i]["system"]}, *records[i]["messages"]], tokenize=False
            )
            for i in order[start : start + batch_size]
        ]
        batch = tokenizer(texts, return_tensors="pt", add_special_tokens=False, **padding)
        labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
        loss = model(**batch, labels=labels, use_cache=False).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        useful += int(batch["attention_mask"].sum())
        padded += batch["input_ids"].numel()
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "useful_tokens": useful,
        "padded_tokens": padded,
        "tokens_per_second": useful / seconds,
    }


def tuneline_run(
    backend: LocalBackend, store: ObjectStore, model_dir: Path, train_uri: str, n: int, **tune: Any
) -> dict[str, float]:
    run_id = uuid.uuid4().hex[:10]
    dataset = DatasetVersion(
        name="bench-tickets",
        version=f"bench-{run_id}",
        uri=train_uri.rsplit("/", 1)[0] + "/",
        target=Target.LOCAL,
        total=n,
        accepted=n,
        rejected=0,
        duplicates=0,
        splits={"train": n},
        split_uris={"train": train_uri},
        tokens=0,
    )
    config = LocalTuneConfig(
        base_model=str(model_dir),
        adapter="full",
        epochs=1,
        warmup_ratio=0.0,
        lr_scheduler="constant",
        checkpoint_every_steps=100_000,
        eval_every_steps=100_000,
        device="cpu",
        **tune,
    )
    spec = JobSpec(name="bench", dataset=dataset, tune=config, output_uri=store.uri(f"bench/tune/{run_id}/"))
    metrics: list[dict[str, float]] = []

    class _Sink:
        def log_metrics(self, values: dict[str, float], step: int) -> None:
            metrics.append(values)

    job_id = backend.submit(spec)
    status = backend.wait(spec, job_id, _Sink())
    summary = json.loads(store.get_bytes(spec.output_uri + "model/tuneline_model.json"))
    seconds = metrics[-1]["elapsed_s"]
    useful = summary["tokens"]
    store.delete_prefix(spec.output_uri)
    return {
        "seconds": seconds,
        "useful_tokens": useful,
        "steps": len(metrics),
        "tokens_per_second": useful / seconds,
        "completed": status.state == JobState.COMPLETED,
        "final_train_loss": summary["final_train_loss"],
    }


def _median_run(runs: list[dict[str, float]]) -> dict[str, Any]:
    """The round with the median tokens/s, plus every round's tokens/s."""
    ranked = sorted(runs, key=lambda r: r["tokens_per_second"])
    return {**ranked[len(ranked) // 2], "rounds_tokens_per_second": [r["tokens_per_second"] for r in runs]}


def _ddp_comparison(
    backend: LocalBackend, store: ObjectStore, model_dir: Path, train_uri: str, n: int,
    processes: int, packed_rows: int, common: dict[str, Any],
) -> dict[str, Any]:
    """The packed run in one process and in ``processes``, with the same global batch."""
    batch = max(processes, -(-packed_rows // processes) * processes)  # a multiple of the processes
    single = tuneline_run(backend, store, model_dir, train_uri, n, packing=True, batch_size=batch, **common)
    spread = tuneline_run(
        backend, store, model_dir, train_uri, n, packing=True, batch_size=batch,
        distributed={"processes": processes, "strategy": "ddp"}, **common,
    )
    return {
        "processes": processes,
        "completed": spread["completed"] and spread["steps"] == single["steps"],
        "tokens_per_second": spread["tokens_per_second"],
        "loss_vs_single": spread["final_train_loss"] / single["final_train_loss"],
        "batch_size": batch,
        "steps": spread["steps"],
        "seconds": spread["seconds"],
        "single_tokens_per_second": single["tokens_per_second"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=2400)
    parser.add_argument("--batch-size", type=int, default=16, help="examples per step (bare, padded)")
    parser.add_argument(
        "--row-length", type=int, default=256, help="max_seq_length: packed row length, naive padding length"
    )
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; each figure is the median")
    parser.add_argument("--ddp-processes", type=int, default=2, help="processes of the ddp run; 0 skips it")
    args = parser.parse_args()

    load_before = os.getloadavg()
    settings = get_settings()
    stack.up(settings, services=("s3",))
    settings = stack.with_stack_credentials(settings)
    store = ObjectStore(settings)
    store.ensure_bucket()
    runs: dict[str, list[dict[str, float]]] = {
        "bare_naive": [],
        "bare_dynamic": [],
        "tuneline_padded": [],
        "tuneline_packed": [],
    }
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model_dir = build_tiny_model(work / "model", ticket_corpus(), **EXAMPLE_MODEL_SIZE)
        lines = (
            generate_dataset(work / "tickets.jsonl", n=args.examples, seed=0)
            .read_text(encoding="utf-8")
            .splitlines()
        )
        train_uri = store.put_bytes(
            store.uri(f"bench/tune/data-{uuid.uuid4().hex[:8]}/train.jsonl"),
            ("\n".join(lines) + "\n").encode(),
        )
        backend = LocalBackend(settings.model_copy(update={"home": work / "home"}), store)
        common = {"max_seq_length": args.row_length, "learning_rate": args.lr}
        for _ in range(args.rounds):
            runs["bare_naive"].append(
                bare_loop(model_dir, lines, args.batch_size, args.lr, seed=0, pad_to=args.row_length)
            )
            dynamic = bare_loop(model_dir, lines, args.batch_size, args.lr, seed=0, pad_to=None)
            runs["bare_dynamic"].append(dynamic)
            # Keep the number of examples per step comparable to the padded runs: a packed row
            # holds about row_length / mean_length examples.
            mean_tokens = dynamic["useful_tokens"] / len(lines)
            packed_rows = max(1, round(args.batch_size * mean_tokens / args.row_length))
            for name, packing, batch_size in (
                ("tuneline_padded", False, args.batch_size),
                ("tuneline_packed", True, packed_rows),
            ):
                runs[name].append(
                    tuneline_run(
                        backend, store, model_dir, train_uri, len(lines),
                        packing=packing, batch_size=batch_size, **common,
                    )
                )
        ddp = (
            _ddp_comparison(backend, store, model_dir, train_uri, len(lines), args.ddp_processes, packed_rows, common)
            if args.ddp_processes > 1
            else None
        )
        store.delete_prefix(train_uri)
    result: dict[str, Any] = {
        "bench": "tune",
        "threads": torch.get_num_threads(),
        "examples": len(lines),
        "row_length": args.row_length,
        "rounds": args.rounds,
        "load_average_before": load_before[0],
        "load_average_after": os.getloadavg()[0],
        **{name: _median_run(r) for name, r in runs.items()},
    }
    speed = {name: result[name]["tokens_per_second"] for name in runs}
    result["ratio_padded_vs_bare"] = speed["tuneline_padded"] / speed["bare_naive"]
    result["ratio_packed_vs_bare"] = speed["tuneline_packed"] / speed["bare_naive"]
    result["ratio_padded_vs_bare_dynamic"] = speed["tuneline_padded"] / speed["bare_dynamic"]
    result["ratio_packed_vs_bare_dynamic"] = speed["tuneline_packed"] / speed["bare_dynamic"]
    if ddp is not None:
        result["ddp"] = ddp
    result["targets"] = {"ratio_padded_vs_bare": 0.95, "ratio_packed_vs_bare": 1.5}
    result["targets_met"] = result["ratio_padded_vs_bare"] >= 0.95 and result["ratio_packed_vs_bare"] >= 1.5
    print(json.dumps(result), file=sys.stdout)


if __name__ == "__main__":
    main()
