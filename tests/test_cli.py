"""The command line end to end on the tiny model."""

from __future__ import annotations

import json

import numpy as np
import pytest

from embtune.cli import build_parser, main
from tests.conftest import SENTENCES


@pytest.fixture
def unsup_file(tmp_path):
    p = tmp_path / "u.txt"
    p.write_text("\n".join(SENTENCES) + "\n", encoding="utf-8")
    return p


def test_train_save_encode_and_sentence_transformers_agree(tiny_bert, unsup_file, tmp_path, capsys):
    from sentence_transformers import SentenceTransformer

    out = tmp_path / "model"
    rc = main(["train", "--model", str(tiny_bert), "--train-file", str(unsup_file), "--output", str(out),
               "--batch-size", "4", "--max-steps", "3", "--no-progress"])
    assert rc == 0
    sents = tmp_path / "s.txt"
    sents.write_text("\n".join(SENTENCES[:5]) + "\n", encoding="utf-8")
    assert main(["encode", str(out), "--input", str(sents), "--output", str(tmp_path / "e.npy")]) == 0
    ours = np.load(tmp_path / "e.npy")
    assert ours.dtype == np.float32 and ours.shape == (5, 32)
    st = SentenceTransformer(str(out), device="cpu").encode(SENTENCES[:5], convert_to_numpy=True)
    cos = (ours * st).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(st, axis=1)
    assert cos.min() >= 0.9999


def test_yaml_config_and_flag_override(tiny_bert, unsup_file, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"model: {tiny_bert}\ntrain-file: {unsup_file}\nbatch_size: 4\nmax_steps: 2\ntemperature: 0.1\n"
                   f"output: {tmp_path / 'from-yaml'}\n", encoding="utf-8")
    assert main(["train", "--config", str(cfg), "--max-steps", "3", "--output", str(tmp_path / "o"), "--no-progress"]) == 0
    resolved = json.loads((tmp_path / "o" / "train_config.json").read_text())
    assert resolved["max_steps"] == 3 and resolved["temperature"] == 0.1 and resolved["batch_size"] == 4
    metrics = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert metrics["steps"] == 3


def test_bad_yaml_key_names_line(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("batch_size: 4\nbatch_sise: 8\n", encoding="utf-8")
    assert main(["train", "--config", str(cfg)]) == 2
    assert "c.yaml:2: unknown option 'batch_sise'" in capsys.readouterr().err


def test_bad_inputs_exit_with_clear_errors(tiny_bert, tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b,c\nd,e\n", encoding="utf-8")
    assert main(["train", "--model", str(tiny_bert), "--objective", "sup-simcse", "--train-file", str(bad),
                 "--output", str(tmp_path / "o")]) == 2
    assert "bad.csv:2: expected 3 columns" in capsys.readouterr().err
    assert main(["train", "--model", str(tmp_path / "nope"), "--train-file", str(bad), "--objective", "sup-simcse"]) == 2
    err = capsys.readouterr().err
    assert "bad.csv:2" in err or "does not exist" in err
    assert main(["eval", str(tmp_path / "missing"), "--tasks", "stsb"]) == 2
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--objective", "nope"])


def test_eval_writes_results_and_report(tiny_bert, tmp_path, capsys):
    assert main(["eval", str(tiny_bert), "--tasks", "stsb,sts13", "--output", str(tmp_path / "r1")]) == 0
    res = json.loads((tmp_path / "r1" / "results.json").read_text())
    assert set(res["tasks"]) == {"stsb", "sts13"} and res["tasks"]["stsb"]["pairs"] == 1379
    assert -100 <= res["avg"] <= 100
    md = (tmp_path / "r1" / "results.md").read_text()
    assert md.index("STS13") < md.index("STS-B")  # the paper's column order
    assert main(["report", str(tmp_path / "r1"), str(tmp_path / "r1"), "--delta"]) == 0
    assert "| change | +0.00 | +0.00 | +0.00 |" in capsys.readouterr().out


def test_eval_align_uniform_and_retrieval(tiny_bert, tmp_path, capsys):
    assert main(["eval", str(tiny_bert), "--tasks", "align_uniform,stsb-retrieval", "--output", str(tmp_path / "r")]) == 0
    res = json.loads((tmp_path / "r" / "results.json").read_text())
    au = res["align_uniform"]
    assert 0 <= au["alignment"] <= 4 and au["uniformity"] <= 0
    m = res["retrieval"]["stsb-retrieval"]["metrics"]
    assert set(m) == {"recall@1", "recall@5", "recall@10", "mrr@10", "map", "map@100", "map@1000", "ndcg@10"}
    assert m["recall@1"] <= m["recall@5"] <= m["recall@10"]
    assert "alignment" in (tmp_path / "r" / "results.md").read_text()
    assert main(["eval", str(tiny_bert), "--tasks", "stsb,nope"]) == 2
    assert "unknown task 'nope'" in capsys.readouterr().err


def test_seeds_train_eval_and_report_mean_std(tiny_bert, unsup_file, tmp_path, capsys):
    out = tmp_path / "seeds"
    assert main(["train", "--model", str(tiny_bert), "--train-file", str(unsup_file), "--output", str(out),
                 "--batch-size", "4", "--max-steps", "2", "--seeds", "1,2", "--final-eval", "stsb,sickr",
                 "--no-progress"]) == 0
    text = capsys.readouterr().out
    a = json.loads((out / "seed-1" / "results.json").read_text())
    b = json.loads((out / "seed-2" / "results.json").read_text())
    assert a["tasks"]["stsb"]["spearman"] != b["tasks"]["stsb"]["spearman"]
    vals = [a["tasks"]["stsb"]["spearman"], b["tasks"]["stsb"]["spearman"]]
    mean, std = np.mean(vals), np.std(vals, ddof=1)
    assert f"{mean:.2f} ± {std:.2f}" in text
    assert "mean ± std (2 runs)" in text


def test_an_os_error_is_a_message_not_a_traceback(tiny_bert, tmp_path, capsys, monkeypatch):
    import embtune.cli as cli

    def no_space(args):
        raise OSError(28, "No space left on device", str(tmp_path / "x.npy"))

    monkeypatch.setattr(cli, "cmd_encode", no_space)
    assert main(["encode", str(tiny_bert), "--input", "a.txt", "--output", "x.npy"]) == 1
    err = capsys.readouterr().err
    assert "x.npy: No space left on device" in err and "Traceback" not in err


def test_eval_task_flag_repeats_and_yaml_takes_a_list(tiny_bert, tmp_path, capsys):
    pairs = tmp_path / "p.tsv"
    pairs.write_text("".join(f"{SENTENCES[i]}\t{SENTENCES[(i + 1) % 12]}\t{i % 2}\n" for i in range(12)), encoding="utf-8")
    train_pairs = tmp_path / "t.tsv"
    train_pairs.write_text("".join(f"{SENTENCES[i]}\t{SENTENCES[(i + 3) % 12]}\n" for i in range(12)), encoding="utf-8")
    base = ["train", "--model", str(tiny_bert), "--objective", "sup-simcse", "--train-file", str(train_pairs),
            "--batch-size", "4", "--max-steps", "2", "--no-progress"]
    assert main([*base, "--eval-task", f"binary:{pairs}", "--eval-task", f"s=scored:{pairs}",
                 "--metric-for-best", "s/spearman", "--output", str(tmp_path / "o")]) == 0
    m = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert m["eval_tasks"] == ["binary:p", "s"] and m["best_metric"] == "s/spearman"
    assert [e["step"] for e in m["evaluations"]] == [0, 2]  # without --eval-steps: the start and the end
    assert json.loads((tmp_path / "o" / "train_config.json").read_text())["eval_task"] == f"binary:{pairs},s=scored:{pairs}"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"eval_task:\n  - binary:{pairs}\nmetric_for_best: binary:p/f1\n", encoding="utf-8")
    assert main([*base, "--config", str(cfg), "--output", str(tmp_path / "y")]) == 0
    assert json.loads((tmp_path / "y" / "metrics.json").read_text())["best_metric"] == "binary:p/f1"
    assert main([*base, "--metric-for-best", "binary:p/ndcg@10", "--eval-task", f"binary:{pairs}",
                 "--output", str(tmp_path / "z")]) == 2
    assert "--metric-for-best 'binary:p/ndcg@10': no eval task produces it" in capsys.readouterr().err
    assert main([*base, "--dev-fraction", "0.7", "--output", str(tmp_path / "w")]) == 2
    assert "--dev-fraction: expected a value in (0, 0.5], got 0.7" in capsys.readouterr().err


def test_encode_with_the_int8_onnx_backend(tiny_bert, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    sents = tmp_path / "s.txt"
    sents.write_text("\n".join(SENTENCES[:5]) + "\n", encoding="utf-8")
    for backend in ("torch", "onnx-int8"):
        assert main(["encode", str(tiny_bert), "--input", str(sents), "--output", str(tmp_path / f"{backend}.npy"),
                     "--backend", backend]) == 0
    ref, got = np.load(tmp_path / "torch.npy"), np.load(tmp_path / "onnx-int8.npy")
    assert got.shape == ref.shape and got.dtype == np.float32
    cos = (ref * got).sum(1) / np.linalg.norm(ref, axis=1) / np.linalg.norm(got, axis=1)
    assert cos.min() > 0.99 and np.abs(got - ref).max() > 1e-4
    capsys.readouterr()
    assert main(["encode", str(tiny_bert), "--input", str(sents), "--output", str(tmp_path / "x.npy"),
                 "--backend", "onnx-int8", "--precision", "bf16"]) == 2
    err = capsys.readouterr().err
    assert "--backend onnx-int8" in err and "--precision bf16" in err
    assert not (tmp_path / "x.npy").exists()


def test_an_output_path_in_the_way_fails_before_any_work(tmp_path, capsys):
    a_file = tmp_path / "f.txt"
    a_file.write_text("a man is playing the guitar .\n", encoding="utf-8")
    # the model does not exist: each command names --output before it would load it (eval used to run the whole
    # evaluation and then fail with "File exists")
    for argv, where in [
        (["eval", "no-such-model", "--tasks", "stsb", "--output", str(a_file)], a_file),
        (["encode", "no-such-model", "--input", str(a_file), "--output", str(a_file / "e.npy")], a_file / "e.npy"),
        (["index", "no-such-model", "--corpus", str(a_file), "--output", str(a_file / "ix")], a_file / "ix"),
        (["train", "--model", "no-such-model", "--output", str(a_file / "run")], a_file / "run"),
        (["mine", "no-such-model", "--corpus", str(a_file), "--neighbours", "1", "--output", str(a_file / "r.csv")],
         a_file / "r.csv"),
    ]:
        assert main(argv) == 2
        assert f"--output {where}: {a_file} is a file; expected a folder" in capsys.readouterr().err
    assert main(["word-vectors", "no-such-model", "--words", str(a_file), "--output", str(tmp_path)]) == 2
    assert f"--output {tmp_path}: is a folder; expected a file name" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["serve", "m", "--corpus", "c.txt", "--port", "70000"], "argument --port: expected a port number from 0 to 65535"),
    (["serve", "m", "--corpus", "c.txt", "--port", "-5"], "argument --port: expected a port number from 0 to 65535"),
])
def test_flag_values_out_of_range_name_the_flag(argv, message, capsys):
    with pytest.raises(SystemExit):  # the port was an OverflowError traceback from bind()
        main(argv)
    assert message in capsys.readouterr().err


def test_an_unknown_final_eval_task_names_the_flag_before_training(tiny_bert, unsup_file, tmp_path, capsys):
    out = tmp_path / "o"
    rc = main(["train", "--model", str(tiny_bert), "--train-file", str(unsup_file), "--output", str(out),
               "--max-steps", "1", "--batch-size", "4", "--final-eval", "nosuch", "--no-progress"])
    assert rc == 2
    assert "--final-eval: unknown task 'nosuch'" in capsys.readouterr().err
    assert not (out / "model.safetensors").exists()  # nothing was trained


@pytest.mark.parametrize("argv, message", [
    (["eval", "m", "--pooler", "bogus"], "argument --pooler: invalid choice: 'bogus'"),
    (["eval", "m", "--split", "bogus"], "argument --split: invalid choice: 'bogus'"),
])
def test_eval_flags_name_themselves(argv, message, capsys):
    with pytest.raises(SystemExit):
        main(argv)
    assert message in capsys.readouterr().err
    args = build_parser().parse_args(["eval", "m", "--pooler", "mean", "--split", "train"])  # control: valid values parse
    assert (args.pooler, args.split) == ("mean", "train")


def test_a_split_a_task_lacks_is_an_error_naming_the_flag(tiny_bert, capsys):
    assert main(["eval", str(tiny_bert), "--tasks", "lcqmc", "--split", "train"]) == 2
    assert "--split train: lcqmc has the split(s) dev, test here" in capsys.readouterr().err
    assert main(["eval", str(tiny_bert), "--tasks", "stsb-retrieval", "--split", "dev"]) == 2
    assert "--split dev: stsb-retrieval is built from STS-B's test split only" in capsys.readouterr().err
