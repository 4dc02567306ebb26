"""One definition per option: flags, YAML keys and the saved config derive from it; an option the
chosen objective does not take is an error (issue 12 §2)."""

from __future__ import annotations

import json

import pytest

from embtune.cli import build_parser, main
from embtune.config import GENERIC_OPTIONS, all_objective_options, make_config, resolve_config
from embtune.errors import EmbtuneError
from embtune.objectives import OBJECTIVES
from embtune.options import options_of


def test_every_option_is_a_flag_and_nothing_else_is():
    train = build_parser()._subparsers._group_actions[0].choices["train"]
    flags = {a.dest for a in train._actions if a.option_strings} - {"help"}
    command_only = {"config", "resume", "overwrite", "final_eval", "seeds", "no_progress"}
    assert flags - command_only == set(GENERIC_OPTIONS) | set(all_objective_options())


def test_a_shared_option_has_one_definition():
    temps = {cls.name: options_of(cls.Options)["temperature"] for cls in OBJECTIVES.values()
             if "temperature" in options_of(cls.Options)}
    assert len(temps) >= 3 and len(set(temps.values())) == 1


@pytest.mark.parametrize("objective, option, value, owner", [
    ("unsup-simcse", "views", 3, "multiview-am"),
    ("sup-simcse", "margin", 0.1, "multiview-am"),
    ("unsup-simcse", "hard_negative_weight", 2.0, "sup-simcse"),
    ("sup-simcse", "augment", "crop", "unsup-simcse"),
    ("sup-simcse", "negatives", "both-views", "unsup-simcse"),
    ("unsup-simcse", "teacher", "minilm-l6", "distill"),
])
def test_an_option_of_another_objective_is_an_error(objective, option, value, owner):
    with pytest.raises(EmbtuneError) as e:
        make_config(objective=objective, **{option: value})
    msg = str(e.value)
    assert f"--{option.replace('_', '-')}" in msg and owner in msg and objective in msg
    make_config(objective=owner, **{option: value}, **({"teacher": "x"} if owner == "distill" and option != "teacher" else {}))


def test_cli_and_yaml_name_the_flag_or_the_line(tmp_path, capsys):
    assert main(["train", "--objective", "unsup-simcse", "--views", "3"]) == 2
    assert "--views: is an option of multiview-am; objective 'unsup-simcse' does not use it" in capsys.readouterr().err
    cfg = tmp_path / "c.yaml"
    cfg.write_text("objective: sup-simcse\nbatch_size: 8\naugment: crop\n", encoding="utf-8")
    with pytest.raises(EmbtuneError, match=r"c.yaml:3: option 'augment': is an option of unsup-simcse"):
        resolve_config(str(cfg), {})


def test_encoder_options_apply_only_with_their_encoder():
    with pytest.raises(EmbtuneError, match="--kernel-sizes: applies only with --encoder textcnn"):
        make_config(kernel_sizes="3")
    assert make_config(encoder="textcnn", kernel_sizes="3").kernel_sizes == "3"


def test_values_are_checked_where_declared():
    for bad in (dict(warmup_steps=-1), dict(batch_size=1), dict(lr=0.0), dict(max_grad_norm=-1.0),
                dict(objective="multiview-am", views=1), dict(temperature=0.0), dict(objective="tsdae", tsdae_deletion_ratio=1.5)):
        name = next(iter(bad)) if len(bad) == 1 else list(bad)[-1]
        with pytest.raises(EmbtuneError, match=f"--{name.replace('_', '-')}: expected"):
            make_config(**bad)


def test_saved_config_holds_exactly_the_options_that_applied():
    d = make_config(objective="unsup-simcse").to_dict()
    assert "temperature" in d and "negatives" in d and "max_grad_norm" in d
    for absent in ("views", "margin", "hard_negative_weight", "teacher", "kernel_sizes", "tsdae_deletion_ratio"):
        assert absent not in d
    # the saved dict is itself a valid config (it is what --resume reads)
    assert make_config(**json.loads(json.dumps(d))).to_dict() == d
    assert make_config(objective="multiview-am", views=3).to_dict()["views"] == 3


def test_yaml_key_given_twice_names_both_lines(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("lr: 1e-3\nbatch_size: 4\nlr: 5\n", encoding="utf-8")  # safe_load would keep 5 without a word
    with pytest.raises(EmbtuneError, match=r"c\.yaml:3: option 'lr' is given twice \(first on line 1\)"):
        resolve_config(str(cfg), {})


def test_yaml_key_that_is_not_a_name_names_the_line(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("batch_size: 4\n? [a, b]\n: 1\n", encoding="utf-8")
    assert main(["train", "--config", str(cfg)]) == 2  # was a yaml ConstructorError traceback
    assert "c.yaml:2: expected an option name as the key" in capsys.readouterr().err


@pytest.mark.parametrize("flag, value", [("--seed", "-1"), ("--seed", str(2**32)), ("--lr", "inf"),
                                         ("--temperature", "inf"), ("--anchor-weight", "inf")])
def test_out_of_range_values_name_the_flag(flag, value, capsys):
    assert main(["train", flag, value]) == 2  # a seed out of NumPy's range was a ValueError traceback
    assert f"{flag}: expected" in capsys.readouterr().err


def test_yaml_seed_out_of_range_names_the_line(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("batch_size: 4\nseed: 99999999999999999999999\n", encoding="utf-8")
    with pytest.raises(EmbtuneError, match=r"c\.yaml:2: option 'seed': expected a value in \[0, 4294967295\]"):
        resolve_config(str(cfg), {})


def test_an_unknown_pooler_names_the_flag_or_the_line(tmp_path):
    with pytest.raises(EmbtuneError, match=r"--pooler: expected one of cls, cls_before_pooler, mean"):
        make_config(pooler="bogus")  # was "unknown pooler 'bogus'", naming neither, once the model had loaded
    cfg = tmp_path / "c.yaml"
    cfg.write_text("batch_size: 4\npooler: bogus\n", encoding="utf-8")
    with pytest.raises(EmbtuneError, match=r"c\.yaml:2: option 'pooler': expected one of"):
        resolve_config(str(cfg), {})


def test_int_checks_take_any_int_and_still_refuse_inf():
    from embtune.options import at_least, positive

    huge = 10**400  # too large for a float: math.isfinite would raise OverflowError
    assert at_least(1)(huge) is None and positive(huge) is None
    assert at_least(1)(3) is None and positive(0.5) is None  # control: ordinary values pass
    assert at_least(0)(float("inf")) == "a finite value >= 0" and positive(float("inf")) == "a finite value > 0"
    assert at_least(1)(0) == "a finite value >= 1" and positive(0) == "a finite value > 0"


def test_seeds_are_checked_by_the_seed_rule_before_any_run():
    from embtune.cli import parse_seeds

    assert parse_seeds("0,1,4294967295") == [0, 1, 4294967295]  # the range's ends are allowed
    for bad in ("1,-1", f"2,{2**32}"):
        with pytest.raises(EmbtuneError, match=r"--seeds: seed -?\d+: expected a value in \[0, 4294967295\]"):
            parse_seeds(bad)
