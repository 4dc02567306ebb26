"""The training configuration: one typed dataclass, filled from defaults < YAML file < flags."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from embtune.errors import EmbtuneError, located


@dataclass
class TrainConfig:
    # Defaults follow the SimCSE paper (Gao et al. 2021, §3 and appendix A): τ 0.05, length 32,
    # batch 64, lr 3e-5, one epoch.
    model: str = "minilm-l6"
    objective: str = "unsup-simcse"
    train_file: str = "wiki-sample"
    output: str = "runs/train"
    batch_size: int = 64
    max_seq_length: int = 32
    lr: float = 3e-5
    weight_decay: float = 0.0
    adam_epsilon: float = 1e-8  # the Hugging Face Trainer's default
    warmup_steps: int = 0
    epochs: int = 1
    max_steps: int | None = None  # when set, overrides epochs
    temperature: float = 0.05
    pooler: str | None = None  # None: a sentence-transformers folder keeps its own, else the objective's
    mlp_only_train: bool | None = None  # None: the objective's choice (unsup: True, sup: False)
    hard_negative_weight: float = 1.0  # the paper's α (added to the own hard negative's logit as log α)
    # the SimCSE family (issue: objectives)
    negatives: str = "batch"  # unsup-simcse: batch | both-views (2N−1)
    augment: str | None = None  # unsup-simcse: comma-separated discrete augmentations for the 2nd view
    augment_ratio: float | None = None  # their ratio p (each augmentation's default when unset)
    dropout: bool = True  # False: turn dropout off (augmentations alone as the positive view)
    views: int = 2  # multiview-am: K
    margin: float = 0.0  # multiview-am: additive margin m
    tsdae_deletion_ratio: float = 0.6
    tsdae_tie_decoder: bool = True
    mlm_weight: float = 0.0  # λ of the auxiliary MLM loss (appendix: 0.1); 0 = off
    mlm_probability: float = 0.15
    # small encoders and distillation
    encoder: str | None = None  # word-vector encoder over --model vectors (glove-50d): mean | textcnn
    kernel_sizes: str = "1,3,5"  # textcnn
    cnn_channels: int = 128  # textcnn filters per kernel size
    projection_dim: int | None = None  # word-vector encoders: optional final linear layer
    freeze_embeddings: bool = False
    vocab_limit: int | None = None  # keep the N most frequent words of the vectors
    word_dropout: float = 0.1  # dropout on the word vectors (the views of unsup SimCSE)
    teacher: str | None = None  # distill: the teacher model
    distill_loss: str = "mse"  # distill: mse | relational | similarity
    student_layers: int | None = None  # a transformer student made of the model's first k layers
    seed: int = 42
    device: str | None = None
    precision: str = "fp32"
    trust_remote_code: bool = False
    log_every: int = 10
    # scale and reliability
    mini_batch_size: int | None = None  # gradient caching: embed in chunks of this many sequences
    save_steps: int | None = None  # checkpoint every N steps (atomic; resume with --resume)
    save_total_limit: int | None = None  # keep only the newest N checkpoints
    # evaluation during training (SimCSE's official setting: every 125 steps on STS-B dev, keep the best)
    eval_steps: int | None = None
    eval_sickr: bool = False
    metric_for_best: str = "stsb_dev_spearman"

    def validate(self) -> "TrainConfig":
        for name in ("batch_size", "max_seq_length", "epochs"):
            if getattr(self, name) < 1:
                raise EmbtuneError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.batch_size < 2:
            raise EmbtuneError("batch_size must be >= 2: in-batch negatives need at least two examples")
        if self.max_steps is not None and self.max_steps < 1:
            raise EmbtuneError(f"max_steps must be >= 1, got {self.max_steps}")
        if not self.lr > 0:
            raise EmbtuneError(f"lr must be > 0, got {self.lr}")
        from embtune.evaluation.dev import DEV_METRICS

        if self.metric_for_best not in DEV_METRICS:
            raise EmbtuneError(f"metric_for_best must be one of {', '.join(DEV_METRICS)}, got {self.metric_for_best!r}")
        if self.metric_for_best == "sickr_dev_spearman" and not self.eval_sickr:
            raise EmbtuneError("metric_for_best sickr_dev_spearman needs eval_sickr")
        for name in ("mini_batch_size", "save_steps", "save_total_limit"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise EmbtuneError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.eval_steps is not None and self.eval_steps < 1:
            raise EmbtuneError(f"eval_steps must be >= 1, got {self.eval_steps}")
        if self.precision not in ("fp32", "bf16", "fp16"):
            raise EmbtuneError(f"precision must be fp32, bf16 or fp16, got {self.precision!r}")
        return self


FIELD_TYPES = {f.name: f.type for f in fields(TrainConfig)}


def _coerce(name: str, value: Any) -> Any:
    t = str(FIELD_TYPES[name])
    if value is None:
        if "None" in t:
            return None
        raise ValueError("may not be empty")
    if t.startswith("bool"):
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("true", "1", "yes"):
            return True
        if str(value).lower() in ("false", "0", "no"):
            return False
        raise ValueError(f"expected true or false, got {value!r}")
    if t.startswith("int"):
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError(f"expected an integer, got {value!r}")
        return int(value)
    if t.startswith("float"):
        return float(value)
    return str(value)


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML config; unknown keys and bad values are reported with their line."""
    path = Path(path)
    if not path.is_file():
        raise EmbtuneError(f"{path}: config file does not exist")
    text = path.read_text(encoding="utf-8")
    try:
        node = yaml.compose(text)
    except yaml.YAMLError as e:
        raise EmbtuneError(f"{path}: invalid YAML ({e})") from e
    if node is None:
        return {}
    if not isinstance(node, yaml.MappingNode):
        raise located(path, node.start_mark.line + 1, "expected a mapping of option: value")
    lines = {k.value.replace("-", "_"): k.start_mark.line + 1 for k, _ in node.value}
    raw = yaml.safe_load(text)
    out: dict[str, Any] = {}
    for key, value in raw.items():
        name = str(key).replace("-", "_")
        if name not in FIELD_TYPES:
            raise located(path, lines.get(name), f"unknown option {key!r}; known: {', '.join(FIELD_TYPES)}")
        try:
            out[name] = _coerce(name, value)
        except (TypeError, ValueError) as e:
            raise located(path, lines.get(name), f"option {key!r}: {e}") from e
    return out


def resolve_config(config_file: str | None, overrides: dict[str, Any]) -> TrainConfig:
    values: dict[str, Any] = {}
    if config_file:
        values.update(load_yaml(config_file))
    values.update({k: v for k, v in overrides.items() if v is not None})
    return TrainConfig(**values).validate()


def config_dict(cfg: TrainConfig) -> dict[str, Any]:
    return dataclasses.asdict(cfg)
