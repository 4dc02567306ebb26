"""TSDAE (Wang, Reimers & Gurevych, Findings of EMNLP 2021).

Corrupt the input by deleting 60% of its words (the paper's best ratio), encode the corrupted
sentence to one vector (CLS pooling in the paper), and train a transformer decoder that sees only
that vector, as its single cross-attention memory, to reconstruct the original tokens. The decoder
is built from the encoder's own config with cross-attention added; with ``tie_decoder`` its
self-attention, feed-forward and embedding weights are the encoder's (the paper ties them). Only
the encoder is saved.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from embtune.encoders.pooling import pad_ids
from embtune.errors import EmbtuneError
from embtune.objectives.augment import check_ratio, word_deletion
from embtune.objectives.base import Batch, Objective
from embtune.options import in_range, option


@dataclass
class TSDAEOptions:
    tsdae_deletion_ratio: float = option(0.6, "share of words deleted from the input (the paper's best: 0.6)",
                                         check=in_range(0, 1))
    tsdae_tie_decoder: bool = option(True, "share the decoder's weights with the encoder (the paper ties them)")


class TSDAE(Objective):
    name = "tsdae"
    Options = TSDAEOptions
    accepts = (("text",),)
    default_pooler = "cls_before_pooler"
    needs_global_batch = False

    def __init__(self, deletion_ratio: float = 0.6, tie_decoder: bool = True):
        super().__init__()
        self.deletion_ratio = check_ratio(deletion_ratio)
        self.tie_decoder = tie_decoder
        self.decoder: nn.Module | None = None
        self.pad_id = 0

    @classmethod
    def from_config(cls, cfg) -> "TSDAE":
        o = cfg.objective_options
        return cls(o.tsdae_deletion_ratio, o.tsdae_tie_decoder)

    def setup(self, encoder, data=None) -> None:
        from transformers import AutoModelForCausalLM

        backbone = getattr(encoder, "backbone", None)
        if backbone is None:
            raise EmbtuneError("TSDAE needs a transformer encoder (its decoder is built from the encoder's config)")
        cfg = copy.deepcopy(backbone.config)
        cfg.is_decoder = True
        cfg.add_cross_attention = True
        cfg.output_hidden_states = False
        try:
            self.decoder = AutoModelForCausalLM.from_config(cfg)
        except ValueError as e:
            raise EmbtuneError(f"TSDAE: no causal-LM decoder for model type {cfg.model_type!r} ({e})") from e
        self.decoder.to(encoder.device)
        if self.tie_decoder:
            tied = _share_parameters(self.decoder.base_model, backbone)
            out_emb = self.decoder.get_output_embeddings()
            if out_emb is not None and getattr(cfg, "tie_word_embeddings", True):
                out_emb.weight = self.decoder.get_input_embeddings().weight
            if not tied:
                raise EmbtuneError("TSDAE: could not tie any decoder weight to the encoder")
        self.pad_id = encoder.tokenizer.pad_token_id or 0

    def views(self, batch: Batch) -> list[list[list[int]]]:
        corrupted = [" ".join(word_deletion(ex[0].split(), batch.rng, self.deletion_ratio)) for ex in batch.texts]
        return [batch.tokenize(corrupted)]

    def loss(self, embeddings: Tensor, batch: Batch | None = None) -> Tensor:
        if batch is None or self.decoder is None:
            raise ValueError("TSDAE.loss needs the batch (the original tokens) and setup()")
        sent = embeddings[0]
        feats = pad_ids(batch.column(0), self.pad_id)
        ids = feats["input_ids"].to(sent.device)
        mask = feats["attention_mask"].to(sent.device)
        labels = ids[:, 1:].masked_fill(mask[:, 1:] == 0, -100)
        out = self.decoder(
            input_ids=ids[:, :-1],
            attention_mask=mask[:, :-1],
            encoder_hidden_states=sent.unsqueeze(1),  # the sentence vector is the only memory
            encoder_attention_mask=torch.ones(sent.shape[0], 1, dtype=mask.dtype, device=sent.device),
            return_dict=True,
        )
        return F.cross_entropy(out.logits.float().reshape(-1, out.logits.shape[-1]), labels.reshape(-1), ignore_index=-100)


def _share_parameters(target: nn.Module, source: nn.Module) -> int:
    """Make every parameter of ``target`` that ``source`` has under the same name and shape the
    very same tensor (so both are trained together). Returns how many were tied."""
    src = dict(source.named_parameters())
    tied = 0
    for name, p in list(target.named_parameters()):
        q = src.get(name)
        if q is not None and q.shape == p.shape:
            owner = target.get_submodule(name.rsplit(".", 1)[0]) if "." in name else target
            setattr(owner, name.rsplit(".", 1)[-1], q)
            tied += 1
    return tied
