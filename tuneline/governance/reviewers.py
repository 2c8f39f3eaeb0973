"""Reviewer identity: a decision counts only from a reviewer who proves who they are.

Each reviewer is enrolled once (``tuneline reviewers add NAME``), which prints a random token a
single time. Only its scrypt hash (stdlib ``hashlib.scrypt``, random salt) is stored, under
``audit/_reviewers/<name>.json`` beside the audit log, where the pipeline's own S3 key cannot write
when the store separates identities (docs/operations.md). The approve subflow verifies the token
sent with every decision, from the Prefect UI form or ``tuneline approve``; a typed name alone is
refused and audited as a refused attempt.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from tuneline.config import ApprovalPolicy
from tuneline.errors import ConfigError, PromotionError
from tuneline.governance.approval import POLICY_ACTOR, Review
from tuneline.storage.s3 import ObjectStore

__all__ = ["ReviewerCredential", "ReviewerRefusedError", "ReviewerRegistry", "authenticate"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,62}$")
# scrypt at n=2**14, r=8: ~16 MiB and tens of milliseconds per check, enough against guessing a
# 256-bit random token many times over, cheap enough for an interactive approval.
_N, _R, _P = 2**14, 8, 1


class ReviewerRefusedError(PromotionError):
    """A decision that does not come from an authenticated, allowed reviewer."""


class ReviewerCredential(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    scheme: Literal["scrypt"] = "scrypt"
    n: int = _N
    r: int = _R
    p: int = _P
    salt: str
    digest: str
    enrolled_at: datetime
    enrolled_by: str


def _hash(token: str, salt: bytes, n: int, r: int, p: int) -> str:
    return hashlib.scrypt(token.encode(), salt=salt, n=n, r=r, p=p, maxmem=64 * 1024 * 1024, dklen=32).hex()


class ReviewerRegistry:
    def __init__(self, store: ObjectStore, prefix: str = "audit/_reviewers") -> None:
        self.store = store
        self.prefix = prefix.strip("/")

    def _uri(self, name: str) -> str:
        if not _NAME.match(name) or name == POLICY_ACTOR:
            raise ConfigError(
                f"reviewer name {name!r} is not allowed: use letters, digits, '.', '_', '@' or '-' "
                f"(at most 63), and not {POLICY_ACTOR!r}"
            )
        return self.store.uri(f"{self.prefix}/{name}.json")

    def enroll(self, name: str, enrolled_by: str, replace: bool = False) -> str:
        """Store a new credential for ``name`` and return its token (shown once, never stored)."""
        uri = self._uri(name)
        if self.store.exists(uri) and not replace:
            raise ConfigError(f"reviewer {name!r} is already enrolled; pass --replace to issue a new token")
        token = secrets.token_urlsafe(32)
        salt = secrets.token_bytes(16)
        credential = ReviewerCredential(
            name=name, salt=salt.hex(), digest=_hash(token, salt, _N, _R, _P),
            enrolled_at=datetime.now(UTC), enrolled_by=enrolled_by,
        )
        self.store.put_bytes(uri, credential.model_dump_json().encode(), "application/json")
        return token

    def verify(self, name: str, token: str) -> None:
        """Raise ReviewerRefusedError with the reason unless ``token`` is ``name``'s credential."""
        if not token:
            raise ReviewerRefusedError(f"no reviewer token was sent with {name!r}'s decision; a typed name is not proof")
        try:
            uri = self._uri(name)
        except ConfigError as exc:
            raise ReviewerRefusedError(str(exc)) from exc
        if not self.store.exists(uri):
            raise ReviewerRefusedError(f"reviewer {name!r} is not enrolled (tuneline reviewers add {name})")
        try:
            credential = ReviewerCredential.model_validate_json(self.store.get_bytes(uri))
        except ValidationError as exc:
            raise ReviewerRefusedError(f"the stored credential of reviewer {name!r} is malformed; enrol again") from exc
        expected = _hash(token, bytes.fromhex(credential.salt), credential.n, credential.r, credential.p)
        if not hmac.compare_digest(expected, credential.digest):
            raise ReviewerRefusedError(f"the token sent for reviewer {name!r} is wrong")


def authenticate(policy: ApprovalPolicy, review: Review, registry: ReviewerRegistry) -> None:
    """A review counts only from an allowed reviewer whose token verifies; raise the reason otherwise."""
    if review.reviewer == POLICY_ACTOR:
        raise ReviewerRefusedError(f"{POLICY_ACTOR!r} is the automatic decider's name, not a reviewer")
    if policy.reviewers is not None and review.reviewer not in policy.reviewers:
        allowed = ", ".join(policy.reviewers)
        raise ReviewerRefusedError(f"reviewer {review.reviewer!r} may not approve this model; allowed: {allowed}")
    registry.verify(review.reviewer, review.token.get_secret_value())
