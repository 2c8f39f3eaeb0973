"""Benchmark: Tuneline's prepare (DuckDB) against a straightforward pure-Python reference.

Generates N chat records (~660 bytes each) with a known share of bad records, duplicates and
PII, then runs validate + redact + dedupe + split + write both ways on the same file, measuring
wall time and peak RSS of each. The S3 upload is not part of the measurement: both write their
output files to a local folder (``build_dataset``, the step right before ``publish_version``).

Three inputs (``--inputs``), each against the same rules in pure Python in the same run:
``jsonl`` (the file above), ``sharegpt`` (the same records as one ShareGPT JSON array, which the
reference reads with ``json.load`` and converts turn by turn) and ``gzip`` (the JSONL gzipped,
read by the reference through ``gzip.open``).

Prints one JSON line at the end, and exits non-zero when the two implementations' counts differ.
Targets (2 cores, 1M records): >= 5x the reference on each input, peak memory <= 4 GB.
"""

from __future__ import annotations

import argparse
import gc
import gzip
import hashlib
import json
import math
import os
import random
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Literal

import psutil
from pydantic import BaseModel, ConfigDict, ValidationError

from tuneline.config import DataConfig, PiiAction, PiiPolicy, Target
from tuneline.data.dedupe import normalize
from tuneline.data.pii import scan_and_redact
from tuneline.data.prepare import build_dataset
from tuneline.data.split import split_for_key
from tuneline.data.targets import limits_for

_WORDS = (
    "the model should answer with a short json object describing the ticket priority owner and "
    "status of each request so that the support queue can be routed automatically without delay"
).split()


def generate(path: Path, n: int, seed: int = 0) -> dict[str, int]:
    """Write ``n`` records; returns how many of each planted kind it wrote."""
    rng = random.Random(seed)
    planted = {"invalid_json": 0, "bad_roles": 0, "duplicates": 0, "pii": 0}
    recent: list[str] = []
    with path.open("w", encoding="utf-8") as fh:
        for i in range(n):
            r = rng.random()
            if r < 0.01:
                planted["invalid_json"] += 1
                fh.write('{"messages": [{"role": "user", "content": "broken\n')
                continue
            if r < 0.02 and recent:
                planted["duplicates"] += 1
                # Same conversation, different whitespace: a duplicate after normalisation.
                fh.write(recent[rng.randrange(len(recent))].replace('": "', '":  "') + "\n")
                continue
            words = " ".join(rng.choice(_WORDS) for _ in range(45))
            user = f"ticket {i}: {words}"
            if 0.02 <= r < 0.05:
                planted["pii"] += 1
                user += rng.choice(
                    [f" contact jane.doe{i}@example.com", " call 415-555-0137", " card 4111 1111 1111 1111"]
                )
            answer = json.dumps({"id": i, "priority": rng.choice(["low", "high"]), "summary": words[:200]})
            messages = [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]
            if 0.05 <= r < 0.06:
                planted["bad_roles"] += 1
                messages[1]["role"] = "user"
            line = json.dumps({"system": "Route support tickets.", "messages": messages})
            if len(recent) < 1000:
                recent.append(line)
            else:
                recent[rng.randrange(1000)] = line
            fh.write(line + "\n")
    return planted


# ------------------------------------------------------------------------------------------
# reference: one record at a time, json + pydantic, the same rules
# ------------------------------------------------------------------------------------------
class _Msg(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["user", "assistant"]
    content: str


class _Rec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    system: str | None = None
    messages: list[_Msg]


def _jsonl_lines(path: Path):
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        yield from enumerate(fh, 1)


_SHAREGPT_ROLES = {"human": "user", "gpt": "assistant", "user": "user", "assistant": "assistant"}


def _sharegpt_lines(path: Path):
    """Each array element converted to the chat shape, as the reference's line."""
    with path.open("rb") as fh:
        rows = json.load(fh)
    for i, row in enumerate(rows, 1):
        rec = {"messages": [{"role": _SHAREGPT_ROLES.get(t["from"], t["from"]), "content": t["value"]}
                            for t in row["conversations"]]}
        if "system" in row:
            rec = {"system": row["system"], **rec}
        yield i, json.dumps(rec).encode()


def to_sharegpt(source: Path, dest: Path) -> None:
    """The valid-JSON lines of ``source`` as one ShareGPT array (an array cannot hold a broken line)."""
    back = {"user": "human", "assistant": "gpt"}
    with source.open(encoding="utf-8") as fh, dest.open("w", encoding="utf-8") as out:
        out.write("[\n")
        first = True
        for line in fh:
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            row = {"id": "x", "system": rec["system"],
                   "conversations": [{"from": back[m["role"]], "value": m["content"]} for m in rec["messages"]]}
            out.write(("" if first else ",\n") + json.dumps(row))
            first = False
        out.write("\n]\n")


def reference(source: Path, out: Path, config: DataConfig, target: Target) -> dict[str, int]:
    limits = limits_for(target)
    policy: PiiPolicy = config.pii
    seen: set[bytes] = set()
    counts = {"total": 0, "accepted": 0, "rejected": 0, "duplicates": 0}
    out.mkdir(parents=True, exist_ok=True)
    files = {s: (out / f"{s}.jsonl").open("w", encoding="utf-8") for s in ("train", "validation", "test")}
    rejected = (out / "rejected.jsonl").open("w", encoding="utf-8")
    lines = _sharegpt_lines(source) if source.suffix == ".json" else _jsonl_lines(source)
    if True:
        for line_no, raw in lines:
            if not raw.strip():
                continue
            counts["total"] += 1
            errors: list[str] = []
            try:
                text = raw.decode("utf-8")
                rec = _Rec.model_validate(json.loads(text))
            except UnicodeDecodeError:
                errors.append("not_utf8")
            except (json.JSONDecodeError, ValidationError) as exc:
                errors.append("invalid_json" if isinstance(exc, json.JSONDecodeError) else "schema")
            if not errors:
                roles = [m.role for m in rec.messages]
                if not roles:
                    errors.append("empty_messages")
                else:
                    if roles[0] != "user":
                        errors.append("first_not_user")
                    if roles[-1] != "assistant":
                        errors.append("last_not_assistant")
                    if any(a == b for a, b in zip(roles, roles[1:], strict=False)):
                        errors.append("roles_not_alternating")
                texts = ([rec.system] if rec.system is not None else []) + [m.content for m in rec.messages]
                if any(not m.content.strip() for m in rec.messages):
                    errors.append("empty_content")
                if any(s in t for t in texts for s in limits.reserved_strings):
                    errors.append("reserved_string")
                redacted, found = [], {}
                for t in texts:
                    new, c = scan_and_redact(t, policy)
                    redacted.append(new)
                    for k, v in c.items():
                        found[k] = found.get(k, 0) + v
                if any(getattr(policy, k) is PiiAction.REJECT for k in found):
                    errors.append("pii")
                tokens = math.ceil(sum(len(t) for t in redacted) / limits.chars_per_token)
                if limits.max_tokens_per_record and tokens > limits.max_tokens_per_record:
                    errors.append("too_many_tokens")
            if errors:
                counts["rejected"] += 1
                rejected.write(
                    json.dumps(
                        {"line": line_no, "errors": errors, "original_sha256": hashlib.sha256(raw.rstrip(b"\n")).hexdigest()}
                    )
                    + "\n"
                )
                continue
            system = redacted[0] if rec.system is not None else None
            contents = redacted[1:] if rec.system is not None else redacted
            roles_all = (["system"] if system is not None else []) + roles
            conv = "\x1e".join(
                f"{r}\x1f{normalize(t, config.dedupe)}" for r, t in zip(roles_all, redacted, strict=False)
            )
            key = hashlib.md5(conv.encode()).digest()
            if key in seen:
                counts["duplicates"] += 1
                continue
            seen.add(key)
            split = split_for_key(int.from_bytes(key, "big"), config.split)
            out_rec = {"system": system} if system is not None else {}
            out_rec["messages"] = [{"role": r, "content": c} for r, c in zip(roles, contents, strict=False)]
            files[split].write(json.dumps(out_rec, ensure_ascii=False) + "\n")
            counts["accepted"] += 1
    for f in [*files.values(), rejected]:
        f.close()
    return counts


class _PeakRss:
    """Samples this process's RSS every 20 ms in a thread; ``peak`` is the highest seen."""

    def __init__(self) -> None:
        self.proc = psutil.Process()
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(0.02)

    def __enter__(self) -> _PeakRss:
        self.peak = self.proc.memory_info().rss
        self._cpu0 = self.proc.cpu_times()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)
        cpu = self.proc.cpu_times()
        # CPU seconds of all this process's threads: on a machine shared with other work, this
        # says how much of a wall time was spent waiting for a core.
        self.cpu_s = (cpu.user - self._cpu0.user) + (cpu.system - self._cpu0.system)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--workdir", type=Path, default=None, help="where to put the input and outputs")
    parser.add_argument("--skip-reference", action="store_true")
    parser.add_argument("--inputs", default="jsonl,sharegpt,gzip", help="comma-separated: jsonl, sharegpt, gzip")
    args = parser.parse_args()
    args.inputs = [x.strip() for x in args.inputs.split(",") if x.strip()]

    with tempfile.TemporaryDirectory(prefix="bench-prepare-", dir=args.workdir) as tmp:
        root = Path(tmp)
        source = root / "input.jsonl"
        t0 = time.perf_counter()
        planted = generate(source, args.records)
        gen_s = time.perf_counter() - t0
        size_mb = source.stat().st_size / 1e6
        print(
            f"generated {args.records} records ({size_mb:.0f} MB) in {gen_s:.1f} s: {planted}",
            file=sys.stderr,
        )
        # The local target: Bedrock's 10k-record cap would turn a 1M-record run into a limit error.
        target = Target.LOCAL
        inputs = {"jsonl": source}
        if "sharegpt" in args.inputs:
            inputs["sharegpt"] = root / "input-sharegpt.json"
            to_sharegpt(source, inputs["sharegpt"])
        if "gzip" in args.inputs:
            inputs["gzip"] = root / "input.jsonl.gz"
            with source.open("rb") as src, gzip.open(inputs["gzip"], "wb", compresslevel=1) as dst:
                shutil.copyfileobj(src, dst, 8 << 20)
        runs = {name: _measure(name, path, root, target, args.skip_reference)
                for name, path in inputs.items() if name in args.inputs}
        jsonl = runs.get("jsonl") or next(iter(runs.values()))
        result = {
            "bench": "prepare",
            "records": args.records,
            "input_mb": round(size_mb, 1),
            "cpus": os.cpu_count(),
            "planted": planted,
            **{k: v for k, v in jsonl.items() if k != "input"},
            "inputs": runs,
            "upload_measured": False,
        }
        counts_match = all(r["counts_match"] is not False for r in runs.values())
    print(json.dumps(result))
    if not counts_match:
        sys.exit(f"counts differ: {[(k, r['tuneline_counts'], r['reference_counts']) for k, r in runs.items()]}")


def _measure(name: str, source: Path, root: Path, target: Target, skip_reference: bool) -> dict:
    config = DataConfig(source=str(source))
    gc.collect()
    load_avg = os.getloadavg()[0]  # other work on the machine when the timed part starts
    with _PeakRss() as mem:
        t0 = time.perf_counter()
        built = build_dataset(config, target, root / f"tuneline-{name}")
        tuneline_s = time.perf_counter() - t0
    tuneline_peak, tuneline_cpu = mem.peak, mem.cpu_s
    s = built.summary
    print(f"{name} tuneline: {tuneline_s:.1f} s, peak {tuneline_peak / 1e9:.2f} GB", file=sys.stderr)
    ref_s = ref_peak = ref_cpu = None
    ref_counts: dict[str, int] = {}
    if not skip_reference:
        gc.collect()
        with _PeakRss() as mem:
            t0 = time.perf_counter()
            ref_counts = reference(source, root / f"reference-{name}", config, target)
            ref_s = time.perf_counter() - t0
        ref_peak, ref_cpu = mem.peak, mem.cpu_s
        print(f"{name} reference: {ref_s:.1f} s, peak {ref_peak / 1e9:.2f} GB: {ref_counts}", file=sys.stderr)
    # Both implementations apply the same rules to the same file: their counts must agree.
    tuneline_counts = {k: getattr(s, k) for k in ("total", "accepted", "rejected", "duplicates", "filtered")}
    counts_match = None
    if not skip_reference:
        counts_match = tuneline_counts["filtered"] == 0 and all(tuneline_counts[k] == ref_counts[k] for k in ref_counts)
    for f in (root / f"tuneline-{name}", root / f"reference-{name}"):
        shutil.rmtree(f, ignore_errors=True)
    return {
        "input": name,
        "load_avg_1m": round(load_avg, 2),
        "tuneline_s": round(tuneline_s, 2),
        "tuneline_cpu_s": round(tuneline_cpu, 2),
        "tuneline_peak_rss_mb": round(tuneline_peak / 1e6),
        "reference_s": None if ref_s is None else round(ref_s, 2),
        "reference_cpu_s": None if ref_cpu is None else round(ref_cpu, 2),
        "reference_peak_rss_mb": None if ref_peak is None else round(ref_peak / 1e6),
        "speedup": None if ref_s is None else round(ref_s / tuneline_s, 2),
        "tuneline_counts": tuneline_counts,
        "reference_counts": ref_counts,
        "counts_match": counts_match,
        "errors": s.errors,
        "pii": s.pii,
    }


if __name__ == "__main__":
    main()
