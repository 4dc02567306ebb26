"""Distillation of a teacher's sentence embeddings into a smaller student.

- ``mse``: mean squared error between the student's embedding and the teacher's (Reimers &
  Gurevych 2020, "Making Monolingual Sentence Embeddings Multilingual"); a student of another
  width gets a learned linear projection, which becomes part of the saved student.
- ``relational``: the student's in-batch cosine-similarity distribution matches the teacher's:
  KL( softmax(S_t / τ) || softmax(S_s / τ) ) row by row, S = cosine-similarity matrix of the batch
  (the diagonal, the same for both, is left out).
- ``similarity``: the in-batch cosine-similarity matrices themselves are matched, mean of
  (S_s − S_t)² over the off-diagonal entries (similarity-preserving distillation, Tung & Mori 2019,
  with cosine instead of dot-product Gram matrices — the quantity STS evaluation scores).

Training files may have one column (sentences) or several (pairs, NLI triples): every sentence of
a row is distilled, and the relational losses compare all the sentences of the batch, so related
sentences of one row (a premise and its hypotheses) give the fine-grained pairs STS is about.

Teacher embeddings are computed once per distinct training sentence, before training, and cached
on disk (``$EMBTUNE_CACHE/teacher/``) keyed by the teacher's content (every weight, its pooling
and length settings: a teacher retrained in place is run again) and the sentences, so epochs and
later runs never run the same teacher again. Under several processes each process distils its own slice.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from embtune.data.readers import PAIR_COLUMNS, TRIPLE_COLUMNS
from embtune.data.registry import cache_dir
from embtune.errors import EmbtuneError
from embtune.objectives.base import Batch, Objective, TemperatureOptions, check_temperature
from embtune.options import option
from embtune.utils import weights_digest

logger = logging.getLogger(__name__)
LOSSES = ("mse", "relational", "similarity")
TEACHER_BACKENDS = ("torch", "onnx-int8")


class TeacherCache:
    """Teacher embeddings of a list of sentences, computed once and kept on disk."""

    def __init__(self, teacher: str, root: Path | None = None, allow_pickle: bool = False, precision: str = "fp32",
                 backend: str = "torch"):
        self.teacher, self.allow_pickle = teacher, allow_pickle
        #: the teacher pass's precision (``auto``: bf16 where the device runs it natively); part of the key
        self.precision = precision
        if backend not in TEACHER_BACKENDS:
            raise EmbtuneError(f"--teacher-backend: expected one of {', '.join(TEACHER_BACKENDS)}, got {backend!r}")
        #: ``onnx-int8``: the teacher runs in ONNX Runtime with int8 weights (its class, OnnxEncoder, is in the key)
        self.backend = backend
        self.root = root or cache_dir() / "teacher"
        self.forwards = 0  # sentences the teacher actually encoded (for tests and logs)
        self.seconds = 0.0  # time of the teacher pass (0 when read from the cache)

    @staticmethod
    def key(teacher: nn.Module, texts: list[str], precision: str = "fp32") -> str:
        """The teacher's weights and settings (not its path), the precision it ran in, and the sentences."""
        settings = "|".join(f"{a}={getattr(teacher, a, None)}" for a in
                            ("pooler", "max_seq_length", "normalize", "mlp_only_train", "do_lower_case"))
        if precision != "fp32":  # fp32 keys stay those of earlier runs
            settings += f"|precision={precision}"
        h = hashlib.sha256(weights_digest(teacher, f"{type(teacher).__name__}|{settings}").encode())
        for t in texts:
            h.update(b"\0" + t.encode("utf-8"))
        return h.hexdigest()[:32]

    def embeddings(self, texts: list[str], batch_size: int = 128, encoder: nn.Module | None = None) -> Tensor:
        """``encoder``: the teacher already loaded (else it is loaded from ``self.teacher``)."""
        from embtune.encoders import load_encoder
        from embtune.precision import resolve_precision

        teacher = encoder if encoder is not None else self.load()
        precision = self.pass_precision(teacher)
        path = self.root / f"{self.key(teacher, texts, precision)}.safetensors"
        if path.is_file():
            logger.info("teacher embeddings from the cache %s", path)
            return load_file(str(path))["embeddings"]
        logger.info("encoding %d distinct sentences with the teacher %s (%s)", len(texts), self.teacher, precision)
        t0 = time.perf_counter()
        emb = torch.from_numpy(teacher.encode(texts, batch_size=batch_size, precision=precision))
        self.seconds = time.perf_counter() - t0
        self.forwards += len(texts)
        self._write(path, emb)
        return emb

    def put(self, texts: list[str], embeddings: Tensor, encoder: nn.Module) -> None:
        """Store the teacher's embeddings of ``texts`` (rows of a larger pass, sliced) under their own key, so a
        run asking for exactly these texts reads them instead of running the teacher again."""
        if len(texts) != len(embeddings):
            raise EmbtuneError(f"teacher cache: {len(embeddings)} embeddings for {len(texts)} texts")
        precision = self.pass_precision(encoder)
        path = self.root / f"{self.key(encoder, texts, precision)}.safetensors"
        if not path.is_file():
            self._write(path, embeddings)

    def load(self):
        """The teacher, on the backend asked for."""
        from embtune.encoders import load_encoder

        return load_encoder(self.teacher, allow_pickle=self.allow_pickle, backend=self.backend)

    def pass_precision(self, teacher) -> str:
        """The precision the pass runs in: ``precision`` resolved on the teacher's device; an ONNX teacher's
        activations are fp32 (its weights int8)."""
        from embtune.precision import resolve_precision

        if tuple(getattr(teacher, "inference_precisions", ())) == ("fp32",):
            return "fp32"
        return resolve_precision(self.precision, teacher.device, what="teacher precision")

    @staticmethod
    def _write(path: Path, emb: Tensor) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp-{os.getpid()}")
        save_file({"embeddings": emb.contiguous()}, str(tmp))
        tmp.replace(path)


@dataclass
class TeacherOptions(TemperatureOptions):
    """The teacher option every objective with a teacher shares (declared once, inherited)."""

    teacher: str | None = option(None, "the teacher model (built-in name, folder or Hugging Face id); required")
    teacher_backend: str = option("torch", "what runs the teacher pass: torch (in --precision) or onnx-int8 (ONNX "
                                           "Runtime, int8 dynamic quantization, fp32 activations: the fast choice "
                                           "on a CPU without bf16; docs/teacher-pass.md)",
                                  choices=TEACHER_BACKENDS)


@dataclass
class DistillOptions(TeacherOptions):
    distill_loss: str = option("mse", "mse: embeddings; relational: in-batch similarity distributions (KL); "
                                      "similarity: in-batch cosine matrices", choices=LOSSES)


class Distill(Objective):
    name = "distill"
    Options = DistillOptions
    accepts = (("text",), PAIR_COLUMNS, TRIPLE_COLUMNS)
    default_pooler = "mean"
    needs_global_batch = False  # each process distils its own examples

    def __init__(self, teacher: str | None, loss: str = "mse", temperature: float = 0.05, allow_pickle: bool = False,
                 teacher_backend: str = "torch"):
        super().__init__()
        if not teacher:
            raise EmbtuneError("the distill objective needs --teacher MODEL")
        if loss not in LOSSES:
            raise EmbtuneError(f"distill loss must be one of {', '.join(LOSSES)}, got {loss!r}")
        self.teacher, self.kind = teacher, loss
        self.temperature = check_temperature(temperature)
        self.cache = TeacherCache(teacher, allow_pickle=allow_pickle, backend=teacher_backend)
        self.targets: Tensor | None = None
        self.row: dict[str, int] = {}

    @classmethod
    def from_config(cls, cfg) -> "Distill":
        o = cfg.objective_options
        return cls(o.teacher, o.distill_loss, o.temperature, allow_pickle=cfg.allow_pickle_weights,
                   teacher_backend=o.teacher_backend)

    def setup(self, encoder, data=None) -> None:
        texts = list(dict.fromkeys(t for ex in data.examples for t in ex))
        self.targets = self.cache.embeddings(texts).float()
        self.row = {t: i for i, t in enumerate(texts)}
        t_dim, s_dim = self.targets.shape[1], encoder.embedding_dim
        if self.kind == "mse" and t_dim != s_dim:
            if not hasattr(encoder, "projection"):
                raise EmbtuneError(f"--distill-loss mse: student width {s_dim} differs from the teacher's {t_dim} and "
                                   "the student has no projection layer; --distill-loss relational or similarity "
                                   "compare in-batch cosine similarities and take students of any width")
            if encoder.projection is None:  # a learned projection into the teacher's space, saved with the student
                encoder.projection = nn.Linear(s_dim, t_dim).to(encoder.device)
            elif encoder.projection.out_features != t_dim:
                raise EmbtuneError(f"--projection-dim {encoder.projection.out_features} must equal the teacher's width {t_dim}")

    def views(self, batch: Batch) -> list[list[list[int]]]:
        return [batch.column(c) for c in range(len(batch.ids[0]))]

    def loss(self, embeddings: Tensor, batch: Batch | None = None) -> Tensor:
        v, n, d = embeddings.shape
        student = embeddings.reshape(v * n, d)  # view-major, like the rows below
        rows = [self.row[ex[c]] for c in range(v) for ex in batch.texts]
        teacher = self.targets[rows].to(student.device)
        if self.kind == "mse":
            return F.mse_loss(student, teacher)
        s = F.normalize(student, dim=-1)
        t = F.normalize(teacher, dim=-1)
        sim_s, sim_t = s @ s.T, t @ t.T
        off = ~torch.eye(len(s), dtype=torch.bool, device=s.device)
        if self.kind == "similarity":
            return ((sim_s - sim_t)[off] ** 2).mean()
        # the diagonal (self-similarity 1) is masked out of both distributions
        log_p_student = F.log_softmax((sim_s / self.temperature).masked_fill(~off, float("-inf")), dim=-1)
        log_p_teacher = F.log_softmax((sim_t / self.temperature).masked_fill(~off, float("-inf")), dim=-1)
        return (log_p_teacher.exp() * (log_p_teacher - log_p_student)).masked_fill(~off, 0.0).sum(-1).mean()
