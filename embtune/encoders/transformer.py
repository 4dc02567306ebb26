"""A Hugging Face transformer with SimCSE's poolers, saved as a sentence-transformers folder.

Saved layout (loadable by ``SentenceTransformer(path)`` and by :func:`embtune.load`)::

    modules.json                 Transformer -> [WeightedLayerPooling] -> Pooling -> [Dense(tanh)] -> [Normalize]
    config.json, model.safetensors, tokenizer files     the backbone (module path "")
    sentence_bert_config.json    max_seq_length, do_lower_case
    1_WeightedLayerPooling/      only for avg_first_last / avg_top2 (layer weights select the layers)
    2_Pooling/config.json        cls or mean
    3_Dense/                     the SimCSE MLP, only when it is part of the evaluated model (sup SimCSE)
    4_Normalize/                 when the source model normalized its embeddings
    embtune.json                 embtune's own record (pooler name, training config)
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import Tensor, nn

from embtune.encoders.base import Encoder
from embtune.encoders.batching import PackedIds
from embtune.encoders.cpu_attention import use_cpu_inference_attention
from embtune.encoders.packed_linear import can_pack, pack_linears
from embtune.encoders.pooling import HIDDEN_STATE_POOLERS, check_pooler, pad_ids, pool
from embtune.encoders.tokenize import CorpusTokenizer
from embtune.encoders.weights import load_safetensors, use_safetensors
from embtune.errors import EmbtuneError

logger = logging.getLogger(__name__)

ST_TRANSFORMER = "sentence_transformers.models.Transformer"
ST_POOLING = "sentence_transformers.models.Pooling"
ST_WLP = "sentence_transformers.models.WeightedLayerPooling"
ST_DENSE = "sentence_transformers.models.Dense"
ST_NORMALIZE = "sentence_transformers.models.Normalize"
TANH = "torch.nn.modules.activation.Tanh"


MLP_INITS = ("pretrained", "new")


class MLP(nn.Module):
    """SimCSE's MLP over the [CLS] representation: dense + tanh."""

    def __init__(self, dim: int, init_std: float = 0.02):
        super().__init__()
        self.linear = nn.Linear(dim, dim)
        nn.init.normal_(self.linear.weight, std=init_std)  # BERT's initializer, as SimCSE's init_weights
        nn.init.zeros_(self.linear.bias)
        self.activation = nn.Tanh()

    def forward(self, x: Tensor) -> Tensor:
        return self.activation(self.linear(x))

    @classmethod
    def from_pretrained_pooler(cls, backbone: nn.Module, missing: list[str], folder: Path) -> "MLP":
        """The model's own pooler (BERT: ``pooler.dense`` + tanh, its ``pooler_output``), as SimCSE's
        evaluation of ``cls`` uses it; an error when the checkpoint holds no pooler weights."""
        dense = getattr(getattr(backbone, "pooler", None), "dense", None)
        if not isinstance(dense, nn.Linear) or any(k.startswith("pooler.") or ".pooler." in k for k in missing):
            raise EmbtuneError(f"{folder}: the model has no pretrained pooler (pooler.dense) for --pooler cls; "
                               "use --pooler cls_before_pooler (the [CLS] vector itself), or train one with an "
                               "objective that adds SimCSE's MLP")
        mlp = cls(dense.in_features)
        with torch.no_grad():
            mlp.linear.weight.copy_(dense.weight)
            mlp.linear.bias.copy_(dense.bias)
        return mlp


class TransformerEncoder(Encoder):
    def __init__(
        self,
        backbone: nn.Module,
        tokenizer,
        pooler: str = "cls_before_pooler",
        max_seq_length: int = 512,
        mlp: MLP | None = None,
        mlp_only_train: bool = False,
        normalize: bool = False,
        do_lower_case: bool = False,
    ):
        super().__init__()
        self.backbone = backbone
        self.tokenizer = tokenizer
        self.pooler = check_pooler(pooler)
        self.max_seq_length = max_seq_length
        self.mlp = mlp
        self.mlp_only_train = mlp_only_train
        self.normalize = normalize
        self.do_lower_case = do_lower_case
        self.extra_config: dict = {}

    # ---- construction -------------------------------------------------------------------------
    @classmethod
    def load(
        cls,
        folder: str | Path,
        pooler: str | None = None,
        mlp_only_train: bool | None = None,
        trust_remote_code: bool = False,
        default_pooler: str = "mean",
        default_mlp_only_train: bool = False,
        allow_pickle: bool = False,
        mlp_init: str = "pretrained",
    ) -> "TransformerEncoder":
        """Load a sentence-transformers folder or a plain Hugging Face model folder.

        A sentence-transformers folder keeps its own pooling unless ``pooler`` is given. A plain
        model gets ``pooler`` or ``default_pooler``. ``pooler="cls"`` on a folder without SimCSE's
        MLP takes the model's pretrained pooler (``mlp_init="pretrained"``: SimCSE's evaluation of
        ``cls``, deterministic) or a new MLP (``mlp_init="new"``: SimCSE's training, drawn from the
        seeded RNG); ``mlp_only_train`` drops it at evaluation and save time. Weights are read from
        safetensors files only unless ``allow_pickle``.
        """
        folder = Path(folder)
        if pooler is not None:
            check_pooler(pooler)
        if mlp_init not in MLP_INITS:
            raise EmbtuneError(f"mlp_init must be one of {', '.join(MLP_INITS)}, got {mlp_init!r}")
        missing: list[str] = []
        if (folder / "modules.json").is_file():
            enc, missing = cls._load_st_folder(folder, trust_remote_code, allow_pickle)
            if pooler is not None and pooler != enc.pooler:
                enc.pooler = pooler
                enc.mlp = enc.mlp if pooler == "cls" else None
        else:
            backbone, tok, missing = _load_backbone(folder, trust_remote_code, allow_pickle)
            enc = cls(backbone, tok, pooler or default_pooler, max_seq_length=_default_max_length(backbone, tok))
        if enc.pooler == "cls" and enc.mlp is None:  # the objective decides if it is kept
            if mlp_init == "new":
                enc.mlp = MLP(enc.embedding_dim, getattr(enc.backbone.config, "initializer_range", 0.02))
            else:
                enc.mlp = MLP.from_pretrained_pooler(enc.backbone, missing, folder)
            enc.mlp_only_train = default_mlp_only_train
        if mlp_only_train is not None:
            enc.mlp_only_train = mlp_only_train
        return enc

    @classmethod
    def _load_st_folder(cls, folder: Path, trust_remote_code: bool,
                        allow_pickle: bool = False) -> tuple["TransformerEncoder", list[str]]:
        modules = read_json(folder / "modules.json", list)
        backbone = tok = None
        missing: list[str] = []
        pooler, mlp, normalize, wlp = None, None, False, None
        max_len, lower = 512, False
        for m in modules:
            if not isinstance(m, dict) or not isinstance(m.get("type"), str) or not isinstance(m.get("path", ""), str):
                raise EmbtuneError(f"{folder / 'modules.json'}: expected a list of modules, each an object with a "
                                   f"'type' and a 'path', got {m!r}")
            mtype, mdir = m["type"], folder / m.get("path", "")
            short = mtype.rsplit(".", 1)[-1]
            if short == "Transformer":
                backbone, tok, missing = _load_backbone(mdir, trust_remote_code, allow_pickle)
                cfg_file = mdir / "sentence_bert_config.json"
                cfg = read_json(cfg_file) if cfg_file.is_file() else {}
                max_len = cfg.get("max_seq_length") or _default_max_length(backbone, tok)
                limit = model_length_limit(backbone, tok)
                if limit is not None and max_len > limit:
                    logger.warning("%s: max_seq_length %d is above what the model takes (%d tokens); using %d",
                                   cfg_file, max_len, limit, limit)
                    max_len = limit
                lower = bool(cfg.get("do_lower_case", False))
            elif short == "WeightedLayerPooling":
                wlp = _read_layer_weights(mdir)
            elif short == "Pooling":
                pooler = _read_pooling(mdir / "config.json")
            elif short == "Dense":
                mlp = _read_dense(mdir)
            elif short == "Normalize":
                normalize = True
            else:
                raise EmbtuneError(f"{folder / 'modules.json'}: module type {mtype!r} is not supported by embtune")
        if backbone is None or pooler is None:
            raise EmbtuneError(f"{folder / 'modules.json'}: expected a Transformer and a Pooling module")
        if wlp is not None:
            if pooler != "mean":
                raise EmbtuneError(f"{folder}: WeightedLayerPooling is only supported before mean pooling")
            pooler = _layer_weights_to_pooler(wlp, backbone.config.num_hidden_layers, folder)
        if mlp is not None:
            if pooler != "cls_before_pooler":
                raise EmbtuneError(f"{folder}: a Dense module is only supported after cls pooling (SimCSE's MLP)")
            pooler = "cls"
        enc = cls(backbone, tok, pooler, max_seq_length=max_len, mlp=mlp, normalize=normalize, do_lower_case=lower)
        meta = folder / "embtune.json"
        if meta.is_file():
            enc.extra_config = read_json(meta)
        return enc, missing

    @property
    def num_layers(self) -> int:
        """How many transformer layers the backbone has (0 when its layer stack is not found)."""
        layers = getattr(getattr(self.backbone, "encoder", None), "layer", None)
        return len(layers) if layers is not None else 0

    def keep_layers(self, indices: Sequence[int]) -> None:
        """Keep only these transformer layers (0-based, in this order): a smaller student made from a
        teacher, as in the layer-reduction recipe of Sanh et al. 2019 (DistilBERT, §3: initialise the
        student from the teacher "by taking one layer out of two")."""
        layers = getattr(getattr(self.backbone, "encoder", None), "layer", None)
        if layers is None:
            raise EmbtuneError(f"--student-layers: cannot find the layer stack of {type(self.backbone).__name__}")
        bad = [i for i in indices if not 0 <= i < len(layers)]
        if not indices or bad or len(set(indices)) != len(indices):
            raise EmbtuneError(f"--student-layers: expected distinct layer numbers from 0 to {len(layers) - 1} "
                               f"(this model has {len(layers)} layers), got {','.join(map(str, indices)) or 'none'}")
        self.backbone.encoder.layer = nn.ModuleList([layers[i] for i in indices])
        self.backbone.config.num_hidden_layers = len(indices)

    # ---- encoding -----------------------------------------------------------------------------
    @property
    def embedding_dim(self) -> int:
        return int(self.backbone.config.hidden_size)

    def tokenize_ids(self, texts: Sequence[str], max_length: int | None = None) -> list[list[int]]:
        limit = model_length_limit(self.backbone, self.tokenizer)
        if max_length is not None and limit is not None and max_length > limit:
            mp = getattr(self.backbone.config, "max_position_embeddings", None)
            raise EmbtuneError(f"--max-seq-length {max_length} is too long for this model: it takes at most {limit} "
                               f"tokens (max_position_embeddings {mp}, tokenizer limit "
                               f"{_finite(self.tokenizer.model_max_length)}); use --max-seq-length {limit} or less")
        texts = [t.lower() for t in texts] if self.do_lower_case else list(texts)
        corpus_tokenizer = self.__dict__.get("_corpus_tokenizer")  # a plain attribute: not pickled
        if corpus_tokenizer is None or corpus_tokenizer.tokenizer is not self.tokenizer:
            corpus_tokenizer = self.__dict__["_corpus_tokenizer"] = CorpusTokenizer(self.tokenizer)
        return corpus_tokenizer.ids(texts, max_length or self.max_seq_length)

    def collate(self, ids: list[list[int]]) -> dict[str, Tensor]:
        return pad_ids(ids, self.tokenizer.pad_token_id or 0)

    def packed_ids(self, ids: list[list[int]]) -> PackedIds:
        return PackedIds(ids, self.device, self.tokenizer.pad_token_id or 0)

    def inference_backbone(self, dtype: torch.dtype) -> nn.Module | None:
        """A copy of the backbone for inference: weights cast to ``dtype`` once and, on a CPU with oneDNN,
        every linear layer's weight reordered once into oneDNN's layout (:mod:`embtune.encoders.packed_linear`)
        and, on a CPU, the copy's SDPA attention replaced for short batches (:mod:`embtune.encoders.cpu_attention`).
        None for fp32 where nothing is packed: the model itself serves (a plain copy would only cost memory).

        Cached on the encoder (not in its state_dict, not pickled or deep-copied) and rebuilt when any
        weight changes (an optimizer step, load_state_dict, ``.to()``, a write through ``.data`` that
        changes a tensor's norm or sampled values: see :func:`weights_fingerprint`) or the attention
        implementation is switched. Checked once per :meth:`encode` call, not per batch.
        """
        params = list(self.backbone.parameters())
        device = params[0].device
        if dtype == torch.float32 and not can_pack(device, dtype):
            self.__dict__["_inference_cache"] = None  # e.g. moved to CUDA: free a CPU copy
            return None
        key = (dtype, str(device), getattr(self.backbone.config, "_attn_implementation", None),
               tuple((id(p), p.data_ptr(), p._version) for p in params))
        content = weights_fingerprint(params).view(torch.int32)  # bit patterns: NaN equals itself
        cached = self.__dict__.get("_inference_cache")  # a plain attribute: not a submodule
        if cached is None or cached[0] != key or not torch.equal(cached[2], content):
            self.__dict__["_inference_cache"] = None  # free the old copy first
            copy_ = self._cast_copy(dtype)
            if can_pack(device, dtype) and not self._pack_checked(copy_):  # the failed copy is half-packed
                copy_ = None if dtype == torch.float32 else self._cast_copy(dtype)
            if copy_ is not None and device.type == "cpu":
                use_cpu_inference_attention(copy_)  # short batches skip SDPA's CPU kernel (cpu_attention.py)
            self.__dict__["_inference_cache"] = cached = (key, copy_, content)
        return cached[1]

    def _cast_copy(self, dtype: torch.dtype) -> nn.Module:
        copy_ = copy.deepcopy(self.backbone).to(dtype).eval()
        for p in copy_.parameters():
            p.requires_grad_(False)
        return copy_

    def _pack_checked(self, model: nn.Module) -> bool:
        """Pack ``model``'s linear layers in place; False (model then unusable) if the packed model's output
        on a short input differs from the plain one's, or it fails (an architecture reading ``.weight``)."""
        ids = torch.tensor([[self.tokenizer.cls_token_id or 0] * 3], device=self.device)
        mask = torch.ones_like(ids)
        with torch.inference_mode(), torch.autocast(self.device.type, enabled=False):
            # .forward: the backbone's own hooks (copied with it) see only real batches
            want = model.forward(input_ids=ids, attention_mask=mask).last_hidden_state.float()
            n = pack_linears(model)
            try:
                got = model.forward(input_ids=ids, attention_mask=mask).last_hidden_state.float()
                same = torch.allclose(got, want, rtol=1e-2, atol=1e-2 * float(want.abs().max()) + 1e-5)
                why = "values"
            except (RuntimeError, AttributeError, TypeError) as e:
                same, why = False, f"error: {e}"
        if not same:
            logger.info("%s: packed linear layers disagree with nn.Linear (%s); encoding with nn.Linear",
                        type(model).__name__, why)
        else:
            logger.debug("%d linear layers packed for oneDNN", n)
        return same

    def inference_runner(self, precision: str):
        """The function :meth:`encode` applies to each batch: the inference copy in ``precision`` (resolved
        once, see :meth:`inference_backbone`; else the backbone itself, never its compiled training form),
        then pooling, MLP and normalisation in fp32 on its output."""
        dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
        backbone = self.inference_backbone(dtype)
        if backbone is None:  # fp32, nothing packed
            backbone = self.backbone
        need_all = self.pooler in HIDDEN_STATE_POOLERS

        def run(features: dict[str, Tensor]) -> Tensor:
            # the copy's dtype, whatever the caller's autocast
            with torch.autocast(self.device.type, enabled=False), inference_attention(self.device):
                out = backbone(input_ids=features["input_ids"], attention_mask=features["attention_mask"],
                               output_hidden_states=need_all, return_dict=True)
                hidden = tuple(h.float() for h in out.hidden_states) if need_all else None
                return self.head(out.last_hidden_state.float(), features["attention_mask"], hidden)

        return run

    def inference_forward(self, features: dict[str, Tensor], precision: str) -> Tensor:
        return self.inference_runner(precision)(features)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state.pop("_inference_cache", None)  # oneDNN-packed tensors cannot be pickled or deep-copied
        state.pop("_corpus_tokenizer", None)  # rebuilt on first use
        state.pop("_compiled_backbone", None)  # a copy (the anchor's frozen model) runs its own, uncompiled
        return state

    def compile_backbone(self) -> None:
        """Run :meth:`forward`'s backbone through ``torch.compile`` (sequence lengths symbolic: one graph
        for every batch shape). Held outside the module tree: the state dict, saving and copies are
        unchanged, and inference (:meth:`inference_runner`) keeps the eager backbone."""
        self.__dict__["_compiled_backbone"] = torch.compile(self.backbone, dynamic=True)

    def forward(self, features: dict[str, Tensor]) -> Tensor:
        need_all = self.pooler in HIDDEN_STATE_POOLERS
        compiled = self.__dict__.get("_compiled_backbone")
        if compiled is not None and compiled._orig_mod is not self.backbone:  # the backbone was replaced since
            compiled = self.__dict__["_compiled_backbone"] = None
        out = (self.backbone if compiled is None else compiled)(
            input_ids=features["input_ids"],
            attention_mask=features["attention_mask"],
            output_hidden_states=need_all,
            return_dict=True,
        )
        return self.head(out.last_hidden_state, features["attention_mask"], out.hidden_states if need_all else None)

    def head(self, last_hidden: Tensor, attention_mask: Tensor, hidden_states: tuple[Tensor, ...] | None = None) -> Tensor:
        """Token states -> sentence embedding: pooler, MLP (when kept), Normalize (when present)."""
        emb = pool(self.pooler, last_hidden, attention_mask, hidden_states)
        if self.mlp is not None and (self.training or not self.mlp_only_train):
            emb = self.mlp(emb)
        if self.normalize:  # part of the model, in training too (sentence-transformers' Normalize module)
            emb = torch.nn.functional.normalize(emb, dim=-1)
        return emb

    # ---- saving -------------------------------------------------------------------------------
    def save(self, path: str | Path, extra: dict | None = None) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        need_all = self.pooler in HIDDEN_STATE_POOLERS
        self.backbone.config.output_hidden_states = need_all  # sentence-transformers reads layers from this
        self.backbone.save_pretrained(path, safe_serialization=True)
        self.tokenizer.save_pretrained(path)
        (path / "sentence_bert_config.json").write_text(
            json.dumps({"max_seq_length": self.max_seq_length, "do_lower_case": self.do_lower_case}, indent=2)
        )
        modules = [{"idx": 0, "name": "0", "path": "", "type": ST_TRANSFORMER}]
        dim = self.embedding_dim

        def add(name: str, mtype: str) -> Path:
            idx = len(modules)
            modules.append({"idx": idx, "name": str(idx), "path": f"{idx}_{name}", "type": mtype})
            (path / f"{idx}_{name}").mkdir(exist_ok=True)
            return path / f"{idx}_{name}"

        if need_all:
            n = self.backbone.config.num_hidden_layers
            weights = torch.zeros(n)  # over hidden_states[1:], i.e. layers 1..n
            if self.pooler == "avg_first_last":
                weights[0] = weights[-1] = 1.0
            else:
                weights[-2:] = 1.0
            d = add("WeightedLayerPooling", ST_WLP)
            (d / "config.json").write_text(
                json.dumps({"word_embedding_dimension": dim, "layer_start": 1, "num_hidden_layers": n}, indent=2)
            )
            save_file({"layer_weights": weights.contiguous()}, str(d / "model.safetensors"))
        d = add("Pooling", ST_POOLING)
        mode = "cls" if self.pooler in ("cls", "cls_before_pooler") else "mean"
        (d / "config.json").write_text(json.dumps({
            "word_embedding_dimension": dim,
            "pooling_mode_cls_token": mode == "cls",
            "pooling_mode_mean_tokens": mode == "mean",
            "pooling_mode_max_tokens": False,
            "pooling_mode_mean_sqrt_len_tokens": False,
        }, indent=2))
        # The unsup MLP is training-only (SimCSE evaluates cls_before_pooler); the sup MLP is kept.
        if self.mlp is not None and not self.mlp_only_train:
            d = add("Dense", ST_DENSE)
            (d / "config.json").write_text(json.dumps(
                {"in_features": dim, "out_features": dim, "bias": True, "activation_function": TANH}, indent=2))
            save_file({k: v.detach().cpu().contiguous() for k, v in self.mlp.linear.state_dict(prefix="linear.").items()},
                      str(d / "model.safetensors"))
        if self.normalize:
            add("Normalize", ST_NORMALIZE)
        (path / "modules.json").write_text(json.dumps(modules, indent=2))
        (path / "config_sentence_transformers.json").write_text(
            json.dumps({"similarity_fn_name": "cosine", "model_type": "SentenceTransformer"}, indent=2))
        saved_pooler = self.pooler if not (self.pooler == "cls" and self.mlp_only_train) else "cls_before_pooler"
        meta = {"encoder": "transformer", "pooler": saved_pooler, **(extra or {})}
        (path / "embtune.json").write_text(json.dumps(meta, indent=2, default=str))


#: SDPA kernels inference may use on CUDA, in torch's order of preference; None: torch's choice. cuDNN's kernel is
#: left out: on an H200 (torch 2.11, BERT-base, bf16, batches of 512 short sentences with a padding mask) it took
#: 31% of a forward pass, and the forward passes ran 1.34x faster without it (docs/performance.md, GPU rows).
INFERENCE_SDPA_BACKENDS: tuple[str, ...] | None = ("FLASH_ATTENTION", "EFFICIENT_ATTENTION", "MATH")


def inference_attention(device: torch.device):
    """The SDPA kernels an inference pass on ``device`` may use (a context; nothing on a CPU)."""
    if device.type != "cuda" or INFERENCE_SDPA_BACKENDS is None:
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    enabled = {"FLASH_ATTENTION": torch.backends.cuda.flash_sdp_enabled(),  # what the user left on, globally
               "EFFICIENT_ATTENTION": torch.backends.cuda.mem_efficient_sdp_enabled(),
               "MATH": torch.backends.cuda.math_sdp_enabled()}
    names = [n for n in INFERENCE_SDPA_BACKENDS if enabled.get(n, True)]
    return sdpa_kernel([getattr(SDPBackend, n) for n in names]) if names else contextlib.nullcontext()


def weights_fingerprint(params: list[Tensor], samples: int = 64) -> Tensor:
    """The weights' current content, cheaply: each tensor's L2 norm and ``samples`` of its values at a fixed
    stride. Version counters alone miss updates: torch's fused AdamW writes the weights in place without
    bumping them (measured: ``_version`` stays 0 after ``step()``), and so does a write through ``.data``
    (caught here when it changes a norm or a sampled value)."""
    with torch.no_grad():
        flat = [p.detach().reshape(-1) for p in params]
        norms = torch.stack([torch.linalg.vector_norm(f.float()) for f in flat])
        picked = torch.cat([f[:: max(1, f.numel() // samples)][:samples].float() for f in flat])
        return torch.cat([norms, picked]).cpu()


def _load_backbone(folder: Path, trust_remote_code: bool, allow_pickle: bool = False):
    """(model, tokenizer, the weights the checkpoint lacked) of a Hugging Face folder."""
    from safetensors import SafetensorError
    from transformers import AutoModel, AutoTokenizer

    if not (folder / "config.json").is_file():
        raise EmbtuneError(f"{folder}: no config.json; expected a Hugging Face model folder")
    safe = use_safetensors(folder, allow_pickle)  # checks the files; refuses pickle unless allowed
    try:
        tok = AutoTokenizer.from_pretrained(str(folder), trust_remote_code=trust_remote_code)
        try:  # PyTorch's fused scaled-dot-product attention where the architecture has it
            model, info = AutoModel.from_pretrained(str(folder), trust_remote_code=trust_remote_code, dtype=torch.float32,
                                                    attn_implementation="sdpa", use_safetensors=safe,
                                                    output_loading_info=True)
        except (ValueError, ImportError):
            model, info = AutoModel.from_pretrained(str(folder), trust_remote_code=trust_remote_code, dtype=torch.float32,
                                                    use_safetensors=safe, output_loading_info=True)
    except SafetensorError as e:
        raise EmbtuneError(f"{folder}: corrupt or truncated weights file ({e}); download or save the model again") from e
    except (OSError, ValueError) as e:
        raise EmbtuneError(f"{folder}: could not load the model or tokenizer ({e})") from e
    return model, tok, list(info.get("missing_keys", []))


def read_json(path: Path, kind: type = dict):
    """A JSON file of a model folder -> its object (``kind``: dict or list); damage is an error naming the file."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise EmbtuneError(f"{path}: not valid UTF-8 JSON ({e}); the model folder is damaged") from e
    if not isinstance(value, kind):
        raise EmbtuneError(f"{path}: expected a JSON {'object' if kind is dict else 'list'}, "
                           f"got {type(value).__name__}; the model folder is damaged")
    return value


def _finite(n) -> int | None:
    return int(n) if n is not None and n < 1_000_000 else None  # tokenizers say 1e30 for "no limit"


def model_length_limit(backbone: nn.Module, tok) -> int | None:
    """The most tokens the model takes: its position embeddings and its tokenizer's limit (None: no limit)."""
    limits = [x for x in (_finite(getattr(backbone.config, "max_position_embeddings", None)),
                          _finite(getattr(tok, "model_max_length", None))) if x is not None]
    return min(limits) if limits else None


def _default_max_length(backbone: nn.Module, tok) -> int:
    """The longest input the model takes (plain models: at most 512 tokens, SimCSE's evaluation)."""
    return int(min(512, model_length_limit(backbone, tok) or 512))


def _read_pooling(cfg_path: Path) -> str:
    cfg = read_json(cfg_path)
    mode = cfg.get("pooling_mode")
    if mode is None:
        on = [k for k in ("pooling_mode_cls_token", "pooling_mode_mean_tokens", "pooling_mode_max_tokens",
                          "pooling_mode_mean_sqrt_len_tokens", "pooling_mode_weightedmean_tokens",
                          "pooling_mode_lasttoken") if cfg.get(k)]
        mode = {"pooling_mode_cls_token": "cls", "pooling_mode_mean_tokens": "mean"}.get(on[0] if len(on) == 1 else "", "+".join(on))
    if mode == "cls":
        return "cls_before_pooler"
    if mode == "mean":
        return "mean"
    raise EmbtuneError(f"{cfg_path}: pooling mode {mode!r} is not supported by embtune (expected cls or mean)")


def _read_dense(folder: Path) -> MLP:
    cfg = read_json(folder / "config.json")
    if cfg.get("activation_function", TANH) != TANH or cfg.get("in_features") != cfg.get("out_features") \
            or not isinstance(cfg.get("in_features"), int):
        raise EmbtuneError(f"{folder}: only a square Dense layer with tanh (SimCSE's MLP) is supported")
    mlp = MLP(cfg["in_features"])
    state = load_safetensors(folder / "model.safetensors")
    mlp.linear.load_state_dict({k.removeprefix("linear."): v for k, v in state.items()})
    return mlp


def _read_layer_weights(folder: Path) -> Tensor:
    return load_safetensors(folder / "model.safetensors")["layer_weights"]


def _layer_weights_to_pooler(weights: Tensor, n_layers: int, folder: Path) -> str:
    w = [float(x) for x in weights]
    if len(w) == n_layers and w[0] == w[-1] and w[0] > 0 and all(x == 0 for x in w[1:-1]):
        return "avg_first_last"
    if len(w) >= 2 and w[-1] == w[-2] and w[-1] > 0 and all(x == 0 for x in w[:-2]):
        return "avg_top2"
    raise EmbtuneError(f"{folder}: layer weights {w} match neither avg_first_last nor avg_top2")
