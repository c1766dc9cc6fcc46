"""Atomic writes: complete or untouched, never partial, with the usual file permissions."""

import os

import pytest

from shunted.fileio import atomic_path, write_json_atomic, write_text_atomic


def test_replaces_only_on_success(tmp_path):
    dst = tmp_path / "out.txt"
    dst.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(dst) as tmp:
        tmp.write_text("half-written")
        raise RuntimeError("crash mid-write")
    assert dst.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]  # no temporary file left behind
    write_text_atomic(dst, "new")
    assert dst.read_text() == "new"


def test_permissions_follow_umask(tmp_path):
    old = os.umask(0o022)
    try:
        write_json_atomic(tmp_path / "sub" / "r.json", {"a": 1})
    finally:
        os.umask(old)
    assert (tmp_path / "sub" / "r.json").stat().st_mode & 0o777 == 0o644
