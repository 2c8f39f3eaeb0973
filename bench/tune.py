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

And ``trl`` (``--trl-examples``; 0 skips it): Tuneline's local provider against bare TRL
(``bench/bare_trl.py``: TRL's trainer as its documentation writes it) on a model large enough to
mean something on CPU -- :data:`BENCH_MODEL_SIZE`, ~11M parameters built from a config with the
example's tokenizer -- with the same data, features and settings, in interleaved rounds:

- SFT, one epoch: ``tuneline_padded`` / ``trl_padded`` is ``ratio_vs_trl`` (target >= 0.95);
  ``tuneline_packed`` / ``trl_padded`` is ``ratio_packing_vs_trl`` (packing on against TRL's
  padding); ``trl_packed`` (TRL's own bfd packing) is reported beside them;
- DPO (preference pairs from the example's generator) and GRPO (its RFT prompts, rewarded by the
  JSON-validity and field-accuracy graders), a fixed number of steps each:
  ``ratio_dpo_vs_trl`` and ``ratio_grpo_vs_trl`` compare steps/s;
- all of them in fp32 (Tuneline's ``precision: auto`` on CPU), and SFT padded once more in bf16
  autocast (``precision: bf16``; TRL's own default wherever the device has bf16):
  ``ratio_vs_trl_bf16``.

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
from tuneline.backends.local.tiny_model import TINY_SIZE, build_tiny_model
from tuneline.config import LocalTuneConfig, Target
from tuneline.data.formats import convert_record
from tuneline.lineage import DatasetVersion, JobState
from tuneline.records import record_to_dict
from tuneline.settings import get_settings
from tuneline.storage.s3 import ObjectStore

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bare_trl  # noqa: E402  (a sibling script module, not a package)

BENCH_MODEL_SIZE: dict[str, Any] = {
    **TINY_SIZE,
    "hidden_size": 384,
    "intermediate_size": 1024,
    "num_hidden_layers": 6,
    "num_attention_heads": 6,
    "num_key_value_heads": 6,
}
"""~11M parameters: large enough that the trainer's per-step work no longer dominates on CPU."""

GRPO_REWARDS: list[dict[str, Any]] = [{"name": "json_valid", "weight": 1.0}, {"name": "field_accuracy", "weight": 2.0}]


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
    """One job through ``LocalBackend`` (submit, wait), timed by its own per-step ``elapsed_s``."""
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
        **{"epochs": 1, **tune},
        warmup_ratio=0.0,
        lr_scheduler="constant",
        checkpoint_every_steps=100_000,
        eval_every_steps=100_000,
        device="cpu",
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
        "steps_per_second": len(metrics) / seconds,
        "tokens_per_second": useful / seconds,
        "completed": status.state == JobState.COMPLETED,
        "final_train_loss": summary["final_train_loss"],
    }


def _median_run(runs: list[dict[str, float]], key: str = "tokens_per_second") -> dict[str, Any]:
    """The round with the median ``key``, plus every round's value of it."""
    ranked = sorted(runs, key=lambda r: r[key])
    return {**ranked[len(ranked) // 2], f"rounds_{key}": [r[key] for r in runs]}


def _canonical(lines: list[str]) -> bytes:
    """Raw example lines as prepare writes them for ``local``: canonical records with their kind."""
    return "".join(json.dumps(record_to_dict(convert_record(json.loads(line)))) + "\n" for line in lines).encode()


def _trl_comparison(
    backend: LocalBackend, store: ObjectStore, work: Path, args: argparse.Namespace
) -> dict[str, Any]:
    """Tuneline against bare TRL on :data:`BENCH_MODEL_SIZE`: SFT, DPO and GRPO (see the module doc)."""
    from examples.support_tickets.generate import generate_preferences, generate_rft

    model_dir = build_tiny_model(work / "bench-model", ticket_corpus(), **BENCH_MODEL_SIZE)
    parameters = sum(p.numel() for p in AutoModelForCausalLM.from_pretrained(model_dir).parameters())
    data = {
        "sft": generate_dataset(work / "trl-tickets.jsonl", n=args.trl_examples, seed=5),
        "dpo": generate_preferences(work / "trl-preferences.jsonl", n=args.dpo_steps * args.dpo_batch_size, seed=6),
        "grpo": generate_rft(work / "trl-rft.jsonl", n=args.grpo_steps * args.grpo_batch_size, seed=7),
    }
    lines = {name: path.read_text(encoding="utf-8").splitlines() for name, path in data.items()}
    prefix = store.uri(f"bench/tune/trl-{uuid.uuid4().hex[:8]}/")
    uris = {name: store.put_bytes(f"{prefix}{name}.jsonl", _canonical(rows)) for name, rows in lines.items()}
    sft = {"batch_size": args.trl_batch_size, "lr": args.lr, "max_length": args.row_length}
    dpo = {"batch_size": args.dpo_batch_size, "lr": 5e-5, "max_length": args.row_length, "steps": args.dpo_steps}
    grpo = {
        "batch_size": args.grpo_batch_size, "lr": 3e-4, "steps": args.grpo_steps,
        "num_generations": args.grpo_generations, "max_completion_length": 32,
    }
    mean_tokens = None
    runs: dict[str, list[dict[str, float]]] = {
        name: [] for name in ("trl_padded", "tuneline_padded", "trl_packed", "tuneline_packed", "trl_padded_bf16",
                              "tuneline_padded_bf16", "trl_dpo", "tuneline_dpo", "trl_grpo", "tuneline_grpo")
    }

    def tuneline(kind: str, **tune: Any) -> dict[str, float]:
        return tuneline_run(backend, store, model_dir, uris[kind], len(lines[kind]), **tune)

    for round_number in range(args.rounds):
        out = work / f"trl-out-{round_number}"
        padded = bare_trl.sft(model_dir, lines["sft"], out / "sft", packing=False, **sft)
        runs["trl_padded"].append(padded)
        mean_tokens = mean_tokens or padded["useful_tokens"] / len(lines["sft"])
        rows = max(1, round(args.trl_batch_size * mean_tokens / args.row_length))
        runs["tuneline_padded"].append(tuneline(
            "sft", packing=False, batch_size=sft["batch_size"], learning_rate=sft["lr"], max_seq_length=sft["max_length"],
        ))
        runs["trl_packed"].append(
            bare_trl.sft(model_dir, lines["sft"], out / "sft-packed", packing=True, **{**sft, "batch_size": rows})
        )
        runs["tuneline_packed"].append(tuneline(
            "sft", packing=True, batch_size=rows, learning_rate=sft["lr"], max_seq_length=sft["max_length"],
        ))
        runs["trl_padded_bf16"].append(
            bare_trl.sft(model_dir, lines["sft"], out / "sft-bf16", packing=False, bf16=True, **sft)
        )
        runs["tuneline_padded_bf16"].append(tuneline(
            "sft", packing=False, precision="bf16", batch_size=sft["batch_size"], learning_rate=sft["lr"],
            max_seq_length=sft["max_length"],
        ))
        runs["trl_dpo"].append(bare_trl.dpo(model_dir, lines["dpo"], out / "dpo", beta=0.1, **dpo))
        runs["tuneline_dpo"].append(tuneline(
            "dpo", method="dpo", beta=0.1, batch_size=dpo["batch_size"], learning_rate=dpo["lr"],
            max_seq_length=dpo["max_length"], max_steps=dpo["steps"],
        ))
        runs["trl_grpo"].append(bare_trl.grpo(model_dir, lines["grpo"], out / "grpo", rewards=GRPO_REWARDS, **grpo))
        runs["tuneline_grpo"].append(tuneline(
            "grpo", method="grpo", rewards=GRPO_REWARDS, batch_size=grpo["batch_size"], learning_rate=grpo["lr"],
            max_steps=grpo["steps"], num_generations=grpo["num_generations"],
            max_completion_length=grpo["max_completion_length"], temperature=1.0,
        ))
    store.delete_prefix(prefix)
    result: dict[str, Any] = {
        "model_parameters": parameters,
        "model_size": BENCH_MODEL_SIZE,
        "sft_examples": len(lines["sft"]),
        **{name: _median_run(r) for name, r in runs.items() if "dpo" not in name and "grpo" not in name},
        **{name: _median_run(r, "steps_per_second") for name, r in runs.items() if "dpo" in name or "grpo" in name},
    }
    tokens = {name: result[name]["tokens_per_second"] for name in runs if "dpo" not in name and "grpo" not in name}
    result["ratio_vs_trl"] = tokens["tuneline_padded"] / tokens["trl_padded"]
    result["ratio_vs_trl_bf16"] = tokens["tuneline_padded_bf16"] / tokens["trl_padded_bf16"]
    result["ratio_packing_vs_trl"] = tokens["tuneline_packed"] / tokens["trl_padded"]
    result["ratio_packing_vs_trl_packing"] = tokens["tuneline_packed"] / tokens["trl_packed"]
    for method in ("dpo", "grpo"):
        ratio = result[f"tuneline_{method}"]["steps_per_second"] / result[f"trl_{method}"]["steps_per_second"]
        result[f"ratio_{method}_vs_trl"] = ratio
    return result


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
    parser.add_argument("--loop-examples", action=argparse.BooleanOptionalAction, default=True,
                        help="the bare-loop comparison on the example's tiny model (--no-loop-examples skips it)")
    parser.add_argument("--trl-examples", type=int, default=160,
                        help="SFT examples of the comparison with bare TRL on the ~11M model; 0 skips it")
    parser.add_argument("--trl-batch-size", type=int, default=8, help="examples per SFT step against TRL")
    parser.add_argument("--dpo-steps", type=int, default=8)
    parser.add_argument("--dpo-batch-size", type=int, default=8, help="preference pairs per DPO step")
    parser.add_argument("--grpo-steps", type=int, default=4)
    parser.add_argument("--grpo-batch-size", type=int, default=16, help="completions per GRPO step")
    parser.add_argument("--grpo-generations", type=int, default=4, help="completions per prompt")
    args = parser.parse_args()

    load_before = os.getloadavg()
    settings = get_settings()
    stack.up(settings, services=("s3",))
    settings = stack.with_stack_credentials(settings)
    store = ObjectStore(settings)
    store.ensure_bucket()
    result: dict[str, Any] = {
        "bench": "tune",
        "threads": torch.get_num_threads(),
        "row_length": args.row_length,
        "rounds": args.rounds,
        "load_average_before": load_before[0],
    }
    targets: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        backend = LocalBackend(settings.model_copy(update={"home": work / "home"}), store)
        if args.loop_examples or args.ddp_processes > 1:
            result.update(_loop_and_ddp(backend, store, work, args))
            if args.loop_examples:
                targets.update({"ratio_padded_vs_bare": 0.95, "ratio_packed_vs_bare": 1.5})
        if args.trl_examples > 0:
            result["trl"] = _trl_comparison(backend, store, work, args)
            for name in ("ratio_vs_trl", "ratio_packing_vs_trl", "ratio_dpo_vs_trl", "ratio_grpo_vs_trl"):
                result[name] = result["trl"][name]
            targets["ratio_vs_trl"] = 0.95
    result["load_average_after"] = os.getloadavg()[0]
    result["targets"] = targets
    result["targets_met"] = all(result[name] >= target for name, target in targets.items())
    print(json.dumps(result), file=sys.stdout)


def _loop_and_ddp(backend: LocalBackend, store: ObjectStore, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The example's tiny model: the bare loops against Tuneline padded and packed, and ``ddp``."""
    runs: dict[str, list[dict[str, float]]] = {
        "bare_naive": [],
        "bare_dynamic": [],
        "tuneline_padded": [],
        "tuneline_packed": [],
    }
    model_dir = build_tiny_model(work / "model", ticket_corpus(), **EXAMPLE_MODEL_SIZE)
    lines = generate_dataset(work / "tickets.jsonl", n=args.examples, seed=0).read_text(encoding="utf-8").splitlines()
    train_uri = store.put_bytes(
        store.uri(f"bench/tune/data-{uuid.uuid4().hex[:8]}/train.jsonl"), ("\n".join(lines) + "\n").encode()
    )
    common = {"max_seq_length": args.row_length, "learning_rate": args.lr}
    # Keep the number of examples per step comparable to the padded runs: a packed row holds
    # about row_length / mean_length examples.
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    mean_tokens = sum(
        len(tokenizer.apply_chat_template([{"role": "system", "content": r["system"]}, *r["messages"]]))
        for r in map(json.loads, lines)
    ) / len(lines)
    packed_rows = max(1, round(args.batch_size * mean_tokens / args.row_length))
    for _ in range(args.rounds if args.loop_examples else 0):
        runs["bare_naive"].append(bare_loop(model_dir, lines, args.batch_size, args.lr, seed=0, pad_to=args.row_length))
        runs["bare_dynamic"].append(bare_loop(model_dir, lines, args.batch_size, args.lr, seed=0, pad_to=None))
        for name, packing, batch_size in (
            ("tuneline_padded", False, args.batch_size),
            ("tuneline_packed", True, packed_rows),
        ):
            runs[name].append(
                tuneline_run(
                    backend, store, model_dir, train_uri, len(lines), packing=packing, batch_size=batch_size, **common
                )
            )
    result: dict[str, Any] = {"examples": len(lines)}
    if args.loop_examples:
        result.update({name: _median_run(r) for name, r in runs.items()})
        speed = {name: result[name]["tokens_per_second"] for name in runs}
        result["ratio_padded_vs_bare"] = speed["tuneline_padded"] / speed["bare_naive"]
        result["ratio_packed_vs_bare"] = speed["tuneline_packed"] / speed["bare_naive"]
        result["ratio_padded_vs_bare_dynamic"] = speed["tuneline_padded"] / speed["bare_dynamic"]
        result["ratio_packed_vs_bare_dynamic"] = speed["tuneline_packed"] / speed["bare_dynamic"]
    if args.ddp_processes > 1:
        result["ddp"] = _ddp_comparison(
            backend, store, model_dir, train_uri, len(lines), args.ddp_processes, packed_rows, common
        )
    store.delete_prefix(train_uri)
    return result

if __name__ == "__main__":
    main()
