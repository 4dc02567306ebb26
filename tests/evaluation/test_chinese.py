from __future__ import annotations

import math

import pytest
import torch

from embtune.encoders.transformer import TransformerEncoder
from embtune.errors import EmbtuneError
from embtune.evaluation.chinese import ZH_TASKS, evaluate_zh, load_zh


@pytest.mark.parametrize("task,split,pairs", [("lcqmc", "test", 12500), ("atec", "dev", 20000), ("bq", "dev", 10000),
                                              ("pawsx", "test", 2000), ("stsb-zh", "test", 1361)])
def test_bundled_chinese_sets(task, split, pairs):
    d = load_zh(task, split)
    assert len(d) == pairs
    assert set(d.scores) <= ({0.0, 1.0} if task != "stsb-zh" else {0.0, 1.0, 2.0, 3.0, 4.0, 5.0})


def test_bq_has_no_test_split():
    with pytest.raises(EmbtuneError, match="no labelled 'test' split"):
        load_zh("bq", "test")


def test_tiny_model_on_a_character_vocabulary(tmp_path):
    from transformers import BertConfig, BertModel, BertTokenizer

    chars = sorted({c for t in ("pawsx", "stsb-zh") for d in [load_zh(t, "test")] for s in d.sent1 + d.sent2 for c in s})
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [c for c in chars if not c.isspace()]
    (tmp_path / "vocab.txt").write_text("\n".join(dict.fromkeys(vocab)) + "\n", encoding="utf-8")
    tok = BertTokenizer(str(tmp_path / "vocab.txt"), tokenize_chinese_chars=True)
    assert tok.tokenize("一个女孩") == ["一", "个", "女", "孩"]
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128)
    enc = TransformerEncoder(BertModel(cfg), tok, "mean", max_seq_length=128).eval()
    res = evaluate_zh(enc, ["pawsx", "stsb-zh"])
    for task in ("pawsx", "stsb-zh"):
        assert math.isfinite(res["tasks"][task]["spearman"])
        assert -100 <= res["tasks"][task]["spearman"] <= 100
    assert set(ZH_TASKS) == {"lcqmc", "atec", "bq", "pawsx", "stsb-zh"}


def test_a_task_without_the_split_asked_for_says_it_used_dev(caplog):
    import numpy as np

    class Random:
        def encode(self, sents, batch_size=64, precision="fp32"):
            return np.random.default_rng(0).standard_normal((len(sents), 4)).astype(np.float32)

    with caplog.at_level("WARNING", logger="embtune.evaluation.chinese"):
        res = evaluate_zh(Random(), ["bq"], split="test")
    assert res["tasks"]["bq"]["split"] == "dev"
    assert "bq has no labelled 'test' split: evaluated on its dev split instead" in caplog.text
