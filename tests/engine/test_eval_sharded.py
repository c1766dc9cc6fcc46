"""Sharded ``shunted eval``: N processes give the one-process result (counts, skipped files, logits rows).

Fast: the shard arithmetic (``shunted/engine/world.py``) and N ranks simulated in this process through
``run_evaluation`` (``shunted/engine/evaluate.py``) with a predictor whose logits depend on the batch a row is in,
so a rank whose batches are not a one-process run's batches shows. Slow: ``paddle.distributed.launch`` with two
processes through ``tools/launch.py``, against an in-process run, and a bad image on rank 1 without --skip-bad.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from rank_spy import spy_launch

from shunted.cli import main
from shunted.data.datasets import ImageDataset, list_samples
from shunted.data.transforms import EvalTransform
from shunted.engine.evaluate import merge_outcomes, run_evaluation
from shunted.engine.world import World, shard_bounds, threads_per_process
from shunted.errors import DataError
from shunted.models import get_pretrained_cfg

REPO = Path(__file__).resolve().parents[2]
SUBSET = REPO / "shunted" / "assets" / "cifar10-demo"
CKPT = REPO / "shunted" / "assets" / "demo" / "ckpt_T_cifar10_fp16.pth"
CLASSES = ["airplane", "cat", "ship"]
LABELS = {"airplane": 0, "cat": 3, "ship": 8}  # CIFAR-10 indices


def make_data(root: Path, bad_at: tuple[int, ...], lines: int = 30) -> Path:
    """``root`` with real CIFAR-10 JPEGs (classes interleaved) and an unreadable file at each of ``bad_at``;
    returns the label file listing them in that order."""
    entries = []
    for i in range(lines):
        cls = CLASSES[i % 3]
        (root / cls).mkdir(parents=True, exist_ok=True)
        name = f"{i:04d}.jpg"
        if i in bad_at:
            (root / cls / name).write_text("not an image")
        else:
            (root / cls / name).write_bytes((SUBSET / cls / f"{i // 3:04d}.jpg").read_bytes())
        entries.append(f"{cls}/{name} {LABELS[cls]}")
    labels = root / "val_list.txt"
    labels.write_text("\n".join(entries) + "\n")
    return labels


@pytest.mark.parametrize("size", range(1, 7))
@pytest.mark.parametrize("unit", [1, 2, 5, 8])
def test_shards_cover_every_sample_once_in_whole_units(size, unit):
    for n in range(0, 41):
        bounds = shard_bounds(n, size, unit)
        shards = [World(r, size).shard(n, unit) for r in range(size)]
        assert [i for s in shards for i in s] == list(range(n)), (n, size, unit)  # none dropped, none twice
        assert all(b % unit == 0 or b == n for b in bounds) and bounds[-1] == n  # whole batches
        units = [-(-len(s) // unit) for s in shards]
        assert max(units) - min(units) <= 1, (n, size, unit, bounds)  # balanced
    assert shard_bounds(23, 2, 5) == [0, 15, 23] and shard_bounds(23, 2) == [0, 12, 23]
    assert shard_bounds(3, 4, 2) == [0, 2, 3, 3, 3]


def test_threads_per_process_share_the_cores():
    cores = len(os.sched_getaffinity(0))
    assert threads_per_process(World()) is None
    assert threads_per_process(World(0, 2, local_size=2)) == max(1, cores // 2)
    assert threads_per_process(World(1, 64, local_size=64)) == max(1, cores // 64)


class SimulatedWorld(World):
    """Rank ``rank`` of ``size`` in this process: ranks > 0 run first and leave their gathered object in
    ``mailbox``; rank 0 collects them (what ``World.gather`` does across processes)."""

    def __init__(self, rank: int, size: int, mailbox: dict, listing: list[int] | None = None):
        super().__init__(rank, size)
        self.mailbox, self.listing = mailbox, listing

    def gather_ints(self, values):
        return [(self.listing or values) if r else values for r in range(self.size)]

    def gather(self, obj):
        self.mailbox[self.rank] = obj
        return [self.mailbox[r] for r in range(self.size)] if self.main else None


def batch_sensitive(x: np.ndarray) -> np.ndarray:
    """Logits from the pixels plus a term of the batch's length: equal rows need equal batches."""
    w = np.linspace(-1, 1, 30, dtype=np.float32).reshape(3, 10)
    return x.mean(axis=(2, 3)) @ w + np.float32(1e-3) * len(x)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> ImageDataset:
    root = tmp_path_factory.mktemp("data")
    labels = make_data(root, bad_at=(3, 17))
    transform = EvalTransform.from_config(get_pretrained_cfg("shunted_t"), img_size=32, resize_short=32)
    samples = list_samples(root, labels=labels, num_classes=10).head(23)
    return ImageDataset(samples, transform, on_error="mark")


def _run(dataset, world, out: Path) -> dict | None:
    return run_evaluation(
        batch_sensitive,
        dataset,
        10,
        {"model": "batch-sensitive"},
        batch_size=5,
        workers=0,
        skip_bad=True,
        save_logits_to=out / "logits.npy",
        output=out / "r.json",
        progress=False,
        world=world,
    )


@pytest.mark.parametrize("size", [2, 3, 4, 6])
def test_simulated_ranks_give_the_one_process_result(dataset, tmp_path, size):
    one = _run(dataset, World(), tmp_path / "one")
    mailbox: dict = {}
    out = tmp_path / "many"
    for rank in reversed(range(1, size)):
        assert _run(dataset, SimulatedWorld(rank, size, mailbox), out) is None
        assert not out.exists() or not any(out.iterdir())  # ranks > 0 write nothing
    many = _run(dataset, SimulatedWorld(0, size, mailbox), out)

    assert [mailbox[r].samples for r in range(size)] == np.diff(shard_bounds(23, size, 5)).tolist()
    saved = json.loads((out / "r.json").read_text())
    assert saved["world_size"] == size and one["world_size"] == 1
    for key in ("n", "top1", "top5", "skipped", "model", "preprocessing", "batch_size"):
        assert saved[key] == one[key] == many[key], key
    assert [s["path"] for s in saved["skipped"]] == [
        "airplane/0003.jpg",
        "ship/0017.jpg",
    ]  # one per shard at size 2
    assert saved["n"] == 21 and len(saved["timing"]["per_rank"]) == size
    a, b = np.load(tmp_path / "one" / "logits.npy"), np.load(out / "logits.npy")
    assert a.shape == b.shape == (23, 10)
    np.testing.assert_array_equal(a, b)  # NaN rows (the skipped files) in the same places
    assert np.isnan(a[[3, 17]]).all() and np.isfinite(np.delete(a, [3, 17], axis=0)).all()


def test_ranks_listing_other_samples_stop_before_the_work(dataset, tmp_path):
    world = SimulatedWorld(0, 2, {}, listing=[len(dataset) - 1, 0])
    with pytest.raises(DataError, match="process 1 lists 22 samples, process 0 23: every process must see"):
        _run(dataset, world, tmp_path)
    assert not world.mailbox  # nothing evaluated


def test_merge_refuses_shards_out_of_order(dataset):
    from shunted.engine.evaluate import evaluate

    parts = [
        evaluate(
            dataset, batch_sensitive, 10, batch_size=5, workers=0, skip_bad=True, progress=False, indices=r
        )
        for r in (range(10, 23), range(0, 10))
    ]
    with pytest.raises(ValueError, match="not consecutive"):
        merge_outcomes(parts)
    merged = merge_outcomes(parts[::-1])
    assert (merged.first, merged.samples, merged.n) == (0, 23, 21)


LAUNCH_ARGS = ["--model", "shunted_t", "--weights", str(CKPT), "--img-size", "64", "--resize-short", "73"]
LAUNCH_ARGS += ["--backend=dygraph", "--batch-size", "5", "--workers", "0", "--threads", "1", "--no-progress", "--limit", "23"]


def _launch(tmp_path: Path, argv: list[str], name: str) -> subprocess.CompletedProcess:
    """Two processes on one node (``--nproc_per_node 2``), logs in ``tmp_path / name``."""
    return _launchers(tmp_path, argv, [["--nproc_per_node", "2", "--log_dir", str(tmp_path / name)]])[0]


def _launchers(
    tmp_path: Path, argv: list[str], options: list[list[str]]
) -> list[subprocess.CompletedProcess]:
    """One ``paddle.distributed.launch`` per entry of ``options`` (one per node), running at the same time."""
    spy, env, _ = spy_launch(tmp_path)
    script = [*spy, *argv]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "paddle.distributed.launch", *o, *script],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for o in options
    ]
    done = []
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        done.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    return done


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow  # integration (two processes through paddle.distributed.launch): make test-slow
def test_two_processes_through_the_launcher_equal_one(tmp_path):
    """23 of 30 samples (shards of 15 and 8), a bad image in each shard, --skip-bad, --save-logits."""
    labels = make_data(tmp_path / "data", bad_at=(3, 17))
    argv = ["eval", *LAUNCH_ARGS, "--data", str(tmp_path / "data"), "--labels", str(labels), "--skip-bad"]
    one, two = tmp_path / "one", tmp_path / "two"
    assert main([*argv, "--output", str(one / "r.json"), "--save-logits", str(one / "l.npy")]) == 0

    done = _launch(
        tmp_path, [*argv, "--output", str(two / "r.json"), "--save-logits", str(two / "l.npy")], "log"
    )
    assert done.returncode == 0, (tmp_path / "log" / "workerlog.1").read_text()[-2000:]
    assert (
        "runtime: dygraph (the Paddle model in eager mode, float32, exact), 1 thread in each of 2"
        in done.stdout
    )
    assert sorted(p.name for p in (tmp_path / "spy").iterdir()) == ["rank0"]  # rank 1 replaced no file
    a, b = json.loads((one / "r.json").read_text()), json.loads((two / "r.json").read_text())
    assert (a["world_size"], b["world_size"]) == (1, 2)
    for key in ("n", "top1", "top5", "skipped", "num_classes", "data", "weights"):
        assert a[key] == b[key], key
    assert [s["path"] for s in b["skipped"]] == ["airplane/0003.jpg", "ship/0017.jpg"] and b["n"] == 21
    assert [(r["first"], r["samples"]) for r in b["timing"]["per_rank"]] == [(0, 15), (15, 8)]
    np.testing.assert_array_equal(np.load(one / "l.npy"), np.load(two / "l.npy"))  # bit for bit, NaN rows too


@pytest.mark.slow  # integration (two launchers, one process each, as two nodes): make test-slow
def test_two_nodes_equal_one_process(tmp_path):
    """Multi-node: two launchers (``--nnodes 2 --master``, what ``--ips`` sets up) of one process each."""
    labels = make_data(tmp_path / "data", bad_at=(3, 17))
    argv = ["eval", *LAUNCH_ARGS, "--data", str(tmp_path / "data"), "--labels", str(labels), "--skip-bad"]
    one, two = tmp_path / "one", tmp_path / "two"
    assert main([*argv, "--output", str(one / "r.json"), "--save-logits", str(one / "l.npy")]) == 0

    master = f"127.0.0.1:{_free_port()}"
    nodes = [
        ["--master", master, "--nnodes", "2", "--rank", str(r), "--nproc_per_node", "1"]
        + ["--log_dir", str(tmp_path / f"node{r}")]
        for r in (0, 1)
    ]
    done = _launchers(
        tmp_path, [*argv, "--output", str(two / "r.json"), "--save-logits", str(two / "l.npy")], nodes
    )
    assert [d.returncode for d in done] == [0, 0], done[1].stdout[-2000:] + done[1].stderr[-2000:]
    assert sorted(p.name for p in (tmp_path / "spy").iterdir()) == ["rank0"]
    a, b = json.loads((one / "r.json").read_text()), json.loads((two / "r.json").read_text())
    assert b["world_size"] == 2 and [r["samples"] for r in b["timing"]["per_rank"]] == [15, 8]
    for key in ("n", "top1", "top5", "skipped"):
        assert a[key] == b[key], key
    np.testing.assert_array_equal(np.load(one / "l.npy"), np.load(two / "l.npy"))


@pytest.mark.slow  # integration (two processes through paddle.distributed.launch): make test-slow
def test_bad_image_on_rank_1_stops_the_launcher_with_its_line(tmp_path):
    """Without --skip-bad the unreadable file of rank 1's shard ends every process; the launcher exits
    non-zero, the one-line error is in rank 1's log; nothing is written."""
    labels = make_data(tmp_path / "data", bad_at=(20,))
    out = tmp_path / "r.json"
    argv = [
        "eval",
        *LAUNCH_ARGS,
        "--data",
        str(tmp_path / "data"),
        "--labels",
        str(labels),
        "--output",
        str(out),
    ]
    done = _launch(tmp_path, argv, "log")
    assert done.returncode != 0
    line = f"shunted eval: error: {tmp_path / 'data' / 'ship' / '0020.jpg'}: cannot read image"
    # the launcher shows the log of the process it saw stop first: rank 1's line, or rank 0's pointer to the logs
    shown = done.stdout + done.stderr
    assert line in shown or "workerlog.N says why" in shown
    assert line in (tmp_path / "log" / "workerlog.1").read_text()
    assert not out.exists() and not list((tmp_path / "spy").iterdir())


@pytest.mark.slow  # integration (subprocess launches): make test-slow
def test_eval_scaling_benchmark_quick(tmp_path):
    """benchmarks/eval_scaling.py end to end in a quick setting: one row per (processes, workers), JSON runs."""
    out = tmp_path / "runs.json"
    argv = [
        "--backends",
        "dygraph",
        "--images",
        "16",
        "--repeats",
        "1",
        "--workers",
        "0",
        "1",
        "--img-size",
        "64",
    ]
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "eval_scaling.py"), *argv, "--json", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [line for line in done.stdout.splitlines() if line.startswith("| dygraph |")]
    cells = [[c.strip() for c in r.split("|")[2:4]] for r in rows]
    assert [(p.split(" × ")[0], w) for p, w in cells] == [("1", "0"), ("1", "1"), ("2", "0"), ("2", "1")]
    assert "| 1.00× |" in rows[0]
    runs = json.loads(out.read_text())["runs"]
    assert len(runs) == 4 and all(r["n"] == 16 and r["img_s"] > 0 for r in runs)
