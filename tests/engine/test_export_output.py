"""``export --output``: never deletes or mixes with the user's files; a previous export is swapped atomically.

The destination must be new, empty or a previous export (shunted/engine/export.py ``check_export_output``);
anything else is refused with one line before any work. Fast tests drive the command up to the refusal and the
swap (``_install``) on stand-in folders; the slow test replaces a real export with another.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
from pathlib import Path

import pytest
from exporters import needs_onnx_exporter
from mounts import tmpfs_factory

import shunted.engine.export as export
from shunted.cli import main
from shunted.engine.export import META_FILE, ExportError, check_export_output
from shunted.errors import ShuntedError
from shunted.fileio import OutputError

ASSETS = Path(export.__file__).resolve().parents[1] / "assets" / "cifar10-demo"
EXPORT = ["export", "--model", "shunted_t", "--format", "paddle", "--img-size", "64", "--output"]


def run_cli(argv, capsys) -> tuple[int, list[str]]:
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr().err.strip().splitlines()


def tree(folder) -> dict[str, str]:
    """Every file under ``folder`` (relative path → content): what must survive untouched."""
    return {str(p.relative_to(folder)): p.read_text() for p in sorted(folder.rglob("*")) if p.is_file()}


def user_project(tmp_path):
    project = tmp_path / "myproject"
    (project / "src").mkdir(parents=True)
    (project / "thesis.tex").write_text("x")
    (project / "src" / "main.py").write_text("y")
    return project


def fake_export(folder, fmt="onnx", files=("model.onnx",), content="old", listed=True):
    """A folder as an export writes it: export.json (listing its files, as exports do now) + the model files."""
    folder.mkdir(parents=True, exist_ok=True)
    meta = {"model": "shunted_t", "format": fmt, "img_size": 64}
    if listed:
        meta["files"] = sorted([META_FILE, *files])
    (folder / META_FILE).write_text(json.dumps(meta))
    for name in files:
        (folder / name).write_text(content)
    return folder


def test_a_folder_of_user_files_is_refused_before_any_work(tmp_path, capsys):
    """The issue's reproduction (without --weights: on the old code it exported and deleted the files)."""
    project = user_project(tmp_path)
    before = tree(project)
    code, lines = run_cli(EXPORT + [str(project)], capsys)
    assert code == 2 and len(lines) == 1, lines
    assert lines[0].startswith(f"shunted export: error: --output {project}: holds files that are not")
    assert "src" in lines[0] and "thesis.tex" in lines[0]
    assert tree(project) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["myproject"]  # no temporary folder either


@pytest.mark.parametrize("given", [".", "..", "./"])
def test_the_current_folder_or_its_parent_is_refused(given, tmp_path, monkeypatch, capsys):
    project = user_project(tmp_path)
    monkeypatch.chdir(project / "src")
    before = tree(tmp_path)
    code, lines = run_cli(EXPORT + [given], capsys)
    assert code == 2 and len(lines) == 1, lines
    assert f"--output {Path(given)}: is the current folder or one of its parents" in lines[0]
    assert tree(tmp_path) == before


def test_a_previous_export_with_a_user_file_added_is_refused(tmp_path, capsys):
    out = fake_export(tmp_path / "exp")
    (out / "notes.txt").write_text("mine")
    before = tree(out)
    code, lines = run_cli(EXPORT + [str(out)], capsys)
    assert code == 2 and len(lines) == 1 and "(notes.txt)" in lines[0], lines
    assert tree(out) == before


@pytest.mark.parametrize("kind", ["new", "empty", "previous", "previous-unlisted", "symlink"])
def test_accepted_destinations(kind, tmp_path):
    out = tmp_path / "exp"
    if kind == "empty":
        out.mkdir()
    elif kind.startswith("previous"):
        fake_export(out, fmt="paddle", files=("model.json", "model.pdiparams"), listed=kind == "previous")
    elif kind == "symlink":
        fake_export(tmp_path / "v1")
        out.symlink_to(tmp_path / "v1")
    real = check_export_output(out)
    assert real == (tmp_path / "v1" if kind == "symlink" else out).resolve()


def test_a_file_or_an_unwritable_place_is_refused(tmp_path):
    (tmp_path / "afile").write_text("keep")
    with pytest.raises(ExportError, match="exists and is not a folder"):
        check_export_output(tmp_path / "afile")
    with pytest.raises(ShuntedError, match="afile is a file, not a folder"):
        check_export_output(tmp_path / "afile" / "exp")
    assert (tmp_path / "afile").read_text() == "keep"


def build(tmp_path, files=("model.json", "model.pdiparams"), content="new"):
    """A finished export in its sibling temporary folder, as export_model leaves it before the swap."""
    return fake_export(tmp_path / ".exp.abc.tmp", fmt="paddle", files=files, content=content)


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2", "two-renames"])
def test_a_previous_export_is_replaced_and_its_files_removed(exchange, tmp_path, monkeypatch):
    if not exchange:
        monkeypatch.setattr(export, "_exchange", lambda a, b: False)
    out = fake_export(tmp_path / "exp")
    inode = os.stat(out).st_ino
    new = build(tmp_path)
    export._install(new, out.resolve(), str(out))
    assert tree(out) == {
        META_FILE: (out / META_FILE).read_text(),
        "model.json": "new",
        "model.pdiparams": "new",
    }
    assert json.loads((out / META_FILE).read_text())["format"] == "paddle"
    assert os.stat(out).st_ino != inode  # a new folder took the place: no file-by-file overwrite
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exp"]  # nothing left beside it


def test_the_swap_checks_the_folder_again(tmp_path):
    """A file the user put into the previous export while the export ran is not deleted."""
    out = fake_export(tmp_path / "exp")
    check_export_output(out)
    (out / "added-meanwhile.txt").write_text("mine")
    new = build(tmp_path)
    with pytest.raises(ExportError, match="added-meanwhile.txt"):
        export._install(new, out.resolve(), str(out))
    assert (out / "added-meanwhile.txt").read_text() == "mine" and (out / "model.onnx").read_text() == "old"


def test_removal_of_a_previous_export_is_by_name(tmp_path, capsys):
    old = fake_export(tmp_path / ".exp.old")
    (old / "stray.txt").write_text("not ours")
    export._remove_previous_export(old)
    assert tree(old) == {"stray.txt": "not ours"}
    assert "left" in capsys.readouterr().err


def test_without_weights_it_warns_that_the_weights_are_random(tmp_path, capsys):
    code, lines = run_cli(EXPORT + [str(tmp_path / "exp"), "--check-images", str(tmp_path / "none")], capsys)
    warning = [line for line in lines if "WARNING" in line]
    assert len(warning) == 1 and "--weights" in warning[0] and "RANDOM" in warning[0]
    assert code == 2 and "no real images" in lines[-1]


@pytest.mark.slow
def test_an_export_replaces_a_previous_export(tmp_path, capsys):
    """Two real exports into one folder: the second (ONNX) replaces the first (Paddle) and nothing else."""
    needs_onnx_exporter()
    out = tmp_path / "exp"
    assert main(EXPORT + [str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == [META_FILE, "model.json", "model.pdiparams"]
    argv = EXPORT + [str(out)]
    argv[argv.index("paddle")] = "onnx"
    assert main(argv) == 0
    assert sorted(p.name for p in out.iterdir()) == [META_FILE, "model.onnx"]
    meta = json.loads((out / META_FILE).read_text())
    assert meta["format"] == "onnx" and meta["files"] == [META_FILE, "model.onnx"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exp"]
    assert "RANDOMLY INITIALISED" in capsys.readouterr().err


@pytest.fixture
def tmpfs(tmp_path):
    with tmpfs_factory(tmp_path) as make:
        yield make


def test_a_full_disk_during_the_export_names_the_output(tmpfs, model_t, monkeypatch):
    """paddle.jit.save ignores ENOSPC (it leaves a truncated model.pdiparams; the predictor then raises a
    RuntimeError): a stand-in save that fills the disk the same way must end in an error naming --output."""
    disk = tmpfs(size_kb=256)
    images = sorted((ASSETS / "cat").glob("*.jpg"))[:3]

    def save_until_full(model, out_dir, img_size):
        with contextlib.suppress(OSError), open(Path(out_dir) / "model.pdiparams", "wb") as fh:
            while True:
                fh.write(b"\0" * 4096)
                fh.flush()
        raise RuntimeError("(Unavailable) Cannot read tensor desc size")

    monkeypatch.setattr(export, "save_paddle", save_until_full)
    out = disk / "exp"
    with pytest.raises(OutputError, match=f"{out}: cannot write: no space left") as info:
        export.export_model(
            model_t, "paddle", out, 32, model_name="shunted_t", check=export.ParityCheck(images)
        )
    assert ".tmp" not in str(info.value) and info.value.errno == errno.ENOSPC
    assert list(disk.iterdir()) == []


@pytest.mark.slow
def test_a_real_export_onto_a_full_disk(tmpfs, capsys):
    disk = tmpfs(size_kb=2048)  # room for the check, not for the 45 MB of weights
    out = disk / "exp"
    code, lines = run_cli(EXPORT[:-2] + ["32", "--output", str(out)], capsys)
    assert (
        code == 2 and lines[-1] == f"shunted export: error: {out}: cannot write: no space left on the device"
    )
    assert list(disk.iterdir()) == []
