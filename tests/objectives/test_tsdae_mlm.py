from __future__ import annotations

import pytest
import torch

from embtune.config import make_config
from embtune.encoders.transformer import TransformerEncoder
from embtune.errors import EmbtuneError
from embtune.objectives.mlm import AuxiliaryMLM
from embtune.objectives.tsdae import TSDAE
from embtune.training import train
from embtune.training.trainer import disable_dropout
from tests.conftest import SENTENCES


@pytest.fixture
def unsup_file(tmp_path):
    p = tmp_path / "u.txt"
    p.write_text("\n".join(SENTENCES[:6]) + "\n", encoding="utf-8")
    return p


def test_tsdae_reconstruction_loss_falls(tiny_bert, unsup_file, tmp_path):
    cfg = make_config(model=str(tiny_bert), objective="tsdae", train_file=str(unsup_file), output=str(tmp_path / "o"),
                      batch_size=6, max_steps=40, epochs=100, lr=3e-3, seed=1)
    m = train(cfg, progress=False)
    first, last = sum(m["losses"][:5]) / 5, sum(m["losses"][-5:]) / 5
    assert last < 0.7 * first, (first, last)
    # only the encoder is saved: same parameter names as a plain BERT
    from safetensors.torch import load_file

    keys = load_file(str(tmp_path / "o" / "model.safetensors")).keys()
    assert not any("crossattention" in k or "predictions" in k for k in keys)


def test_tsdae_decoder_is_tied_to_the_encoder(tiny_bert):
    enc = TransformerEncoder.load(tiny_bert, pooler="cls_before_pooler")
    obj = TSDAE()
    obj.setup(enc)
    dec = obj.decoder.base_model
    assert dec.encoder.layer[0].attention.self.query.weight is enc.backbone.encoder.layer[0].attention.self.query.weight
    assert dec.embeddings.word_embeddings.weight is enc.backbone.embeddings.word_embeddings.weight
    untied = TSDAE(tie_decoder=False)
    untied.setup(enc)
    assert untied.decoder.base_model.embeddings.word_embeddings.weight is not enc.backbone.embeddings.word_embeddings.weight


def test_tsdae_bad_ratio():
    with pytest.raises(EmbtuneError, match=r"\[0, 1\)"):
        TSDAE(deletion_ratio=1.0)


def test_disable_dropout_makes_views_equal(tiny_bert):
    enc = TransformerEncoder.load(tiny_bert, pooler="mean").train()
    disable_dropout(enc)
    ids = enc.tokenize_ids(SENTENCES[:3])
    assert torch.allclose(enc.embed_ids(ids), enc.embed_ids(ids))


def test_augment_without_dropout_trains(tiny_bert, unsup_file, tmp_path):
    cfg = make_config(model=str(tiny_bert), train_file=str(unsup_file), output=str(tmp_path / "o"), batch_size=6,
                      max_steps=3, augment="word-deletion,swap", augment_ratio=0.3, dropout=False, seed=2)
    a = train(cfg, progress=False)["losses"]
    cfg.output = str(tmp_path / "o2")
    assert train(cfg, progress=False)["losses"] == a  # deterministic under the seed
    assert all(x > 0 for x in a)


def test_auxiliary_mlm(tmp_path, unsup_file, tiny_bert):
    from transformers import BertForMaskedLM

    from embtune.encoders import load_encoder

    torch.manual_seed(0)
    enc0 = TransformerEncoder.load(tiny_bert)
    mlm_model = BertForMaskedLM(enc0.backbone.config)
    mlm_model.save_pretrained(tmp_path / "mlm")
    enc0.tokenizer.save_pretrained(tmp_path / "mlm")
    enc = load_encoder(str(tmp_path / "mlm"), pooler="cls", mlp_init="new")  # as training loads it
    aux = AuxiliaryMLM(enc, weight=0.1)
    assert aux.mlm.base_model is enc.backbone
    ids = torch.tensor([enc.tokenize_ids([SENTENCES[4]] * 200)[0]] * 200)
    masked, labels = aux.mask(ids, torch.ones_like(ids))
    frac = (labels != -100).float().sum() / (ids.numel() - 2 * 200)
    assert 0.12 < frac < 0.18  # 15% of the non-special tokens
    assert ((labels != -100) & (masked == aux.mask_id)).sum() / (labels != -100).sum() > 0.7
    assert (labels[:, 0] == -100).all()  # [CLS] is never chosen
    loss = aux(enc.tokenize_ids(SENTENCES[:4]))
    loss.backward()
    assert enc.backbone.embeddings.word_embeddings.weight.grad is not None
    cfg = make_config(model=str(tmp_path / "mlm"), train_file=str(unsup_file), output=str(tmp_path / "o"),
                      batch_size=6, max_steps=2, mlm_weight=0.1)
    assert train(cfg, progress=False)["steps"] == 2
    with pytest.raises(EmbtuneError, match="no MLM head"):
        AuxiliaryMLM(load_encoder(str(tiny_bert)), weight=0.1)
