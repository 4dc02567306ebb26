"""The auxiliary MLM loss when no token is chosen, and which sentences the trainer gives it."""

from __future__ import annotations

import pytest
import torch

from embtune.encoders import load_encoder
from embtune.objectives.mlm import AuxiliaryMLM
from tests.conftest import SENTENCES


@pytest.fixture
def mlm_folder(tmp_path, tiny_bert):
    from transformers import BertForMaskedLM

    from embtune.encoders.transformer import TransformerEncoder

    torch.manual_seed(0)
    enc0 = TransformerEncoder.load(tiny_bert)
    BertForMaskedLM(enc0.backbone.config).save_pretrained(tmp_path / "mlm")
    enc0.tokenizer.save_pretrained(tmp_path / "mlm")
    return tmp_path / "mlm"


def test_no_token_chosen_gives_a_zero_that_backpropagates(mlm_folder):
    enc = load_encoder(str(mlm_folder), pooler="cls", mlp_init="new")
    aux = AuxiliaryMLM(enc, weight=0.1, probability=1e-12)  # practically never chooses a token
    loss = aux(enc.tokenize_ids(SENTENCES[:2]))
    assert float(loss) == 0.0
    loss.backward()  # raised "element 0 of tensors does not require grad" before
    grads = [p.grad for p in aux.mlm.parameters() if p.grad is not None]
    assert grads and all(float(g.abs().max()) == 0.0 for g in grads)  # a zero contribution


def test_chosen_tokens_give_a_positive_loss(mlm_folder):
    enc = load_encoder(str(mlm_folder), pooler="cls", mlp_init="new")
    aux = AuxiliaryMLM(enc, weight=0.1, probability=0.5)
    torch.manual_seed(1)
    loss = aux(enc.tokenize_ids(SENTENCES[:4]))
    assert float(loss) > 0  # negative control: the zero above is only for the no-token case
