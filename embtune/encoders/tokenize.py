"""Token ids for a whole corpus from the Rust tokenizer, without the per-sentence Python work.

A fast Hugging Face tokenizer called on a list of texts encodes them in parallel in Rust, then turns
every result into Python dictionaries (ids, type ids, attention mask) one sentence at a time. For a
corpus that second part is most of the time (40,000 sentences on 16 cores: 1.3 s, the largest host
cost of a GPU encode; on 2 cores 2.0 s, of which the Rust call is 0.9 s). Encoding needs only the ids,
so :class:`CorpusTokenizer` asks a configured copy of the Rust tokenizer for them directly, with the
same truncation, special tokens and special-token splitting. Until ``CHECK_TEXTS`` texts have been
compared with the Hugging Face call (over one or several calls) each call compares its first texts;
any difference (a tokenizer class that prepares text in Python) and it uses the Hugging Face call from
then on. A tokenizer whose Rust object cannot be copied (a custom Python pre-tokenizer) always uses it.
"""

from __future__ import annotations

import copy
import logging
from collections import OrderedDict
from collections.abc import Sequence

logger = logging.getLogger(__name__)

#: texts compared with the Hugging Face call before the Rust path is trusted
CHECK_TEXTS = 64
#: configured copies kept (one per max length / setting); the oldest is dropped beyond this
MAX_COPIES = 4


class CorpusTokenizer:
    """``ids(texts, max_length)``: token ids with special tokens, truncated to ``max_length``, no padding."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self._rust: OrderedDict[tuple, object] = OrderedDict()  # settings -> a configured copy (None: not copyable)
        self._trusted: bool | None = None  # None: fewer than CHECK_TEXTS texts compared so far
        self._checked = 0

    def hf_ids(self, texts: Sequence[str], max_length: int) -> list[list[int]]:
        return self.tokenizer(list(texts), truncation=True, max_length=max_length,
                              add_special_tokens=True)["input_ids"]

    def _key(self, rust, max_length: int) -> tuple:
        """Everything of the user's tokenizer that changes ids and can change in place after a first call."""
        tok = self.tokenizer
        parts = []
        for name in ("normalizer", "pre_tokenizer", "post_processor"):
            component = getattr(rust, name, None)
            parts.append(None if component is None else component.__getstate__())
        return (max_length, getattr(tok, "truncation_side", "right"), bool(getattr(tok, "split_special_tokens", False)),
                len(tok), rust.get_vocab_size(with_added_tokens=True), *parts)

    def _backend(self, max_length: int):
        rust = getattr(self.tokenizer, "_tokenizer", None) if getattr(self.tokenizer, "is_fast", False) else None
        if rust is None or not hasattr(rust, "encode_batch"):
            return None
        try:
            key = self._key(rust, max_length)
        except Exception:  # a component that cannot describe itself (custom Python code)
            return None
        if key not in self._rust:
            try:
                r = copy.deepcopy(rust)  # the tokenizer the user holds keeps its own settings
            except Exception as e:  # e.g. "Custom PreTokenizer cannot be serialized"
                logger.debug("%s: Rust tokenizer not copyable (%s); using the Hugging Face call",
                             type(self.tokenizer).__name__, e)
                r = None
            if r is not None:
                r.no_padding()
                r.enable_truncation(max_length, stride=0, strategy="longest_first", direction=key[1])
                r.encode_special_tokens = key[2]  # as the Hugging Face call sets it on every call
            self._rust[key] = r
            while len(self._rust) > MAX_COPIES:
                self._rust.popitem(last=False)
        return self._rust[key]

    def rust_ids(self, backend, texts: Sequence[str]) -> list[list[int]]:
        encode = getattr(backend, "encode_batch_fast", None) or backend.encode_batch  # fast: no offsets
        return [e.ids for e in encode(list(texts), add_special_tokens=True)]

    def ids(self, texts: Sequence[str], max_length: int) -> list[list[int]]:
        backend = None if self._trusted is False else self._backend(max_length)
        if backend is None:
            return self.hf_ids(texts, max_length)
        if self._trusted is None and texts:
            probe = list(texts[:CHECK_TEXTS - self._checked])
            if self.rust_ids(backend, probe) != self.hf_ids(probe, max_length):
                self._trusted = False
                logger.info("%s: the Rust tokenizer's ids differ from the Hugging Face call's; using the latter",
                            type(self.tokenizer).__name__)
                return self.hf_ids(texts, max_length)
            self._checked += len(probe)
            if self._checked >= CHECK_TEXTS:
                self._trusted = True
        return self.rust_ids(backend, texts)
