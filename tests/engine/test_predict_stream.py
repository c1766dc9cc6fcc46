"""``shunted predict`` at scale (issue 14): streamed inputs and outputs, resume, unreadable files, 2 processes.

Real images (CIFAR-10 JPEGs from ../shared) through the bundled demo checkpoint at 32-64 px. What each test
proves is in its docstring; the engine is shunted/engine/predict.py, the command shunted/commands/predict.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from shunted.cli import main
from shunted.engine import predict as engine

REPO = Path(__file__).resolve().parents[2]
CKPT = REPO / "shunted" / "assets" / "demo" / "ckpt_T_cifar10_fp16.pth"
BASE = ["predict", "--backend=dygraph", "--model", "shunted_t", "--weights", str(CKPT)]


@pytest.fixture(scope="module")
def cifar(shared_dir) -> Path:
    return shared_dir / "data" / "cifar10" / "test"


def image_list(cifar: Path, per_class: int, out: Path, classes=("cat", "dog", "ship")) -> Path:
    """A --list file of ``per_class`` images of each class, as paths relative to the list's folder."""
    rel = os.path.relpath(cifar, out.parent)
    lines = [f"{rel}/{c}/{f.name}" for c in classes for f in sorted((cifar / c).iterdir())[:per_class]]
    out.write_text("\n".join(lines) + "\n")
    return out


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def assert_same_rows(got: list[dict], want: list[dict]) -> None:
    """Same images in the same order; the same classes; probabilities equal to float tolerance (a batch of
    other images may round differently)."""
    assert [r["path"] for r in got] == [r["path"] for r in want]
    for g, w in zip(got, want, strict=True):
        assert g.keys() == w.keys()
        if "error" in w:
            assert g["error"] == w["error"]
            continue
        assert g["index"] == w["index"] and g["name"] == w["name"]
        np.testing.assert_allclose(g["prob"], w["prob"], rtol=0, atol=1e-5)
        np.testing.assert_allclose(g["logit"], w["logit"], rtol=0, atol=1e-4)


# ------------------------------------------------------------------------------------------------- inputs
def test_folder_walk_is_lazy_and_in_sorted_relative_path_order(tmp_path):
    """The lazy walk gives the order of sorted relative paths (a folder sorts as 'name/', so 'a-b.jpg' and
    'a.jpg' come before 'a/x.jpg'), skips non-images, and a link back up the tree is not followed."""
    tree = tmp_path / "t"
    for rel in ("a/x.jpg", "a/10.png", "a/2.png", "a-b.jpg", "a.jpg", "b/c/d/e.JPEG", "b/c.txt", "z.webp"):
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        (tree / rel).write_bytes(b"x")
    (tree / "b" / "c" / "loop").symlink_to(tree)
    got = engine.iter_folder(tree)
    assert not isinstance(got, list)  # a generator: nothing listed before the first item is asked for
    rel = [Path(p).relative_to(tree).as_posix() for p, err in got]
    want = sorted(
        q.relative_to(tree).as_posix() for q in tree.rglob("*") if q.is_file() and q.suffix != ".txt"
    )
    assert rel == want == ["a-b.jpg", "a.jpg", "a/10.png", "a/2.png", "a/x.jpg", "b/c/d/e.JPEG", "z.webp"]


def test_list_file_paths_are_relative_to_the_list(tmp_path, cifar):
    """--list: one path per line, relative to the list's folder or absolute, blank lines skipped; the stream
    is the positional inputs, then the list."""
    lst = tmp_path / "sub" / "l.txt"
    lst.parent.mkdir()
    first = cifar / "cat" / "0000.jpg"
    lst.write_text(f"../x/y.jpg\n\n{first}\n  spaced.png  \n")
    got = list(engine.iter_inputs([first], [lst]))
    assert got == [
        (str(first), None),
        (str(lst.parent / "../x/y.jpg"), None),
        (str(first), None),
        (str(lst.parent / "spaced.png"), None),
    ]


# ------------------------------------------------------------------------------------------------ outputs
def test_unreadable_files_are_recorded_and_the_run_continues(tmp_path, cifar, capsys):
    """A corrupt image and a missing list entry become {path, error} lines in input order; every other image
    is predicted (the same rows as a run without them); the summary counts them; exit 0."""
    good = image_list(cifar, 3, tmp_path / "good.txt")
    bad = tmp_path / "corrupt.jpg"
    bad.write_bytes(b"\xff\xd8 not a jpeg")
    names = good.read_text().splitlines()
    mixed = tmp_path / "mixed.txt"
    mixed.write_text("\n".join([*names[:4], "corrupt.jpg", "missing.png", *names[4:]]) + "\n")
    argv = [*BASE, "--img-size", "32", "--batch-size", "4"]
    assert main([*argv, "--list", str(good), "--output", str(tmp_path / "good.jsonl")]) == 0
    capsys.readouterr()
    assert main([*argv, "--list", str(mixed), "--output", str(tmp_path / "mixed.jsonl")]) == 0
    out, err = capsys.readouterr()
    got = rows(tmp_path / "mixed.jsonl")
    assert [r["path"] for r in got] == [str(tmp_path / n) for n in mixed.read_text().split()]
    assert got[4] == {"path": str(bad), "error": got[4]["error"]} and "cannot read image" in got[4]["error"]
    assert got[5]["path"] == str(tmp_path / "missing.png") and "No such file" in got[5]["error"]
    assert_same_rows(got[:4] + got[6:], rows(tmp_path / "good.jsonl"))
    assert "predicted 9 images, 2 unreadable" in out
    assert f"skipped unreadable: {bad}: cannot read image" in out and not err.strip()
    meta = json.loads((tmp_path / "mixed.jsonl.meta.json").read_text())
    assert meta["complete"] and meta["counts"] == {"images": 11, "predicted": 9, "unreadable": 2}
    assert meta["weights_sha256"] and meta["topk"] == 5 and meta["preprocessing"]["img_size"] == 32


def test_resume_cuts_a_torn_line_and_equals_a_clean_run(tmp_path, cifar, capsys):
    """A file cut mid-line (what a kill during a write leaves) resumes to the clean run's rows, each image
    once; an existing output needs --resume; a changed top-k, model or input order is refused in one line."""
    lst = image_list(cifar, 4, tmp_path / "l.txt")
    argv = [*BASE, "--img-size", "32", "--batch-size", "4", "--list", str(lst)]
    clean, cut = tmp_path / "clean.jsonl", tmp_path / "cut.jsonl"
    assert main([*argv, "--output", str(clean)]) == 0
    want = rows(clean)
    data = clean.read_bytes()
    lines = data.splitlines(keepends=True)
    cut.write_bytes(b"".join(lines[:5]) + lines[5][:40])  # 5 whole lines and a torn 6th
    (tmp_path / "cut.jsonl.meta.json").write_bytes((tmp_path / "clean.jsonl.meta.json").read_bytes())
    capsys.readouterr()

    assert main([*argv, "--output", str(cut)]) == 2
    assert "cut.jsonl: already holds predictions; pass --resume" in capsys.readouterr().err
    assert main([*argv, "--output", str(cut), "--resume", "--topk", "3"]) == 2
    assert "cannot resume: it was written with another topk (5, now 3)" in capsys.readouterr().err
    assert main([*argv, "--output", str(cut), "--resume"]) == 0
    assert "5 already in the output; this run 7 in" in capsys.readouterr().out
    assert_same_rows(rows(cut), want)

    assert main([*argv, "--output", str(cut), "--resume"]) == 0  # nothing left: nothing appended
    assert "this run 0 in" in capsys.readouterr().out
    assert_same_rows(rows(cut), want)

    shuffled = tmp_path / "shuffled.txt"
    shuffled.write_text("\n".join(reversed(lst.read_text().split())) + "\n")
    shuffled_argv = [*BASE, "--img-size", "32", "--batch-size", "4", "--list", str(shuffled)]
    assert main([*shuffled_argv, "--output", str(cut), "--resume"]) == 2
    assert "cut.jsonl: line 1 is" in (err := capsys.readouterr().err) and "the inputs changed" in err


def test_json_output_keeps_the_whole_file_format_and_human_printing(tmp_path, cifar, capsys):
    """--output F.json is still one JSON document (predictions with a top list) and the predictions are
    printed; --resume needs a .jsonl; other suffixes are refused."""
    img = cifar / "cat" / "0000.jpg"
    argv = [*BASE, "--img-size", "32", str(img), str(cifar / "cat" / "0001.jpg")]
    assert main([*argv, "--topk", "2", "--output", str(tmp_path / "p.json")]) == 0
    doc = json.loads((tmp_path / "p.json").read_text())
    assert [p["path"] for p in doc["predictions"]] == [str(img), str(cifar / "cat" / "0001.jpg")]
    assert len(doc["predictions"][0]["top"]) == 2 and doc["counts"]["images"] == 2
    assert doc["model"] == "shunted_t" and doc["weights"]["sha256"]
    assert f"{img}\n  1." in capsys.readouterr().out
    assert main([*argv, "--output", str(tmp_path / "p.json"), "--resume"]) == 2
    assert "--resume: continues an --output F.jsonl" in capsys.readouterr().err
    assert main([*argv, "--output", str(tmp_path / "p.csv")]) == 2
    assert "p.csv: give a .jsonl file" in capsys.readouterr().err
    assert not list(tmp_path.glob(".*tmp"))


def _cli(argv: list[str], **kw) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="2", SHUNTED_DEBUG="1")
    return subprocess.Popen([sys.executable, "-m", "shunted", *argv], env=env, text=True, **kw)


@pytest.mark.slow  # integration (subprocess, export or full run): the marked stage, make test-slow
def test_sigkill_then_resume_gives_every_image_exactly_once(tmp_path, cifar):
    """``predict --output p.jsonl`` killed with SIGKILL mid-run, then rerun with --resume: every one of the 60
    images is in the file exactly once, in input order, with the rows of an uninterrupted run."""
    lst = image_list(cifar, 20, tmp_path / "l.txt")
    argv = [*BASE, "--img-size", "64", "--batch-size", "4", "--workers", "1", "--list", str(lst)]
    clean, killed = tmp_path / "clean.jsonl", tmp_path / "killed.jsonl"
    assert _cli([*argv, "--output", str(clean)], stdout=subprocess.DEVNULL).wait(timeout=300) == 0

    proc = _cli([*argv, "--output", str(killed)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while proc.poll() is None and time.monotonic() < deadline:
        if killed.is_file() and killed.read_bytes().count(b"\n") >= 12:
            break
        time.sleep(0.01)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    written = killed.read_bytes().count(b"\n")
    assert 12 <= written < 60
    assert not json.loads((tmp_path / "killed.jsonl.meta.json").read_text())["complete"]

    assert _cli([*argv, "--output", str(killed), "--resume"], stdout=subprocess.PIPE).wait(timeout=300) == 0
    got = rows(killed)
    assert len(got) == 60 and len({r["path"] for r in got}) == 60
    assert_same_rows(got, rows(clean))
    assert json.loads((tmp_path / "killed.jsonl.meta.json").read_text())["counts"]["images"] == 60


# -------------------------------------------------------------------------------------- bounded memory
RSS_CHILD = r"""
import os, re, sys
from shunted.data.transforms import EvalTransform
from shunted.engine.predict import JsonlWriter, iter_inputs, stream_predictions

lst, out, resume = sys.argv[1], sys.argv[2], sys.argv[3] == "1"

def predict_batch(batch):  # a cheap stand-in for the model: 10 "logits" from the pixels
    return batch.reshape(len(batch), 3, -1).mean(axis=2).repeat(4, axis=1)[:, :10]

# the peak starts here: the imports' peak (Paddle's, varying by ~10 MB from run to run) would hide the stream's
with open("/proc/self/clear_refs", "w") as fh:
    fh.write("5")
summary = stream_predictions(
    iter_inputs(lists=[lst]), EvalTransform(img_size=32, resize_short=32), predict_batch, topk=5,
    class_names=[f"class{i}" for i in range(10)], batch_size=128, workers=0,
    writer=JsonlWriter(out, {"format": "rss-test"}, resume=resume), progress=False,
)
peak_kb = int(re.search(r"VmHWM:\s+(\d+)", open("/proc/self/status").read()).group(1))
print(summary.images, summary.resumed, peak_kb)
"""


def _peak_rss_kb(tmp_path: Path, lst: Path, out: Path, resume: bool = False) -> tuple[int, int, int]:
    """(images done, images already in ``out``, peak RSS in KB of the streaming) of a child process."""
    script = tmp_path / "rss_child.py"
    script.write_text(RSS_CHILD)
    done = subprocess.run(
        [sys.executable, str(script), str(lst), str(out), "1" if resume else "0"],
        capture_output=True, text=True, timeout=900, env=dict(os.environ, OMP_NUM_THREADS="1"),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    images, resumed, rss = map(int, done.stdout.split())
    return images, resumed, rss


def _repeated_list(cifar: Path, n: int, out: Path, real_every: int) -> Path:
    """``n`` lines: every ``real_every``-th one of 9 real images (over and over; every 500th line missing), the
    others missing files."""
    imgs = [cifar / c / f"000{i}.jpg" for c in ("cat", "dog", "ship") for i in range(3)]
    with open(out, "w") as fh:
        for i in range(n):
            fh.write(f"{imgs[i % 9] if i % real_every == 0 and i % 500 != 499 else f'missing/{i}.jpg'}\n")
    return out


def _check_flat(
    tmp_path: Path, cifar: Path, small: int, large: int, real_every: int, limit_mb: float
) -> None:
    """The peak RSS over ``large`` paths may not exceed the one over ``small`` paths by ``limit_mb``: fresh
    runs, and resumed ones (the first 90 % of the lines written, then a torn one: the written lines are read
    back alongside the listing)."""
    fresh, resumed = {}, {}
    for n in (small, large):
        lst = _repeated_list(cifar, n, tmp_path / f"l{n}.txt", real_every)
        out = tmp_path / f"o{n}.jsonl"
        fresh[n] = _peak_rss_kb(tmp_path, lst, out)
        assert fresh[n][:2] == (n, 0) and out.read_bytes().count(b"\n") == n
        data = out.read_bytes()
        done = n * 9 // 10
        cut = sum(len(x) for x in data.splitlines(keepends=True)[:done])
        out.write_bytes(data[: cut + 30])
        resumed[n] = _peak_rss_kb(tmp_path, lst, out, resume=True)
        assert resumed[n][:2] == (n - done, done)
        assert out.read_bytes() == data  # the stand-in's rows do not depend on the batch
    mb = {k: {n: v[n][2] / 1024 for n in v} for k, v in (("fresh", fresh), ("resumed", resumed))}
    print(f"peak RSS MB for {small:,} and {large:,} paths: {mb}")
    for kind, peak in mb.items():
        # kept per image, a result line (~0.5 KB) or even a path string (~0.1 KB) would exceed the limit
        growth = peak[large] - peak[small]
        assert growth < limit_mb, (
            f"{kind}: peak RSS grew by {growth:.1f} MB from {small:,} to {large:,} paths"
        )


@pytest.mark.slow  # moved to the marked stage to keep the fast suite within its 5-minute budget
def test_memory_stays_flat_over_a_20000_path_list(tmp_path, cifar):
    """Peak RSS of the real input pipeline (list reader, decoder, batcher, JSONL writer, resume reader) with
    a stand-in model is the same for 2,000 and 20,000 paths: nothing is kept per image. (Every 10th line is a
    real image, the others missing files recorded as errors, so that it runs in seconds.)"""
    _check_flat(tmp_path, cifar, 2_000, 20_000, real_every=10, limit_mb=1.0)


@pytest.mark.slow  # integration (subprocess, export or full run): the marked stage, make test-slow
def test_memory_stays_flat_over_a_100000_path_list(tmp_path, cifar):
    """The issue's figure: 100,000 paths (the same 9 real images, every 500th a missing file) stream with the
    peak RSS of 10,000."""
    _check_flat(tmp_path, cifar, 10_000, 100_000, real_every=1, limit_mb=2.0)


# --------------------------------------------------------------------------------------------- processes
def _launcher() -> Path:
    """The checkout's launcher script (tools/launch.py; shunted/__main__.py before it existed)."""
    script = REPO / "tools" / "launch.py"
    return script if script.is_file() else REPO / "shunted" / "__main__.py"


@pytest.mark.slow  # integration (subprocess, export or full run): the marked stage, make test-slow
def test_two_processes_equal_one(tmp_path, cifar):
    """Under paddle.distributed.launch with 2 processes each rank writes its shard (batches alternate), rank 0
    the index; the shards' lines are the 1-process output: as a set, and in order through merged_lines."""
    lst = image_list(cifar, 7, tmp_path / "l.txt")  # + 1 missing: 22 items, 6 batches of 4, the last of 2
    with open(lst, "a") as fh:
        fh.write("missing.jpg\n")
    argv = [*BASE, "--img-size", "32", "--batch-size", "4", "--threads", "1", "--list", str(lst)]
    one, two = tmp_path / "one.jsonl", tmp_path / "two.jsonl"
    assert main([*argv, "--output", str(one)]) == 0

    launch = [sys.executable, "-m", "paddle.distributed.launch", "--log_dir", str(tmp_path / "log")]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run(
        [*launch, "--nproc_per_node", "2", str(_launcher()), *argv, "--output", str(two)],
        env=env, capture_output=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, (tmp_path / "log" / "workerlog.0").read_text()[-2000:]
    assert not two.exists()
    shard0, shard1 = rows(tmp_path / "two.rank0.jsonl"), rows(tmp_path / "two.rank1.jsonl")
    assert len(shard0) == 12 and len(shard1) == 10  # batches 0, 2, 4 and 1, 3, 5 (2 images)
    want = rows(one)
    assert sorted(r["path"] for r in shard0 + shard1) == sorted(r["path"] for r in want)
    index = json.loads((tmp_path / "two.index.json").read_text())
    assert index["counts"] == {"images": 22, "predicted": 21, "unreadable": 1}
    assert [s["file"] for s in index["shards"]] == ["two.rank0.jsonl", "two.rank1.jsonl"]
    merged = [json.loads(line) for line in engine.merged_lines(tmp_path / "two.index.json")]
    assert_same_rows(merged, want)
