"""Writes ``pii_corpus.jsonl``: the labelled corpus that ``test_pii.py`` measures detection on.

Run ``python tests/data/pii_corpus.py`` after changing a case; the output is deterministic.
Each line is ``{"id", "text", "labels": [{"kind", "start", "end", "variant"}]}``; a label's span is
what must not survive redaction (the original characters, hidden ones included). Lines without
labels are negatives: nothing in them may be redacted. Values are fictitious (documentation
ranges, test card numbers, checksummed IBANs from the standards' examples, AWS's example keys,
random tokens made for this file).
"""

from __future__ import annotations

import json
from pathlib import Path

ZW = "\u200b"  # zero-width space
ZWJ = "\u200d"
NBSP = "\u00a0"
EN = "\u2013"  # en-dash
RLO, PDF = "\u202e", "\u202c"  # bidi override / pop


def fullwidth(s: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in s)


TEMPLATES = (
    "Hi, please update my details: {v}. Thanks!",
    "You can reach me at {v}",
    "{v} is the one on file, can you check it?",
    "Customer wrote: 'mine is {v}' and asked for a callback.",
)

# (kind, variant, value): each value is placed into one template (cycled), and some into several.
POSITIVES: list[tuple[str, str, str]] = [
    # e-mail
    ("email", "plain", "jane.doe@example.com"),
    ("email", "plus_subdomain", "j.doe+billing@mail.example.co.uk"),
    ("email", "upper", "JOHN.SMITH@EXAMPLE.ORG"),
    ("email", "at_dot_brackets", "jane [at] example [dot] com"),
    ("email", "at_dot_parens", "jane.doe(at)example(dot)org"),
    ("email", "at_brackets_tight", "bob[at]example.net"),
    ("email", "at_braces", "alice {at} corp {dot} example {dot} com"),
    ("email", "spelled_upper", "JANE AT EXAMPLE DOT COM"),
    ("email", "fullwidth_at", "jane\uff20example.com"),
    ("email", "zero_width", f"ja{ZW}ne@exa{ZW}mple.com"),
    ("email", "cyrillic_letters", "j\u0430ne@ex\u0430mple.com"),
    ("email", "spaces_around_at", "mark @ example.com"),
    ("email", "digits", "user1234@example.io"),
    ("email", "dash_domain", "info@my-shop.example.de"),
    ("email", "fullwidth_all", fullwidth("kim@example.com")),
    ("email", "soft_hyphen", "li\u00adsa@example.com"),
    ("email", "angle_at", "tom <at> example <dot> com"),
    # phone
    ("phone", "us_dashes", "415-555-0137"),
    ("phone", "us_parens", "(415) 555-0199"),
    ("phone", "us_dots", "212.555.0142"),
    ("phone", "us_plus1", "+1 415 555 0137"),
    ("phone", "us_unseparated", "4155550137"),
    ("phone", "us_plus_unseparated", "+14155550137"),
    ("phone", "fullwidth_digits", fullwidth("415-555-0137")),
    ("phone", "nbsp", f"415{NBSP}555{NBSP}0137"),
    ("phone", "en_dash", f"415{EN}555{EN}0137"),
    ("phone", "zero_width", f"415{ZW}-555-{ZW}0137"),
    ("phone", "uk_international", "+44 20 7946 0958"),
    ("phone", "uk_national", "020 7946 0958"),
    ("phone", "de_international", "+49 30 901820"),
    ("phone", "de_00_prefix", "0049 30 901820"),
    ("phone", "fr_international", "+33 1 42 68 53 00"),
    ("phone", "fr_national", "01 42 68 53 00"),
    ("phone", "in_international", "+91 98765 43210"),
    ("phone", "au_international", "+61 2 9374 4000"),
    ("phone", "jp_international", "+81 3-3224-9999"),
    ("phone", "br_international", "+55 11 2222-3333"),
    ("phone", "us_slash", "415/555-0137"),
    # credit card
    ("credit_card", "visa_spaces", "4111 1111 1111 1111"),
    ("credit_card", "visa_dashes", "4111-1111-1111-1111"),
    ("credit_card", "visa_plain", "4012888888881881"),
    ("credit_card", "mastercard", "5555 5555 5555 4444"),
    ("credit_card", "amex", "3782 822463 10005"),
    ("credit_card", "discover", "6011111111111117"),
    ("credit_card", "fullwidth", fullwidth("4111 1111 1111 1111")),
    ("credit_card", "nbsp", f"5105{NBSP}1051{NBSP}0510{NBSP}5100"),
    ("credit_card", "en_dash", f"4111{EN}1111{EN}1111{EN}1111"),
    ("credit_card", "zero_width", f"4111{ZW}1111{ZW}1111{ZW}1111"),
    ("credit_card", "jcb", "3530111333300000"),
    ("credit_card", "mastercard_2series", "2223003122003222"),
    # SSN
    ("ssn", "dashes", "123-45-6789"),
    ("ssn", "spaces", "123 45 6789"),
    ("ssn", "dots", "123.45.6789"),
    ("ssn", "en_dash", f"123{EN}45{EN}6789"),
    ("ssn", "nbsp", f"219{NBSP}09{NBSP}9999"),
    ("ssn", "fullwidth", fullwidth("078-05-1120")),
    ("ssn", "zero_width", f"123{ZW}-45-{ZWJ}6789"),
    ("ssn", "mixed", "457 55-5462"),
    ("ssn", "other_area", "536-22-1234"),
    # SSN without separators only when labelled: the label is context, the digits the span.
    # (These are built separately below.)
    # IBAN
    ("iban", "de_spaces", "DE89 3704 0044 0532 0130 00"),
    ("iban", "de_compact", "DE89370400440532013000"),
    ("iban", "gb_spaces", "GB82 WEST 1234 5698 7654 32"),
    ("iban", "fr", "FR14 2004 1010 0505 0001 3M02 606"),
    ("iban", "nl", "NL91ABNA0417164300"),
    ("iban", "es", "ES91 2100 0418 4502 0005 1332"),
    ("iban", "ch", "CH93 0076 2011 6238 5295 7"),
    ("iban", "be", "BE71 0961 2345 6769"),
    ("iban", "lowercase", "de89 3704 0044 0532 0130 00"),
    ("iban", "nbsp", f"DE89{NBSP}3704{NBSP}0044{NBSP}0532{NBSP}0130{NBSP}00"),
    ("iban", "fullwidth", fullwidth("GB82WEST12345698765432")),
    ("iban", "it", "IT60 X054 2811 1010 0000 0123 456"),
    # AWS access keys
    ("aws_access_key", "akia", "AKIAIOSFODNN7EXAMPLE"),
    ("aws_access_key", "asia", "ASIAY34FZKBOKMUTVV7A"),
    ("aws_access_key", "zero_width", f"AKIA{ZW}IOSFODNN7EXAMPLE"),
    ("aws_access_key", "fullwidth", fullwidth("AKIAJ5Q7R2D9EXAMPLE2")),
    ("aws_access_key", "cyrillic", "\u0410KI\u0410IOSFODNN7EXAMPLE"),
    ("aws_access_key", "aroa", "AROAJQABLZS4A3QDU576Q"[:20]),
    # AWS secret keys (the label is context; the 40 characters are the span)
    ("aws_secret_key", "unlabelled", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
    ("aws_secret_key", "unlabelled_2", "je7MtGbClwBF/2Zp9Utk/h3yCo8nvbEXAMPLEKEY"),
    ("aws_secret_key", "unlabelled_3", "Tq8Zb3kN1vR6mXw2Yc5Lp9Ds0Hf4Gj7Ke1Ua3Qo8"),
    # API tokens
    ("api_token", "github_pat_classic", "ghp_16C7e42F292c6912E7710c838347Ae178B4a"),
    ("api_token", "github_oauth", "gho_aB3dE5fG7hI9jK1lM3nO5pQ7rS9tU1vW3xY5"),
    (
        "api_token",
        "github_fine_grained",
        "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyzABCDEFGHIJ",
    ),
    ("api_token", "slack_bot", "xoxb-2048-4096-AbCdEfGhIjKlMnOpQrStUvWx"),
    ("api_token", "slack_user", "xoxp-1234567890-0987654321-1122334455-a1b2c3d4e5f6a7b8c9d0"),
    (
        "api_token",
        "slack_webhook",
        "https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX",
    ),
    ("api_token", "stripe_live", "sk_live_4eC39HqLyjWDarjtT1zdp7dc"),
    ("api_token", "openai_style", "sk-proj-Ab12Cd34Ef56Gh78Ij90Kl12Mn34"),
    ("api_token", "gitlab", "glpat-x9Y8w7V6u5T4s3R2q1P0"),
    ("api_token", "google", "AIzaSyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q"),
    (
        "api_token",
        "jwt",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    ),
    ("api_token", "github_zero_width", f"ghp_16C7e42F292c{ZW}6912E7710c838347Ae178B4a"),
    # private keys
    (
        "private_key",
        "rsa",
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA3Tz2mr7SZiAMfQyuvBjM9Oi\nZ1BjP5CE/Wm/Rr500P\n-----END RSA PRIVATE KEY-----",
    ),
    (
        "private_key",
        "pkcs8",
        "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----",
    ),
    (
        "private_key",
        "openssh",
        "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ\n-----END OPENSSH PRIVATE KEY-----",
    ),
    (
        "private_key",
        "ec",
        "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIBkg4LVWM9nuwNSk3yByxZpYRTBnVJk\n-----END EC PRIVATE KEY-----",
    ),
    ("private_key", "truncated", "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAwJ8s3nL4"),
    (
        "private_key",
        "pgp",
        "-----BEGIN PGP PRIVATE KEY BLOCK-----\nlQOYBF0W8tQBCAC7\n-----END PGP PRIVATE KEY BLOCK-----",
    ),
    # IP addresses
    ("ip_address", "ipv4", "192.168.10.254"),
    ("ip_address", "ipv4_public", "203.0.113.42"),
    ("ip_address", "ipv4_ten", "10.1.2.3"),
    ("ip_address", "ipv4_fullwidth", fullwidth("198.51.100.7")),
    ("ip_address", "ipv4_zero_width", f"203.0.{ZW}113.9"),
    ("ip_address", "ipv6_compressed", "2001:db8:85a3::8a2e:370:7334"),
    ("ip_address", "ipv6_full", "2001:0db8:0000:0000:0000:ff00:0042:8329"),
    ("ip_address", "ipv6_link_local", "fe80::1ff:fe23:4567:890a"),
    ("ip_address", "ipv6_mapped", "::ffff:192.0.2.128"),
    ("ip_address", "ipv6_short", "2001:db8::1"),
    # MAC addresses
    ("mac_address", "colons", "00:1A:2B:3C:4D:5E"),
    ("mac_address", "dashes", "00-1a-2b-3c-4d-5e"),
    ("mac_address", "lower", "a4:5e:60:d2:1f:99"),
]

# Contexts for kinds whose span sits inside a larger text (the label is not redacted).
CONTEXTUAL: list[tuple[str, str, str, str]] = [
    # kind, variant, text with «value» marked
    ("ssn", "labelled_unseparated", "My SSN is «123456789», please keep it safe."),
    ("ssn", "labelled_unseparated_2", "social security number: «536221234»"),
    ("ssn", "labelled_hash", "SSN# «457555462»"),
    ("aws_secret_key", "labelled", "aws_secret_access_key = «wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY»"),
    (
        "aws_secret_key",
        "labelled_env",
        "export AWS_SECRET_ACCESS_KEY=«je7MtGbClwBF/2Zp9Utk/h3yCo8nvbEXAMPLEKEY»",
    ),
    ("aws_secret_key", "labelled_json", '{"aws_secret_key": "«Tq8Zb3kN1vR6mXw2Yc5Lp9Ds0Hf4Gj7Ke1Ua3Qo8»"}'),
    ("aws_secret_key", "labelled_zero_width", f"aws secret: «wJalrXUtnFEMI/K7MDENG/{ZW}bPxRfiCYEXAMPLEKEY»"),
    ("api_token", "generic_key_value", "api_key = «9f8e7d6c5b4a3f2e1d0c»"),
    ("api_token", "generic_json", '{"token": "«a8Fk2LmQ9zX4vB7nR1tY»"}'),
    ("api_token", "generic_password", "password: «Tr0ub4dor&3»"),
    ("api_token", "generic_colon", "Authorization token: «Zm9vYmFyYmF6cXV4MTIzNDU2»"),
    ("api_token", "generic_secret_env", "CLIENT_SECRET=«Qw3rTy7uIo9pAs1dFg»"),
    ("api_token", "generic_pwd", "pwd=«s3cr3t!x»"),
    ("url_credentials", "postgres_url", "DATABASE_URL=postgres://«admin:s3cr3tPass»@db.internal:5432/app"),
    ("url_credentials", "https_url", "clone https://«deploy:hunter2»@git.example.com/repo.git"),
    ("url_credentials", "redis_url", "redis://«default:Zk9pQ2x7»@cache.example.net:6379"),
    ("email", "in_sentence_trailing_dot", "Send it to «maria.garcia@example.com»."),
    ("phone", "after_label", "Phone: «(212) 555-0123», mobile «+1-646-555-0199»"),
    ("phone", "bidi_wrapped", f"call {RLO}«415-555-0137»{PDF} today"),
    ("phone", "bidi_isolate", "call \u2068«+44 20 7946 0958»\u2069 today"),
    ("ip_address", "with_port", "server at «203.0.113.5»:8080 refused"),
    ("ip_address", "in_url", "see http://[«2001:db8::42»]/status"),
]

# The realistic leaks: several kinds at once, Unicode tricks, a record rejected for its key.
COMBINED: list[tuple[str, str]] = [
    (
        "issue_rejected_record",
        "Deploy failed, key «AKIAIOSFODNN7EXAMPLE» secret «wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY», "
        "contact «ops.lead@example.com», SSN «123 45 6789»",
    ),
    ("issue_zero_width_mail_phone", f"mail «jo{ZW}hn@example.com» or call «+1{ZW}415{ZW}555{ZW}0137»"),
    ("issue_fullwidth_card_ssn", f"card «{fullwidth('4111111111111111')}» ssn «{fullwidth('123-45-6789')}»"),
    ("issue_nbsp_en_dash", f"call «415{NBSP}555{EN}0137», ssn «123{EN}45{EN}6789»"),
    ("issue_obfuscated_mail_iban", "write «jane [at] example [dot] com», IBAN «DE89 3704 0044 0532 0130 00»"),
    ("issue_international_phones", "UK «+44 20 7946 0958», DE «+49 30 901820», unseparated «4155550137»"),
    (
        "issue_tokens",
        "GH «ghp_16C7e42F292c6912E7710c838347Ae178B4a», slack «xoxb-2048-4096-AbCdEfGhIjKlMnOpQrStUvWx»",
    ),
]

NEGATIVES: list[tuple[str, str]] = [
    ("order_number", "Where is order #48213? It has not arrived."),
    ("order_numbers_two", "Orders #12345 and #99814 were both cancelled."),
    ("ticket_number", "ticket 123456: the model should answer with a short json object"),
    ("invoice_long", "Invoice INV-2024-000123 is overdue."),
    ("tracking", "Tracking number 1Z999AA10123456784 shows no movement."),
    ("order_digits_long", "order #4155550137 is lost"),
    ("sku", "SKU 8841-220-19 is out of stock"),
    ("luhn_fails", "order 4111 1111 1111 1112"),
    ("version_ip_like", "version 10.0.300.1"),
    ("version_four_part", "upgrade to version 1.2.3.4 today"),
    ("semver", "bumped from 2.14.0 to 3.0.0-rc.1"),
    ("semver_v", "released v1.2.3 and v10.20.30+build.5"),
    ("iso_date", "released 2024-01-15"),
    ("iso_datetime", "at 2024-01-15T10:30:00Z the job failed"),
    ("dates", "due 12/05/2024 or 05.12.2024 at the latest"),
    ("date_range", "from 2023-11-01 to 2023-11-30"),
    ("time", "the meeting is at 10:30:45"),
    ("uuid", "request 123e4567-e89b-12d3-a456-426614174000 timed out"),
    ("uuid_upper", "ID 550E8400-E29B-41D4-A716-446655440000"),
    ("prices", "it costs $1,299.99 or 1.299,99 EUR, was $2,499.00"),
    ("price_big", "a budget of $12,500,000 for 2025"),
    ("cpp_scope", "std::vector<int> and foo::bar::baz"),
    ("short_number", "call 5550137"),
    ("x_at_y", "x@y"),
    ("at_word", "look at this, dot the i"),
    ("at_upper_word", "MEET AT NOON"),
    ("git_sha", "fixed in commit 3f786850e387550fdab836ed7e6dc881de23001b"),
    ("sha256", "sha256 e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
    ("md5", "md5 d41d8cd98f00b204e9800998ecf8427e"),
    ("password_word", "I forgot my password, please reset it"),
    ("token_expired", "token: expired"),
    ("password_placeholder", 'set "examplePassword": "P@55w0rd_Ex@mple_2023!" in the docs'),
    ("secret_bool", "secret = true"),
    ("percent", "growth of 12.5% to 13.75%"),
    ("phone_like_math", "compute 3 * (4 + 5) - 6"),
    ("zip_codes", "ZIP 94103 and 10001"),
    ("year_list", "in 2019, 2020, 2021 and 2022"),
    ("coordinates", "lat 37.7749, lon -122.4194"),
    ("decimal", "pi is 3.14159265358979"),
    ("http_status", "got HTTP 404 then 503"),
    ("file_path", "/usr/local/lib/python3.11/site-packages/foo.py"),
    ("url_plain", "see https://docs.example.com/guide/getting-started"),
    ("url_user_only", "ssh://git@github.com/org/repo.git"),
    ("json_answer", '{"intent": "refund", "priority": "high", "order_id": 27611}'),
    ("model_id", "amazon.nova-micro-v1:0 and anthropic.claude-3-haiku-20240307-v1:0"),
    ("long_word", "internationalization and counterrevolutionaries"),
    ("snake_identifier", "call get_customer_profile_by_identifier()"),
    ("camel_identifier", "the class SupportTicketRoutingConfiguration"),
    ("base_path", "s3://tuneline/datasets/support/_staging/"),
    ("ratio", "a 16:9 screen at 1920x1080"),
    ("not_iban", "code DE12 is not an account"),
    ("not_ssn_area", "000-12-3456 and 666-12-3456 are not issued"),
    ("hex_color", "colors #ff00aa and #00ff00"),
    ("mac_like_time", "logged at 12:30:45.123"),
    ("aws_arn", "arn:aws:iam::123456789012:role/TunelineRole"),
    ("account_id", "AWS account 123456789012"),
    ("em_dash_text", "first \u2014 then second \u2013 done"),
    ("unicode_text", "Grüße aus München, naïve café, 東京"),
    ("nbsp_text", f"price{NBSP}12{NBSP}EUR"),
    ("fullwidth_words", fullwidth("hello world")),
    ("chapter_refs", "see sections 3.2.1 and 4.10.2"),
    ("ipv6_doc_scope", "the operator ::= and a::b"),
]


def _marked(text: str) -> tuple[str, list[tuple[int, int]]]:
    """``text`` without «» marks, and the spans they enclosed."""
    out, spans, pos = "", [], 0
    while "«" in text[pos:]:
        a = text.index("«", pos)
        b = text.index("»", a)
        out += text[pos:a]
        start = len(out)
        out += text[a + 1 : b]
        spans.append((start, len(out)))
        pos = b + 1
    return out + text[pos:], spans


def build() -> list[dict]:
    cases: list[dict] = []
    for i, (kind, variant, value) in enumerate(POSITIVES):
        # Each value in two contexts: a sentence, and alone.
        for j, template in enumerate((TEMPLATES[i % len(TEMPLATES)], "{v}")):
            before = template.split("{v}")[0]
            text = template.replace("{v}", value)
            label = {"kind": kind, "variant": variant, "start": len(before), "end": len(before) + len(value)}
            cases.append({"id": f"{kind}-{variant}-{j}", "text": text, "labels": [label]})
    for kind, variant, marked in CONTEXTUAL:
        text, spans = _marked(marked)
        labels = [{"kind": kind, "variant": variant, "start": s, "end": e} for s, e in spans]
        cases.append({"id": f"{kind}-{variant}", "text": text, "labels": labels})
    for name, marked in COMBINED:
        text, spans = _marked(marked)
        cases.append({"id": name, "text": text, "labels": [{"start": s, "end": e} for s, e in spans]})
    for name, text in NEGATIVES:
        cases.append({"id": f"negative-{name}", "text": text, "labels": []})
    return cases


_COMBINED_KINDS = {
    "issue_rejected_record": ["aws_access_key", "aws_secret_key", "email", "ssn"],
    "issue_zero_width_mail_phone": ["email", "phone"],
    "issue_fullwidth_card_ssn": ["credit_card", "ssn"],
    "issue_nbsp_en_dash": ["phone", "ssn"],
    "issue_obfuscated_mail_iban": ["email", "iban"],
    "issue_international_phones": ["phone", "phone", "phone"],
    "issue_tokens": ["api_token", "api_token"],
}


def label_combined(cases: list[dict]) -> None:
    for case in cases:
        if case["id"] in _COMBINED_KINDS:
            for label, kind in zip(case["labels"], _COMBINED_KINDS[case["id"]], strict=True):
                label["kind"] = kind
                label["variant"] = case["id"]


def main() -> None:
    cases = build()
    label_combined(cases)
    path = Path(__file__).with_name("pii_corpus.jsonl")
    with path.open("w", encoding="utf-8") as fh:
        for case in cases:
            fh.write(json.dumps(case, ensure_ascii=False) + "\n")
    print(f"{len(cases)} cases -> {path}")


if __name__ == "__main__":
    main()
