"""`embtune report`: the delta row over the tasks both runs have, and unreadable results files."""

from __future__ import annotations

import json

import pytest

from embtune.errors import EmbtuneError
from embtune.evaluation.report import report_table


def _run(folder, scores: dict[str, float]):
    folder.mkdir()
    avg = sum(scores.values()) / len(scores)
    (folder / "results.json").write_text(json.dumps({"tasks": {t: {"spearman": v} for t, v in scores.items()},
                                                     "avg": avg}))
    return str(folder)


def _change_row(table: str) -> list[str]:
    row = next(ln for ln in table.splitlines() if ln.startswith("| change"))
    return [c.strip() for c in row.strip("|").split("|")]


def test_delta_is_averaged_over_the_common_tasks_only(tmp_path):
    a = _run(tmp_path / "a", {"sts12": 60.0, "stsb": 70.0})
    b = _run(tmp_path / "b", {"sts12": 61.0, "stsb": 73.0, "sickr": 90.0})  # one task more, a high one
    table = report_table([a, b], delta=True)
    cells = _change_row(table)
    # columns: name, sts12, stsb, sickr, avg — sickr has no delta, the average is over sts12 and stsb
    assert cells[1:] == ["+1.00", "+3.00", "–", "+2.00"]
    # the old arithmetic: (61+73+90)/3 - (60+70)/2 = +9.67
    assert "+9.67" not in table
    assert "over the 2 tasks both runs have" in table
    assert "sickr" in table.split("\n\n")[-1]  # the note names the task left out


def test_delta_with_no_common_task_is_an_error(tmp_path):
    a = _run(tmp_path / "a", {"sts12": 60.0})
    b = _run(tmp_path / "b", {"stsb": 70.0})
    with pytest.raises(EmbtuneError, match="no task in common"):
        report_table([a, b], delta=True)


def test_same_tasks_no_note(tmp_path):
    a = _run(tmp_path / "a", {"sts12": 60.0, "stsb": 70.0})
    b = _run(tmp_path / "b", {"sts12": 62.0, "stsb": 70.0})
    table = report_table([a, b], delta=True)
    assert _change_row(table)[1:] == ["+2.00", "+0.00", "+1.00"]
    assert "only in" not in table


@pytest.mark.parametrize("content,match", [
    ("{\"tasks\": {\"stsb\": ", "not valid JSON"),
    ("", "not valid JSON"),
    ("[1, 2]", "expected an object with 'tasks'"),
    ("{\"tasks\": {\"stsb\": {\"spearman\": \"x\"}}}", "spearman"),
])
def test_corrupt_results_json_names_the_file(tmp_path, content, match):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "results.json").write_text(content)
    with pytest.raises(EmbtuneError, match=match) as e:
        report_table([str(tmp_path / "r")])
    assert str(tmp_path / "r" / "results.json") in str(e.value)


def test_missing_results_json_names_the_file(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(EmbtuneError, match="no results.json"):
        report_table([str(tmp_path / "empty")])
    with pytest.raises(EmbtuneError, match="does not exist"):
        report_table([str(tmp_path / "nowhere")])
