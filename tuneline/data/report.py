"""The human-readable data report (Markdown) built from a prepare profile."""

from __future__ import annotations

from typing import Any

__all__ = ["render_report"]


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += [
        "| " + " | ".join(str(c).replace("|", "\\|").replace("\n", "\\n") for c in row) + " |" for row in rows
    ]
    return lines


def render_report(profile: dict[str, Any]) -> str:
    s = profile["summary"]
    out = [f"# Data report: {profile.get('name') or 'validation'} ({s['target']})", ""]
    if profile.get("version"):
        out += [f"Version `{profile['version']}`", ""]
    out += ["## Counts", ""]
    out += _table(
        ["total", "accepted", "rejected", "duplicates", "filtered"],
        [[s["total"], s["accepted"], s["rejected"], s["duplicates"], s["filtered"]]],
    )
    out += ["", "Splits: " + ", ".join(f"{k} {v}" for k, v in s["splits"].items()), ""]
    if s.get("problems"):
        out += ["## Problems with the data as a whole", ""] + [f"- {p}" for p in s["problems"]] + [""]
    out += ["## Errors", ""]
    if s["errors"]:
        rows = []
        for code, count in sorted(s["errors"].items(), key=lambda kv: (-kv[1], kv[0])):
            for ex in profile["error_examples"].get(code, [])[:3]:
                rows.append([code, count, f"{ex['file']}:{ex['line']}", ex["field"] or "", ex["message"]])
        out += _table(["code", "records", "example", "field", "what to do"], rows)
    else:
        out += ["No record was rejected."]
    out += ["", "## Personal data", ""]
    if s["pii"]:
        out += _table(
            ["type", "found", "action"],
            [[k, v, profile["pii_policy"].get(k, "")] for k, v in sorted(s["pii"].items())],
        )
    else:
        out += ["None found."]
    out += ["", "## Tokens per record", ""]
    out += [f"Counted with `{profile['token_counter']}`; {s['tokens']} tokens in accepted records.", ""]
    hist = profile["token_histogram"]
    if hist:
        peak = max(h["records"] for h in hist) or 1
        out += _table(
            ["tokens", "records", ""],
            [[h["bucket"], h["records"], "#" * max(1, round(30 * h["records"] / peak))] for h in hist],
        )
    out += ["", "## Turns and roles", ""]
    turns = profile["turns"]
    if turns:
        out += _table(["turns", "records"], [[t["turns"], t["records"]] for t in turns])
        out += [""]
        out += _table(
            ["role", "messages", "mean characters"],
            [[r["role"], r["messages"], r["mean_chars"]] for r in profile["roles"]],
        )
    out += ["", "## Cost estimate", ""]
    if s["estimated_cost_usd"] is None:
        out += ["No per-token price for this target."]
    else:
        c = profile["cost"]
        out += [
            f"About **${s['estimated_cost_usd']:.2f}**: {c['training_tokens']} training tokens x {c['epochs']:g} epochs "
            f"x ${c['price_per_1k_tokens_usd']} per 1,000 tokens ({c['note']}; prices taken {c['prices_taken_on']})."
        ]
    return "\n".join(out) + "\n"
