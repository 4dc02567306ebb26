from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from embtune.encoders import load_encoder
from embtune.encoders.pooling import POOLERS
from embtune.encoders.transformer import TransformerEncoder
from embtune.errors import EmbtuneError
from tests.conftest import SENTENCES


def test_dropout_views_differ_in_training_and_match_in_eval(tiny_bert):
    enc = TransformerEncoder.load(tiny_bert, pooler="cls_before_pooler")
    ids = enc.tokenize_ids(SENTENCES[:4])
    enc.train()
    a, b = enc.embed_ids(ids), enc.embed_ids(ids)
    assert not torch.allclose(a, b)
    # one pass over both views gives each row its own mask too
    both = enc.embed_ids(ids + ids)
    assert not torch.allclose(both[:4], both[4:])
    enc.eval()
    with torch.no_grad():
        assert torch.equal(enc.embed_ids(ids), enc.embed_ids(ids))


@pytest.mark.parametrize("pooler", POOLERS)
def test_poolers_match_their_definition(tiny_bert, pooler):
    enc = TransformerEncoder.load(tiny_bert, pooler=pooler).eval()
    feats = enc.collate(enc.tokenize_ids(SENTENCES[:3]))
    with torch.no_grad():
        out = enc.backbone(**feats, output_hidden_states=True)
        got = enc(feats)
        mask = feats["attention_mask"].unsqueeze(-1).float()
        mean = lambda h: (h * mask).sum(1) / mask.sum(1)  # noqa: E731
        hs = out.hidden_states
        want = {
            "cls_before_pooler": hs[-1][:, 0],
            "cls": torch.tanh(enc.mlp.linear(hs[-1][:, 0])) if enc.mlp is not None else None,
            "mean": mean(hs[-1]),
            "avg_first_last": mean((hs[1] + hs[-1]) / 2),
            "avg_top2": mean((hs[-2] + hs[-1]) / 2),
        }[pooler]
    assert torch.allclose(got, want, atol=1e-6)


def test_cls_mlp_only_train_is_dropped_at_eval(tiny_bert):
    enc = TransformerEncoder.load(tiny_bert, pooler="cls", mlp_only_train=True).eval()
    feats = enc.collate(enc.tokenize_ids(SENTENCES[:2]))
    with torch.no_grad():
        assert torch.allclose(enc(feats), enc.backbone(**feats).last_hidden_state[:, 0])


@pytest.mark.parametrize("pooler,mlp_only_train", [("cls", True), ("cls", False), ("cls_before_pooler", False),
                                                    ("mean", False), ("avg_first_last", False), ("avg_top2", False)])
def test_save_load_round_trip_and_sentence_transformers_agree(tiny_bert, tmp_path, pooler, mlp_only_train):
    from sentence_transformers import SentenceTransformer

    enc = TransformerEncoder.load(tiny_bert, pooler=pooler, mlp_only_train=mlp_only_train)
    with torch.no_grad():  # make the MLP matter
        if enc.mlp is not None:
            enc.mlp.linear.weight.normal_(0, 0.5)
    enc.eval()
    ref = enc.encode(SENTENCES)
    enc.save(tmp_path / "m")
    modules = [m["type"].rsplit(".", 1)[-1] for m in json.loads((tmp_path / "m" / "modules.json").read_text())]
    assert ("Dense" in modules) == (pooler == "cls" and not mlp_only_train)
    again = load_encoder(str(tmp_path / "m")).encode(SENTENCES)
    np.testing.assert_allclose(again, ref, atol=1e-6)
    st = SentenceTransformer(str(tmp_path / "m"), device="cpu").encode(SENTENCES, convert_to_numpy=True)
    cos = (st * ref).sum(1) / np.linalg.norm(st, axis=1) / np.linalg.norm(ref, axis=1)
    assert cos.min() >= 0.9999


def test_st_folder_keeps_its_pooling_and_normalize(tiny_st, tmp_path):
    enc = load_encoder(str(tiny_st))
    assert enc.pooler == "mean" and enc.mlp is None
    override = load_encoder(str(tiny_st), pooler="cls", default_mlp_only_train=True)
    assert override.pooler == "cls" and override.mlp is not None and override.mlp_only_train


def test_bad_model_inputs(tmp_path, tiny_bert):
    with pytest.raises(EmbtuneError, match="does not exist"):
        load_encoder(str(tmp_path / "no" / "such" / "model"))
    with pytest.raises(EmbtuneError, match="does not exist"):
        load_encoder("./missing-model")
    with pytest.raises(EmbtuneError, match="unknown pooler 'max'"):
        TransformerEncoder.load(tiny_bert, pooler="max")
    (tmp_path / "empty").mkdir()
    with pytest.raises(EmbtuneError, match="no config.json"):
        load_encoder(str(tmp_path / "empty"))


def test_tiny_tokenizer_knows_its_words(tiny_bert):
    enc = TransformerEncoder.load(tiny_bert)
    assert "[UNK]" not in enc.tokenizer.tokenize(SENTENCES[0])
