"""The run config: everything one lifecycle run needs, as YAML validated by pydantic.

Unknown keys are refused (``extra="forbid"``) so that a typo fails loudly with its key path
instead of silently falling back to a default; YAML is read with ``yaml.safe_load``.
"""

from __future__ import annotations

import hashlib
import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tuneline.backends.bedrock.invocation_logs import RequestMetadataFilters
from tuneline.backends.bedrock.models import BEDROCK_MODELS, BedrockModelSpec
from tuneline.errors import ConfigError
from tuneline.graders.registry import GraderConfig
from tuneline.records import RecordFormat, RecordKind

__all__ = [
    "ApprovalMode",
    "ApprovalPolicy",
    "BedrockTuneConfig",
    "ColumnMapping",
    "DataConfig",
    "DedupeConfig",
    "DistributedConfig",
    "EvaluationConfig",
    "GenerationConfig",
    "JudgeConfig",
    "LocalTuneConfig",
    "LoraConfig",
    "MetricCheck",
    "PiiAction",
    "PiiPolicy",
    "PromotionConfig",
    "RunConfig",
    "SplitConfig",
    "SuiteConfig",
    "SuiteKind",
    "Target",
    "TuneConfig",
    "load_run_config",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Target(StrEnum):
    """Where the prepared data will be trained: decides format and limits."""

    LOCAL = "local"
    BEDROCK_CLAUDE_HAIKU = "bedrock-claude-haiku"
    BEDROCK_NOVA = "bedrock-nova"
    BEDROCK_TITAN = "bedrock-titan"  # Amazon Titan Text: continued pre-training ({"input"} lines)
    # Distillation into a Claude or Llama student: bedrock-conversation-2024, single-turn, text
    # (Nova students distil from bedrock-nova data: multi-turn).
    BEDROCK_DISTILLATION = "bedrock-distillation"


# ------------------------------------------------------------------------------------------
# prepare
# ------------------------------------------------------------------------------------------
class PiiAction(StrEnum):
    REDACT = "redact"  # replace with a typed placeholder such as [EMAIL]
    REJECT = "reject"  # reject the whole record
    ALLOW = "allow"  # keep as is (still counted)


class PiiPolicy(_Strict):
    email: PiiAction = PiiAction.REDACT
    phone: PiiAction = PiiAction.REDACT
    credit_card: PiiAction = PiiAction.REDACT
    ssn: PiiAction = PiiAction.REDACT
    ip_address: PiiAction = PiiAction.REDACT
    iban: PiiAction = PiiAction.REDACT
    mac_address: PiiAction = PiiAction.REDACT
    # Credentials: a record holding one came from somewhere it should not have; reject it.
    aws_access_key: PiiAction = PiiAction.REJECT
    aws_secret_key: PiiAction = PiiAction.REJECT
    api_token: PiiAction = PiiAction.REJECT
    private_key: PiiAction = PiiAction.REJECT
    url_credentials: PiiAction = PiiAction.REJECT  # scheme://user:password@host


class DedupeConfig(_Strict):
    normalize_whitespace: bool = True
    case_insensitive: bool = False
    near_duplicate_threshold: float | None = Field(
        default=None, ge=0.5, le=1.0, description="Jaccard similarity above which records are near-duplicates (MinHash); off when unset."
    )


class SplitConfig(_Strict):
    train: float = Field(default=0.8, ge=0, le=1)
    validation: float = Field(default=0.1, ge=0, le=1)
    test: float = Field(default=0.1, ge=0, le=1)
    max_train: int | None = Field(default=None, ge=1)
    max_validation: int | None = Field(default=None, ge=1)
    max_test: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _ratios_sum_to_one(self) -> SplitConfig:
        total = self.train + self.validation + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"split ratios must sum to 1, got {total:g}")
        return self


class ColumnMapping(_Strict):
    """Column names for prompt/completion inputs (JSONL, CSV, Parquet)."""

    prompt: str = "prompt"
    completion: str = "completion"
    system: str | None = None


class DataConfig(_Strict):
    source: str = Field(description="Local file, glob, directory, or s3://bucket/prefix.")
    name: str | None = Field(default=None, description="Dataset name; the run's name when unset.")
    format: RecordFormat | Literal["auto"] = Field(default="auto", description="Input record format; 'auto' detects it per record.")
    kind: RecordKind | None = Field(
        default=None, description="Read every record as this kind (sft, preference, kto, rft, pretrain, prompt: distillation prompts); unset: each record's own."
    )
    columns: ColumnMapping = Field(default=ColumnMapping(), description="Column names for prompt/completion inputs.")
    extra_keys: Literal["drop", "keep", "reject"] = Field(
        default="drop",
        description="Keys/columns no format reads: drop them (counted per key in dropped_keys), keep them as "
        "record metadata, or reject the record.",
    )
    max_record_bytes: int = Field(
        default=16 * 1024 * 1024, ge=1024, description="A larger record is rejected as record_too_large."
    )
    max_messages_per_record: int = Field(
        default=4096, ge=2, description="A record with more turns is rejected as too_many_messages."
    )
    target: Target | None = Field(default=None, description="Defaults to the tune backend's target.")
    pii: PiiPolicy = Field(default=PiiPolicy(), description="What to do with each kind of personal data found.")
    dedupe: DedupeConfig = Field(default=DedupeConfig(), description="How duplicate records are recognised.")
    split: SplitConfig = Field(default=SplitConfig(), description="Train / validation / test ratios and caps.")


# ------------------------------------------------------------------------------------------
# tune
# ------------------------------------------------------------------------------------------
class LoraConfig(_Strict):
    r: int = Field(default=8, ge=1, le=512)
    alpha: int = Field(default=16, ge=1)
    dropout: float = Field(default=0.05, ge=0, lt=1)
    target_modules: list[str] | Literal["all-linear"] = "all-linear"


class DistributedConfig(_Strict):
    """More than one training process on this machine, started with torchrun (``tune.distributed``)."""

    processes: int | Literal["auto"] = Field(
        description="Training processes: an integer from 1 to 64, or 'auto' (one per CUDA GPU the "
        "machine or pod has; a single process where it has none).",
    )
    strategy: Literal["ddp", "fsdp"] = Field(
        default="ddp",
        description="'ddp' (every process holds the whole model; CPU processes talk over gloo, GPUs over "
        "NCCL) or 'fsdp' (parameters, gradients and optimizer state sharded across CUDA GPUs).",
    )

    @model_validator(mode="before")
    @classmethod
    def _processes_in_range(cls, data: object) -> object:
        if isinstance(data, dict):
            value = data.get("processes")
            if not (value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 64)):
                raise ValueError(
                    f"tune.distributed.processes must be an integer from 1 to 64 or 'auto', not {value!r}: "
                    "e.g. `distributed: {processes: 2, strategy: ddp}`"
                )
        return data


LOCAL_METHOD_KINDS: dict[str, RecordKind] = {
    "sft": RecordKind.SFT, "dpo": RecordKind.PREFERENCE, "kto": RecordKind.KTO, "grpo": RecordKind.RFT,
    "pretrain": RecordKind.PRETRAIN,
}
"""The record kind each local ``tune.method`` trains on (its trainer reads that kind's records)."""


class LocalTuneConfig(_Strict):
    backend: Literal["local"] = "local"
    base_model: str = Field(
        description="Hugging Face model directory (local path or s3:// prefix), or a registered version the "
        "local backend trained: models:/<name>@<alias> or models:/<name>/<version> (read once per run)."
    )
    method: Literal["sft", "dpo", "kto", "grpo", "pretrain"] = Field(
        default="sft",
        description="What the model learns from: 'sft' (chat records), 'dpo' (preference pairs), 'kto' "
        "(answers labelled good or bad), 'grpo' (prompts scored by graders), 'pretrain' (plain text, "
        "continued pre-training: every token is a target).",
    )
    adapter: Literal["lora", "qlora", "full"] = Field(
        default="lora",
        description="LoRA adapters; QLoRA (LoRA on a 4-bit NF4 base: needs a CUDA GPU and the 'gpu' extra); "
        "or update every weight.",
    )
    lora: LoraConfig = Field(
        default=LoraConfig(), description="Adapter shape, for adapters 'lora' and 'qlora'."
    )
    epochs: float = Field(default=1.0, gt=0, le=100, description="Passes over the training split.")
    max_steps: int | None = Field(default=None, ge=1, description="Overrides epochs when set.")
    learning_rate: float = Field(default=2e-4, gt=0, le=1, description="Peak learning rate.")
    batch_size: int = Field(default=8, ge=1, le=1024, description="Sequences per step (packed rows when packing is on).")
    gradient_accumulation_steps: int = Field(default=1, ge=1, le=1024)
    warmup_ratio: float = Field(default=0.05, ge=0, lt=1)
    lr_scheduler: Literal["cosine", "linear", "constant"] = "cosine"
    weight_decay: float = Field(default=0.0, ge=0, le=1)
    max_grad_norm: float = Field(default=1.0, gt=0)
    max_seq_length: int = Field(default=512, ge=8, le=131072, description="Longer records are truncated.")
    packing: bool = Field(default=True, description="Pack several short records into one row.")
    seed: int = 0
    eval_every_steps: int = Field(default=50, ge=1, description="Validation loss every N steps.")
    checkpoint_every_steps: int = Field(default=100, ge=1, description="Checkpoint to S3 every N steps (a retry resumes there).")
    early_stopping_patience: int | None = Field(default=None, ge=1)
    early_stopping_threshold: float = Field(default=0.0, ge=0)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    trust_remote_code: bool = False
    merge_adapter: bool = False
    # GPU paths: each is refused before training, naming what is missing, where CUDA or its package is not.
    attention: Literal["auto", "sdpa", "eager", "flash_attention_2"] = Field(
        default="auto",
        description="The model's attn_implementation: 'auto' (transformers' choice, SDPA where the model "
        "has it), 'sdpa', 'eager', or 'flash_attention_2' (a CUDA GPU and the flash-attn package of the "
        "'gpu' extra).",
    )
    liger_kernel: bool = Field(
        default=False,
        description="Liger's Triton kernels (fused RMSNorm, RoPE, SwiGLU, linear cross-entropy) through "
        "the Trainer's use_liger_kernel: a CUDA GPU and the liger-kernel package of the 'gpu' extra.",
    )
    vllm: bool = Field(
        default=False,
        description="grpo: sample the completions with vLLM, colocated in the training process (TRL's "
        "use_vllm, vllm_mode 'colocate'): a CUDA GPU and the 'vllm' extra.",
    )
    beta: float = Field(
        default=0.1, gt=0, le=10, description="dpo, kto: how far the preferences may pull the model from its base."
    )
    rewards: list[GraderConfig] = Field(
        default_factory=list, description="grpo: tuneline.graders whose weighted score (0..1) is each completion's reward."
    )
    num_generations: int = Field(default=4, ge=2, le=64, description="grpo: completions sampled per prompt.")
    max_completion_length: int = Field(default=128, ge=1, le=32768, description="grpo: tokens per sampled completion.")
    temperature: float = Field(default=1.0, gt=0, le=2, description="grpo: sampling temperature of the completions.")
    distributed: DistributedConfig | None = Field(
        default=None,
        description="Train in several processes (torchrun): `{processes: N, strategy: ddp | fsdp}`. "
        "batch_size stays the sequences per optimizer step, split evenly over the processes. Unset: one "
        "process, in the calling one.",
    )

    @model_validator(mode="before")
    @classmethod
    def _method_was_the_adapter(cls, data: object) -> object:
        # Until issue 16, `method` named the adapter; such a config must say what to write now.
        if isinstance(data, dict) and data.get("method") in ("lora", "qlora", "full"):
            old = data["method"]
            raise ValueError(
                f"tune.method {old!r} is now tune.adapter: write `method: sft` and `adapter: {old}` "
                "(method says what the model learns from: sft, dpo, kto or grpo)"
            )
        return data

    @model_validator(mode="after")
    def _merge_needs_a_full_precision_base(self) -> LocalTuneConfig:
        if self.method == "grpo" and not self.rewards:
            raise ValueError(
                "tune.method 'grpo' needs tune.rewards: the graders that score each completion, e.g. "
                "[{name: json_valid}, {name: field_accuracy}]"
            )
        if self.vllm and self.method != "grpo":
            raise ValueError(
                f"tune.vllm applies to method 'grpo' only (it samples GRPO's completions); method "
                f"{self.method!r} samples nothing: remove tune.vllm"
            )
        spread = self.distributed
        if spread is not None and isinstance(spread.processes, int) and self.batch_size % spread.processes:
            n = spread.processes
            raise ValueError(
                f"tune.batch_size {self.batch_size} does not split evenly over tune.distributed.processes "
                f"{n} (each process takes batch_size / processes sequences per step): use a multiple of "
                f"{n}, e.g. batch_size: {max(n, self.batch_size // n * n)}"
            )
        if spread is not None and spread.strategy == "fsdp" and self.merge_adapter:
            raise ValueError(
                "tune.merge_adapter is not supported with tune.distributed.strategy 'fsdp' (the adapter is "
                "sharded across the GPUs): keep the adapter, or use strategy 'ddp'"
            )
        if spread is not None and spread.strategy == "fsdp" and self.adapter == "qlora":
            raise ValueError(
                "tune.distributed.strategy 'fsdp' is not supported with adapter 'qlora' (a 4-bit base does "
                "not shard here): use strategy 'ddp', or adapter 'lora' or 'full'"
            )
        if self.adapter == "qlora" and self.merge_adapter:
            raise ValueError(
                "tune.merge_adapter is not supported with adapter 'qlora': merging into a 4-bit base "
                "re-quantizes the adapter away; keep the adapter (it loads on the full-precision base) "
                "or use adapter 'lora'"
            )
        return self

    @property
    def target(self) -> Target:
        return Target.LOCAL

    @property
    def record_kind(self) -> RecordKind:
        return LOCAL_METHOD_KINDS[self.method]


class RftGraderConfig(_Strict):
    """The RFT grader: an existing Lambda (``lambda_arn``) or Tuneline's graders (``tuneline``),
    which run in the Lambda that ``infra/terraform/aws`` deploys (its ARN goes in ``lambda_arn``)."""

    lambda_arn: str | None = Field(
        default=None, pattern=r"^arn:(aws[a-zA-Z-]*)?:lambda:[a-z]{2}(-gov)?-[a-z]+-\d{1}:\d{12}:function:[a-zA-Z0-9-_\.]+(:(\$LATEST|[a-zA-Z0-9-_]+))?$"
    )
    tuneline: list[GraderConfig] = Field(default_factory=list, description="tuneline.graders, weighted.")

    @model_validator(mode="after")
    def _some_grader(self) -> RftGraderConfig:
        if self.lambda_arn is None and not self.tuneline:
            raise ValueError("tune.grader needs lambda_arn (an existing grader Lambda) or tuneline: [graders]")
        return self


class BedrockTuneConfig(_Strict):
    backend: Literal["bedrock"] = "bedrock"
    base_model: str = Field(description="Bedrock base model identifier, e.g. amazon.nova-micro-v1:0:128k.")
    role_arn: str = Field(pattern=r"^arn:aws(-[^:]+)?:iam::\d{12}:role/.+$")
    customization_type: Literal[
        "FINE_TUNING", "CONTINUED_PRE_TRAINING", "DISTILLATION", "REINFORCEMENT_FINE_TUNING"
    ] = "FINE_TUNING"
    grader: RftGraderConfig | None = Field(default=None, description="RFT only: the Lambda that scores answers.")
    teacher_model: str | None = Field(default=None, description="DISTILLATION only: the teacher model id.")
    max_response_length: int | None = Field(
        default=None, ge=1, description="DISTILLATION only: the teacher's maxResponseLengthForInference."
    )
    invocation_logs_s3_uri: str | None = Field(
        default=None, description="Train from Bedrock invocation logs at this S3 prefix instead of the dataset."
    )
    invocation_logs_use_prompt_response: bool = Field(
        default=False, description="Use the logged responses too (otherwise only the prompts)."
    )
    invocation_logs_request_metadata_filters: RequestMetadataFilters | None = Field(
        default=None,
        description="Only the logged invocations whose request metadata matches (requestMetadataFilters).",
    )
    reasoning_effort: Literal["low", "medium", "high"] | None = Field(
        default=None, description="RFT only: rftConfig.hyperParameters.reasoningEffort."
    )
    hyperparameters: dict[str, str | int | float] = Field(default_factory=dict)
    output_s3_uri: str | None = Field(default=None, description="Where Bedrock writes job output; defaults under the bucket.")
    kms_key_id: str | None = None
    vpc_subnet_ids: list[str] = Field(default_factory=list)
    vpc_security_group_ids: list[str] = Field(default_factory=list)
    tags: dict[str, str] = Field(default_factory=dict)
    poll_interval_seconds: float = Field(default=60.0, gt=0)
    max_poll_interval_seconds: float = Field(default=600.0, gt=0)
    model_limits: BedrockModelSpec | None = Field(
        default=None,
        description="Limits of a base model missing from Tuneline's table (tuneline.backends.bedrock.models).",
    )

    @property
    def target(self) -> Target:
        # Bedrock's RFT lines have one shape for every RFT model (gpt-oss and Qwen too): the one
        # prepare writes for the bedrock-nova target.
        if self.customization_type == "REINFORCEMENT_FINE_TUNING":
            return Target.BEDROCK_NOVA
        # Bedrock's {"input": ...} lines and the 4,096-token records of the models that offer it.
        if self.customization_type == "CONTINUED_PRE_TRAINING":
            return Target.BEDROCK_TITAN
        if self.model_limits is not None:
            nova = self.model_limits.record_format == "nova"
        elif self.base_model in BEDROCK_MODELS:
            nova = BEDROCK_MODELS[self.base_model].record_format == "nova"
        else:
            nova = ".nova" in self.base_model
        if nova:
            return Target.BEDROCK_NOVA
        # Distillation reads bedrock-conversation-2024 for every student (AWS's
        # distillation-data-prep-option-1 page), never the Claude fine-tuning lines.
        if self.customization_type == "DISTILLATION":
            return Target.BEDROCK_DISTILLATION
        return Target.BEDROCK_CLAUDE_HAIKU


TuneConfig = Annotated[LocalTuneConfig | BedrockTuneConfig, Field(discriminator="backend")]


# ------------------------------------------------------------------------------------------
# evaluate
# ------------------------------------------------------------------------------------------
class GenerationConfig(_Strict):
    max_new_tokens: int = Field(default=128, ge=1, le=32768)
    temperature: float = Field(default=0.0, ge=0, le=2, description="0 means greedy decoding.")
    stop: list[str] = Field(default_factory=list)
    batch_size: int = Field(default=16, ge=1, le=1024)


class SuiteKind(StrEnum):
    TASK = "task"  # the held-out test split from prepare
    SAFETY = "safety"  # prompts that must be refused
    GENERAL = "general"  # capabilities the base had, to catch forgetting


class SuiteConfig(_Strict):
    name: str
    kind: SuiteKind
    source: str | None = Field(default=None, description="JSONL of chat records; the test split for 'task' when unset.")
    metrics: list[str] = Field(default_factory=lambda: ["exact_match", "rouge_l"])
    json_schema: dict | None = Field(default=None, description="JSON Schema answers must conform to.")


class JudgeConfig(_Strict):
    """LLM-as-judge through Bedrock Runtime. Off unless ``evaluation.judge`` is set."""

    model_id: str = Field(description="Bedrock model (or inference profile) that grades the answers.")
    rubric: str = Field(min_length=1, description="What a good answer is; the judge scores against it.")
    min_score: int = 1
    max_score: int = Field(default=5, description="Scores are normalised to 0..1 from this scale.")
    max_concurrency: int = Field(default=4, ge=1, le=64)
    cache: bool = Field(default=True, description="Reuse earlier verdicts for the same (judge, rubric, prompt, answer).")

    @model_validator(mode="after")
    def _scale(self) -> JudgeConfig:
        if self.min_score >= self.max_score:
            raise ValueError(f"min_score ({self.min_score}) must be below max_score ({self.max_score})")
        return self


class EvaluationConfig(_Strict):
    generation: GenerationConfig = GenerationConfig()
    judge: JudgeConfig | None = Field(default=None, description="LLM-as-judge; off when unset.")
    suites: list[SuiteConfig] = Field(
        default_factory=lambda: [SuiteConfig(name="task", kind=SuiteKind.TASK)],
        description="Test suites: the held-out split ('task'), refusals ('safety'), earlier skills ('general').",
    )
    compare_with_champion: bool = Field(default=True, description="Also evaluate the current champion, and compare with it.")
    allow_provisioned_throughput: bool = Field(
        default=False,
        description="Bedrock: a custom model that only provisioned throughput serves (no on-demand deployment, "
        "i.e. not Nova) and that no endpoint serves yet may be evaluated on a no-commitment provisioned "
        "throughput of 1 model unit that Tuneline buys and deletes afterwards; it is billed by the hour while "
        "it exists. Off: such an evaluation is refused before anything is bought or invoked.",
    )
    traces_per_suite: int | None = Field(
        default=5,
        ge=0,
        description="Examples per suite and model logged as scored MLflow traces (MLflow's evaluation views); "
        "null: every example. Each trace and each score is a call to the tracking server, so a whole suite "
        "takes minutes; metrics, the per-example table and the side-by-side table always cover every example.",
    )
    bootstrap_samples: int = Field(default=1000, ge=100)
    min_examples: int = Field(default=10, ge=1, description="Fewer examples: no difference is called.")
    seed: int = 0


# ------------------------------------------------------------------------------------------
# approve, promote
# ------------------------------------------------------------------------------------------
class ApprovalMode(StrEnum):
    AUTO = "auto"  # promote when the policy passes
    HUMAN = "human"  # a person must approve even when it passes
    HUMAN_ON_DOUBT = "human-on-doubt"  # a person only when a check is borderline


class MetricCheck(_Strict):
    suite: str
    metric: str
    min_value: float | None = None
    min_gain: float | None = Field(default=None, description="Minimum candidate - baseline.")
    require_significant: bool = Field(default=False, description="The gain's 95% CI must exclude zero.")
    max_regression: float | None = Field(default=None, ge=0, description="Largest allowed baseline - candidate.")


class ApprovalPolicy(_Strict):
    mode: ApprovalMode = Field(
        default=ApprovalMode.AUTO,
        description="auto: the checks decide; human: a person always decides; human-on-doubt: a person decides borderline cases.",
    )
    checks: list[MetricCheck] = Field(default_factory=list, description="Metric thresholds the candidate must meet.")
    reviewers: list[str] | None = Field(default=None, description="Who may approve; anyone when unset.")
    timeout_seconds: int = Field(default=3600, ge=1, description="How long to wait for a person; no decision is a rejection.")
    doubt_margin: float = Field(default=0.02, ge=0, description="A check within this of its threshold is borderline.")


class PromotionConfig(_Strict):
    intended_use: str = "Not stated."
    limitations: str = "Not stated."
    serving: Literal["none", "provisioned-throughput", "on-demand-deployment"] = "none"
    provisioned_model_units: int = Field(default=1, ge=1)


# ------------------------------------------------------------------------------------------
# the run
# ------------------------------------------------------------------------------------------
class RunConfig(_Strict):
    """One lifecycle run: what to train on, how, how to judge it, and who decides."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$", description="Registered model name.")
    description: str = Field(default="", description="What the model is for; shown on the model card.")
    data: DataConfig = Field(description="The training data and how to prepare it.")
    tune: TuneConfig = Field(description="The tuning backend ('local' or 'bedrock'), base model and hyperparameters.")
    evaluation: EvaluationConfig = Field(default=EvaluationConfig(), description="How candidate, base and champion are compared.")
    approval: ApprovalPolicy = Field(default=ApprovalPolicy(), description="Who or what decides whether the candidate is promoted.")
    promotion: PromotionConfig = Field(default=PromotionConfig(), description="Model card text and serving.")

    @model_validator(mode="after")
    def _serving_is_bedrock(self) -> RunConfig:
        if self.promotion.serving != "none" and self.tune.backend != "bedrock":
            raise ValueError(
                f"promotion.serving {self.promotion.serving!r} is Bedrock serving; a {self.tune.backend} model is "
                "served from the MLflow registry (mlflow models serve -m models:/<name>@champion): set serving: none"
            )
        return self

    @model_validator(mode="after")
    def _prompts_are_for_a_distillation_with_a_scored_task(self) -> RunConfig:
        # Prompts carry no answer to score against: the held-out split cannot be the task suite, and
        # finding that out at evaluate would be after the (paid) job.
        if self.data.kind is RecordKind.PROMPT:
            distils = isinstance(self.tune, BedrockTuneConfig) and self.tune.customization_type == "DISTILLATION"
            if not distils:
                what = (f"a Bedrock {self.tune.customization_type} job" if isinstance(self.tune, BedrockTuneConfig)
                        else f"the {self.tune.backend} backend")
                raise ValueError(
                    f"data.kind prompt reads prompts without answers, which only a distillation learns from (a teacher "
                    f"answers them); {what} needs the answers: leave data.kind unset, or set "
                    "tune.customization_type: DISTILLATION with a tune.teacher_model"
                )
            unscored = [s.name for s in self.evaluation.suites if s.kind is SuiteKind.TASK and s.source is None]
            if unscored:
                raise ValueError(
                    f"data.kind prompt has no answers, so its held-out split cannot score the task suite "
                    f"{', '.join(unscored)}: give that suite a source (JSONL of chat records with their answers)"
                )
        return self

    @property
    def target(self) -> Target:
        return self.data.target or self.tune.target

    @property
    def dataset_name(self) -> str:
        return self.data.name or self.name

    def config_hash(self) -> str:
        """A short content hash of the whole config, for lineage tags."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


class _StrictYamlLoader(yaml.SafeLoader):
    """``safe_load`` that also refuses aliases and duplicate keys.

    Aliases let a few hundred bytes expand into billions of nodes (a "billion laughs" config), and
    a duplicate key silently drops one of two values a reviewer read: a run config needs neither.
    """

    def compose_node(self, parent, index):  # type: ignore[no-untyped-def]
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.constructor.ConstructorError(
                None, None, "aliases (*name) are not allowed in a run config", event.start_mark
            )
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):  # type: ignore[no-untyped-def]
        seen: set[object] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _problem_line(err: Any) -> str:
    where = ".".join(str(p) for p in err["loc"])
    message = str(err["msg"]).removeprefix("Value error, ")
    return f"- {where}: {message}" if where else f"- {message}"  # no key path: a check across sections


def load_run_config(path: str | Path) -> RunConfig:
    """Read a run config from YAML; errors name the key path and the allowed values."""
    path = Path(path)
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_StrictYamlLoader)  # noqa: S506 - a SafeLoader
    except FileNotFoundError as exc:
        raise ConfigError(f"run config not found: {path}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} must hold a mapping of settings, not {type(raw).__name__}")
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as exc:
        problems = "\n".join(_problem_line(err) for err in exc.errors())
        raise ConfigError(f"{path} has invalid settings:\n{problems}") from exc
