"""Personal data and secrets: find them, and redact them before any byte is written.

Two steps, so that prepare stays fast on millions of records:

1. :data:`PREFILTER` is one cheap pattern, valid in DuckDB (RE2) and Python's ``re`` alike, that
   every text holding something a detector could find also matches (a superset: it looks for
   ``@``, ``[at]``, runs of digits, long token-like runs, key labels, PEM headers, colons of IPv6,
   and any non-ASCII character, since normalisation can turn that into any of these). Most texts
   do not match and cost nothing more.
2. :func:`find_pii` runs on the candidates: it normalises the text (see ``pii_normalize``),
   runs every detector on the normalised text, validates what they found (Luhn, IBAN checksum,
   phone numbers through Google's ``phonenumbers`` metadata, SSN area/group/serial, entropy of
   keys), keeps the non-overlapping spans in :data:`PII_KINDS` order (a card number is never
   half taken for a phone number) and maps each span back to the original characters.

:func:`scan_and_redact` replaces each span whose policy is ``redact`` or ``reject`` by
``[KIND]`` (a record rejected for a secret holds no secret either); ``allow`` keeps it. All are
counted. :func:`scan_texts` does the same for a column of texts (the DuckDB path in
``rules.apply_pii``).

Precision matters as much as recall (a redacted instruction is a damaged training example):
``tests/data/pii_corpus.jsonl`` holds labelled positives of every kind and negatives that must
survive (order numbers, versions, dates, UUIDs, prices, the example's ids); ``tests/data/test_pii.py``
measures both.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import phonenumbers
from stdnum import iban as stdnum_iban

from tuneline.config import PiiAction, PiiPolicy
from tuneline.data.pii_normalize import NormalizedText, normalize_for_detection

__all__ = [
    "PII_KINDS",
    "PREFILTER",
    "PiiSpan",
    "find_pii",
    "luhn_valid",
    "placeholder",
    "scan_and_redact",
    "scan_texts",
]

# Detection and overlap priority: a span found by an earlier kind wins over a later one.
PII_KINDS: tuple[str, ...] = (
    "private_key",
    "url_credentials",
    "aws_access_key",
    "aws_secret_key",
    "api_token",
    "email",
    "iban",
    "credit_card",
    "ssn",
    "phone",
    "ip_address",
    "mac_address",
)
_PRIORITY = {kind: i for i, kind in enumerate(PII_KINDS)}

_AT = r"(?:\s?@\s?|\s*[\[({<]\s*at\s*[\])}>]\s*)"
_DOT = r"(?:\.|\s*[\[({<]\s*dot\s*[\])}>]\s*)"
_KEY_LABEL = r"pass(?:word|wd|phrase)?|pwd|secret|token|api[_-]?key|apikey|access[_-]?key|auth|credentials?"

PREFILTER = "|".join(
    (
        r"[^\x00-\x7f]",
        "@",
        r"[\[({<]\s*(?i:at|dot)\s*[\])}>]",
        r"\sAT\s",
        r"[0-9][0-9 ().\-/]{5,}[0-9]",
        r"[0-9A-Fa-f]{0,4}:[0-9A-Fa-f]{0,4}:",
        "-----BEGIN",
        r"[0-9A-Fa-f]{2}-[0-9A-Fa-f]{2}-[0-9A-Fa-f]{2}-",
        r"[A-Za-z0-9_\-+/=]{16,}",
        rf"(?i:{_KEY_LABEL})[\"']?\s*[:=]",
    )
)


@dataclass(frozen=True)
class PiiSpan:
    kind: str
    start: int  # in the original text
    end: int


def placeholder(kind: str) -> str:
    return f"[{kind.upper()}]"


def luhn_valid(candidate: str) -> bool:
    digits = [int(c) for c in candidate if c.isdigit()]
    if not 13 <= len(digits) <= 19:
        return False
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _entropy(value: str) -> float:
    """Shannon entropy in bits per character."""
    n = len(value)
    return -sum(c / n * math.log2(c / n) for c in Counter(value).values())


# ------------------------------------------------------------------------------------------
# detectors: each yields (start, end) spans in the normalised text
# ------------------------------------------------------------------------------------------
_PRIVATE_KEY = re.compile(
    r"-----BEGIN[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----.*?(?:-----END[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----|\Z)",
    re.S,
)
# ``scheme://user:password@host``: the user and password are the span.
_URL_CREDENTIALS = re.compile(r"(?i)\b[a-z][a-z0-9+.-]{1,15}://(?P<cred>[^\s:/@]+:[^\s/@]+)@[a-z0-9.-]+")
_AWS_ACCESS_KEY = re.compile(
    r"(?<![A-Za-z0-9])(?:AKIA|ASIA|AIDA|AROA|AGPA|AIPA|ANPA|ANVA|APKA|ABIA|ACCA)[A-Z0-9]{16}(?![A-Za-z0-9])"
)
_BASE64_40 = re.compile(r"(?<![A-Za-z0-9/+])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])")
_AWS_SECRET_LABEL = re.compile(r"(?i)aws.{0,24}secret|secret.?access.?key|aws.{0,8}key")
_TOKENS = re.compile(
    "|".join(
        (
            r"(?<![A-Za-z0-9_])gh[pousr]_[A-Za-z0-9]{36,255}",
            r"(?<![A-Za-z0-9_])github_pat_[A-Za-z0-9_]{22,255}",
            r"(?<![A-Za-z0-9])xox[abposr]-[A-Za-z0-9-]{10,250}",
            r"https://hooks\.slack\.com/services/[A-Za-z0-9_/]{20,}",
            r"(?<![A-Za-z0-9])(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,}",
            r"(?<![A-Za-z0-9])sk-(?:ant-|proj-)?[A-Za-z0-9_-]{20,}",
            r"(?<![A-Za-z0-9])glpat-[A-Za-z0-9_-]{20,}",
            r"(?<![A-Za-z0-9])AIza[0-9A-Za-z_-]{35}",
            r"(?<![A-Za-z0-9])npm_[A-Za-z0-9]{36}",
            r"(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}",
        )
    )
)
# ``api_key = value``, ``"password": "value"``, ``token: value``: the value is the span.
_LABELLED_SECRET = re.compile(
    rf"(?i)(?<![A-Za-z0-9])[A-Za-z0-9_.-]*?(?P<label>{_KEY_LABEL})[A-Za-z0-9_.-]*[\"']?\s*(?:=>|[:=])\s*[\"']?"
    r"(?P<value>[^\s\"',;\[\]<>(){}]+)"
)
_PLACEHOLDER_WORDS = re.compile(r"(?i)example|sample|dummy|placeholder|your[_-]|changeme|redacted")
_EMAIL = re.compile(
    rf"(?i)(?<![A-Za-z0-9._%+-])[a-z0-9._%+-]+{_AT}[a-z0-9-]+(?:{_DOT}[a-z0-9-]+)*{_DOT}[a-z]{{2,}}(?![a-z0-9-])"
)
_EMAIL_SPELLED = re.compile(r"(?<![A-Za-z0-9])[A-Za-z0-9._%+-]+ AT [A-Za-z0-9-]+(?: DOT [A-Za-z0-9-]+)+")
_IBAN = re.compile(r"(?i)(?<![A-Za-z0-9])[A-Z]{2}[0-9]{2}(?:[ -]?[A-Z0-9]){11,30}(?![A-Za-z0-9])")
# Not the digits of a decimal fraction (275.4339788461538, a real answer of LLaMA-Factory's KTO
# demo, passes the Luhn check by chance).
_CARD = re.compile(r"(?<![0-9])(?<![0-9][.,])[2-6][0-9](?:[ -]?[0-9]){11,17}(?![0-9])")
_SSN = re.compile(r"(?<![0-9-])[0-9]{3}[ .-][0-9]{2}[ .-][0-9]{4}(?![0-9]|-[0-9])")
_SSN_LABELLED = re.compile(
    r"(?i)\b(?:ssn|ss#|social\s+security(?:\s+(?:number|no\.?|#))?)\s*(?:number|no\.?|#)?\s*(?:is|:|=|#)?\s*"
    r"(?P<value>[0-9]{9})(?![0-9])"
)
# 05.12.2024, 2024-01-15, 12/05/24: dates, never phone numbers.
_DATE_LIKE = re.compile(r"[0-9]{1,2}([./-])[0-9]{1,2}\1[0-9]{2,4}|[0-9]{4}([./-])[0-9]{1,2}\2[0-9]{1,2}")
_PHONE_CANDIDATE = re.compile(r"(?<![\w+.\-/#])(?:\+\s?)?\(?[0-9][0-9 ().\-/]{5,}[0-9](?![0-9])")
# Regions tried for national numbers that start with a trunk 0 (``+`` numbers: any region).
_TRUNK_REGIONS = ("GB", "DE", "FR", "IT", "ES", "NL", "BE", "CH", "AT", "SE", "IE", "IN", "AU", "JP", "BR")
_NOT_A_PHONE_BEFORE = re.compile(
    r"(?i)(?:#|\b(?:order|invoice|ticket|ref|id|tracking|no\.?|sku|case|account)\s*#?:?)\s*$"
)
_IPV4 = re.compile(
    r"(?<![0-9.])(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
    r"(?![0-9]|\.[0-9])"
)
_VERSION_BEFORE = re.compile(r"(?i)(?:\bv|\bversion|\bver\.?|\brelease|\bbuild|\brev\.?)\s*$")
_IPV6 = re.compile(
    r"(?<![0-9A-Za-z:])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9.]{7,15}|[0-9A-Fa-f]{0,4})(?![0-9A-Za-z:]|\.[0-9])"
)


def _private_keys(t: str) -> Iterable[tuple[int, int]]:
    for m in _PRIVATE_KEY.finditer(t):
        yield m.span()


def _url_credentials(t: str) -> Iterable[tuple[int, int]]:
    for m in _URL_CREDENTIALS.finditer(t):
        yield m.span("cred")


def _aws_access_keys(t: str) -> Iterable[tuple[int, int]]:
    for m in _AWS_ACCESS_KEY.finditer(t):
        yield m.span()


def _aws_secret_keys(t: str) -> Iterable[tuple[int, int]]:
    for m in _BASE64_40.finditer(t):
        value = m.group(0)
        labelled = _AWS_SECRET_LABEL.search(t, max(0, m.start() - 48), m.start()) is not None
        mixed = (
            any(c.isupper() for c in value)
            and any(c.islower() for c in value)
            and any(c.isdigit() for c in value)
        )
        if (labelled and _entropy(value) >= 3.5) or (mixed and _entropy(value) >= 4.2):
            yield m.span()


def _api_tokens(t: str) -> Iterable[tuple[int, int]]:
    for m in _TOKENS.finditer(t):
        yield m.span()
    for m in _LABELLED_SECRET.finditer(t):
        value = m.group("value")
        if _PLACEHOLDER_WORDS.search(m.group(0)):
            continue  # documentation's "examplePassword": "...", "your_api_key = ..."
        has_letter = any(c.isalpha() for c in value)
        has_other = any(not c.isalpha() for c in value)
        if m.group("label").lower().startswith(("pass", "pwd")):
            ok = len(value) >= 6 and has_letter and has_other
        else:
            ok = (len(value) >= 8 and has_letter and has_other and _entropy(value) >= 2.5) or (
                len(value) >= 16 and _entropy(value) >= 3.5
            )
        if ok:
            yield m.span("value")


def _emails(t: str) -> Iterable[tuple[int, int]]:
    for m in _EMAIL.finditer(t):
        if not t.startswith("://", m.start() - 3):  # ssh://git@host: a user at a host, not a mailbox
            yield m.span()
    for m in _EMAIL_SPELLED.finditer(t):
        yield m.span()


def _ibans(t: str) -> Iterable[tuple[int, int]]:
    for m in _IBAN.finditer(t):
        candidate = m.group(0)
        # The pattern may have taken a following upper-case word or group: drop groups from the end.
        while len(re.sub(r"[ -]", "", candidate)) >= 15:
            if stdnum_iban.is_valid(candidate):
                yield m.start(), m.start() + len(candidate)
                break
            cut = max(candidate.rfind(" "), candidate.rfind("-"))
            if cut <= 4:
                break
            candidate = candidate[:cut]


def _cards(t: str) -> Iterable[tuple[int, int]]:
    for m in _CARD.finditer(t):
        digits = re.sub(r"[ -]", "", m.group(0))
        if luhn_valid(digits) and len(set(digits)) > 1:
            yield m.span()


def _ssn_structure_valid(digits: str) -> bool:
    area, group, serial = digits[:3], digits[3:5], digits[5:]
    return area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"


def _ssns(t: str) -> Iterable[tuple[int, int]]:
    for m in _SSN.finditer(t):
        if _ssn_structure_valid(re.sub(r"[ .-]", "", m.group(0))):
            yield m.span()
    for m in _SSN_LABELLED.finditer(t):
        if _ssn_structure_valid(m.group("value")):
            yield m.span("value")


def _phone_regions(candidate: str) -> Sequence[str | None]:
    if candidate.startswith("+"):
        return (None,)
    if candidate.startswith("0"):
        return _TRUNK_REGIONS
    return ("US",)


def _valid_phone(candidate: str, region: str | None) -> bool:
    try:
        number = phonenumbers.parse(candidate, region)
    except phonenumbers.NumberParseException:
        return False
    return phonenumbers.is_valid_number(number)


def _phones(t: str, taken: Sequence[tuple[int, int, str]] = ()) -> Iterable[tuple[int, int]]:
    # Digit runs are cut out first and validated one by one: running phonenumbers' matcher over a
    # whole text costs milliseconds, a parse of one run tens of microseconds. A run already taken
    # by an earlier kind (a card, an IBAN, an SSN) is not looked at again.
    for m in _PHONE_CANDIDATE.finditer(t):
        if any(s <= m.start() and m.end() <= e for s, e, _ in taken):
            continue
        candidate = m.group(0)
        if _DATE_LIKE.fullmatch(candidate):
            continue
        if not candidate.startswith("+") and _NOT_A_PHONE_BEFORE.search(t, max(0, m.start() - 16), m.start()):
            continue
        if candidate.startswith("00") and _valid_phone("+" + candidate[2:], None):
            yield m.span()
            continue
        regions = _phone_regions(candidate)
        if any(_valid_phone(candidate, region) for region in regions):
            yield m.span()
            continue
        # Not one number: several side by side, or a number inside a longer run of digits.
        for region in dict.fromkeys((*regions, "US")):
            for found in phonenumbers.PhoneNumberMatcher(
                candidate, region or "US", leniency=phonenumbers.Leniency.VALID
            ):
                if found.raw_string.startswith("+") or not _NOT_A_PHONE_BEFORE.search(
                    t, max(0, m.start() + found.start - 16), m.start() + found.start
                ):
                    yield m.start() + found.start, m.start() + found.end


def _ip_addresses(t: str) -> Iterable[tuple[int, int]]:
    for m in _IPV4.finditer(t):
        if not _VERSION_BEFORE.search(t, max(0, m.start() - 12), m.start()):
            yield m.span()
    for m in _IPV6.finditer(t):
        candidate = m.group(0)
        try:
            ipaddress.IPv6Address(candidate)
        except ValueError:
            continue
        if sum(c in "0123456789abcdefABCDEF" for c in candidate) >= 4:
            yield m.span()


_MAC = re.compile(
    r"(?<![0-9A-Za-z:-])[0-9A-Fa-f]{2}([:-])(?:[0-9A-Fa-f]{2}\1){4}[0-9A-Fa-f]{2}(?![0-9A-Za-z:-])"
)


def _mac_addresses(t: str) -> Iterable[tuple[int, int]]:
    for m in _MAC.finditer(t):
        yield m.span()


_DETECTORS = {
    "private_key": _private_keys,
    "url_credentials": _url_credentials,
    "aws_access_key": _aws_access_keys,
    "aws_secret_key": _aws_secret_keys,
    "api_token": _api_tokens,
    "email": _emails,
    "iban": _ibans,
    "credit_card": _cards,
    "ssn": _ssns,
    "phone": _phones,
    "ip_address": _ip_addresses,
    "mac_address": _mac_addresses,
}
assert tuple(_DETECTORS) == PII_KINDS


# Cheap tests (substring checks and counts, all in C) that a detector can find anything at all:
# each detector's regex would otherwise try every position of every candidate text, tens of
# microseconds a pattern.
_AWS_KEY_PREFIXES = ("AKIA", "ASIA", "AIDA", "AROA", "AGPA", "AIPA", "ANPA", "ANVA", "APKA", "ABIA", "ACCA")
_TOKEN_PREFIXES = (
    "ghp_",
    "gho_",
    "ghu_",
    "ghs_",
    "ghr_",
    "github_pat_",
    "xox",
    "hooks.slack",
    "k_live_",
    "k_test_",
)
_TOKEN_PREFIXES += ("sk-", "glpat-", "AIza", "npm_", "eyJ")
_LABEL_WORDS = ("pass", "pwd", "secret", "token", "key", "auth", "credential")
_NOT_DIGITS = str.maketrans("", "", "0123456789")


def _longest_chunk(t: str) -> int:
    return max(map(len, t.split()), default=0)


_HINTS = {
    "private_key": lambda t, low, digits: "-----BEGIN" in t,
    "url_credentials": lambda t, low, digits: "://" in t,
    "aws_access_key": lambda t, low, digits: any(p in t for p in _AWS_KEY_PREFIXES),
    "aws_secret_key": lambda t, low, digits: _longest_chunk(t) >= 40,
    "api_token": lambda t, low, digits: (
        any(p in t for p in _TOKEN_PREFIXES)
        or (("=" in t or ":" in t) and any(w in low for w in _LABEL_WORDS))
    ),
    "email": lambda t, low, digits: "@" in t or " AT " in t or ("at" in low and any(b in t for b in "[({<")),
    "iban": lambda t, low, digits: digits >= 8,
    "credit_card": lambda t, low, digits: digits >= 13,
    "ssn": lambda t, low, digits: digits >= 9,
    "phone": lambda t, low, digits: digits >= 7,
    "ip_address": lambda t, low, digits: t.count(".") >= 3 or t.count(":") >= 2,
    "mac_address": lambda t, low, digits: t.count(":") >= 5 or t.count("-") >= 5,
}
assert tuple(_HINTS) == PII_KINDS


def _find_normalized(norm: NormalizedText) -> list[PiiSpan]:
    t = norm.text
    low = t.lower()
    digits = len(t) - len(t.translate(_NOT_DIGITS))
    taken: list[tuple[int, int, str]] = []
    for kind in PII_KINDS:
        if not _HINTS[kind](t, low, digits):
            continue
        detector = _DETECTORS[kind]
        found = detector(t, taken) if kind == "phone" else detector(t)
        # Longest first within a kind, so that e.g. a full key wins over a labelled fragment of it.
        for start, end in sorted(set(found), key=lambda s: (s[0] - s[1], s[0])):
            if end > start and all(end <= s or start >= e for s, e, _ in taken):
                taken.append((start, end, kind))
    spans = [PiiSpan(kind, *norm.original_span(start, end)) for start, end, kind in taken]
    return sorted(spans, key=lambda s: s.start)


def find_pii(text: str) -> list[PiiSpan]:
    """Every piece of personal data or secret in ``text``: non-overlapping spans in its own offsets."""
    # No PREFILTER here: in Python its alternation costs ~200 us a text, more than the hints that
    # keep each detector from running at all (it is for DuckDB, where RE2 runs it in parallel).
    return _find_normalized(normalize_for_detection(text))


def _redact(text: str, spans: Sequence[PiiSpan], policy: PiiPolicy) -> str:
    out, pos = [], 0
    for span in spans:
        if getattr(policy, span.kind) is PiiAction.ALLOW:
            continue
        out.append(text[pos : span.start])
        out.append(placeholder(span.kind))
        pos = span.end
    out.append(text[pos:])
    return "".join(out)


def scan_and_redact(text: str, policy: PiiPolicy) -> tuple[str, dict[str, int]]:
    """``text`` with every span not allowed by ``policy`` replaced by ``[KIND]``, and counts per kind."""
    spans = find_pii(text)
    if not spans:
        return text, {}
    return _redact(text, spans, policy), dict(Counter(s.kind for s in spans))


def scan_texts(texts: Iterable[str | None], policy: PiiPolicy) -> Iterable[tuple[int, str, dict[str, int]]]:
    """``(position, redacted, counts)`` for each text of ``texts`` that holds anything."""
    for i, text in enumerate(texts):
        if text is None:
            continue
        spans = find_pii(text)
        if spans:
            yield i, _redact(text, spans, policy), dict(Counter(s.kind for s in spans))
