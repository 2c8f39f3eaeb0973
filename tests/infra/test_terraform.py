"""infra/terraform/aws: parses, and the bucket, key and Bedrock role are as private as promised.

python-hcl2 parses every file on any machine; `terraform fmt -check` and `terraform validate` run
where the terraform binary (and, for validate, a local mirror of the AWS provider: no registry is
reachable here) exist, and are skipped with the reason otherwise.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import hcl2
import pytest

from tuneline.settings import Settings

MODULE = Path(__file__).resolve().parents[2] / "infra" / "terraform" / "aws"
# Where an offline machine keeps hashicorp/aws in Terraform's "unpacked" mirror layout.
PROVIDER_MIRROR = Path(os.environ.get("TUNELINE_TF_PROVIDER_MIRROR", "/opt/tf-plugins"))

_OPTIONS = hcl2.SerializationOptions(with_comments=False, explicit_blocks=False, strip_string_quotes=True)


@pytest.fixture(scope="module")
def module() -> dict[str, list[dict[str, Any]]]:
    """Every top-level block of every .tf file, by block type."""
    merged: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(MODULE.glob("*.tf")):
        with path.open(encoding="utf-8") as handle:
            for block_type, blocks in hcl2.load(handle, serialization_options=_OPTIONS).items():
                merged.setdefault(block_type, []).extend(blocks)
    return merged


def _labelled(module: dict[str, list[dict[str, Any]]], block_type: str, kind: str) -> dict[str, Any]:
    """``resource "kind" "name"`` (or data) blocks of one kind, by name."""
    found: dict[str, Any] = {}
    for block in module.get(block_type, []):
        found.update(block.get(kind, {}))
    return found


def _statements(module, document: str) -> list[dict[str, Any]]:
    return _labelled(module, "data", "aws_iam_policy_document")[document]["statement"]


def test_the_module_has_its_files_and_pins_the_aws_provider(module) -> None:
    assert {p.name for p in MODULE.glob("*.tf")} == {"main.tf", "variables.tf", "outputs.tf", "versions.tf", "rft_grader.tf"}
    (terraform,) = module["terraform"]
    (providers,) = terraform["required_providers"]
    assert providers["aws"]["source"] == "hashicorp/aws"
    assert "<" in providers["aws"]["version"], "bound the provider's major version"


def test_bucket_is_versioned_kms_encrypted_and_not_public(module) -> None:
    resources = {
        kind: _labelled(module, "resource", kind)
        for kind in (
            "aws_s3_bucket_versioning",
            "aws_s3_bucket_server_side_encryption_configuration",
            "aws_s3_bucket_public_access_block",
            "aws_s3_bucket_ownership_controls",
        )
    }
    bucket_ref = "${aws_s3_bucket.tuneline.id}"
    for kind, blocks in resources.items():
        assert blocks["tuneline"]["bucket"] == bucket_ref, kind

    versioning = resources["aws_s3_bucket_versioning"]["tuneline"]["versioning_configuration"]
    assert versioning == [{"status": "Enabled"}]

    (rule,) = resources["aws_s3_bucket_server_side_encryption_configuration"]["tuneline"]["rule"]
    (default,) = rule["apply_server_side_encryption_by_default"]
    assert default == {"sse_algorithm": "aws:kms", "kms_master_key_id": "${aws_kms_key.tuneline.arn}"}

    block = resources["aws_s3_bucket_public_access_block"]["tuneline"]
    for flag in ("block_public_acls", "block_public_policy", "ignore_public_acls", "restrict_public_buckets"):
        assert block[flag] is True, flag

    key = _labelled(module, "resource", "aws_kms_key")["tuneline"]
    assert key["enable_key_rotation"] is True


def _variables(module) -> dict[str, Any]:
    return {name: body for block in module["variable"] for name, body in block.items()}


def test_object_lock_is_on_without_replacing_the_bucket_or_locking_everything(module) -> None:
    lock = _labelled(module, "resource", "aws_s3_bucket_object_lock_configuration")["tuneline"]
    assert lock["bucket"] == "${aws_s3_bucket.tuneline.id}"
    assert lock["object_lock_enabled"] == "Enabled"
    assert lock["depends_on"] == ["${aws_s3_bucket_versioning.tuneline}"]
    # No default retention: it would lock every dataset and checkpoint version, not only audit/.
    assert "rule" not in lock
    # aws_s3_bucket's own object_lock_enabled forces a new bucket when it changes.
    assert "object_lock_enabled" not in _labelled(module, "resource", "aws_s3_bucket")["tuneline"]


def test_every_audit_record_must_be_written_locked_in_the_configured_mode(module) -> None:
    by_sid = {s.get("sid"): s for s in _statements(module, "bucket")}
    for sid, test, values in (
        ("DenyUnlockedAuditRecords", "Null", ["true"]),
        ("DenyAuditRecordsInAnotherLockMode", "StringNotEquals", ["${var.audit_retention_mode}"]),
    ):
        statement = by_sid[sid]
        assert (statement["effect"], statement["actions"]) == ("Deny", ["s3:PutObject"]), sid
        assert statement["resources"] == ["${local.bucket_arn}/audit/*"], sid
        assert statement["principals"] == [{"type": "*", "identifiers": ["*"]}], sid
        (condition,) = statement["condition"]
        assert (condition["test"], condition["variable"], condition["values"]) == (test, "s3:object-lock-mode", values)
    variables = _variables(module)
    assert variables["audit_retention_mode"]["default"] in ("GOVERNANCE", "COMPLIANCE")
    # What Tuneline sends is what the policy asks for: the settings come from the module's output,
    # and the module's defaults are Tuneline's own.
    (outputs,) = [block["tuneline_env"] for block in module["output"] if "tuneline_env" in block]
    env = outputs["value"]
    assert env["TUNELINE_AUDIT_RETENTION_MODE"] == "${var.audit_retention_mode}"
    assert env["TUNELINE_AUDIT_RETENTION_DAYS"] == "${tostring(var.audit_retention_days)}"
    defaults = Settings(_env_file=None)  # type: ignore[call-arg]
    assert variables["audit_retention_mode"]["default"] == defaults.audit_retention_mode
    # ... and the encryption headers the DenyOtherEncryption / DenyOtherKmsKey statements require.
    policy = _labelled(module, "data", "aws_iam_policy_document")
    conditions = {s["sid"]: s["condition"][0]["values"] for doc in policy.values() for s in doc.get("statement", [])
                  if s.get("sid") in ("DenyOtherEncryption", "DenyOtherKmsKey")}
    assert env["TUNELINE_S3_SERVER_SIDE_ENCRYPTION"] in conditions["DenyOtherEncryption"]
    assert [env["TUNELINE_S3_SSE_KMS_KEY_ID"]] == conditions["DenyOtherKmsKey"]
    aws = Settings(_env_file=None, s3_endpoint_url="", **{k.removeprefix("TUNELINE_").lower(): v  # type: ignore[arg-type]
                   for k, v in env.items() if k.endswith(("ENCRYPTION", "KMS_KEY_ID"))})
    assert (aws.s3_server_side_encryption, aws.s3_sse_kms_key_id) == ("aws:kms", "${aws_kms_key.tuneline.arn}")
    assert variables["audit_retention_days"]["default"] == defaults.audit_retention_days


def test_no_lifecycle_rule_expires_anything_under_audit(module) -> None:
    lifecycle = _labelled(module, "resource", "aws_s3_bucket_lifecycle_configuration")["tuneline"]
    expiring = ("expiration", "noncurrent_version_expiration", "transition", "noncurrent_version_transition")
    # The whole-bucket rule only cleans up unfinished multipart uploads (never an object or a version).
    for rule in lifecycle.get("rule", []):
        assert not set(rule) & set(expiring), rule["id"]
    # The expiring rule exists once per listed prefix, filtered on exactly that prefix ...
    (dynamic,) = lifecycle["dynamic"]
    assert dynamic["rule"]["for_each"] == "${toset(var.noncurrent_version_prefixes)}"
    (content,) = dynamic["rule"]["content"]
    assert content["filter"] == [{"prefix": "${rule.value}"}]
    assert set(content) & set(expiring) == {"noncurrent_version_expiration"}
    # ... and no listed prefix covers audit/ (or is covered by it), by default or by validation.
    prefixes = _variables(module)["noncurrent_version_prefixes"]
    assert prefixes["default"] and all(p.endswith("/") for p in prefixes["default"])
    assert not [p for p in prefixes["default"] if "audit/".startswith(p) or p.startswith("audit/")]
    (validation,) = prefixes["validation"]
    assert '!startswith("audit/", p)' in validation["condition"] and '!startswith(p, "audit/")' in validation["condition"]


def test_bucket_policy_denies_requests_without_tls(module) -> None:
    policy = _labelled(module, "resource", "aws_s3_bucket_policy")["tuneline"]
    assert policy["policy"] == "${data.aws_iam_policy_document.bucket.json}"
    tls = [
        s
        for s in _statements(module, "bucket")
        if s.get("effect") == "Deny"
        and any(c["variable"] == "aws:SecureTransport" for c in s.get("condition", []))
    ]
    assert len(tls) == 1
    (condition,) = tls[0]["condition"]
    assert (condition["test"], condition["values"]) == ("Bool", ["false"])
    assert tls[0]["actions"] == ["s3:*"]
    assert set(tls[0]["resources"]) == {"${local.bucket_arn}", "${local.bucket_arn}/*"}


def test_bedrock_trusts_only_this_accounts_customization_jobs(module) -> None:
    (statement,) = _statements(module, "bedrock_trust")
    assert statement["actions"] == ["sts:AssumeRole"]
    assert statement["principals"] == [{"type": "Service", "identifiers": ["bedrock.amazonaws.com"]}]
    conditions = {c["variable"]: c for c in statement["condition"]}
    assert conditions["aws:SourceAccount"]["test"] == "StringEquals"
    assert conditions["aws:SourceAccount"]["values"] == ["${local.account_id}"]
    (source_arn,) = conditions["aws:SourceArn"]["values"]
    assert source_arn.endswith(":model-customization-job/*")


# Every ARN the Bedrock role's policy may name: the bucket, objects under its configured key
# patterns, and the bucket's key. Nothing account-wide, no other bucket.
_ALLOWED_RESOURCES = {
    "${local.bucket_arn}",
    "${local.bedrock_read_object_arns}",
    "${local.bedrock_write_object_arns}",
    "${aws_kms_key.tuneline.arn}",
}
_ALLOWED_ACTIONS = {"s3:GetObject", "s3:PutObject", "s3:ListBucket", "kms:Decrypt", "kms:GenerateDataKey"}


def test_bedrock_role_policy_is_least_privilege_on_the_bucket_prefixes(module) -> None:
    policy = _labelled(module, "resource", "aws_iam_role_policy")["bedrock_access"]
    assert policy["role"] == "${aws_iam_role.bedrock_customization.id}"
    assert policy["policy"] == "${data.aws_iam_policy_document.bedrock_access.json}"
    by_sid = {s["sid"]: s for s in _statements(module, "bedrock_access")}
    for sid, statement in by_sid.items():
        assert statement.get("effect", "Allow") == "Allow"
        assert set(statement["actions"]) <= _ALLOWED_ACTIONS, sid
        resources = statement["resources"]
        resources = [resources] if isinstance(resources, str) else resources
        assert set(resources) <= _ALLOWED_RESOURCES, f"{sid}: {resources}"

    assert by_sid["ReadTrainingData"]["actions"] == ["s3:GetObject"]
    assert by_sid["ReadTrainingData"]["resources"] == "${local.bedrock_read_object_arns}"
    assert by_sid["WriteJobOutput"]["actions"] == ["s3:PutObject"]
    assert by_sid["WriteJobOutput"]["resources"] == "${local.bedrock_write_object_arns}"
    (listing,) = by_sid["ListOwnPrefixes"]["condition"]
    assert (listing["test"], listing["variable"]) == ("StringLike", "s3:prefix")
    kms = {c["variable"]: c["values"] for c in by_sid["UseBucketKey"]["condition"]}
    assert kms["kms:ViaService"] == ["s3.${var.aws_region}.amazonaws.com"]


def test_object_arns_are_built_from_the_bucket_and_the_key_patterns(module) -> None:
    (locals_,) = module["locals"]
    assert locals_["bucket_arn"] == "${aws_s3_bucket.tuneline.arn}"
    for kind in ("read", "write"):
        expression = locals_[f"bedrock_{kind}_object_arns"]
        assert re.fullmatch(
            rf'\$\{{\[for p in var\.bedrock_{kind}_key_patterns : "\$\{{local\.bucket_arn\}}/\$\{{p\}}"\]\}}',
            expression,
        ), expression
    variables = {name: body for block in module["variable"] for name, body in block.items()}
    for kind in ("read", "write"):
        defaults = variables[f"bedrock_{kind}_key_patterns"]["default"]
        assert defaults and all(p != "*" and not p.startswith("/") for p in defaults)
    assert variables["bedrock_write_key_patterns"]["default"] == ["runs/*/output/*"]


def test_bedrock_events_are_optional_and_match_customization_job_state_changes(module) -> None:
    rule = _labelled(module, "resource", "aws_cloudwatch_event_rule")["bedrock_job_state"]
    assert rule["count"] == "${var.enable_events ? 1 : 0}"
    pattern = rule["event_pattern"]
    assert "aws.bedrock" in pattern
    assert "Model Customization Job State Change" in pattern
    target = _labelled(module, "resource", "aws_cloudwatch_event_target")["bedrock_job_state_to_sns"]
    assert target["count"] == "${var.enable_events ? 1 : 0}"
    assert target["arn"] == "${aws_sns_topic.bedrock_events[0].arn}"
    variables = {name: body for block in module["variable"] for name, body in block.items()}
    assert variables["enable_events"]["default"] is False


def _terraform() -> str:
    binary = shutil.which("terraform")
    if binary is None:
        pytest.skip("terraform is not installed (no registry here serves it); HCL checked with python-hcl2")
    return binary


def _quiet_env(config: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_")}
    env["TF_IN_AUTOMATION"] = "1"
    env["CHECKPOINT_DISABLE"] = "1"  # no version check over the network
    if config is not None:
        env["TF_CLI_CONFIG_FILE"] = str(config)
    return env


def test_terraform_fmt_check() -> None:
    binary = _terraform()
    result = subprocess.run(
        [binary, "fmt", "-check", "-diff", "-no-color", str(MODULE)],
        capture_output=True,
        text=True,
        env=_quiet_env(),
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_terraform_validate(tmp_path: Path) -> None:
    binary = _terraform()
    if not (PROVIDER_MIRROR / "registry.terraform.io" / "hashicorp" / "aws").is_dir():
        pytest.skip(
            f"no local mirror of hashicorp/aws at {PROVIDER_MIRROR} (set TUNELINE_TF_PROVIDER_MIRROR)"
        )
    # A copy: init writes .terraform/ and a lock file, which do not belong in the repository.
    work = tmp_path / "aws"
    work.mkdir()
    for path in MODULE.glob("*.tf"):
        shutil.copy(path, work)
    config = tmp_path / "terraformrc"
    # The unpacked mirror is symlinked into .terraform, not copied (the provider is ~700 MB).
    config.write_text(
        f'provider_installation {{\n  filesystem_mirror {{\n    path = "{PROVIDER_MIRROR}"\n  }}\n}}\n'
    )
    env = _quiet_env(config)
    init = subprocess.run(
        [binary, "init", "-backend=false", "-input=false", "-no-color"],
        cwd=work,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert init.returncode == 0, init.stdout + init.stderr
    validate = subprocess.run(
        [binary, "validate", "-no-color"], cwd=work, capture_output=True, text=True, env=env, timeout=120
    )
    assert validate.returncode == 0, validate.stdout + validate.stderr
