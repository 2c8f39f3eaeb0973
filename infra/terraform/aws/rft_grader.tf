# The Bedrock RFT grader Lambda: Tuneline's graders (tuneline.graders.rft_lambda) behind AWS's
# reward-function contract. Off unless enable_rft_grader is set; build the zip first:
#   python -m tuneline.graders.package --graders graders.json --out build/rft_grader.zip --deps build/deps
#
# Least privilege: the function writes its own log group and, only when an LLM-judge grader is
# configured, invokes the judge models named in rft_grader_judge_model_arns. The Bedrock
# customization role may invoke this one function and nothing else.

variable "enable_rft_grader" {
  description = "Deploy the Tuneline RFT grader Lambda (tune.grader.lambda_arn of RFT run configs)."
  type        = bool
  default     = false
}

variable "rft_grader_package" {
  description = "Path of the zip built by `python -m tuneline.graders.package`."
  type        = string
  default     = "build/rft_grader.zip"
}

variable "rft_grader_judge_model_arns" {
  description = "Foundation-model or inference-profile ARNs the llm_judge grader may invoke; empty: none."
  type        = list(string)
  default     = []
}

variable "rft_grader_timeout_seconds" {
  description = "AWS advises raising the 3 s default for graders; 900 s is Lambda's maximum."
  type        = number
  default     = 300

  validation {
    condition     = var.rft_grader_timeout_seconds >= 1 && var.rft_grader_timeout_seconds <= 900
    error_message = "Lambda timeouts are 1 to 900 seconds."
  }
}

data "aws_iam_policy_document" "rft_grader_assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_iam_role" "rft_grader" {
  count              = var.enable_rft_grader ? 1 : 0
  name               = "${var.name_prefix}-rft-grader"
  assume_role_policy = data.aws_iam_policy_document.rft_grader_assume.json
}

resource "aws_cloudwatch_log_group" "rft_grader" {
  count             = var.enable_rft_grader ? 1 : 0
  name              = "/aws/lambda/${var.name_prefix}-rft-grader"
  retention_in_days = 30
}

data "aws_iam_policy_document" "rft_grader" {
  count = var.enable_rft_grader ? 1 : 0

  statement {
    sid       = "OwnLogsOnly"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.rft_grader[0].arn}:*"]
  }

  dynamic "statement" {
    for_each = length(var.rft_grader_judge_model_arns) > 0 ? [1] : []

    content {
      sid       = "JudgeModelsOnly"
      actions   = ["bedrock:InvokeModel"]
      resources = var.rft_grader_judge_model_arns
    }
  }
}

resource "aws_iam_role_policy" "rft_grader" {
  count  = var.enable_rft_grader ? 1 : 0
  name   = "logs-and-judge"
  role   = aws_iam_role.rft_grader[0].id
  policy = data.aws_iam_policy_document.rft_grader[0].json
}

resource "aws_lambda_function" "rft_grader" {
  count            = var.enable_rft_grader ? 1 : 0
  function_name    = "${var.name_prefix}-rft-grader"
  description      = "Tuneline graders for Bedrock reinforcement fine-tuning"
  role             = aws_iam_role.rft_grader[0].arn
  runtime          = "python3.12"
  handler          = "tuneline.graders.rft_lambda.lambda_handler"
  filename         = var.rft_grader_package
  source_code_hash = filebase64sha256(var.rft_grader_package)
  timeout          = var.rft_grader_timeout_seconds
  memory_size      = 512

  depends_on = [aws_cloudwatch_log_group.rft_grader, aws_iam_role_policy.rft_grader]
}

# Bedrock calls the grader with the customization job's service role: that role, and only it,
# may invoke this function (AWS: "Lambda permissions for reward functions").
data "aws_iam_policy_document" "bedrock_invokes_rft_grader" {
  count = var.enable_rft_grader ? 1 : 0

  statement {
    sid       = "InvokeTheGraderOnly"
    actions   = ["lambda:InvokeFunction"]
    resources = [aws_lambda_function.rft_grader[0].arn]
  }
}

resource "aws_iam_role_policy" "bedrock_invokes_rft_grader" {
  count  = var.enable_rft_grader ? 1 : 0
  name   = "invoke-rft-grader"
  role   = aws_iam_role.bedrock_customization.id
  policy = data.aws_iam_policy_document.bedrock_invokes_rft_grader[0].json
}

output "rft_grader_lambda_arn" {
  description = "tune.grader.lambda_arn of RFT run configs (null unless enable_rft_grader)."
  value       = var.enable_rft_grader ? aws_lambda_function.rft_grader[0].arn : null
}
