"""Issue 20, the inference side: inputs that are not regular files (#1), list files with a BOM (#17), and the
seg-predict output folder's promises — a file the user edited is never replaced or deleted (#14), and Ctrl-C
during a re-run leaves the previous run whole, manifest included (#15).

Each test states what the code before the fix did. A FIFO is opened only inside a worker thread with a
deadline, so a regression shows as a failure instead of hanging the suite."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_seg_hostile import K, fake_opened, photo

from shunted.data.datasets import ImageDataset, list_samples
from shunted.data.inputs import iter_inputs, iter_list
from shunted.data.seg_datasets import SegDataset, list_seg_samples
from shunted.data.seg_transforms import SegEvalTransform
from shunted.data.transforms import EvalTransform, load_rgb
from shunted.engine.evaluate import evaluate
from shunted.engine.predict import predict_batches
from shunted.engine.seg.evaluate import evaluate_segmentation
from shunted.engine.seg.outputs import MANIFEST, PARTIAL
from shunted.engine.seg.predict import SegPredictConfig, segment_images
from shunted.errors import DataError, ShuntedError
from shunted.models import get_pretrained_cfg

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs (POSIX)")
DEADLINE = 60  # seconds: far beyond the milliseconds these take; only a hang reaches it


def finishes(fn):
    """``fn()``'s result or exception, run in a thread that must end before DEADLINE (a FIFO opened for reading
        blocks until a writer comes: the old code hung here; a writer is then opened to release it). Loaders run with
    ``workers=0`` here (Paddle's worker processes need the main thread); the refusal is in the one function every
    worker opens images with (``data/transforms.py:open_regular``), so worker processes refuse alike."""
    box: dict = {}

    def target():
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 — handed to the test
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(DEADLINE)
    hung = thread.is_alive()
    if hung:  # a writer that closes at once: the blocked reader gets end-of-file and the thread ends
        for path in _fifos:
            try:
                os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:
                pass
    assert not hung, "hung on a FIFO"
    if "error" in box:
        raise box["error"]
    return box["value"]


_fifos: list[Path] = []


def fifo(path: Path) -> Path:
    os.mkfifo(path)
    _fifos.append(path)
    return path


def logits10(x: np.ndarray) -> np.ndarray:
    return np.repeat(x.mean(axis=(2, 3))[:, :1], 10, axis=1) + np.arange(10, dtype=np.float32)


@pytest.fixture
def transform():
    return EvalTransform.from_config(get_pretrained_cfg("shunted_t"), img_size=32, resize_short=32)


def test_an_image_named_fifo_is_never_opened(tmp_path):
    """#1: load_rgb opened ``b.jpg`` (a FIFO) and waited for a writer for good."""
    with pytest.raises(DataError, match=r"b\.jpg: cannot read image \(not a regular file: a FIFO\)"):
        finishes(lambda: load_rgb(fifo(tmp_path / "b.jpg")))
    with pytest.raises(DataError, match="not a regular file: a folder"):
        load_rgb(tmp_path)


def test_predict_records_a_fifo_in_a_folder_or_a_list_as_unreadable(tmp_path, transform):
    """#1: predict hung on a FIFO in a folder or a list; now it is one unreadable row, the rest predicted."""
    photo(tmp_path / "a.jpg", 0)
    fifo(tmp_path / "b.jpg")
    photo(tmp_path / "c.jpg", 1)
    (tmp_path / "list.txt").write_text("a.jpg\nb.jpg\n")
    items = list(iter_inputs([tmp_path], [tmp_path / "list.txt"]))
    assert [Path(p).name for p, _ in items] == ["a.jpg", "b.jpg", "c.jpg", "a.jpg", "b.jpg"]
    assert items[1][1] is not None and "not a regular file" in items[1][1]  # the walker already knows
    rows = finishes(
        lambda: [r for b in predict_batches(items, transform, logits10, 2, 2, workers=2) for r in b]
    )
    errors = [r.error for r in rows]
    assert [e is None for e in errors] == [True, False, True, True, False]
    assert "not a regular file" in errors[4]  # from the list: refused when opened


@pytest.mark.parametrize("skip_bad", [False, True])
def test_eval_stops_or_skips_a_fifo(tmp_path, transform, skip_bad):
    """#1: eval hung with and without --skip-bad (and --workers 2 ignored the first Ctrl-C)."""
    for cls in ("cat", "dog"):
        (tmp_path / cls).mkdir()
        photo(tmp_path / cls / "a.jpg", 0)
    fifo(tmp_path / "dog" / "b.jpg")
    dataset = ImageDataset(
        list_samples(tmp_path, num_classes=10, class_names=["cat", "dog"]), transform, "mark"
    )
    run = lambda: evaluate(dataset, logits10, 10, batch_size=2, workers=0, skip_bad=skip_bad, progress=False)  # noqa: E731
    if not skip_bad:
        with pytest.raises(DataError, match=r"dog/b\.jpg: cannot read image \(not a regular file"):
            finishes(run)
        return
    out = finishes(run)
    assert out.n == 2 and [s["path"] for s in out.skipped] == ["dog/b.jpg"]


def test_seg_eval_stops_on_a_fifo_image_or_label(tmp_path):
    """#1: seg-eval hung on a FIFO named like an image (or a label)."""
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    for name in ("a", "b"):
        photo(tmp_path / "images" / f"{name}.jpg", 0)
        Image.fromarray(np.zeros((30, 40), np.uint8), "L").save(tmp_path / "labels" / f"{name}.png")
    os.unlink(tmp_path / "images" / "b.jpg")
    fifo(tmp_path / "images" / "b.jpg")
    os.unlink(tmp_path / "labels" / "a.png")
    fifo(tmp_path / "labels" / "a.png")
    dataset = SegDataset(list_seg_samples(tmp_path), SegEvalTransform())
    with pytest.raises(DataError, match=r"a\.png: cannot read label \(not a regular file"):
        finishes(lambda: dataset[0])
    with pytest.raises(DataError, match=r"b\.jpg: cannot read image \(not a regular file"):
        finishes(lambda: dataset[1])
    # the loop reports the first one in one line (it would hang here before the fix, so checked above first)
    with pytest.raises(DataError, match=r"a\.png: cannot read label"):
        evaluate_segmentation(fake_opened().predictor, dataset, K, 255, workers=0, progress=False)


def test_predict_list_with_a_bom(tmp_path):
    """#17: the BOM of a list saved as 'UTF-8 with BOM' was part of the first path (recorded unreadable)."""
    photo(tmp_path / "a.jpg", 0)
    (tmp_path / "l.txt").write_bytes(b"\xef\xbb\xbfa.jpg\r\na.jpg\r\n")
    paths = [p for p, _ in iter_list(tmp_path / "l.txt")]
    assert paths == [str(tmp_path / "a.jpg")] * 2


# ------------------------------------------------------------------------------------ the seg-predict folder
def _predict(inputs, out, opened, workers=0):
    cfg = SegPredictConfig([str(p) for p in inputs], out, "shunted_t_fpn", "w.pdparams", workers=workers)
    cfg.progress = False
    return segment_images(cfg, opened=opened)


def test_a_mask_the_user_edited_is_never_replaced_or_deleted(tmp_path):
    """#14: a re-run into the folder replaced (same input) or deleted (other inputs) the edited mask silently."""
    a, b = photo(tmp_path / "a.jpg", 0), photo(tmp_path / "b.jpg", 1)
    out = tmp_path / "seg"
    _predict([a], out, fake_opened())
    edited = np.zeros((30, 40), np.uint8)
    Image.fromarray(edited, "L").save(out / "a.png")  # the user corrects the mask by hand
    mine = (out / "a.png").read_bytes()
    for inputs in ([a], [b]):
        with pytest.raises(
            ShuntedError, match=r"--output-dir .*: a\.png changed since shunted seg-predict wrote it"
        ):
            _predict(inputs, out, fake_opened())
        assert (out / "a.png").read_bytes() == mine
    (out / "a.png").rename(tmp_path / "kept.png")  # moved out: the folder is ours again
    _predict([b], out, fake_opened())
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [MANIFEST, "b.png", "b_color.png", "b_overlay.jpg"]
    )


def test_ctrl_c_during_a_rerun_leaves_the_previous_run_whole(tmp_path):
    """#15: Ctrl-C midway through a re-run left the new run's first files beside the old ones and a manifest
    without the model, palette and per-image records."""
    inputs = [photo(tmp_path / f"p{i}.jpg", i) for i in range(3)]
    out = tmp_path / "seg"
    first = _predict(inputs[:2], out, fake_opened())
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(KeyboardInterrupt):
        _predict(inputs[::-1], out, fake_opened(interrupt_at=2))  # p2 done, interrupted at p1
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # the same files, byte for byte
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["complete"] and manifest["model"] == "shunted_t_fpn" and "palette" in manifest
    assert [r["image"] for r in manifest["images"]] == [r["image"] for r in first["images"]]


def test_a_killed_run_leaves_a_partial_folder_the_next_run_removes(tmp_path):
    """A run killed outright (SIGKILL: no abort) leaves DIR/.shunted-partial; the next run recognises it."""
    a = photo(tmp_path / "a.jpg", 0)
    out = tmp_path / "seg"
    _predict([a], out, fake_opened())
    (out / PARTIAL).mkdir()
    (out / PARTIAL / "a.png").write_bytes(b"half")
    _predict([a], out, fake_opened())
    assert not (out / PARTIAL).exists() and (out / "a.png").read_bytes() != b"half"


# ------------------------------------------------------------------------------- predict on a growing folder
class SequentialWorld:
    """Rank ``rank`` of 2 in this process, rank 1 run to the end first: its collectives see themselves as the
    other rank (so it goes on), and leave their values in ``mailbox`` for rank 0's to see (what the processes
    exchange)."""

    def __init__(self, rank: int, mailbox: dict):
        self.rank, self.size, self.local_size, self.mailbox = rank, 2, 2, mailbox
        self.calls = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    def _exchange(self, value):
        self.calls += 1
        if self.rank == 1:
            self.mailbox[self.calls] = value
            return [value, value]
        return [value, self.mailbox[self.calls]]

    def sum(self, values):
        return [a + b for a, b in zip(*self._exchange(values), strict=True)]

    def gather_ints(self, values):
        return self._exchange(values)


def test_predict_on_a_folder_that_grows_between_the_ranks_walks(tmp_path, capsys):
    """#13: rank 1 walked the folder before an image was added, rank 0 after: the old code wrote shards of two
    listings and an index whose merged_lines raised. Now the ranks compare their listings and stop in one line
    without an index (here at the first comparison, before any work)."""
    from shunted.engine.predict import PredictConfig, index_path, run_predict

    ckpt = Path(__file__).resolve().parents[2] / "shunted" / "assets" / "demo" / "ckpt_T_cifar10_fp16.pth"
    folder = tmp_path / "in"
    folder.mkdir()
    for i in (0, 2, 4):
        photo(folder / f"{i}.jpg", i)
    out = tmp_path / "p.jsonl"
    cfg = PredictConfig("shunted_t", ckpt, inputs=[str(folder)], img_size=32, resize_short=32, batch_size=1,
                        workers=0, output=str(out), threads=1)  # fmt: skip
    mailbox: dict = {}
    run_predict(cfg, SequentialWorld(1, mailbox), show=lambda text: None)
    photo(folder / "1.jpg", 1)  # sorts between 0.jpg and 2.jpg: rank 0's batches are other images
    with pytest.raises(
        DataError, match=r"the inputs differ between processes .*process 1 lists 3 images, process 0 4"
    ):
        run_predict(cfg, SequentialWorld(0, mailbox), show=lambda text: None)
    assert not index_path(out).exists()
