"""Reviewer identity: a decision counts only from a reviewer who proves who they are.

Each reviewer is enrolled once (``tuneline reviewers add NAME``), which prints a random token a
single time. Only its scrypt hash (stdlib ``hashlib.scrypt``, random salt) is stored, under
``audit/_reviewers/<name>.json`` beside the audit log, where the pipeline's own S3 key cannot write
when the store separates identities (docs/operations.md). The approve subflow verifies the token
sent with every decision, from the Prefect UI form or ``tuneline approve``; a typed name alone is
refused and audited as a refused attempt.

Every enrolment (and every new token for a reviewer) is first an ``enrolment`` record on an audit
chain of its own, ``<registry>-enrolments`` (``audit/_reviewers-enrolments/``, its head anchored in
MLflow like a model's): who enrolled whom, when, and the SHA-256 of the credential object stored.
A credential counts only when the anchored chain holds an enrolment record of exactly its bytes, so
one written or replaced with the audit writer's S3 key alone, behind Tuneline's back, is refused
here and named by ``problems`` (``tuneline audit --verify``).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from tuneline.config import ApprovalPolicy
from tuneline.errors import ConfigError, PromotionError
from tuneline.governance.approval import POLICY_ACTOR, ApprovalRecord, Review
from tuneline.governance.audit import AuditLog, AuditProblem, record_digest
from tuneline.storage.s3 import ObjectStore

__all__ = ["ENROLMENT", "ReviewerCredential", "ReviewerRefusedError", "ReviewerRegistry", "authenticate"]

ENROLMENT = "enrolment"  # the audit record kind

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
    """Reviewer credentials under ``prefix``, each backed by an enrolment record on ``chain``.

    The chain, ``<last part of prefix>-enrolments``, lies beside ``prefix`` and is anchored on the
    MLflow registered model of that name, so two registries need prefixes that end differently.
    ``mlflow`` (an ``MlflowClient``) anchors it; without one, a client of the store's settings is
    made when first needed."""

    def __init__(self, store: ObjectStore, mlflow: Any | None = None, prefix: str = "audit/_reviewers") -> None:
        self.store = store
        self.prefix = prefix.strip("/")
        parent, _, base = self.prefix.rpartition("/")
        self.chain = f"{base}-enrolments"  # a chain name no model can take (models cannot start with "_")
        self._log_prefix = parent or self.prefix
        self._mlflow = mlflow

    @property
    def log(self) -> AuditLog:
        """The audit log that holds the enrolment chain (``self.chain``)."""
        if self._mlflow is None:
            from tuneline.storage.tracking import configure_mlflow

            self._mlflow = configure_mlflow(self.store.settings)
        return AuditLog(self.store, self._mlflow, prefix=self._log_prefix)

    def _uri(self, name: str) -> str:
        if not _NAME.match(name) or name == POLICY_ACTOR:
            raise ConfigError(
                f"reviewer name {name!r} is not allowed: use letters, digits, '.', '_', '@' or '-' "
                f"(at most 63), and not {POLICY_ACTOR!r}"
            )
        return self.store.uri(f"{self.prefix}/{name}.json")

    def enroll(self, name: str, enrolled_by: str, replace: bool = False) -> str:
        """Record the enrolment on the audit chain, store the new credential for ``name`` and
        return its token (shown once, never stored, never recorded)."""
        uri = self._uri(name)
        replacing = self.store.exists(uri)
        if replacing and not replace:
            raise ConfigError(f"reviewer {name!r} is already enrolled; pass --replace to issue a new token")
        token = secrets.token_urlsafe(32)
        salt = secrets.token_bytes(16)
        credential = ReviewerCredential(
            name=name, salt=salt.hex(), digest=_hash(token, salt, _N, _R, _P),
            enrolled_at=datetime.now(UTC), enrolled_by=enrolled_by,
        )
        data = credential.model_dump_json().encode()
        # The record first: a write that fails after it leaves an enrolled reviewer without a
        # credential (who cannot approve; `--verify` names it), never a credential without a record.
        self.log.append(ApprovalRecord(
            kind=ENROLMENT, model_name=self.chain, recorded_at=credential.enrolled_at, actor=enrolled_by,
            reviewer=name, credential_digest=record_digest(data),
            reasons=[f"{enrolled_by} issued reviewer {name!r} a new token, revoking the old one" if replacing
                     else f"{enrolled_by} enrolled reviewer {name!r}"],
        ))
        self.store.put_bytes(uri, data, "application/json")
        return token

    def enrolments(self) -> dict[str, ApprovalRecord]:
        """Each reviewer's latest enrolment record that the anchored chain vouches for."""
        latest: dict[str, ApprovalRecord] = {}
        for record in self.log.trusted_records(self.chain):
            if record.kind == ENROLMENT and record.reviewer:
                latest[record.reviewer] = record
        return latest

    def _backing_problem(self, name: str, data: bytes, enrolment: ApprovalRecord | None) -> str | None:
        """Why the credential ``data`` of ``name`` is not the one Tuneline enrolled, or None."""
        again = f"enrol them again: tuneline reviewers add {name} --replace"
        if enrolment is None:
            return (
                f"reviewer {name!r}'s credential has no enrolment record on the audit chain {self.chain!r}: "
                f"it was written outside Tuneline (or before enrolments were audited); {again}"
            )
        if enrolment.credential_digest != record_digest(data):
            return (
                f"reviewer {name!r}'s credential is not the one enrolled in audit record {enrolment.sequence} "
                f"({enrolment.recorded_at:%Y-%m-%d %H:%M:%S} by {enrolment.actor}): it was replaced outside "
                f"Tuneline; {again}"
            )
        return None

    def verify(self, name: str, token: str) -> None:
        """Raise ReviewerRefusedError with the reason unless ``token`` is ``name``'s credential and
        that credential is the one the enrolment chain records."""
        if not token:
            raise ReviewerRefusedError(f"no reviewer token was sent with {name!r}'s decision; a typed name is not proof")
        try:
            uri = self._uri(name)
        except ConfigError as exc:
            raise ReviewerRefusedError(str(exc)) from exc
        if not self.store.exists(uri):
            raise ReviewerRefusedError(f"reviewer {name!r} is not enrolled (tuneline reviewers add {name})")
        data = self.store.get_bytes(uri)
        try:
            credential = ReviewerCredential.model_validate_json(data)
        except ValidationError as exc:
            raise ReviewerRefusedError(f"the stored credential of reviewer {name!r} is malformed; enrol again") from exc
        if (problem := self._backing_problem(name, data, self.enrolments().get(name))) is not None:
            raise ReviewerRefusedError(problem)
        expected = _hash(token, bytes.fromhex(credential.salt), credential.n, credential.r, credential.p)
        if not hmac.compare_digest(expected, credential.digest):
            raise ReviewerRefusedError(f"the token sent for reviewer {name!r} is wrong")

    def problems(self) -> list[AuditProblem]:
        """The enrolment chain's problems (as ``AuditLog.verify``), then every credential object
        no enrolment on it backs, and every enrolled reviewer whose credential is gone."""
        problems = self.log.verify([self.chain])
        enrolled = self.enrolments()
        for key in sorted(self.store.list_keys(self.store.uri(f"{self.prefix}/"))):
            name = key.removeprefix(f"{self.prefix}/").removesuffix(".json")
            if not key.endswith(".json") or "/" in name:
                problems.append(AuditProblem(self.chain, key, "not a reviewer credential (<name>.json): written outside Tuneline"))
                continue
            problem = self._backing_problem(name, self.store.get_bytes(self.store.uri(key)), enrolled.pop(name, None))
            if problem is not None:
                problems.append(AuditProblem(self.chain, key, problem))
        for name, record in sorted(enrolled.items()):
            problems.append(AuditProblem(
                self.chain, f"{self.prefix}/{name}.json",
                f"reviewer {name!r} was enrolled in audit record {record.sequence} but has no credential: "
                "it was deleted outside Tuneline (or the enrolment failed after its record)",
            ))
        return problems


def authenticate(policy: ApprovalPolicy, review: Review, registry: ReviewerRegistry) -> None:
    """A review counts only from an allowed reviewer whose token verifies; raise the reason otherwise."""
    if review.reviewer == POLICY_ACTOR:
        raise ReviewerRefusedError(f"{POLICY_ACTOR!r} is the automatic decider's name, not a reviewer")
    if policy.reviewers is not None and review.reviewer not in policy.reviewers:
        allowed = ", ".join(policy.reviewers)
        raise ReviewerRefusedError(f"reviewer {review.reviewer!r} may not approve this model; allowed: {allowed}")
    registry.verify(review.reviewer, review.token.get_secret_value())
