"""Reviewer credentials in real SeaweedFS, their enrolments on an audit chain anchored in real MLflow:
stored hashed, verified, a typed name alone never counts, and a credential written behind Tuneline's
back (with the audit writer's S3 key alone) is refused and named by the audit check."""

from __future__ import annotations

import hashlib
import json
import secrets
import uuid
from datetime import UTC, datetime

import pytest
from pydantic import SecretStr

from tuneline.config import ApprovalPolicy
from tuneline.errors import ConfigError
from tuneline.governance.approval import Review
from tuneline.governance.audit import record_digest
from tuneline.governance.reviewers import (
    ReviewerCredential,
    ReviewerRefusedError,
    ReviewerRegistry,
    authenticate,
)
from tuneline.settings import Settings
from tuneline.stages.context import StageContext

pytestmark = [pytest.mark.service]


@pytest.fixture
def ctx(stack_settings: Settings) -> StageContext:
    return StageContext(stack_settings)


@pytest.fixture
def registry(ctx: StageContext) -> ReviewerRegistry:
    """A registry of its own (credentials and enrolment chain) under ``audit/``, written as the
    product writes it: with the audit writer's key."""
    return ReviewerRegistry(ctx.store, ctx.mlflow, prefix=f"audit/_reviewers-{uuid.uuid4().hex[:8]}")


def _forge(registry: ReviewerRegistry, name: str) -> str:
    """What the audit writer's S3 key alone allows: a credential of the forger's own token, put
    straight under the reviewers prefix. Returns that token."""
    token = secrets.token_urlsafe(32)
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(token.encode(), salt=salt, n=2**14, r=8, p=1, maxmem=64 * 1024 * 1024, dklen=32).hex()
    forged = ReviewerCredential(name=name, salt=salt.hex(), digest=digest, enrolled_at=datetime.now(UTC), enrolled_by="admin")
    registry.store.put_bytes(registry._uri(name), forged.model_dump_json().encode(), "application/json")
    return token


def test_the_token_verifies_and_only_its_salted_hash_is_stored(registry: ReviewerRegistry) -> None:
    token = registry.enroll("ana", enrolled_by="admin")
    registry.verify("ana", token)
    stored = registry.store.get_bytes(registry._uri("ana")).decode()
    assert token not in stored and '"scheme":"scrypt"' in stored
    credential = ReviewerCredential.model_validate_json(stored)
    salt = bytes.fromhex(credential.salt)
    assert len(salt) == 16
    expected = hashlib.scrypt(token.encode(), salt=salt, n=credential.n, r=credential.r, p=credential.p, dklen=32)
    assert credential.digest == expected.hex()


@pytest.mark.parametrize(
    ("name", "token", "reason"),
    [
        ("ana", "", "no reviewer token"),
        ("ana", "guessed-token", "is wrong"),
        ("mallory", "anything", "not enrolled"),
        ("../ana", "anything", "not allowed"),
    ],
)
def test_a_decision_without_proof_is_refused_with_the_reason(registry, name: str, token: str, reason: str) -> None:
    registry.enroll("ana", enrolled_by="admin")
    with pytest.raises(ReviewerRefusedError, match=reason):
        registry.verify(name, token)


def test_enrolling_twice_needs_replace_which_revokes_the_old_token(registry: ReviewerRegistry) -> None:
    old = registry.enroll("bo", enrolled_by="admin")
    with pytest.raises(ConfigError, match="already enrolled"):
        registry.enroll("bo", enrolled_by="admin")
    new = registry.enroll("bo", enrolled_by="admin", replace=True)
    registry.verify("bo", new)
    with pytest.raises(ReviewerRefusedError, match="is wrong"):
        registry.verify("bo", old)


def test_authenticate_checks_the_policy_list_and_the_token(registry: ReviewerRegistry) -> None:
    ana, bo = registry.enroll("ana", enrolled_by="admin"), registry.enroll("bo", enrolled_by="admin")
    policy = ApprovalPolicy(mode="human", reviewers=["ana"])
    authenticate(policy, Review(decision="approve", reviewer="ana", token=SecretStr(ana)), registry)
    with pytest.raises(ReviewerRefusedError, match="may not approve"):
        authenticate(policy, Review(decision="approve", reviewer="bo", token=SecretStr(bo)), registry)
    with pytest.raises(ReviewerRefusedError, match="automatic decider"):
        authenticate(ApprovalPolicy(mode="human"), Review(decision="approve", reviewer="policy"), registry)


def test_each_enrolment_is_an_audit_record_without_the_token_or_its_hash(registry: ReviewerRegistry) -> None:
    first = registry.enroll("cy", enrolled_by="admin")
    second = registry.enroll("cy", enrolled_by="root", replace=True)
    log = registry.log
    enrolment, replacement = log.trusted_records(registry.chain)
    assert (enrolment.kind, enrolment.actor, enrolment.reviewer, enrolment.sequence) == ("enrolment", "admin", "cy", 1)
    assert (replacement.actor, replacement.reviewer, replacement.sequence) == ("root", "cy", 2)
    assert "revoking the old one" in replacement.reasons[0]
    stored = registry.store.get_bytes(registry._uri("cy"))
    assert replacement.credential_digest == record_digest(stored)  # binds exactly the credential stored now
    scrypt_digest = ReviewerCredential.model_validate_json(stored).digest
    for entry in log.entries(registry.chain):
        data = registry.store.get_bytes(registry.store.uri(entry.key)).decode()
        assert first not in data and second not in data and scrypt_digest not in data
    assert log.verify([registry.chain]) == [] and registry.problems() == []
    registry.verify("cy", second)
    # the chain's anchor is listed among MLflow's models: it says it is none
    client = log.anchor.client
    assert client.get_registered_model(registry.chain).description.startswith(
        "Not a model: the MLflow anchor of Tuneline's audit chain")
    # an anchor made by an earlier release ("Managed by Tuneline.") says so from its next record on
    client.update_registered_model(registry.chain, description="Managed by Tuneline.")
    registry.enroll("dee", enrolled_by="admin")
    assert client.get_registered_model(registry.chain).description.startswith("Not a model")


def test_the_attack_a_credential_written_with_the_audit_writers_key_alone_is_refused_and_named(
    registry: ReviewerRegistry,
) -> None:
    registry.enroll("ana", enrolled_by="admin")
    mallory = _forge(registry, "mallory")  # a new reviewer no one enrolled
    stolen = _forge(registry, "ana")  # ana's credential replaced by one whose token the forger knows
    policy = ApprovalPolicy(mode="human", reviewers=["ana", "mallory"])
    with pytest.raises(ReviewerRefusedError, match="'mallory'.s credential has no enrolment record on the audit chain"):
        authenticate(policy, Review(decision="approve", reviewer="mallory", token=SecretStr(mallory)), registry)
    with pytest.raises(ReviewerRefusedError, match=r"is not the one enrolled in audit record 1 .* replaced outside Tuneline"):
        authenticate(policy, Review(decision="approve", reviewer="ana", token=SecretStr(stolen)), registry)
    named = {p.key: p.problem for p in registry.problems()}
    assert set(named) == {f"{registry.prefix}/mallory.json", f"{registry.prefix}/ana.json"}, named
    assert "written outside Tuneline" in named[f"{registry.prefix}/mallory.json"]
    # re-enrolling through Tuneline backs a credential again
    ana = registry.enroll("ana", enrolled_by="admin", replace=True)
    authenticate(policy, Review(decision="approve", reviewer="ana", token=SecretStr(ana)), registry)


def test_an_enrolment_record_forged_beside_the_chain_backs_nothing(registry: ReviewerRegistry) -> None:
    registry.enroll("ana", enrolled_by="admin")
    token = _forge(registry, "mallory")
    log = registry.log
    (real,) = log.entries(registry.chain)
    record = json.loads(registry.store.get_bytes(registry.store.uri(real.key)))
    record.update(reviewer="mallory", credential_digest=record_digest(registry.store.get_bytes(registry._uri("mallory"))))
    key = f"{log.prefix}/{registry.chain}/0000000001-enrolment-forged.jsonl"
    registry.store.put_bytes(registry.store.uri(key), (json.dumps(record) + "\n").encode())
    with pytest.raises(ReviewerRefusedError, match="no enrolment record"):
        registry.verify("mallory", token)
    assert any(p.key == key and "an inserted record" in p.problem for p in registry.problems())


def test_a_deleted_credential_of_an_enrolled_reviewer_is_named(ctx: StageContext) -> None:
    # under a prefix the test's own key may delete: the attacker got past the store's identities
    tag = uuid.uuid4().hex[:8]
    registry = ReviewerRegistry(ctx.store, ctx.mlflow, prefix=f"tamper-{tag}/audit/_reviewers-{tag}")
    registry.enroll("bo", enrolled_by="admin")
    ctx.store.client.delete_object(Bucket=ctx.store.bucket, Key=f"{registry.prefix}/bo.json")
    (problem,) = registry.problems()
    assert problem.key == f"{registry.prefix}/bo.json" and "was enrolled in audit record 1 but has no credential" in problem.problem
