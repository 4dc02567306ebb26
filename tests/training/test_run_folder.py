"""The run folder belongs to one run; resume trusts only what it must; no batch, no hang; clipping;
an atomic final save (issue 12 §1, §4, §5 and the training-loop defects)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from embtune.cli import main
from embtune.config import make_config
from embtune.encoders.transformer import TransformerEncoder
from embtune.errors import EmbtuneError
from embtune.training import train
from embtune.training import checkpoint as ckpt
from tests.conftest import SENTENCES


@pytest.fixture
def unsup_file(tmp_path):
    p = tmp_path / "u.txt"
    p.write_text("\n".join(SENTENCES) + "\n", encoding="utf-8")
    return p


def base(tiny_bert, train_file, out, **kw):
    d = dict(model=str(tiny_bert), train_file=str(train_file), output=str(out), batch_size=4, max_steps=2,
             max_seq_length=16, seed=3)
    d.update(kw)
    return make_config(**d)


def test_no_batch_can_be_formed_is_an_error_not_a_hang(tiny_bert, tmp_path):
    rows = [f"{s},{s[:-2]} too .,the same placeholder" for s in SENTENCES]  # every row shares its hard negative
    f = tmp_path / "s.csv"
    f.write_text("\n".join(rows) + "\n", encoding="utf-8")
    for max_steps in (5, None):
        cfg = base(tiny_bert, f, tmp_path / f"o{max_steps}", objective="sup-simcse", max_steps=max_steps)
        with pytest.raises(EmbtuneError, match=r"no batch can be formed: 12 examples with 25 distinct text"):
            train(cfg, progress=False)


def test_a_non_empty_output_folder_is_refused_and_overwrite_clears_it(tiny_bert, unsup_file, tmp_path):
    out = tmp_path / "o"
    train(base(tiny_bert, unsup_file, out, save_steps=1), progress=False)
    assert ckpt.list_checkpoints(out)
    with pytest.raises(EmbtuneError, match="the folder is not empty"):
        train(base(tiny_bert, unsup_file, out), progress=False)
    (out / "onnx").mkdir(exist_ok=True)
    (out / "onnx" / "model.onnx").write_bytes(b"stale export")
    train(base(tiny_bert, unsup_file, out, max_steps=1), progress=False, overwrite=True)
    assert not ckpt.list_checkpoints(out) and not (out / "onnx").exists()  # nothing of the old run is left
    assert json.loads((out / "metrics.json").read_text())["steps"] == 1


def test_overwrite_clears_nothing_when_the_new_run_fails_on_its_input(tiny_bert, unsup_file, tmp_path):
    out = tmp_path / "o"
    train(base(tiny_bert, unsup_file, out), progress=False)
    before = sorted(p.name for p in out.iterdir())
    bad_eval = tmp_path / "bad.tsv"
    bad_eval.write_text("sent0\tsent1\tscore\na\tb\tnot-a-number\n", encoding="utf-8")
    for kw, message in ((dict(eval_task=f"scored:{bad_eval}"), "bad.tsv"),
                        (dict(student_layers="0,9"), "--student-layers")):
        with pytest.raises(EmbtuneError, match=message):
            train(base(tiny_bert, unsup_file, out, **kw), progress=False, overwrite=True)
        assert sorted(p.name for p in out.iterdir()) == before  # the earlier run is intact
    train(base(tiny_bert, unsup_file, out, max_steps=1), progress=False, overwrite=True)  # control: a good run clears
    assert json.loads((out / "metrics.json").read_text())["steps"] == 1


def test_resume_continues_in_the_folder_given_and_trusts_no_code_from_it(tiny_bert, unsup_file, tmp_path, capsys):
    first = tmp_path / "first"
    common = ["--model", str(tiny_bert), "--train-file", str(unsup_file), "--batch-size", "4", "--seed", "3",
              "--max-seq-length", "16", "--no-progress"]
    assert main(["train", *common, "--max-steps", "2", "--save-steps", "1", "--output", str(first)]) == 0
    copy = tmp_path / "copy"
    shutil.copytree(first, copy)
    saved = json.loads((copy / "train_config.json").read_text())
    saved["trust_remote_code"] = True  # a hostile run folder
    (copy / "train_config.json").write_text(json.dumps(saved))
    before = load_file(str(first / "model.safetensors"))
    seen = {}
    real_load = TransformerEncoder.load

    def spy(*a, **k):
        seen["trust_remote_code"] = k.get("trust_remote_code")
        return real_load(*a, **k)

    import embtune.encoders.transformer as t
    t.TransformerEncoder.load = spy
    try:
        assert main(["train", "--resume", str(copy), "--max-steps", "3", "--no-progress"]) == 0
    finally:
        t.TransformerEncoder.load = real_load
    assert seen["trust_remote_code"] is False
    assert json.loads((copy / "metrics.json").read_text())["steps"] == 3  # --max-steps may change
    after = load_file(str(first / "model.safetensors"))
    assert all(torch.equal(before[k], after[k]) for k in before)  # the original folder is untouched
    assert json.loads((copy / "train_config.json").read_text())["output"] == str(copy)
    capsys.readouterr()
    assert main(["train", "--resume", str(copy), "--lr", "0.1", "--no-progress"]) == 2
    assert "--lr 0.1: cannot change on --resume" in capsys.readouterr().err
    assert main(["train", "--resume", str(copy), "--output", str(tmp_path / "x"), "--no-progress"]) == 2
    assert "continues in its own folder" in capsys.readouterr().err


def test_gradient_clipping_bounds_the_update(tiny_bert, unsup_file, tmp_path):
    # with AdamW's epsilon large the first update is ~ lr * g, so clipping g shows in the weights
    start = TransformerEncoder.load(tiny_bert, pooler="mean").state_dict()
    moved = {}
    for norm in (0.0, 1e-6):
        out = tmp_path / f"clip{norm}"
        train(base(tiny_bert, unsup_file, out, max_steps=1, lr=1.0, adam_epsilon=1.0, pooler="mean",
                   max_grad_norm=norm), progress=False)
        w = load_file(str(out / "model.safetensors"))
        moved[norm] = max(float((w[k] - start[f"backbone.{k}"]).abs().max()) for k in w if f"backbone.{k}" in start)
        assert json.loads((out / "train_config.json").read_text())["max_grad_norm"] == norm
    assert moved[1e-6] < 1e-5 < moved[0.0]


def test_a_failed_final_save_leaves_no_half_model(tiny_bert, unsup_file, tmp_path, monkeypatch):
    out = tmp_path / "o"
    real = TransformerEncoder.save

    def disk_full(self, path, extra=None):
        real(self, path, extra)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(TransformerEncoder, "save", disk_full)
    with pytest.raises(EmbtuneError, match="could not save the final model.*No space left.*--resume"):
        train(base(tiny_bert, unsup_file, out, save_steps=1), progress=False)
    assert not (out / "model.safetensors").exists() and not (out / "modules.json").exists()
    assert not any(p.name.startswith(".tmp-final") for p in out.iterdir())
    assert ckpt.list_checkpoints(out)


def test_cli_refuses_empty_or_repeated_lists_and_odd_outputs(tiny_bert, unsup_file, tmp_path, capsys):
    common = ["train", "--model", str(tiny_bert), "--train-file", str(unsup_file), "--output", str(tmp_path / "s")]
    assert main([*common, "--seeds", "1,1"]) == 2
    assert "--seeds: seed(s) 1 given twice" in capsys.readouterr().err
    assert main([*common, "--seeds", ","]) == 2
    assert "--seeds: expected at least one seed" in capsys.readouterr().err
    assert main(["eval", str(tiny_bert), "--tasks", ","]) == 2
    assert "--tasks: expected at least one task" in capsys.readouterr().err
    sents = tmp_path / "in.txt"
    sents.write_text("a man .\n", encoding="utf-8")
    assert main(["encode", str(tiny_bert), "--input", str(sents), "--output", str(tmp_path / "x.txt")]) == 2
    assert "expected a .npy file name" in capsys.readouterr().err
    assert not (tmp_path / "x.txt.npy").exists()


def test_overwrite_never_clears_the_working_folder_or_an_input(tiny_bert, unsup_file, tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    (work / "notes.txt").write_text("keep me", encoding="utf-8")
    monkeypatch.chdir(work)
    for out in (".", str(tmp_path)):  # the working folder and a folder above it
        with pytest.raises(EmbtuneError, match="--overwrite would clear the working folder"):
            train(base(tiny_bert, unsup_file, out), progress=False, overwrite=True)
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(unsup_file, data / "u.txt")
    with pytest.raises(EmbtuneError, match=r"--overwrite would clear .*u\.txt, an input of this run"):
        train(base(tiny_bert, data / "u.txt", data), progress=False, overwrite=True)
    assert (work / "notes.txt").read_text() == "keep me" and (data / "u.txt").is_file()
    out = tmp_path / "run"  # control: a run folder of its own is cleared
    (out / "old").mkdir(parents=True)
    train(base(tiny_bert, unsup_file, out, max_steps=1), progress=False, overwrite=True)
    assert not (out / "old").exists()
