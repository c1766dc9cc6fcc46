"""shunted/runtime/cache.py: an entry is used only when whole and its own; corrupt or foreign ones are rebuilt;
writes are atomic, also with concurrent writers; the tests never touch the user's cache."""

from __future__ import annotations

import json
import multiprocessing
import os
from pathlib import Path

import pytest

from shunted.runtime import cache
from shunted.runtime.cache import ENTRY_FILE, cache_root, cached_folder, entry_problem, key_digest

KEY = {"kind": "export", "model": "m", "weights_sha256": "ab" * 32, "versions": {"x": "1"}}


def _builder(calls: list, payload: bytes = b"model bytes"):
    def build(folder: Path) -> None:
        calls.append(folder)
        (folder / "model.onnx").write_bytes(payload)
        (folder / "export.json").write_text("{}")

    return build


def test_the_test_session_never_uses_the_users_cache():
    """tests/conftest.py points XDG_CACHE_HOME at a temporary folder before anything runs."""
    assert Path(os.environ["XDG_CACHE_HOME"]).name.startswith("shunted-test-cache-")
    assert cache_root() == Path(os.environ["XDG_CACHE_HOME"]) / "shunted"
    assert Path.home() / ".cache" not in cache_root().parents


def test_cache_root_follows_xdg_and_ignores_a_relative_value(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache_root() == tmp_path / "shunted"
    for value in ("relative/dir", ""):
        monkeypatch.setenv("XDG_CACHE_HOME", value)
        assert cache_root() == Path.home() / ".cache" / "shunted"


def test_built_once_then_read(tmp_path):
    calls: list = []
    folder, found = cached_folder(KEY, _builder(calls), root=tmp_path)
    assert not found and len(calls) == 1 and folder.name == key_digest(KEY)
    assert (folder / "model.onnx").read_bytes() == b"model bytes"
    again, found = cached_folder(KEY, _builder(calls), root=tmp_path)
    assert found and again == folder and len(calls) == 1
    assert [p.name for p in (tmp_path / "exports").iterdir()] == [folder.name]  # no temporary left


@pytest.mark.parametrize(
    "damage",
    [
        "flip a byte",
        "truncate",
        "delete the model",
        "unreadable entry.json",
        "model replaced by a link",
        "malformed file record",
    ],
)
def test_a_corrupt_entry_is_rebuilt_never_used(tmp_path, damage):
    """Mutation: an entry_problem that checks only the key (not sizes and SHA-256) returns the damaged
    file, and the final assertion fails."""
    calls: list = []
    folder, _ = cached_folder(KEY, _builder(calls), root=tmp_path)
    model = folder / "model.onnx"
    if damage == "flip a byte":
        model.write_bytes(b"model bytez")  # same size
    elif damage == "truncate":
        model.write_bytes(b"model")
    elif damage == "delete the model":
        model.unlink()
    elif damage == "unreadable entry.json":
        (folder / ENTRY_FILE).write_text("{not json")
    elif damage == "malformed file record":
        meta = json.loads((folder / ENTRY_FILE).read_text())
        meta["files"]["model.onnx"] = "11 bytes"
        (folder / ENTRY_FILE).write_text(json.dumps(meta))
    else:
        model.unlink()
        (tmp_path / "elsewhere").write_bytes(b"model bytes")
        model.symlink_to(tmp_path / "elsewhere")
    assert entry_problem(folder, KEY).startswith("corrupt")
    logged: list[str] = []
    again, found = cached_folder(KEY, _builder(calls), root=tmp_path, log=logged.append)
    assert not found and len(calls) == 2 and again == folder
    assert "corrupt" in logged[0] and "rebuilding" in logged[0]
    assert not model.is_symlink() and model.read_bytes() == b"model bytes"
    assert entry_problem(folder, KEY) is None


def test_a_foreign_entry_is_rebuilt(tmp_path):
    """An entry under the right name whose entry.json records another key (a collision, a hand-made folder)."""
    calls: list = []
    folder, _ = cached_folder(KEY, _builder(calls, b"other model"), root=tmp_path)
    meta = json.loads((folder / ENTRY_FILE).read_text())
    meta["key"] = {**KEY, "weights_sha256": "cd" * 32}
    (folder / ENTRY_FILE).write_text(json.dumps(meta))
    assert entry_problem(folder, KEY).startswith("foreign")
    again, found = cached_folder(KEY, _builder(calls), root=tmp_path, log=lambda line: None)
    assert not found and (again / "model.onnx").read_bytes() == b"model bytes"


def test_a_failed_build_leaves_nothing(tmp_path):
    def build(folder: Path) -> None:
        (folder / "model.onnx").write_bytes(b"half")
        raise RuntimeError("exporter crashed")

    with pytest.raises(RuntimeError, match="exporter crashed"):
        cached_folder(KEY, build, root=tmp_path)
    assert list((tmp_path / "exports").iterdir()) == []


def _race(root: str, start, results) -> None:
    import time

    def build(folder: Path) -> None:
        (folder / "model.onnx").write_bytes(b"x" * 100_000)
        time.sleep(0.2)  # every writer is building at the same time
        (folder / "export.json").write_text("{}")

    start.wait()
    folder, found = cached_folder(KEY, build, root=Path(root))
    results.put((str(folder), found, entry_problem(folder, KEY), (folder / "model.onnx").stat().st_size))


def test_concurrent_writers_leave_one_whole_entry(tmp_path):
    """Four processes build the same entry at once: each gets a whole, valid entry at the same place; one
    folder remains, no temporary. Mutation: installing with a copy instead of one rename (a reader could see a
    half-copied folder) is what the atomic rename rules out; a writer replacing a good entry would show as a
    second builder's problem here."""
    ctx = multiprocessing.get_context("fork")
    start, results = ctx.Barrier(4), ctx.Queue()
    procs = [ctx.Process(target=_race, args=(str(tmp_path), start, results)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    got = [results.get(timeout=5) for _ in procs]
    assert all(p.exitcode == 0 for p in procs)
    assert {g[0] for g in got} == {str(tmp_path / "exports" / key_digest(KEY))}
    assert all(problem is None and size == 100_000 for _, _, problem, size in got)
    assert [p.name for p in (tmp_path / "exports").iterdir()] == [key_digest(KEY)]


def test_only_cache_folders_are_removed(tmp_path):
    """A rebuilt entry is moved aside and deleted; files beside the cache are never touched."""
    keep = tmp_path / "exports" / "not-ours.txt"
    calls: list = []
    folder, _ = cached_folder(KEY, _builder(calls), root=tmp_path)
    keep.write_text("user file")
    (folder / "model.onnx").write_bytes(b"damaged!!!!")
    cached_folder(KEY, _builder(calls), root=tmp_path, log=lambda line: None)
    assert keep.read_text() == "user file"
    assert sorted(p.name for p in (tmp_path / "exports").iterdir()) == sorted([folder.name, keep.name])
    assert cache.OPENVINO_DIR not in {p.name for p in folder.iterdir()}


def test_a_cache_key_names_paddles_version_from_the_cpu_or_the_gpu_wheel(monkeypatch):
    """The keys name Paddle's version whichever of its wheels is installed, so a new Paddle retires the entries
    of a GPU install too. Mutation: reading only ``paddlepaddle`` (as before) records None here."""
    from importlib import metadata

    from shunted.engine.session import shortcut_key

    installed = {"paddlepaddle-gpu": "9.9.9", "openvino": "1.0"}

    def version(name: str) -> str:
        if name not in installed:
            raise metadata.PackageNotFoundError(name)
        return installed[name]

    monkeypatch.setattr(metadata, "version", version)
    key = shortcut_key("shunted_t", "ab" * 32, ".pth", "paddle", 224, False)
    assert key["versions"]["paddlepaddle"] == "9.9.9" and key["versions"]["openvino"] == "1.0"
    assert key["versions"]["onnx"] is None
