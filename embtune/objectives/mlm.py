"""Auxiliary masked-language-modelling loss (SimCSE appendix: λ = 0.1, 15% masking).

Added to any objective with ``--mlm-weight λ``: loss = objective + λ·MLM, the MLM computed on
every sentence the encoder embeds in the step (all views, as the official code masks every sentence
of the batch, each copy with its own mask) with BERT's 80/10/10 masking, through the encoder's own backbone and the
model's pretrained MLM head (a model without one is refused).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from embtune.encoders.pooling import pad_ids
from embtune.errors import EmbtuneError


class AuxiliaryMLM(nn.Module):
    def __init__(self, encoder, weight: float = 0.1, probability: float = 0.15):
        super().__init__()
        from transformers import AutoModelForMaskedLM

        if not weight > 0:
            raise EmbtuneError(f"mlm weight must be > 0, got {weight}")
        if not 0 < probability < 1:
            raise EmbtuneError(f"mlm probability must be in (0, 1), got {probability}")
        folder = getattr(encoder, "source_path", None)
        if folder is None or not (Path(folder) / "config.json").is_file():
            raise EmbtuneError("--mlm-weight needs a transformer loaded from a folder with an MLM head")
        try:
            # the folder the encoder came from: safetensors when it has them (pickle only if the encoder was allowed it)
            safe = True if any(Path(folder).glob("*.safetensors")) else None
            mlm, info = AutoModelForMaskedLM.from_pretrained(str(folder), output_loading_info=True, dtype=torch.float32,
                                                             use_safetensors=safe)
        except ValueError as e:
            raise EmbtuneError(f"{folder}: no masked-LM model for this architecture ({e})") from e
        base = mlm.base_model_prefix
        missing = [k for k in info.get("missing_keys", []) if not k.startswith(base + ".")]
        if missing:
            raise EmbtuneError(f"{folder}: the checkpoint has no MLM head (missing {', '.join(sorted(missing)[:3])}...); "
                               "--mlm-weight needs a model trained with one (e.g. bert-base-uncased)")
        setattr(mlm, base, encoder.backbone)  # share the encoder being trained
        if getattr(mlm.config, "tie_word_embeddings", True) and mlm.get_output_embeddings() is not None:
            mlm.get_output_embeddings().weight = encoder.backbone.get_input_embeddings().weight
        self.mlm = mlm.to(encoder.device)
        self.weight, self.probability = float(weight), float(probability)
        tok = encoder.tokenizer
        self.mask_id, self.pad_id = tok.mask_token_id, tok.pad_token_id or 0
        self.special = torch.tensor(sorted(set(tok.all_special_ids)))
        self.vocab_size = mlm.config.vocab_size

    def mask(self, ids: Tensor, attention: Tensor) -> tuple[Tensor, Tensor]:
        """BERT masking: choose 15% of the real tokens; 80% [MASK], 10% random, 10% unchanged."""
        labels = ids.clone()
        prob = torch.full(ids.shape, self.probability)
        prob[torch.isin(ids, self.special) | (attention == 0)] = 0.0
        chosen = torch.bernoulli(prob).bool()
        labels[~chosen] = -100
        ids = ids.clone()
        to_mask = torch.bernoulli(torch.full(ids.shape, 0.8)).bool() & chosen
        ids[to_mask] = self.mask_id
        to_random = torch.bernoulli(torch.full(ids.shape, 0.5)).bool() & chosen & ~to_mask
        ids[to_random] = torch.randint(self.vocab_size, ids.shape)[to_random]
        return ids, labels

    def forward(self, sentences: list[list[int]]) -> Tensor:
        feats = pad_ids(sentences, self.pad_id)
        ids, labels = self.mask(feats["input_ids"], feats["attention_mask"])
        if (labels != -100).sum() == 0:  # no token chosen (short sentences, a small batch): a zero that
            # keeps the graph, so ``backward()`` works and adds nothing
            return next(p for p in self.mlm.parameters() if p.requires_grad).sum() * 0.0
        dev = self.mlm.device
        out = self.mlm(input_ids=ids.to(dev), attention_mask=feats["attention_mask"].to(dev), labels=labels.to(dev))
        return self.weight * out.loss
