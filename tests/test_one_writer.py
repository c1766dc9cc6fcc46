"""One writer per output (issue 20 #11, #12, #16, #19, #20): an advisory lock beside each output
(shunted/fileio.py ``lock_output``), an earlier output of ours told apart from a user's file, SIGTERM as one line
and exit 143 (shunted/cli.py), and launcher processes that die with the launcher.

Before: two predict runs on one ``s.jsonl`` both exited 0 and mixed their lines; ``predict --output notes.json``
replaced a user's file; a user's log file "already holds predictions"; SIGTERM printed Paddle's C++ dump; a
``kill -9`` of the launcher's process group left its processes writing.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from shunted import fileio
from shunted.cli import main

REPO = Path(__file__).resolve().parents[1]
CKPT = REPO / "shunted" / "assets" / "demo" / "ckpt_T_cifar10_fp16.pth"
IMAGE = next((REPO / "shunted" / "assets" / "cifar10-demo" / "cat").glob("*.jpg"))
PREDICT = ["predict", "--model", "shunted_t", "--weights", str(CKPT), "--img-size", "32", str(IMAGE)]


def holder(path: Path) -> subprocess.Popen:
    """Another process holding ``path``'s output lock (until killed)."""
    code = (
        "import sys, time; from shunted import fileio; fileio.lock_output(sys.argv[1]); "
        "print('locked', flush=True); time.sleep(120)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


@pytest.fixture(autouse=True)
def _released():
    yield
    fileio.release_outputs()


def test_a_second_writer_stops_at_once_naming_the_holder(tmp_path):
    out = tmp_path / "s.jsonl"
    proc = holder(out)
    try:
        with pytest.raises(
            fileio.OutputLocked, match=rf"^--output {out}: another shunted process \(pid {proc.pid}\)"
        ):
            fileio.lock_output(out, "--output")
        # another spelling of the same output is the same output
        with pytest.raises(fileio.OutputLocked):
            fileio.lock_output(f"{tmp_path}/./sub/../s.jsonl")
    finally:
        proc.kill()
        proc.wait()
    # the kernel released the killed holder's lock; its file is taken over, then removed by its new writer
    assert fileio.lock_path(out).exists()
    fileio.lock_output(out)
    assert fileio.lock_path(out).read_text().strip() == str(os.getpid())
    fileio.release_outputs()
    assert not fileio.lock_path(out).exists()


def test_every_writing_command_takes_the_lock(tmp_path, capsys):
    """predict stops before any work when another process writes its output (the mutation: removing the
    ``lock_output`` call from commands/predict.py makes this run predict and exit 0)."""
    out = tmp_path / "s.jsonl"
    proc = holder(out)
    try:
        assert main([*PREDICT, "--output", str(out)]) == 2
    finally:
        proc.kill()
        proc.wait()
    err = capsys.readouterr().err.strip()
    assert (
        err
        == f"shunted predict: error: --output {out}: another shunted process (pid {proc.pid}) is writing it; wait for it to end or choose another output"
    )
    assert not out.exists()


def test_predict_replaces_only_its_own_outputs(tmp_path, capsys):
    notes = tmp_path / "notes.json"
    notes.write_text('{"my": "notes"}\n')
    assert main([*PREDICT, "--output", str(notes)]) == 2
    assert "notes.json: exists and is not an earlier prediction output of shunted" in capsys.readouterr().err
    assert notes.read_text() == '{"my": "notes"}\n'
    notes.unlink()
    assert main([*PREDICT, "--output", str(notes)]) == 0  # ours: written, then replaced by a second run
    assert main([*PREDICT, "--output", str(notes), "--topk", "1"]) == 0
    assert len(json.loads(notes.read_text())["predictions"][0]["top"]) == 1

    log = tmp_path / "run.jsonl"
    log.write_text('{"level": "info"}\n')
    assert main([*PREDICT, "--output", str(log)]) == 2
    err = capsys.readouterr().err
    assert "is not a prediction stream of shunted" in err and "already holds predictions" not in err
    assert log.read_text() == '{"level": "info"}\n'


def test_resume_accepts_another_spelling_of_the_same_inputs(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "imgs").mkdir()
    for i in range(3):
        (tmp_path / "imgs" / f"{i}.jpg").write_bytes(IMAGE.read_bytes())
    argv = PREDICT[:-1] + ["--output", "p.jsonl"]
    assert main([*argv, "imgs"]) == 0
    lines = (tmp_path / "p.jsonl").read_text().splitlines()
    (tmp_path / "p.jsonl").write_text("\n".join(lines[:2]) + "\n")
    capsys.readouterr()
    assert main([*argv, "--resume", str(tmp_path / "imgs")]) == 0, capsys.readouterr().err
    assert "2 already in the output; this run 1 in" in capsys.readouterr().out


SIGTERM_AFTER_PADDLE = textwrap.dedent(
    """
    import os, signal, sys, time
    from shunted import cli
    from shunted.commands import info

    def run(args):
        import paddle  # installs Paddle's own SIGTERM handler (a C++ dump, then abort)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(30)

    info.run = run
    sys.exit(cli.main(["info"]))
    """
)


def test_sigterm_is_one_line_and_exit_143_after_paddle_is_imported():
    proc = subprocess.run(
        [sys.executable, "-c", SIGTERM_AFTER_PADDLE], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 143, proc.stderr[-2000:]
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip() and "Warning" not in ln and "warn" not in ln]
    assert lines == ["shunted info: terminated (SIGTERM)"], proc.stderr[-2000:]


@pytest.mark.slow
def test_killing_the_launcher_leaves_no_writer(tmp_path):
    """``kill -9`` of the launcher's process group: its two processes (each in its own session) die with it and
    release their locks, so a new run may start at once (before: they went on writing their shards)."""
    images = tmp_path / "imgs"
    images.mkdir()
    for i in range(4000):  # minutes of work: the processes are still writing when the launcher is killed
        (images / f"{i:04}.jpg").write_bytes(IMAGE.read_bytes())
    out = tmp_path / "p.jsonl"
    cmd = [sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", "2", "--log_dir",
           str(tmp_path / "log"), str(REPO / "tools" / "launch.py"), *PREDICT[:-1], "--workers", "0",
           "--batch-size", "1", "--threads", "1", "--output", str(out), str(images)]  # fmt: skip
    launcher = subprocess.Popen(cmd, cwd=tmp_path, start_new_session=True, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)  # fmt: skip
    shards = [tmp_path / "p.rank0.jsonl", tmp_path / "p.rank1.jsonl"]
    deadline = time.monotonic() + 240
    while not all(s.exists() and s.stat().st_size for s in shards):
        assert launcher.poll() is None and time.monotonic() < deadline, "the run did not start writing"
        time.sleep(0.5)
    workers = [int(lock.read_text()) for lock in tmp_path.glob(".p.rank*.lock")]  # the writers' pids
    assert len(workers) == 2
    os.killpg(launcher.pid, signal.SIGKILL)
    launcher.wait()
    sizes = [s.stat().st_size for s in shards]
    deadline = time.monotonic() + 30
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_alive(pid) for pid in workers), "a worker outlived its launcher"
    time.sleep(2)
    assert [s.stat().st_size for s in shards] == sizes  # nobody writes any more
    for s in shards:  # and the outputs are free for a --resume
        fileio.lock_output(s)
    fileio.release_outputs()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False
