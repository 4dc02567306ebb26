"""Shared fixtures: tiny random BERT models built in-process (seconds, offline)."""

from __future__ import annotations

import string
from pathlib import Path

import pytest
import torch

WORDS = (
    "a the is are was were of in on at to and or man woman men women child children dog dogs cat cats "
    "playing plays play running runs run eating eats eat guitar piano ball park street water car "
    "red blue green big small young old two three one group people person sitting standing riding horse "
    "bike walking down up with his her their an it this that there here not no yes good bad new"
).split()


def build_tiny_bert(folder: Path, seed: int = 0, layers: int = 2, dropout: float = 0.1) -> Path:
    from transformers import BertConfig, BertModel, BertTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + list(string.ascii_lowercase)
    vocab += ["##" + c for c in string.ascii_lowercase] + list(".,!?'") + WORDS
    vocab = list(dict.fromkeys(vocab))
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tok = BertTokenizer(str(folder / "vocab.txt"), do_lower_case=True)  # positional: vocab_file (v4) or vocab (v5)
    cfg = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=layers, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=64, hidden_dropout_prob=dropout,
                     attention_probs_dropout_prob=dropout)
    torch.manual_seed(seed)
    model = BertModel(cfg)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    """A plain Hugging Face folder (no sentence-transformers files)."""
    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def tiny_st(tmp_path_factory, tiny_bert) -> Path:
    """The tiny BERT as a sentence-transformers folder with mean pooling."""
    from embtune.encoders.transformer import TransformerEncoder

    enc = TransformerEncoder.load(tiny_bert, pooler="mean")
    out = tmp_path_factory.mktemp("tiny-st")
    enc.save(out)
    return out


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """Keep downloads out of the user's cache, but reuse an extracted built-in model."""
    monkeypatch.setenv("EMBTUNE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("EMBTUNE_DATA", raising=False)


@pytest.fixture(autouse=True)
def _no_native_half(monkeypatch):
    """Tests see a device without native bf16/fp16, so ``precision auto`` means fp32 on every machine and
    results do not depend on the CPU running them (tests of the detection and of bf16 opt in explicitly)."""
    from embtune import precision

    monkeypatch.setattr(precision, "detect_support",
                        lambda device: precision.DeviceSupport("cpu", bf16=False, fp16=False, detail="test device"))


SENTENCES = [
    "a man is playing the guitar .",
    "a woman is playing the piano .",
    "two dogs are running in the park .",
    "a child is eating .",
    "a group of people are riding bike down the street .",
    "the cat is sitting on the car .",
    "an old man is walking his dog .",
    "three young women are standing in the water .",
    "a big red ball .",
    "the horse runs .",
    "people are eating in the park .",
    "a small blue car is there .",
]


def cfg_for(model, train_file, out, **kw):
    """A small training config for the tiny test models (any option overridable)."""
    from embtune.config import make_config

    base = dict(model=str(model), train_file=str(train_file), output=str(out), batch_size=4, max_steps=6,
                lr=1e-3, max_seq_length=16, seed=7)
    base.update(kw)
    return make_config(**base)
