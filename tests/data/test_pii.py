"""PII detection and redaction: per type through prepare, on the labelled corpus, and as a property."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tuneline.config import DataConfig, PiiAction, PiiPolicy, Target
from tuneline.data.pii import PII_KINDS, PREFILTER, find_pii, luhn_valid, placeholder, scan_and_redact
from tuneline.data.pii_normalize import normalize_for_detection
from tuneline.data.prepare import build_dataset, validate

CORPUS = Path(__file__).with_name("pii_corpus.jsonl")
REDACT_ALL = PiiPolicy(**{kind: "redact" for kind in PII_KINDS})

CASES = [
    ("email", "write to jane.doe+x@mail.example.co.uk today", "write to [EMAIL] today"),
    ("email", "write to jane [at] example [dot] com today", "write to [EMAIL] today"),
    ("phone", "call (415) 555-0137 or +1 415-555-0199", "call [PHONE] or [PHONE]"),
    ("phone", "call \uff14\uff11\uff15\u2013555\u00a00137 now", "call [PHONE] now"),
    ("credit_card", "card 4111 1111 1111 1111 ok", "card [CREDIT_CARD] ok"),
    ("ssn", "ssn 123-45-6789.", "ssn [SSN]."),
    ("ssn", "ssn 123\u200b 45 6789.", "ssn [SSN]."),
    (
        "ip_address",
        "from 192.168.10.254 and 2001:db8:85a3::8a2e:370:7334",
        "from [IP_ADDRESS] and [IP_ADDRESS]",
    ),
    ("aws_access_key", "key AKIAIOSFODNN7EXAMPLE here", "key [AWS_ACCESS_KEY] here"),
    ("aws_secret_key", "secret wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "secret [AWS_SECRET_KEY]"),
    ("iban", "IBAN DE89 3704 0044 0532 0130 00 OK", "IBAN [IBAN] OK"),
    ("api_token", "token ghp_16C7e42F292c6912E7710c838347Ae178B4a", "token [API_TOKEN]"),
    (
        "private_key",
        "k -----BEGIN PRIVATE KEY-----\nMIIEv\n-----END PRIVATE KEY----- end",
        "k [PRIVATE_KEY] end",
    ),
    ("mac_address", "mac 00:1A:2B:3C:4D:5E", "mac [MAC_ADDRESS]"),
    (
        "url_credentials",
        "db postgres://admin:s3cr3t@db.internal/app",
        "db postgres://[URL_CREDENTIALS]@db.internal/app",
    ),
]


@pytest.mark.parametrize(
    ("kind", "text", "redacted"), CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)]
)
def test_each_type_is_found_and_redacted_through_prepare(write_lines, tmp_path, kind, text, redacted):
    record = {"messages": [{"role": "user", "content": text}, {"role": "assistant", "content": "noted"}]}
    built = build_dataset(
        DataConfig(
            source=str(write_lines([record])), pii=REDACT_ALL, split={"train": 1, "validation": 0, "test": 0}
        ),
        Target.LOCAL,
        tmp_path / "w",
    )
    expected_count = redacted.count(placeholder(kind))
    assert built.summary.pii == {kind: expected_count}
    (line,) = (tmp_path / "w" / "out" / "train.jsonl").read_text().splitlines()
    assert json.loads(line)["messages"][0]["content"] == redacted
    assert scan_and_redact(text, REDACT_ALL) == (redacted, {kind: expected_count})


@pytest.mark.parametrize(
    "text",
    ["order 4111 1111 1111 1112", "version 10.0.300.1", "std::vector<int>", "call 5550137", "x@y",
     "83265 / 305 = 275.433978846153"],
    ids=["luhn_fails", "not_an_ip", "cpp_scope", "local_number_only", "no_domain", "decimal_fraction"],
)
def test_lookalikes_are_left_alone(write_lines, text):
    record = {"messages": [{"role": "user", "content": text}, {"role": "assistant", "content": "ok"}]}
    assert validate(DataConfig(source=str(write_lines([record]))), Target.LOCAL).pii == {}
    assert scan_and_redact(text, REDACT_ALL) == (text, {})


def test_policy_reject_and_allow(write_lines, tmp_path):
    lines = [
        {
            "messages": [
                {"role": "user", "content": "mail a@b.example.com"},
                {"role": "assistant", "content": "1"},
            ]
        },
        {"messages": [{"role": "user", "content": "ip 10.1.2.3"}, {"role": "assistant", "content": "2"}]},
    ]
    policy = PiiPolicy(email="reject", ip_address="allow")
    built = build_dataset(
        DataConfig(
            source=str(write_lines(lines)), pii=policy, split={"train": 1, "validation": 0, "test": 0}
        ),
        Target.LOCAL,
        tmp_path / "w",
    )
    assert built.summary.errors == {"pii": 1} and built.summary.pii == {"email": 1, "ip_address": 1}
    (kept,) = (tmp_path / "w" / "out" / "train.jsonl").read_text().splitlines()
    assert "ip 10.1.2.3" in kept


def test_credentials_reject_the_record_by_default(write_lines, tmp_path):
    secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    lines = [
        {
            "messages": [
                {"role": "user", "content": f"aws secret {secret}"},
                {"role": "assistant", "content": "1"},
            ]
        },
        {"messages": [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "2"}]},
    ]
    built = build_dataset(
        DataConfig(source=str(write_lines(lines)), split={"train": 1, "validation": 0, "test": 0}),
        Target.LOCAL,
        tmp_path / "w",
    )
    assert built.summary.errors == {"pii": 1} and built.summary.pii == {"aws_secret_key": 1}
    assert secret not in (tmp_path / "w" / "out" / "train.jsonl").read_text()


def test_luhn():
    assert luhn_valid("4111-1111-1111-1111") and luhn_valid("378282246310005")
    assert not luhn_valid("4111111111111112") and not luhn_valid("1234")


def test_offsets_map_back_to_the_original_characters():
    text = "a\u200b\uff14\u00a0b\u202e"
    norm = normalize_for_detection(text)
    assert norm.text == "a4 b"
    assert norm.original_span(1, 3) == (2, 4)  # the fullwidth 4 and the NBSP, not the zero-width space
    assert norm.original_span(0, 2) == (0, 3)  # a span over a removed character includes it
    assert normalize_for_detection("plain").origin is None


def test_hidden_characters_inside_the_secret_are_redacted_with_it():
    text = "ssn 123\u200b-45-6789!"
    assert scan_and_redact(text, REDACT_ALL)[0] == "ssn [SSN]!"


# ------------------------------------------------------------------------------------------
# the labelled corpus
# ------------------------------------------------------------------------------------------
def _load_corpus() -> list[dict]:
    return [json.loads(line) for line in CORPUS.read_text(encoding="utf-8").splitlines()]


def corpus_scores(cases: list[dict]) -> dict:
    """Recall per kind (a label counts when a span of its kind covers it), and over-redaction:
    spans in negatives, and spans in positives that cover no label."""
    labelled: Counter[str] = Counter()
    found: Counter[str] = Counter()
    missed: list[str] = []
    negative_hits: list[str] = []
    extra_spans: list[str] = []
    for case in cases:
        spans = find_pii(case["text"])
        if not case["labels"]:
            negative_hits += [f"{case['id']}: {s.kind} {case['text'][s.start : s.end]!r}" for s in spans]
            continue
        for label in case["labels"]:
            labelled[label["kind"]] += 1
            if any(
                s.kind == label["kind"] and s.start <= label["start"] and s.end >= label["end"] for s in spans
            ):
                found[label["kind"]] += 1
            else:
                missed.append(
                    f"{case['id']}: {label['kind']} {case['text'][label['start'] : label['end']]!r}"
                )
        for s in spans:
            if not any(s.start < label["end"] and s.end > label["start"] for label in case["labels"]):
                extra_spans.append(f"{case['id']}: {s.kind} {case['text'][s.start : s.end]!r}")
    negatives = sum(1 for c in cases if not c["labels"])
    return {
        "cases": len(cases),
        "negatives": negatives,
        "labels": sum(labelled.values()),
        "recall": {k: found[k] / labelled[k] for k in sorted(labelled)},
        "recall_overall": sum(found.values()) / sum(labelled.values()),
        "negatives_redacted": len(negative_hits),
        "extra_spans_in_positives": len(extra_spans),
        "missed": missed,
        "negative_hits": negative_hits,
        "extra_spans": extra_spans,
    }


def test_corpus_recall_and_no_over_redaction():
    cases = _load_corpus()
    scores = corpus_scores(cases)
    print(
        json.dumps({k: v for k, v in scores.items() if k not in ("missed", "negative_hits", "extra_spans")})
    )
    assert scores["cases"] >= 200 and len(scores["recall"]) >= 12 and scores["negatives"] >= 50
    assert scores["negative_hits"] == [], scores["negative_hits"]
    assert scores["extra_spans"] == [], scores["extra_spans"]
    low = {k: r for k, r in scores["recall"].items() if r < 0.98}
    assert not low, (low, scores["missed"])


def test_corpus_matches_its_generator():
    from tests.data import pii_corpus

    built = pii_corpus.build()
    pii_corpus.label_combined(built)
    assert built == _load_corpus(), "run python tests/data/pii_corpus.py"


def test_every_corpus_text_with_pii_passes_the_prefilter():
    import re

    prefilter = re.compile(PREFILTER)
    assert all(prefilter.search(c["text"]) for c in _load_corpus() if c["labels"])


def test_prefilter_is_the_same_in_duckdb_and_python():
    import re

    import duckdb

    texts = [c["text"] for c in _load_corpus()] + ["plain words only", "ticket 123456: fine"]
    con = duckdb.connect()
    in_duckdb = [
        row[0]
        for row in con.execute(
            "SELECT regexp_matches(t, ?) FROM unnest(?) AS u(t)", [PREFILTER, texts]
        ).fetchall()
    ]
    assert in_duckdb == [bool(re.search(PREFILTER, t)) for t in texts]


def test_the_bundled_example_is_never_redacted():
    data = Path(__file__).resolve().parents[2] / "examples" / "support_tickets" / "data"
    hits = []
    from tuneline.data.formats import convert
    from tuneline.records import record_texts

    files = sorted(data.glob("*.jsonl"))
    assert {"tickets.jsonl", "preferences.jsonl", "rft.jsonl"} <= {p.name for p in files}
    for path in files:  # every text of every kind: turns, chosen and rejected answers, references
        for line in path.read_text(encoding="utf-8").splitlines():
            record = convert(json.loads(line)).record
            texts = [getattr(record, "system", None) or "", *(f.text for f in record_texts(record))]
            hits += [(path.name, text[s.start : s.end]) for text in texts for s in find_pii(text)]
    assert hits == []


# ------------------------------------------------------------------------------------------
# property: a detected secret never survives redaction, whatever surrounds it
# ------------------------------------------------------------------------------------------
_SECRETS = [
    ("aws_access_key", "AKIAIOSFODNN7EXAMPLE"),
    ("aws_secret_key", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
    ("api_token", "ghp_16C7e42F292c6912E7710c838347Ae178B4a"),
    ("email", "jane.doe@example.com"),
    ("ssn", "123-45-6789"),
    ("credit_card", "4111 1111 1111 1111"),
    ("iban", "DE89370400440532013000"),
    ("phone", "+44 20 7946 0958"),
]
_filler = st.text(alphabet=st.sampled_from(list("abc xyz.,;!?-:()\n\u200b\u00a0")), max_size=30)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(_SECRETS), _filler, _filler, st.sampled_from(list(PiiAction)))
def test_a_secret_never_survives_redaction(secret, before, after, other_action):
    kind, value = secret
    # Word boundaries are part of the definitions: the filler starts and ends off the secret.
    text = f"{before} {value} {after}"
    policy = PiiPolicy(**{k: other_action for k in PII_KINDS if k != kind}, **{kind: "redact"})
    redacted, counts = scan_and_redact(text, policy)
    assert value not in redacted
    assert counts.get(kind, 0) >= 1
    assert len(redacted) <= len(text) + len(placeholder(kind)) * sum(counts.values())
