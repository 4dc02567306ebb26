"""The training configuration: generic options here, each objective's own options on the objective.

Both are declared once with :func:`embtune.options.option`; values come from defaults < a YAML file <
flags (:func:`resolve_config`). An option the chosen objective does not take is an error, not a
silently ignored value, and the saved ``train_config.json`` holds exactly the options that applied.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from embtune.encoders.layer_cut import LAYER_CHOICES, check_student_layers, parse_student_layers
from embtune.encoders.pooling import POOLERS
from embtune.errors import EmbtuneError, located
from embtune.objectives import OBJECTIVES, get_objective_class
from embtune.options import Option, at_least, error, in_range, option, options_of, positive

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


@dataclass
class TrainConfig:
    # Defaults follow the SimCSE paper (Gao et al. 2021, §3 and appendix A): τ 0.05, length 32,
    # batch 64, lr 3e-5, one epoch.
    model: str = option("minilm-l6", "built-in name (minilm-l6), local folder or Hugging Face id")
    objective: str = option("unsup-simcse", "the training objective (see the table in the README)",
                            choices=tuple(OBJECTIVES))
    train_file: str = option("wiki-sample", ".txt, .csv, .tsv or .jsonl, or a named dataset (wiki-sample, snli-triples)")
    output: str = option("runs/train", "output folder (a sentence-transformers model folder)")
    batch_size: int = option(64, "examples per step and process (in-batch negatives need >= 2)", check=at_least(2))
    max_seq_length: int = option(32, "tokens per sentence in training (§A: 32)", check=at_least(1))
    lr: float = option(3e-5, "peak learning rate of AdamW, decayed linearly to 0", check=positive)
    weight_decay: float = option(0.0, "AdamW weight decay", check=at_least(0))
    adam_epsilon: float = option(1e-8, "AdamW epsilon (the Hugging Face Trainer's default)", check=positive)
    warmup_steps: int = option(0, "linear warm-up steps", check=at_least(0))
    max_grad_norm: float = option(1.0, "clip the gradient's global L2 norm to this (the official SimCSE trainer's 1.0); "
                                       "0 turns clipping off", check=at_least(0))
    epochs: int = option(1, "passes over the training file", check=at_least(1))
    max_steps: int | None = option(None, "stop after this many steps (overrides --epochs)", check=at_least(1))
    pooler: str | None = option(None, "cls, cls_before_pooler, mean, avg_first_last or avg_top2; default: a "
                                      "sentence-transformers folder keeps its own, else the objective's",
                                choices=POOLERS)
    mlp_only_train: bool | None = option(None, "use the cls MLP during training only (default: the objective's choice)")
    dropout: bool = option(True, "false: turn dropout off (augmentations alone make the views)")
    mlm_weight: float = option(0.0, "λ of the auxiliary MLM loss (SimCSE appendix: 0.1); 0 = off", check=at_least(0))
    mlm_probability: float = option(0.15, "share of tokens masked for the auxiliary MLM loss", check=in_range(0, 1))
    # word-vector encoders and small students
    encoder: str | None = option(None, "word-vector encoder over the vectors named by --model (e.g. glove-50d)",
                                 choices=("mean", "textcnn"))
    kernel_sizes: str = option("1,3,5", "textcnn kernel sizes, odd", only_with=("encoder", ("textcnn",)))
    cnn_channels: int = option(128, "textcnn filters per kernel size", check=at_least(1), only_with=("encoder", ("textcnn",)))
    projection_dim: int | None = option(None, "word-vector encoders: a final linear layer to this width",
                                        check=at_least(1), only_with=("encoder", ("mean", "textcnn")))
    freeze_embeddings: bool = option(False, "word-vector encoders: keep the word vectors fixed",
                                     only_with=("encoder", ("mean", "textcnn")))
    vocab_limit: int | None = option(None, "word-vector encoders: keep the N most frequent words", check=at_least(1),
                                     only_with=("encoder", ("mean", "textcnn")))
    word_dropout: float = option(0.1, "word-vector encoders: dropout on the word vectors", check=in_range(0, 1),
                                 only_with=("encoder", ("mean", "textcnn")))
    student_layers: str | None = option(None, "a transformer student made of some of the model's layers: a count "
                                              "(3; which ones: --student-layer-choice) or 0-based layer numbers "
                                              "(0,3,5)", check=check_student_layers, repeatable=True)
    student_layer_choice: str = option("auto", "which layers a count keeps: dev (the cut that scores best on the "
                                               "selection metric before training), spread (evenly spaced, first and "
                                               "last kept), first; auto = dev when the run evaluates, else spread",
                                       choices=LAYER_CHOICES)
    # run
    seed: int = option(42, "random seed (data order, dropout, augmentations)",
                       check=in_range(0, 2**32 - 1, include_high=True))  # NumPy's seed range
    device: str | None = option(None, "cpu, cuda, cuda:N (default: cuda when available)")
    precision: str = option("auto", "auto (bf16 where the device runs it natively, else fp32; resolved before saving), "
                                    "fp32, bf16 or fp16 (autocast, fp32 master weights)", choices=PRECISIONS)
    allow_slow_precision: bool = option(False, "run a precision the device has no native support for "
                                               "(emulated, usually far slower)")
    compile: bool = option(False, "compile the transformer's training forward with torch.compile (symbolic sequence "
                                  "lengths; inference stays eager). Opt-in, as the Hugging Face Trainer's "
                                  "torch_compile: measured slower here after its compile time (H200 BERT-base bf16 "
                                  "0.13x, CPU MiniLM-L6 bf16 0.91x; docs/performance.md)")
    trust_remote_code: bool = option(False, "run code shipped with the model (only when given on this command line)")
    allow_pickle_weights: bool = option(False, "load pickle-based weights (pytorch_model.bin) of a model without "
                                               "safetensors: they can run code (only when given on this command line)")
    log_every: int = option(10, "log a line every N steps (with --no-progress)", check=at_least(1))
    # scale and reliability
    mini_batch_size: int | None = option(None, "gradient caching: embed in chunks of this many sequences", check=at_least(1))
    save_steps: int | None = option(None, "write a checkpoint every N steps (atomic; continue with --resume)", check=at_least(1))
    save_total_limit: int | None = option(None, "keep only the newest N checkpoints", check=at_least(1))
    # evaluation during training (SimCSE's official setting: every 125 steps on STS-B dev, keep the best);
    # the starting model is evaluated at step 0 and is a candidate
    eval_steps: int | None = option(None, "evaluate every N steps (and at step 0 and the last step) and keep the best "
                                          "checkpoint", check=at_least(1))
    eval_task: str | None = option(None, "the task(s) to evaluate and select on, repeatable or comma-separated: stsb-dev "
                                         "(default), sickr-dev, lcqmc, atec, bq, pawsx, stsb-zh, beir:<folder>, "
                                         "scored:<pairs>, binary:<pairs>, classes:<file>, NAME=... to name one "
                                         "(see embtune/evaluation/tasks.py); without --eval-steps: step 0 and the end",
                                   repeatable=True)
    eval_sickr: bool = option(False, "also evaluate on SICK-R dev (= --eval-task sickr-dev)")
    watch_task: str | None = option(None, "held-out task(s) scored at every evaluation for the record only (a BEIR "
                                          "folder's test qrels), never used to select or guard: how the selected "
                                          "checkpoint compares on data selection never saw; same syntax as "
                                          "--eval-task", repeatable=True)
    metric_for_best: str | None = option(None, "the metric that selects the checkpoint, TASK/METRIC (e.g. "
                                               "stsb-dev/spearman, beir:android/ndcg@10, dev/ap); default: the first "
                                               "eval task's first metric")
    select_confidence: float = option(0.0, "keep a checkpoint over the starting model only when a paired bootstrap "
                                           "over the selection queries/pairs says it is better with this confidence "
                                           "(e.g. 0.9; training/selection.py); 0 = the best value, as SimCSE",
                                      check=in_range(0, 1))
    guard_metric: str | None = option(None, "a second metric (TASK/METRIC of an eval task) a checkpoint may not lose "
                                            "more than --guard-tolerance on against the starting model to be kept "
                                            "(e.g. agreement with a teacher, a general-quality task)")
    guard_tolerance: float = option(0.5, "how far below the starting model's value the guard metric may fall",
                                    check=at_least(0))
    guard_confidence: float = option(0.0, "the guard vetoes only a loss it shows: beyond --guard-tolerance and with "
                                          "at least this paired bootstrap confidence that the start is better on the "
                                          "guard metric (its per-item scores); 0 = the tolerance alone",
                                     check=in_range(0, 1))
    guard_waiver: float = option(0.0, "a checkpoint better than the start on the selection metric with at least "
                                      "this paired bootstrap confidence is kept even when the guard metric fell "
                                      "beyond --guard-tolerance (the selection task is the user's own; the guard a "
                                      "proxy); 0 = the guard always holds", check=in_range(0, 1))
    save_item_scores: bool = option(False, "write the selection metric's per-item scores (per query or pair) at "
                                           "every evaluation to OUTPUT/eval_items.jsonl: for your own paired tests, "
                                           "and the cross-fitted selection of embtune adapt")
    dev_fraction: float | None = option(None, "hold out this share of the labelled training data, by query/group, "
                                              "as the eval task 'dev' (rows written to OUTPUT/dev_split.tsv)",
                                        check=lambda v: None if v is None or 0 < v <= 0.5 else "a value in (0, 0.5]")
    anchor_weight: float = option(0.0, "λ of a regulariser toward the starting model: λ·mean(1 − cos(embedding, the "
                                       "frozen starting model's embedding of the same input)); 0 = off",
                                  check=at_least(0))
    #: the chosen objective's own options (an instance of its ``Options`` dataclass)
    objective_options: Any = field(default=None, repr=True)

    def __post_init__(self) -> None:
        if self.objective_options is None:
            self.objective_options = get_objective_class(self.objective).Options()

    def validate(self) -> "TrainConfig":
        for o in GENERIC_OPTIONS.values():
            problem = o.problem(getattr(self, o.name))
            if problem:
                raise error(o, problem)
        for o in options_of(type(self.objective_options)).values():
            problem = o.problem(getattr(self.objective_options, o.name))
            if problem:
                raise error(o, problem)
        self.eval_specs()  # task names and --metric-for-best are checked now, before any file is read
        if self.student_layer_choice != "auto" and not isinstance(self.student_layer_count, int):
            given = "no --student-layers" if self.student_layers is None else f"layer numbers ({self.student_layers})"
            raise EmbtuneError(f"--student-layer-choice applies to a count given with --student-layers (3), not to {given}")
        if self.student_layer_choice == "dev" and not self.evaluates:
            raise EmbtuneError("--student-layer-choice dev scores each cut on the run's evaluation, and this run has "
                               "none: give --eval-task (or --dev-fraction), or choose spread or first")
        return self

    @property
    def student_layer_count(self) -> int | tuple[int, ...] | None:
        """``--student-layers`` parsed: a count, the layer numbers, or None."""
        return parse_student_layers(self.student_layers) if self.student_layers is not None else None

    @property
    def evaluates(self) -> bool:
        """Whether the run evaluates during training (and selects a checkpoint)."""
        return bool(self.eval_steps or self.eval_task or self.dev_fraction or self.eval_sickr)

    def eval_specs(self, dev_split=None):
        """(eval task specs, metric for best, higher is better). ``dev_split``: the held-out data's exact task
        spec once the training file is read; before that, a stand-in declaring every metric a dev task may have."""
        from embtune.evaluation.tasks import parse_tasks, resolve_metric, dev_split_placeholder

        if not self.evaluates:
            if self.metric_for_best is not None:
                raise EmbtuneError("--metric-for-best: no evaluation is asked for; add --eval-steps N, --eval-task or "
                                   "--dev-fraction")
            if self.save_item_scores:
                raise EmbtuneError("--save-item-scores: no evaluation is asked for; add --eval-task or --dev-fraction")
            self.watch_specs()
            return [], None, True
        if self.dev_fraction and dev_split is None:
            dev_split = dev_split_placeholder()
        tasks = parse_tasks(self.eval_task, sickr=self.eval_sickr, dev_split=dev_split)
        metric, higher = resolve_metric(self.metric_for_best, tasks)
        self.watch_specs(tasks)
        if self.guard_metric is not None:
            try:
                resolve_metric(self.guard_metric, tasks)
            except EmbtuneError as e:
                raise EmbtuneError(str(e).replace("--metric-for-best", "--guard-metric", 1)) from None
        elif self.guard_waiver:
            raise EmbtuneError("--guard-waiver: waives --guard-metric, and no --guard-metric was given")
        elif self.guard_confidence:
            raise EmbtuneError("--guard-confidence: tests --guard-metric's loss, and no --guard-metric was given")
        return tasks, metric, higher

    def watch_specs(self, eval_tasks=None):
        """``--watch-task``'s specs; their names may not repeat an eval task's (the history keys would clash)."""
        from embtune.evaluation.tasks import parse_tasks

        if not self.watch_task:
            return []
        if not self.evaluates:
            raise EmbtuneError("--watch-task: no evaluation is asked for; add --eval-steps N, --eval-task or --dev-fraction")
        watch = parse_tasks(self.watch_task)
        taken = {t.name for t in (eval_tasks or [])}
        for t in watch:
            if t.name in taken:
                raise EmbtuneError(f"--watch-task: {t.name!r} is also an eval task's name; name it with NAME=... "
                                   f"(e.g. held-out={t.kind}:{t.target or t.name})")
        return watch

    def to_dict(self) -> dict[str, Any]:
        """The options that applied to this run, flat (the saved ``train_config.json``; a valid YAML config)."""
        out = {name: getattr(self, name) for name, o in GENERIC_OPTIONS.items() if _applies(o, self)}
        if not isinstance(self.student_layer_count, int):  # the choice applies to a count only
            out.pop("student_layer_choice")
        out.update(dataclasses.asdict(self.objective_options))
        return out


GENERIC_OPTIONS: dict[str, Option] = options_of(TrainConfig)


def _applies(o: Option, values: Any) -> bool:
    if o.spec.only_with is None:
        return True
    other, allowed = o.spec.only_with
    current = values.get(other) if isinstance(values, dict) else getattr(values, other)
    return current in allowed


def objective_option_owners() -> dict[str, list[str]]:
    """Every objective option's name -> the objectives that take it."""
    owners: dict[str, list[str]] = {}
    for name, cls in OBJECTIVES.items():
        for opt in options_of(cls.Options):
            owners.setdefault(opt, []).append(name)
    return owners


def all_objective_options() -> dict[str, Option]:
    """Each objective option once (an option shared by several objectives is one inherited definition)."""
    out: dict[str, Option] = {}
    for cls in OBJECTIVES.values():
        for name, o in options_of(cls.Options).items():
            if name in out and out[name] != o:
                raise AssertionError(f"option {name!r} is declared twice with different definitions")
            out[name] = o
    return out


def load_yaml(path: str | Path) -> tuple[dict[str, Any], dict[str, int]]:
    """Read a YAML config -> (raw values by option name, line of each key)."""
    path = Path(path)
    if not path.is_file():
        raise EmbtuneError(f"{path}: config file does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise EmbtuneError(f"{path}: cannot read the config file ({e})") from e
    try:
        node = yaml.compose(text)
    except yaml.YAMLError as e:
        raise EmbtuneError(f"{path}: invalid YAML ({e})") from e
    if node is None:
        return {}, {}
    if not isinstance(node, yaml.MappingNode):
        raise located(path, node.start_mark.line + 1, "expected a mapping of option: value")
    lines: dict[str, int] = {}
    for k, _ in node.value:
        name, line = str(k.value).replace("-", "_"), k.start_mark.line + 1
        if not isinstance(k, yaml.ScalarNode):
            raise located(path, line, "expected an option name as the key, got a list or mapping")
        if name in lines:  # safe_load would keep the last value and drop the first without a word
            raise located(path, line, f"option {name!r} is given twice (first on line {lines[name]})")
        lines[name] = line
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise EmbtuneError(f"{path}: invalid YAML ({e})") from e
    return {str(k).replace("-", "_"): v for k, v in raw.items()}, lines


def resolve_config(config_file: str | None = None, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """defaults < YAML file < ``overrides`` (flags) -> a validated :class:`TrainConfig`.

    Every name must be a generic option or an option of the chosen objective; an option of another
    objective, or one that does not apply (``--kernel-sizes`` without ``--encoder textcnn``), is an
    error naming the flag or the YAML line.
    """
    values: dict[str, Any] = {}
    where: dict[str, str | None] = {}  # "file:line" for values from the YAML file, None for flags
    if config_file:
        raw, lines = load_yaml(config_file)
        for name, v in raw.items():
            values[name] = v
            where[name] = f"{config_file}:{lines.get(name, '?')}"
    for name, v in (overrides or {}).items():
        values[name] = v
        where[name] = None
    return _build(values, where)


def make_config(**values: Any) -> TrainConfig:
    """A validated config from option values (the Python API's and the tests' way in)."""
    return _build(values, {name: None for name in values})


def _build(values: dict[str, Any], where: dict[str, str | None]) -> TrainConfig:
    objective_options = all_objective_options()
    owners = objective_option_owners()

    def fail(o: Option | None, name: str, message: str) -> EmbtuneError:
        if o is None:
            loc = where.get(name)
            return EmbtuneError(f"{loc}: {message}" if loc else f"--{name.replace('_', '-')}: {message}")
        return error(o, message, where.get(name))

    coerced: dict[str, Any] = {}
    for name, v in values.items():
        o = GENERIC_OPTIONS.get(name) or objective_options.get(name)
        if o is None:
            known = ", ".join([*GENERIC_OPTIONS, *objective_options])
            raise fail(None, name, f"unknown option {name!r}; known: {known}")
        try:
            coerced[name] = o.coerce(v)
        except ValueError as e:
            raise fail(o, name, str(e)) from None

    objective = coerced.get("objective", GENERIC_OPTIONS["objective"].default)
    cls = get_objective_class(objective)
    own = options_of(cls.Options)
    generic = {k: v for k, v in coerced.items() if k in GENERIC_OPTIONS}
    for name in coerced:
        if name in GENERIC_OPTIONS:
            o = GENERIC_OPTIONS[name]
            if not _applies(o, {**{n: p.default for n, p in GENERIC_OPTIONS.items()}, **generic}):
                other, allowed = o.spec.only_with
                raise fail(o, name, f"applies only with --{other.replace('_', '-')} {' or '.join(allowed)}")
        elif name not in own:
            raise fail(objective_options[name], name,
                       f"is an option of {', '.join(owners[name])}; objective {objective!r} does not use it")
    for name, value in coerced.items():
        o = GENERIC_OPTIONS.get(name) or own[name]
        problem = o.problem(value)
        if problem:
            raise fail(o, name, problem)
    opts = cls.Options(**{k: v for k, v in coerced.items() if k in own})
    return TrainConfig(**generic, objective_options=opts).validate()


def config_from_saved(saved: dict[str, Any], path: Path) -> TrainConfig:
    """A run's saved ``train_config.json`` -> its config (errors name that file)."""
    try:
        return make_config(**saved)
    except EmbtuneError as e:
        raise EmbtuneError(f"{path}: {e}") from e
