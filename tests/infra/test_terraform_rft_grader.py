"""infra/terraform/aws/rft_grader.tf: the RFT grader Lambda, packaged by tuneline.graders.package,
deployed with the least IAM it needs; and the package itself runs the handler on its own."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import hcl2
import pytest

from tuneline.errors import ConfigError
from tuneline.graders.package import HANDLER, build_package

MODULE = Path(__file__).resolve().parents[2] / "infra" / "terraform" / "aws"
_OPTIONS = hcl2.SerializationOptions(with_comments=False, explicit_blocks=False, strip_string_quotes=True)


@pytest.fixture(scope="module")
def grader_tf() -> dict[str, Any]:
    with (MODULE / "rft_grader.tf").open(encoding="utf-8") as handle:
        return hcl2.load(handle, serialization_options=_OPTIONS)


def _blocks(tf: dict[str, Any], block_type: str, kind: str) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for block in tf.get(block_type, []):
        found.update(block.get(kind, {}))
    return found


def test_the_function_runs_tunelines_handler_and_is_off_by_default(grader_tf: dict[str, Any]) -> None:
    (function,) = _blocks(grader_tf, "resource", "aws_lambda_function").values()
    assert function["handler"] == HANDLER
    assert function["runtime"].startswith("python3.")
    assert function["source_code_hash"] == "${filebase64sha256(var.rft_grader_package)}"
    variables = {name: body for block in grader_tf["variable"] for name, body in block.items()}
    assert variables["enable_rft_grader"]["default"] is False
    for resource in ("aws_lambda_function", "aws_iam_role", "aws_iam_role_policy"):
        for body in _blocks(grader_tf, "resource", resource).values():
            assert body["count"] == "${var.enable_rft_grader ? 1 : 0}", resource


def test_the_grader_role_may_only_write_its_logs_and_invoke_the_named_judges(
    grader_tf: dict[str, Any],
) -> None:
    documents = _blocks(grader_tf, "data", "aws_iam_policy_document")
    statements = documents["rft_grader"]["statement"]
    (logs,) = [s for s in statements if s.get("sid") == "OwnLogsOnly"]
    assert logs["actions"] == ["logs:CreateLogStream", "logs:PutLogEvents"]
    assert logs["resources"] == ["${aws_cloudwatch_log_group.rft_grader[0].arn}:*"]
    (judge,) = documents["rft_grader"]["dynamic"]
    (body,) = judge["statement"]["content"]
    assert (
        body["actions"] == ["bedrock:InvokeModel"]
        and body["resources"] == "${var.rft_grader_judge_model_arns}"
    )
    assume = documents["rft_grader_assume"]["statement"][0]
    assert assume["principals"][0]["identifiers"] == ["lambda.amazonaws.com"]
    # Nothing uses a wildcard action or resource.
    text = (MODULE / "rft_grader.tf").read_text()
    assert '"*"' not in text and ':*"]' not in text.replace('arn}:*"]', "")


def test_only_the_bedrock_customization_role_may_invoke_the_grader(grader_tf: dict[str, Any]) -> None:
    documents = _blocks(grader_tf, "data", "aws_iam_policy_document")
    (statement,) = documents["bedrock_invokes_rft_grader"]["statement"]
    assert statement["actions"] == ["lambda:InvokeFunction"]
    assert statement["resources"] == ["${aws_lambda_function.rft_grader[0].arn}"]
    policy = _blocks(grader_tf, "resource", "aws_iam_role_policy")["bedrock_invokes_rft_grader"]
    assert policy["role"] == "${aws_iam_role.bedrock_customization.id}"


def test_the_package_holds_the_handler_and_the_graders_and_runs_without_the_checkout(tmp_path: Path) -> None:
    graders = [{"name": "json_valid"}, {"name": "field_accuracy", "weight": 3}]
    zip_path = build_package(tmp_path / "rft_grader.zip", graders)
    with zipfile.ZipFile(zip_path) as archive:
        names = set(archive.namelist())
        assert {
            "tuneline/graders/rft_lambda.py",
            "tuneline/graders/graders.json",
            "tuneline/errors.py",
        } <= names
        assert json.loads(archive.read("tuneline/graders/graders.json")) == graders
        archive.extractall(tmp_path / "unpacked")
    assert (
        build_package(tmp_path / "again.zip", graders).read_bytes() == zip_path.read_bytes()
    )  # reproducible
    event = [
        {
            "id": "1",
            "messages": [
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": '{"intent": "billing_issue"}'},
            ],
            "reference_answer": {"intent": "billing_issue", "priority": "high"},
        }
    ]
    script = (
        "import json, sys, tuneline.graders.rft_lambda as m\n"
        "assert m.__file__.startswith(sys.argv[1]), m.__file__\n"
        f"print(json.dumps(m.lambda_handler({event!r}, None)))\n"
    )
    unpacked = str(tmp_path / "unpacked")
    result = subprocess.run(
        [sys.executable, "-c", script, unpacked],
        cwd=unpacked,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": unpacked, "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    (entry,) = json.loads(result.stdout)
    assert entry["aggregate_reward_score"] == pytest.approx((1.0 + 3 * 0.5) / 4)


def test_the_package_refuses_a_bad_grader_config(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown grader"):
        build_package(tmp_path / "x.zip", [{"name": "jsonvalid"}])
