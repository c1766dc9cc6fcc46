"""Atomic writes: complete or untouched, never partial, with the usual file permissions."""

import errno
import json
import os
import stat

import pytest
from mounts import tmpfs_factory

from shunted.fileio import (
    OutputError,
    atomic_path,
    check_output_dir,
    check_output_file,
    write_bytes_atomic,
    write_json_atomic,
    write_text_atomic,
)


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


@pytest.fixture
def tmpfs(tmp_path):
    with tmpfs_factory(tmp_path) as make:
        yield make


def test_a_full_disk_names_the_destination_and_leaves_it_intact(tmpfs):
    """A real 64 KiB tmpfs: the 200 kB write fails with ENOSPC midway (the pre-check passes: space is free)."""
    disk = tmpfs(size_kb=64)
    dst = disk / "logits.npy"
    dst.write_bytes(b"previous")
    check_output_file(dst)
    with pytest.raises(OutputError, match=r"logits\.npy: cannot write: no space left") as info:
        write_bytes_atomic(dst, b"x" * 200_000)
    assert info.value.errno == errno.ENOSPC and ".tmp" not in str(info.value)
    assert dst.read_bytes() == b"previous"
    assert sorted(p.name for p in disk.iterdir()) == ["logits.npy"]  # the temporary is gone


def test_a_failed_write_names_the_destination_without_a_mount(tmp_path):
    """The same as above where tmpfs cannot be mounted: write(2) fails with ENOSPC (no file name attached)."""
    dst = tmp_path / "r.json"
    with pytest.raises(OutputError, match=r"r\.json: cannot write: no space left"), atomic_path(dst) as tmp:
        tmp.write_text("partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert list(tmp_path.iterdir()) == []


def test_an_error_about_another_file_is_not_blamed_on_the_output(tmp_path):
    with pytest.raises(FileNotFoundError), atomic_path(tmp_path / "out.bin"):
        open(tmp_path / "missing-input.bin", "rb")  # noqa: SIM115
    assert list(tmp_path.iterdir()) == []


def test_read_only_file_system(tmpfs):
    disk = tmpfs(read_only=True)
    for dst in (disk / "r.json", disk / "new" / "r.json"):
        with pytest.raises(OutputError, match="Read-only file system") as info:
            check_output_file(dst)
        assert str(dst) in str(info.value) and info.value.errno == errno.EROFS
        with pytest.raises(OutputError, match=f"{dst}: cannot write: Read-only file system") as info:
            write_text_atomic(dst, "x")
        assert ".tmp" not in str(info.value)


def test_a_file_where_a_folder_is_expected(tmp_path):
    (tmp_path / "afile").write_text("keep")
    dst = tmp_path / "afile" / "sub" / "r.json"
    for call in (lambda: check_output_file(dst), lambda: write_text_atomic(dst, "x")):
        with pytest.raises(OutputError, match=f"{dst}: cannot create its folder: .*afile is a file"):
            call()
    with pytest.raises(OutputError, match="is a folder; give a file name"):
        check_output_file(tmp_path)
    (tmp_path / "adir").mkdir()
    with pytest.raises(OutputError, match=f"{tmp_path / 'adir'}: is a folder; give a file name") as info:
        write_text_atomic(tmp_path / "adir", "x")
    assert ".tmp" not in str(info.value)
    with pytest.raises(OutputError, match="exists and is not a folder"):
        check_output_dir(tmp_path / "afile")
    assert (tmp_path / "afile").read_text() == "keep"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adir", "afile"]


def test_checks_create_nothing(tmp_path):
    check_output_file(tmp_path / "a" / "b" / "r.json")
    check_output_dir(tmp_path / "run")
    check_output_dir(tmp_path / "exports" / "x", beside=True)
    assert list(tmp_path.iterdir()) == []


def test_a_symbolic_link_is_kept_and_its_target_replaced(tmp_path):
    (tmp_path / "v3.json").write_text("old")
    (tmp_path / "latest.json").symlink_to("v3.json")
    write_json_atomic(tmp_path / "latest.json", {"a": 1})
    assert (tmp_path / "latest.json").is_symlink() and json.loads((tmp_path / "v3.json").read_text()) == {
        "a": 1
    }
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest.json", "v3.json"]


def test_a_link_to_an_open_stream_is_written_in_place(tmp_path):
    """``--output /dev/stdout`` (a link to /proc/self/fd/1): the stream gets the JSON, the link stays a link
    (replacing it, as root, would replace /dev/stdout itself)."""
    stream = tmp_path / "stream.txt"
    with open(stream, "w") as fh:
        link = tmp_path / "stdout"
        link.symlink_to(f"/proc/self/fd/{fh.fileno()}")
        write_json_atomic(link, {"top1": 91.0})
        assert link.is_symlink()
    assert json.loads(stream.read_text()) == {"top1": 91.0}


def test_a_device_or_a_pipe_is_written_in_place_never_replaced(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        write_text_atomic(fifo, "through the pipe")
        assert os.read(reader, 100) == b"through the pipe"
    finally:
        os.close(reader)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    null = tmp_path / "null"
    try:
        os.mknod(null, stat.S_IFCHR | 0o666, os.makedev(1, 3))  # a /dev/null of our own (needs root)
    except PermissionError:
        return
    check_output_file(null)
    write_text_atomic(null, "discarded")
    assert stat.S_ISCHR(os.lstat(null).st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["null", "pipe"]
