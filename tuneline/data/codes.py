"""Stable error codes for rejected records. Codes are part of the public interface: never rename one."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["ErrorCode"]


class ErrorCode(StrEnum):
    NOT_UTF8 = "not_utf8"
    INVALID_JSON = "invalid_json"
    INVALID_CSV = "invalid_csv"
    RAGGED_ROW = "ragged_row"
    UNKNOWN_FORMAT = "unknown_format"
    MISSING_MESSAGES = "missing_messages"
    EMPTY_MESSAGES = "empty_messages"
    WRONG_TYPE = "wrong_type"
    UNKNOWN_ROLE = "unknown_role"
    ROLES_NOT_ALTERNATING = "roles_not_alternating"
    FIRST_NOT_USER = "first_not_user"
    LAST_NOT_ASSISTANT = "last_not_assistant"
    EMPTY_CONTENT = "empty_content"
    UNEXPECTED_KEY = "unexpected_key"
    DUPLICATE_KEY = "duplicate_key"
    RESERVED_STRING = "reserved_string"
    TOO_MANY_TOKENS = "too_many_tokens"
    PII = "pii"
    # per-record, issue 14: formats, kinds, target capabilities and limits
    LAST_NOT_USER = "last_not_user"
    ORPHAN_TOOL_RESULT = "orphan_tool_result"
    UNSUPPORTED_CONTENT = "unsupported_content"
    UNSUPPORTED_KIND = "unsupported_kind"
    KIND_MISMATCH = "kind_mismatch"
    UNDESIRABLE_ANSWER = "undesirable_answer"
    RECORD_TOO_LARGE = "record_too_large"
    TOO_MANY_MESSAGES = "too_many_messages"
    # file-level: raised as DataError before anything is uploaded
    TOO_FEW_RECORDS = "too_few_records"
    TOO_MANY_RECORDS = "too_many_records"
