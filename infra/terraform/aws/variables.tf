variable "aws_region" {
  description = "Region of the bucket, the key and the Bedrock jobs (Bedrock reads training data from a bucket in its own region)."
  type        = string
  default     = "us-west-2"
}

variable "name_prefix" {
  description = "Prefix of every resource name (role, key alias, rule, topic)."
  type        = string
  default     = "tuneline"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,30}$", var.name_prefix))
    error_message = "name_prefix: 2-31 lower-case letters, digits and hyphens, starting with a letter."
  }
}

variable "bucket_name" {
  description = "Globally unique name of the bucket Tuneline stores datasets, runs, evaluations, model cards and audit records in (TUNELINE_S3_BUCKET)."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.bucket_name))
    error_message = "bucket_name: 3-63 lower-case letters, digits, dots and hyphens."
  }
}

# Key patterns below are relative to the bucket; '*' matches any characters, '/' included.
# The defaults follow Tuneline's layout: prepared datasets under datasets/, and each Bedrock job
# under runs/<run>/<identity>/<job>/ with its staged data in data/ and Bedrock's output in output/.
variable "bedrock_read_key_patterns" {
  description = "Object keys Bedrock may read: training and validation data."
  type        = list(string)
  default     = ["datasets/*", "runs/*/data/*"]

  validation {
    condition     = length(var.bedrock_read_key_patterns) > 0 && alltrue([for p in var.bedrock_read_key_patterns : p != "*" && !startswith(p, "/")])
    error_message = "bedrock_read_key_patterns: at least one pattern, none the whole bucket ('*') and none starting with '/'."
  }
}

variable "bedrock_write_key_patterns" {
  description = "Object keys Bedrock may write: the customization job's output (metrics, artifacts)."
  type        = list(string)
  default     = ["runs/*/output/*"]

  validation {
    condition     = length(var.bedrock_write_key_patterns) > 0 && alltrue([for p in var.bedrock_write_key_patterns : p != "*" && !startswith(p, "/")])
    error_message = "bedrock_write_key_patterns: at least one pattern, none the whole bucket ('*') and none starting with '/'."
  }
}

variable "noncurrent_version_days" {
  description = "Days a replaced or deleted object version is kept before it expires (under noncurrent_version_prefixes only)."
  type        = number
  default     = 90
}

variable "noncurrent_version_prefixes" {
  description = "Key prefixes whose replaced or deleted versions expire after noncurrent_version_days; audit/ is never one."
  type        = list(string)
  default     = ["datasets/", "runs/", "evals/", "eval-cache/", "models/", "sensors/", "mlflow/"]

  validation {
    condition     = length(var.noncurrent_version_prefixes) > 0 && alltrue([for p in var.noncurrent_version_prefixes : endswith(p, "/") && !startswith(p, "/") && !startswith("audit/", p) && !startswith(p, "audit/")])
    error_message = "noncurrent_version_prefixes: each ends with '/', none starts with '/', and none covers audit/ (the audit log's versions never expire)."
  }
}

variable "audit_retention_mode" {
  description = "S3 Object Lock mode of each audit record: GOVERNANCE (an identity with s3:BypassGovernanceRetention can lift it) or COMPLIANCE (nobody, the root user included, until it expires)."
  type        = string
  default     = "GOVERNANCE"

  validation {
    condition     = contains(["GOVERNANCE", "COMPLIANCE"], var.audit_retention_mode)
    error_message = "audit_retention_mode: GOVERNANCE or COMPLIANCE."
  }
}

variable "audit_retention_days" {
  description = "Days each audit record stays locked from its write."
  type        = number
  default     = 365

  validation {
    condition     = var.audit_retention_days >= 1 && floor(var.audit_retention_days) == var.audit_retention_days
    error_message = "audit_retention_days: a whole number of days, at least 1."
  }
}

variable "kms_deletion_window_days" {
  description = "Waiting period before the KMS key is deleted after `terraform destroy`."
  type        = number
  default     = 30
}

variable "enable_events" {
  description = "Create an EventBridge rule that forwards Bedrock model customization job state changes to an SNS topic."
  type        = bool
  default     = false
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
