"""Every text input goes through one opener (shunted/fileio.py ``open_input``): a named pipe or a device given as a
label list, class names, a config, a palette's names or a segmentation list is refused at once in one line that
says what it is (issue 20 #2, #3, #19), and text read whole is bounded.

Before the opener, a FIFO blocked ``open`` forever and ``/dev/zero`` was read until memory ran out; each case runs
under an alarm so that such a regression fails instead of hanging the suite.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from contextlib import contextmanager

import pytest

from shunted import fileio
from shunted.config import read_yaml_mapping
from shunted.data.classnames import read_names_file
from shunted.data.datasets import list_samples
from shunted.data.seg_datasets import list_seg_samples
from shunted.engine.seg.palette import read_class_names
from shunted.errors import ShuntedError


@contextmanager
def alarm(seconds: int = 5):
    def ring(signum, frame):
        raise TimeoutError("the reader blocked or read without end")

    old = signal.signal(signal.SIGALRM, ring)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


READERS = {
    "--labels (eval)": lambda p, root: list_samples(root, labels=p, num_classes=2),
    "--class-names (eval)": lambda p, root: read_names_file(p),
    "-c YAML": lambda p, root: read_yaml_mapping(p),
    "--class-names (seg)": lambda p, root: read_class_names(p, 2),
    "seg list": lambda p, root: list_seg_samples(root, p),
}


@pytest.fixture
def fifo(tmp_path):
    path = tmp_path / "b.txt"
    os.mkfifo(path)
    return path


@pytest.mark.parametrize("reader", READERS)
def test_a_fifo_is_refused_at_once_by_what_it_is(reader, fifo, tmp_path):
    with alarm(), pytest.raises(ShuntedError) as err:
        READERS[reader](fifo, tmp_path)
    message = str(err.value)
    assert str(fifo) in message and "named pipe (FIFO), not a regular file" in message
    assert "no such" not in message


@pytest.mark.parametrize("reader", READERS)
def test_dev_zero_is_refused_not_read_until_memory_runs_out(reader, tmp_path):
    with alarm(), pytest.raises(ShuntedError, match="/dev/zero: is a character device, not a regular file"):
        READERS[reader]("/dev/zero", tmp_path)


def test_text_inputs_are_bounded_by_kind(tmp_path, monkeypatch):
    big = tmp_path / "names.txt"
    big.write_bytes(b"cat\n" * 1000)
    monkeypatch.setitem(fileio.TEXT_LIMITS, "names", (1000, "a class-name list"))
    with pytest.raises(
        ShuntedError, match=r"names.txt: 4 kB, more than a class-name list may hold \(1000 bytes\)"
    ):
        read_names_file(big)
    big.write_bytes(b"cat\n" * 250)  # exactly the limit
    assert read_names_file(big) == ["cat"] * 250


def test_the_opener_reads_regular_files_and_names_the_flag(tmp_path):
    good = tmp_path / "a.yaml"
    good.write_text("Global:\n  seed: 3\n")
    assert fileio.read_input_text(good, "config") == "Global:\n  seed: 3\n"
    with pytest.raises(ShuntedError, match=f"^--list {tmp_path}: is a folder; give a file$"):
        fileio.open_input(tmp_path, "--list")
    with pytest.raises(FileNotFoundError):  # missing files keep the OSError that cli.py names
        fileio.open_input(tmp_path / "nope.txt")


def test_weights_reuse_the_same_refusal(fifo):
    from shunted.convert.reader import check_readable

    with pytest.raises(
        ShuntedError, match="named pipe \\(FIFO\\), not a regular file; give a checkpoint file"
    ):
        check_readable(fifo)


def test_an_image_past_pillows_pixel_limit_is_one_line_not_a_warning(tmp_path):
    """12000 x 12000 (144 MP) is between Pillow's limit and twice it, where Pillow only warns and decodes
    gigabytes (issue 20 #20); a header is enough to trigger its check."""
    from shunted.data.transforms import load_rgb
    from shunted.errors import DataError

    big = tmp_path / "big.ppm"
    big.write_bytes(b"P5\n12000 12000\n255\n" + bytes(64))
    with pytest.raises(
        DataError, match=r"big.ppm: cannot read image \(Image size \(144000000 pixels\) exceeds"
    ):
        load_rgb(big)
    # pytest filters warnings its own way: the package's filter is seen in a process of its own
    code = (
        f"from shunted.data.transforms import load_rgb\ntry: load_rgb({str(big)!r})\nexcept Exception: pass"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "Warning" not in proc.stderr, proc.stderr
