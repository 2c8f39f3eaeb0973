"""Reviewer credentials in real SeaweedFS: stored hashed, verified, and a typed name alone never counts."""

from __future__ import annotations

import hashlib
import uuid

import pytest
from pydantic import SecretStr

from tuneline.config import ApprovalPolicy
from tuneline.errors import ConfigError
from tuneline.governance.approval import Review
from tuneline.governance.reviewers import (
    ReviewerCredential,
    ReviewerRefusedError,
    ReviewerRegistry,
    authenticate,
)
from tuneline.storage.s3 import ObjectStore

pytestmark = [pytest.mark.service]


@pytest.fixture
def registry(object_store: ObjectStore) -> ReviewerRegistry:
    return ReviewerRegistry(object_store, prefix=f"audit/_reviewers-{uuid.uuid4().hex[:8]}")


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
