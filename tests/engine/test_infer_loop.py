"""The one inference loop (``shunted/engine/infer.py``) under segmentation: N simulated ranks give the one-process
confusion matrix, each rank evaluating only its contiguous share; a numpy "model" stands in for the network so
the check is the loop's bookkeeping (sharding, gathering, merging), not the model."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from shunted.data.seg_datasets import SegDataset, list_seg_samples
from shunted.data.seg_transforms import SegEvalTransform
from shunted.engine.infer import Part, Source, run_inference
from shunted.engine.seg.evaluate import SegInference, evaluate_segmentation
from shunted.engine.world import World, shard_bounds

K = 4


class SimulatedWorld(World):
    """Rank ``rank`` of ``size`` in this process: ranks > 0 run first and leave their objects in ``mailbox``."""

    def __init__(self, rank: int, size: int, mailbox: dict):
        super().__init__(rank, size)
        self.mailbox = mailbox

    def gather(self, obj):
        self.mailbox[self.rank] = obj
        return [self.mailbox[r] for r in range(self.size)] if self.main else None

    def broadcast(self, obj):
        if self.main:
            self.mailbox["broadcast"] = obj
        return self.mailbox.get("broadcast")


def colour_model(x: np.ndarray) -> np.ndarray:
    """N×K×H×W logits from the pixels: class k wins where channel k % 3 is brightest (+ a per-k offset)."""
    chans = np.concatenate([x, x[:, :1]], axis=1)  # 4 maps
    return chans + np.arange(K, dtype=np.float32)[None, :, None, None] * 0.01


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> SegDataset:
    root = tmp_path_factory.mktemp("segdata")
    (root / "images").mkdir()
    (root / "labels").mkdir()
    rng = np.random.default_rng(0)
    for i in range(7):
        h, w = (20, 24) if i % 3 else (16, 16)  # two sizes: batches of one size only
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(root / "images" / f"{i}.png")
        Image.fromarray(rng.integers(0, K, (h, w), dtype=np.uint8), "L").save(root / "labels" / f"{i}.png")
    return SegDataset(list_seg_samples(root), SegEvalTransform(mean=(0.5,) * 3, std=(0.25,) * 3))


@pytest.mark.parametrize("size", [2, 3, 8])
def test_sharded_segmentation_gives_the_one_process_confusion_matrix(dataset, size):
    one = evaluate_segmentation(colour_model, dataset, K, SegInference(batch_size=2), progress=False)
    mailbox: dict = {}
    shares = {}
    for rank in reversed(range(size)):
        world = SimulatedWorld(rank, size, mailbox)
        shares[rank] = world.shard(len(dataset))
        got = evaluate_segmentation(
            colour_model, dataset, K, SegInference(batch_size=2), progress=False, world=world
        )
        assert got is None if rank > 0 else got is mailbox["broadcast"]  # rank 0 broadcasts it to the others
    assert [len(shares[r]) for r in range(size)] == np.diff(shard_bounds(7, size)).tolist()
    assert [mailbox[r].state["images"] for r in range(size)] == [len(shares[r]) for r in range(size)]
    assert got["confusion"] == one["confusion"] and got["images"] == one["images"] == 7
    assert got["miou"] == one["miou"] and len(got["timing"]["per_rank"]) == size
    # mutation: summing only rank 0's share (what a loop that forgot to gather would report) differs
    assert mailbox[0].state["confusion"].sum() < np.asarray(one["confusion"]).sum()


def test_every_rank_gets_the_result_when_asked(dataset):
    mailbox: dict = {}
    evaluate_segmentation(colour_model, dataset, K, progress=False, world=SimulatedWorld(1, 2, mailbox))
    main = evaluate_segmentation(
        colour_model, dataset, K, progress=False, world=SimulatedWorld(0, 2, mailbox)
    )
    assert mailbox["broadcast"] is main and main["images"] == 7  # what World.broadcast hands to rank 1


class Counting:
    """A minimal accumulator: the interface a task implements (docs/architecture.md)."""

    def __init__(self):
        self.seen: list[int] = []

    def add(self, batch, run) -> int:
        run(np.zeros((1, 1), np.float32))
        self.seen.extend(int(i) for i in batch)
        return len(batch)

    def flush(self, run) -> int:
        return 0

    def figures(self) -> dict[str, str]:
        return {"seen": str(len(self.seen))}

    def state(self) -> list[int]:
        return self.seen


def test_the_loop_feeds_the_accumulator_its_share_in_order_and_times_the_model():
    data = list(range(10))
    source = Source(data, lambda i: -1, np.asarray, range(3, 8), batch_size=2, workers=0)
    part = run_inference(source, Counting(), lambda x: x, progress=False)
    assert isinstance(part, Part) and part.state == [3, 4, 5, 6, 7] and part.samples == 5
    assert part.timing.wall_s >= part.timing.model_s > 0


class _Collect:
    """An accumulator that keeps each batch and how far the stream had been read when it arrived."""

    def __init__(self, read: list):
        self.read, self.batches, self.read_at = read, [], []

    def add(self, batch, run):
        self.batches.append(batch)
        self.read_at.append(len(self.read))
        return len(batch)

    def flush(self, run):
        return 0

    def figures(self):
        return {}

    def state(self):
        return [x for b in self.batches for x in b]


class _Squares:
    def __getitem__(self, key):
        if key == 7:
            raise OSError("unreadable")
        return key * key


def _stream_source(n: int, read: list, workers: int) -> Source:
    def keys():
        for k in range(n):
            read.append(k)
            yield k

    return Source(_Squares(), lambda k: ("bad", k), list, keys(), batch_size=4, workers=workers, total=None)


@pytest.mark.parametrize("workers", [0, 2])
def test_a_stream_source_is_read_lazily_in_order_with_placeholders(workers):
    """predict's source: an iterator of keys read at most two batches ahead of the model (never listed whole),
    items in key order whatever the threads, a key that raises as the placeholder, the samples counted.
    The mutation: a loop that lists the stream first (``list(source.indices)``) has read all 1000 keys when the
    first batch arrives, and fails the ``read_at`` check (shown below)."""
    read: list = []
    acc = _Collect(read)
    part = run_inference(_stream_source(1000, read, workers), acc, lambda x: x, progress=False)
    assert part.samples == 1000 and len(acc.batches) == 250
    assert part.state == [("bad", 7) if k == 7 else k * k for k in range(1000)]
    assert max(a - 4 * (i + 1) for i, a in enumerate(acc.read_at)) <= 8  # ≤ two batches read ahead

    read.clear()
    listed = _stream_source(1000, read, workers)
    listed.indices = iter(list(listed.indices))  # the mutation: the listing held whole before the loop
    acc = _Collect(read)
    run_inference(listed, acc, lambda x: x, progress=False)
    assert acc.read_at[0] == 1000


def test_stopping_the_loop_never_waits_for_the_reads_queued_ahead():
    """Reads are queued two batches ahead; an error or Ctrl-C in the loop (here: closing it after the first
    batch) drops the queued reads that have not started instead of waiting for them. Mutation: a ``with
    ThreadPoolExecutor`` block (shutdown waiting) takes ~1.8 s here, this ~0.2 s."""
    import time

    from shunted.engine.infer import stream_batches

    class Slow:
        def __getitem__(self, key):
            time.sleep(0.1)
            return key

    source = Source(Slow(), lambda k: None, list, list(range(40)), batch_size=10, workers=2)
    batches = stream_batches(source)
    assert next(batches) == list(range(10))
    start = time.perf_counter()
    batches.close()
    assert time.perf_counter() - start < 0.6
