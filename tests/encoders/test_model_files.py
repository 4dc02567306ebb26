"""Model folders that are damaged, unsafe or asked for more than they hold: clear errors, no tracebacks;
the cls pooler of a plain model is its pretrained pooler, not a fresh random layer."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from embtune.encoders import load_encoder
from embtune.encoders.transformer import TransformerEncoder
from embtune.errors import EmbtuneError
from tests.conftest import SENTENCES


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
@pytest.mark.parametrize("kind", ["plain", "st"])
def test_corrupt_model_safetensors_names_the_file(tiny_bert, tiny_st, tmp_path, damage, kind):
    folder = _copy(tiny_bert if kind == "plain" else tiny_st, tmp_path / "m")
    f = folder / "model.safetensors"
    data = f.read_bytes()
    f.write_bytes({"truncate": data[: len(data) // 2], "garbage": b"not a safetensors file" * 4, "empty": b""}[damage])
    with pytest.raises(EmbtuneError, match="corrupt or truncated") as e:
        load_encoder(str(folder))
    assert str(f) in str(e.value)


def test_corrupt_dense_weights_name_the_file(tiny_bert, tmp_path):
    enc = TransformerEncoder.load(tiny_bert, pooler="cls", mlp_only_train=False)
    enc.save(tmp_path / "m")
    dense = next((tmp_path / "m").glob("*_Dense")) / "model.safetensors"
    dense.write_bytes(dense.read_bytes()[:20])
    with pytest.raises(EmbtuneError, match="corrupt or truncated") as e:
        load_encoder(str(tmp_path / "m"))
    assert str(dense) in str(e.value)


def test_max_seq_length_above_the_model_limit(tiny_bert):
    enc = TransformerEncoder.load(tiny_bert)  # max_position_embeddings = 64
    assert len(enc.tokenize_ids(["a " * 200], max_length=64)[0]) == 64
    with pytest.raises(EmbtuneError, match=r"--max-seq-length 65 .* at most 64 .*max_position_embeddings"):
        enc.tokenize_ids(SENTENCES[:2], max_length=65)


def test_training_with_a_too_long_max_seq_length_is_refused(tiny_bert, tmp_path):
    from embtune.config import TrainConfig
    from embtune.training import train

    u = tmp_path / "u.txt"
    u.write_text("\n".join(SENTENCES) + "\n", encoding="utf-8")
    cfg = TrainConfig(model=str(tiny_bert), train_file=str(u), output=str(tmp_path / "o"), batch_size=4,
                      max_steps=1, max_seq_length=100)
    with pytest.raises(EmbtuneError, match="--max-seq-length 100"):
        train(cfg, progress=False)


# ---- pickle-based weights ----------------------------------------------------------------------

@pytest.fixture
def bin_only(tiny_bert, tmp_path):
    folder = _copy(tiny_bert, tmp_path / "bin")
    state = load_file(str(folder / "model.safetensors"))
    (folder / "model.safetensors").unlink()
    torch.save(state, folder / "pytorch_model.bin")
    return folder


def test_pickle_only_weights_are_refused_unless_allowed(bin_only, tiny_bert):
    with pytest.raises(EmbtuneError, match="pytorch_model.bin.*allow-pickle-weights"):
        load_encoder(str(bin_only))
    enc = load_encoder(str(bin_only), allow_pickle=True)  # the user's explicit choice
    ref = load_encoder(str(tiny_bert))
    np.testing.assert_allclose(enc.encode(SENTENCES[:3]), ref.encode(SENTENCES[:3]), atol=1e-6)


def test_safetensors_is_preferred_when_both_exist(tiny_bert, tmp_path):
    folder = _copy(tiny_bert, tmp_path / "both")
    torch.save({"junk": torch.zeros(1)}, folder / "pytorch_model.bin")  # never read
    load_encoder(str(folder))


# ---- the cls pooler of a plain model -----------------------------------------------------------

def test_cls_pooler_of_a_plain_model_is_its_pretrained_pooler(tiny_bert):
    a = load_encoder(str(tiny_bert), pooler="cls")
    b = load_encoder(str(tiny_bert), pooler="cls")
    np.testing.assert_array_equal(a.encode(SENTENCES), b.encode(SENTENCES))  # no fresh random layer
    saved = load_file(str(tiny_bert / "model.safetensors"))
    assert torch.equal(a.mlp.linear.weight, saved["pooler.dense.weight"])
    assert torch.equal(a.mlp.linear.bias, saved["pooler.dense.bias"])
    feats = a.collate(a.tokenize_ids(SENTENCES[:3]))
    with torch.no_grad():  # the same as the model's own pooler_output (SimCSE's evaluation of "cls")
        np.testing.assert_allclose(a(feats).numpy(), a.backbone(**feats).pooler_output.numpy(), atol=1e-6)


def test_cls_pooler_without_pretrained_pooler_is_an_error(tiny_bert, tmp_path):
    from transformers import BertModel

    folder = _copy(tiny_bert, tmp_path / "nopool")
    BertModel.from_pretrained(str(tiny_bert), add_pooling_layer=False).save_pretrained(folder)
    assert "pooler.dense.weight" not in load_file(str(folder / "model.safetensors"))
    with pytest.raises(EmbtuneError, match="no pretrained pooler.*cls_before_pooler"):
        load_encoder(str(folder), pooler="cls")
    load_encoder(str(folder), pooler="cls_before_pooler")  # the suggested alternative works


def test_training_with_cls_still_starts_a_new_mlp(tiny_bert):
    # SimCSE's training adds a new MLP over [CLS] (initialised like BERT's layers, from the seeded RNG)
    torch.manual_seed(0)
    a = TransformerEncoder.load(tiny_bert, pooler="cls", mlp_init="new")
    torch.manual_seed(0)
    b = TransformerEncoder.load(tiny_bert, pooler="cls", mlp_init="new")
    saved = load_file(str(tiny_bert / "model.safetensors"))
    assert torch.equal(a.mlp.linear.weight, b.mlp.linear.weight)
    assert not torch.equal(a.mlp.linear.weight, saved["pooler.dense.weight"])


def test_a_corrupt_builtin_model_zip_names_the_file(tmp_path, monkeypatch):
    from embtune.encoders import hub

    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "model.zip").write_bytes(b"PK\x03\x04 truncated")
    monkeypatch.setattr(hub, "_package_dir", lambda module: pkg)
    with pytest.raises(EmbtuneError, match="corrupt or truncated zip") as e:
        hub.resolve_model_path("minilm-l6")
    assert str(pkg / "model.zip") in str(e.value)


@pytest.mark.parametrize("name, content, message", [
    ("modules.json", b"[", r"modules\.json: not valid UTF-8 JSON"),
    ("modules.json", b'{"a": 1}', r"modules\.json: expected a JSON list, got dict"),
    ("modules.json", b"[1]", r"modules\.json: expected a list of modules, each an object with a 'type'"),
    ("1_Pooling/config.json", b"garbage", r"1_Pooling/config\.json: not valid UTF-8 JSON"),
    ("embtune.json", b"[1]", r"embtune\.json: expected a JSON object, got list"),
    ("embtune.json", b"\xff\xfe", r"embtune\.json: not valid UTF-8 JSON"),
])
def test_damaged_json_in_a_model_folder_names_the_file(tiny_st, tmp_path, name, content, message):
    folder = _copy(tiny_st, tmp_path / "m")
    (folder / name).write_bytes(content)  # were JSONDecodeError / AttributeError / UnicodeDecodeError tracebacks
    with pytest.raises(EmbtuneError, match=message):
        load_encoder(str(folder))
