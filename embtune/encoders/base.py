"""What every encoder offers: tokenize once, collate with dynamic padding, embed, encode, save."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from embtune.encoders.batching import PackedIds, length_sorted_batches, to_device
from embtune.errors import EmbtuneError

PRECISIONS = ("fp32", "bf16", "fp16")


def autocast(device: torch.device, precision: str):
    """Autocast context for ``precision`` (fp32: none)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    return torch.autocast(device_type=device.type, dtype=dtype)


class Encoder(nn.Module):
    """A sentence encoder: ``texts -> token ids -> padded features -> embeddings``.

    Subclasses implement :meth:`tokenize_ids`, :meth:`collate`, :meth:`forward` and :meth:`save`.
    ``forward`` returns the training embedding (with a training-only MLP when there is one); in
    eval mode it returns what the saved model returns.
    """

    max_seq_length: int

    def tokenize_ids(self, texts: Sequence[str], max_length: int | None = None) -> list[list[int]]:
        raise NotImplementedError

    def collate(self, ids: list[list[int]]) -> dict[str, Tensor]:
        raise NotImplementedError

    def save(self, path: str | Path) -> None:
        raise NotImplementedError

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def embedding_dim(self) -> int:
        raise NotImplementedError

    def embed_ids(self, ids: list[list[int]]) -> Tensor:
        feats = {k: to_device(v, self.device) for k, v in self.collate(ids).items()}
        return self(feats)

    # ---- inference hooks (subclasses may run a faster path) ----------------------------------
    #: precisions this encoder can run (an ONNX graph: fp32 only); "auto" picks among them
    inference_precisions: tuple[str, ...] = ("fp32", "bf16", "fp16")
    #: encode()'s default for allow_slow_precision (the CLI and the trainer set it from their flag)
    allow_slow_precision: bool = False

    def packed_ids(self, ids: list[list[int]]) -> "PackedIds | None":
        """The corpus as one device tensor (see :class:`PackedIds`), or None to collate batch by batch."""
        return None

    def inference_runner(self, precision: str) -> Callable[[dict[str, Tensor]], Tensor]:
        """What :meth:`encode` applies to each batch (resolved once per call)."""
        return lambda features: self.inference_forward(features, precision)

    def inference_forward(self, features: dict[str, Tensor], precision: str) -> Tensor:
        """The evaluated model's embeddings (any float dtype); default: per-op autocast."""
        with autocast(self.device, precision):
            return self(features)

    @torch.inference_mode()
    def encode(
        self,
        texts: Sequence[str],
        batch_size: int = 64,
        normalize: bool = False,
        show_progress: bool = False,
        precision: str = "fp32",
        *,
        convert_to_tensor: bool = False,
        output: str = "numpy",
        allow_slow_precision: bool | None = None,
        token_budget: int | None = None,
    ) -> np.ndarray | Tensor:
        """Embed ``texts`` into a float32 matrix of shape (len(texts), dim).

        Each distinct text is encoded once; the corpus is tokenized in one call, and encoded in
        length-sorted batches of at most ``batch_size`` sentences (and, with ``token_budget``, at most
        that many padded tokens). ``precision``: fp32, bf16, fp16 or auto (bf16 where the device runs it
        natively, else fp32); a precision the device lacks is an error unless ``allow_slow_precision``
        (default: the encoder's ``allow_slow_precision`` attribute, False unless set).
        ``output="torch"`` (or ``convert_to_tensor=True``) returns a tensor on the model's device,
        ``"numpy"`` (default) a NumPy array. ``normalize``: unit length.
        """
        from embtune.precision import resolve_precision

        texts = _check_texts(texts)
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise EmbtuneError(f"batch_size must be a positive integer, got {batch_size!r}")
        if token_budget is not None and (isinstance(token_budget, bool) or not isinstance(token_budget, (int, np.integer))
                                         or token_budget < 1):
            raise EmbtuneError(f"token_budget must be a positive integer, got {token_budget!r}")
        if output not in ("numpy", "torch"):
            raise EmbtuneError(f"output must be 'numpy' or 'torch', got {output!r}")
        as_tensor = convert_to_tensor or output == "torch"
        device = self.device
        if precision == "auto" and self.inference_precisions == ("fp32",):
            precision = "fp32"
        if allow_slow_precision is None:
            allow_slow_precision = self.allow_slow_precision
        precision = resolve_precision(precision, device, allow_slow=allow_slow_precision, what="precision")
        if precision not in self.inference_precisions:
            raise EmbtuneError(f"{type(self).__name__} runs in {', '.join(self.inference_precisions)} only, "
                               f"not {precision}")
        if not texts:
            empty = torch.zeros((0, self.embedding_dim), dtype=torch.float32)
            return empty.to(device) if as_tensor else empty.numpy()
        unique = list(dict.fromkeys(texts))
        ids = self.tokenize_ids(unique)  # the whole corpus in one call (fast tokenizers batch it natively)
        batches = length_sorted_batches([len(x) for x in ids], int(batch_size), token_budget)
        was_training = self.training
        self.eval()
        out = torch.empty((len(unique), self.embedding_dim), dtype=torch.float32, device=device)
        try:
            run = self.inference_runner(precision)
            packed = self.packed_ids(ids)
            # every batch's indices in one transfer; a batch is a slice of it
            order = to_device(torch.from_numpy(np.concatenate(batches)), device)
            start = 0
            for idx in tqdm(batches, disable=not show_progress, desc="encode"):
                dev_idx = order[start:start + len(idx)]
                start += len(idx)
                if packed is not None:
                    feats = packed.batch(idx, dev_idx)
                else:
                    feats = {k: to_device(v, device) for k, v in self.collate([ids[i] for i in idx]).items()}
                emb = run(feats).float()
                if normalize:
                    emb = torch.nn.functional.normalize(emb, dim=-1)
                out[dev_idx] = emb
        finally:
            self.train(was_training)
        if len(unique) < len(texts):
            pos = {t: i for i, t in enumerate(unique)}
            out = out[to_device(torch.tensor([pos[t] for t in texts]), device)]
        return out if as_tensor else out.cpu().numpy()


    def similarity(self, a, b, batch_size: int = 64):
        """Cosine similarity matrix [len(a), len(b)] of two lists of texts (encoded here) or two
        embedding matrices (numpy arrays or torch tensors; a 1-d vector is one row).

        Returns a torch tensor when an input is a tensor, else a float32 numpy array.
        """
        as_tensor = isinstance(a, Tensor) or isinstance(b, Tensor)
        va, vb = (self._similarity_operand(x, batch_size) for x in (a, b))
        if va.shape[1] != vb.shape[1]:
            raise ValueError(f"similarity(): dimensions differ ({va.shape[1]} vs {vb.shape[1]})")
        va = torch.nn.functional.normalize(va, dim=-1)
        vb = torch.nn.functional.normalize(vb, dim=-1)
        out = va @ vb.T
        return out if as_tensor else out.numpy()

    def _similarity_operand(self, x, batch_size: int) -> Tensor:
        if isinstance(x, str):
            x = [x]
        if isinstance(x, Tensor):
            t = x.detach().cpu().float()
        elif isinstance(x, np.ndarray):
            t = torch.from_numpy(np.asarray(x, dtype=np.float32))
        else:
            x = list(x)
            if x and all(isinstance(s, str) for s in x):
                t = torch.from_numpy(self.encode(x, batch_size=batch_size))
            else:
                t = torch.as_tensor(np.asarray(x, dtype=np.float32).reshape(len(x), -1) if x else
                                    np.zeros((0, self.embedding_dim), np.float32))
        return t[None, :] if t.ndim == 1 else t


def _check_texts(texts) -> list[str]:
    """A list of strings, or a clear error naming the first bad item."""
    if isinstance(texts, str):
        raise EmbtuneError("encode() takes a list of strings, not a single string (wrap it: [text])")
    if texts is None:
        raise EmbtuneError("encode() takes a list of strings, got None")
    try:
        texts = list(texts)
    except TypeError as e:
        raise EmbtuneError(f"encode() takes a list of strings, got {type(texts).__name__}") from e
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise EmbtuneError(f"encode(): item {i} is {type(t).__name__} ({t!r:.60}), expected a string")
    return texts
