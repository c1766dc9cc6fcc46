"""Top-k predictions with class names for image files, folders and file lists, streamed.

``shunted predict`` (``shunted/commands/predict.py``) calls ``stream_predictions``. Nothing grows with the
number of images:

- **Inputs** (``iter_inputs``, shunted/data/inputs.py: the one walker): the positional files and folders in the
  order given, then each ``--list`` file. Folders are walked lazily in sorted relative-path order, linked folders
  followed once; lists are read line by line (a UTF-8 BOM removed); only regular files are opened (a FIFO named
  like an image is an unreadable item, never a hang).
- **The loop** is the one batch-inference loop of every command (``engine/infer.py:run_inference``, a stream
  source): decoding runs in ``workers`` threads (Pillow releases the GIL while decoding and resizing) at most
  two batches ahead of the model; predict's accumulator (``_Predictions``) writes each batch's lines.
- **Results** go out per batch: ``F.jsonl`` gets one JSON object per image (``path`` and the top-k ``index``,
  ``name``, ``prob``, ``logit`` lists, or ``path`` and ``error`` for an unreadable file), each batch with one
  write, flush and fsync, so a killed run loses at most the batch being written. Beside it,
  ``F.jsonl.meta.json`` records the model, the weights' SHA-256, the class names, the preprocessing, top-k,
  the process count and, at the end, the counts (``"complete": true``). ``F.json`` is the whole-file JSON of
  earlier releases (``predictions`` with a ``top`` list per image), streamed into a temporary file renamed at
  the end; it cannot be resumed.

**Resume** (``resume=True`` with ``F.jsonl``): the input order is deterministic, so the file's complete lines
are the first images of the stream. A torn last line (a kill during a write) is cut off; then the file is read
back line by line alongside the stream, and every line's ``path`` must equal the stream's next image (else the
inputs changed: a one-line error). The rest is appended. Memory stays one line and one stream item; the cost
is one pass over the written lines and the already-done part of the input listing (no image is decoded). The
meta file must match (same model, weights, class names, preprocessing, top-k, process count), else a one-line
error. Without ``resume`` an existing non-empty output is an error.

**Several processes** (``paddle.distributed.launch``, ``world.size`` N > 1): the stream is cut into batches of
``batch_size`` images in input order and batch ``b`` goes to rank ``b % N``. Rank ``r`` writes
``F.rank{r}.jsonl`` (and its meta file), each resumable on its own; at the end rank 0 writes ``F.index.json``
listing the shards with their counts. The union of the shards' lines is the one-process output;
``merged_lines(F.index.json)`` yields them in input order (``batch_size`` lines from each shard in turn).
Every rank walks the whole listing (cheap beside decoding) and decodes only its batches; the ranks compare their
listings (count and SHA-256 of the paths, ``Listing``) before any work and again at the end, so a folder that changes
during the run ends in a one-line error without ``F.index.json`` rather than in shards of two listings. A resume
needs the same process count and batch size (recorded in the meta files). On several machines (``--ips``) each rank
writes its shard on its own machine's file system at the path given; rank 0's index names them all.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import numpy as np

from ..data.inputs import (  # noqa: F401 (iter_folder, iter_list, expand_inputs: part of this module's API)
    check_inputs,
    count_inputs,
    expand_inputs,
    iter_folder,
    iter_inputs,
    iter_list,
)
from ..errors import DataError, ShuntedError
from ..fileio import atomic_path, finite_json, open_input, read_input_text, write_json_atomic

PredictBatch = Callable[[np.ndarray], np.ndarray]
FORMAT = "shunted-predict-jsonl/1"
SHOWN_ERRORS = (
    10  # unreadable files also printed (``errors_to``); the rest only in the output and the summary
)


# --------------------------------------------------------------------------------------------------- inputs
# the walker is shunted/data/inputs.py, one for every command (iter_inputs, check_inputs, count_inputs, ...)


def shard(
    items: Iterable[tuple[str, str | None]], rank: int, size: int, batch_size: int
) -> Iterator[tuple[str, str | None]]:
    """The items of rank ``rank`` of ``size``: batch ``b`` (``batch_size`` items in stream order) goes to
    rank ``b % size``."""
    if size == 1:
        yield from items
        return
    for i, item in enumerate(items):
        if (i // batch_size) % size == rank:
            yield item


# ---------------------------------------------------------------------------------------------- the model
def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


@dataclass
class Row:
    """One image's result: the top-k class indices with probabilities and logits, or the error."""

    path: str
    error: str | None = None
    index: list[int] = field(default_factory=list)
    prob: list[float] = field(default_factory=list)
    logit: list[float] = field(default_factory=list)

    def record(self, names: list[str] | None) -> dict:
        """The ``F.jsonl`` line: ``path`` and the top-k ``index``/``name``/``prob``/``logit`` lists, or
        ``path`` and ``error``."""
        if self.error is not None:
            return {"path": self.path, "error": self.error}
        return {
            "path": self.path,
            "index": self.index,
            "name": [names[i] for i in self.index] if names else None,
            "prob": self.prob,
            "logit": self.logit,
        }

    def top_record(self, names: list[str] | None) -> dict:
        """The ``F.json`` entry of earlier releases: ``{"path", "top": [{"index", "name", "prob", "logit"}]}``."""
        if self.error is not None:
            return {"path": self.path, "error": self.error}
        top = [
            {"index": i, "name": names[i] if names else None, "prob": p, "logit": z}
            for i, p, z in zip(self.index, self.prob, self.logit, strict=True)
        ]
        return {"path": self.path, "top": top}


def _load(transform, path: str, error: str | None) -> tuple[np.ndarray | None, str | None]:
    if error is not None:
        return None, error
    try:
        return transform.load(path), None
    except DataError as exc:
        return None, str(exc)
    except MemoryError:
        return None, f"{path}: out of memory while preprocessing this image"
    except Exception as exc:  # noqa: BLE001 — any decoder failure is recorded, never stops the run
        return None, f"{path}: cannot read image ({type(exc).__name__}: {' '.join(str(exc).split())})"


class _Decoded:
    """The stream's dataset: ``(path, walker's error)`` -> ``(path, array or None, error or None)``."""

    def __init__(self, transform):
        self.transform = transform

    def __getitem__(self, item: tuple[str, str | None]) -> tuple[str, np.ndarray | None, str | None]:
        return (item[0], *_load(self.transform, *item))


def _source(items: Iterable[tuple[str, str | None]], transform, batch_size: int, workers: int, total=None):
    """The one inference loop's stream source (engine/infer.py) of ``items``: decoded by ``workers`` threads at
    most two batches ahead, batches of ``batch_size`` ``(path, array, error)`` in stream order."""
    from .infer import Source

    def placeholder(item):  # _load records every failure itself; this only if it ever raised
        return (item[0], None, f"{item[0]}: cannot read image")

    return Source(_Decoded(transform), placeholder, list, iter(items), batch_size, workers, total)


def predict_batches(
    items: Iterable[tuple[str, str | None]],
    transform,
    predict_batch: PredictBatch,
    topk: int = 5,
    batch_size: int = 32,
    workers: int = 0,
) -> Iterator[list[Row]]:
    """One list of ``Row`` per ``batch_size`` stream items, in stream order (unreadable files as error rows)."""
    from .infer import stream_batches

    for batch in stream_batches(_source(items, transform, batch_size, workers)):
        yield _run_batch(batch, predict_batch, topk)


def _run_batch(batch, predict_batch: PredictBatch, topk: int) -> list[Row]:
    ok = [i for i, (_, arr, _) in enumerate(batch) if arr is not None]
    rows = [Row(path, error=error) for path, _, error in batch]
    if not ok:
        return rows
    logits = np.asarray(predict_batch(np.stack([batch[i][1] for i in ok])), dtype=np.float32)
    if logits.ndim != 2 or logits.shape[0] != len(ok):
        raise ValueError(f"backend returned logits {logits.shape} for a batch of {len(ok)}")
    probs = softmax(logits)
    k = min(topk, logits.shape[1])
    order = np.argsort(-logits, axis=1, kind="stable")[:, :k]
    for j, i in enumerate(ok):
        idx = order[j]
        rows[i].index = [int(c) for c in idx]
        rows[i].prob = [float(p) for p in probs[j, idx]]
        rows[i].logit = [float(z) for z in logits[j, idx]]
    return rows


def predict(
    paths: list[Path],
    transform,
    predict_batch: PredictBatch,
    topk: int = 5,
    class_names: list[str] | None = None,
    batch_size: int = 32,
) -> list[dict]:
    """Per image: ``{"path", "top": [{"index", "name", "prob", "logit"}, ...]}`` (or ``{"path", "error"}``) in
    input order, as one list: for a few images (``stream_predictions`` streams)."""
    items = ((str(p), None) for p in paths)
    return [
        r.top_record(class_names)
        for rows in predict_batches(items, transform, predict_batch, topk, batch_size)
        for r in rows
    ]


def format_predictions(results: list[dict]) -> str:
    lines = []
    for r in results:
        lines.append(r["path"])
        if "error" in r:
            lines.append(f"  unreadable: {r['error']}")
            continue
        for rank, t in enumerate(r["top"], start=1):
            name = f"  {t['name']}" if t["name"] is not None else ""
            lines.append(f"  {rank}. {100 * t['prob']:6.2f} %  [{t['index']}]{name}")
    return "\n".join(lines)


# -------------------------------------------------------------------------------------------------- outputs
def shard_path(output: str | os.PathLike, rank: int, size: int) -> Path:
    """``F.jsonl`` for one process, ``F.rank{r}.jsonl`` for rank ``r`` of several."""
    output = Path(output)
    return output if size == 1 else output.with_name(f"{output.stem}.rank{rank}{output.suffix}")


def meta_path(results: str | os.PathLike) -> Path:
    return Path(f"{results}.meta.json")


def index_path(output: str | os.PathLike) -> Path:
    output = Path(output)
    return output.with_name(f"{output.stem}.index.json")


# what a resumed file must share with the run that started it (else its lines would mix two different runs)
MATCH_KEYS = ("format", "model", "weights_sha256", "num_classes", "class_names_sha256", "preprocessing", "topk",
              "world_size", "rank")  # fmt: skip


class JsonlWriter:
    """Appends batches of rows to one ``.jsonl`` file (module docstring: resume, meta file)."""

    def __init__(self, path: str | os.PathLike, meta: dict, resume: bool, shown: str | None = None):
        self.path = Path(path)
        self.shown = shown or str(path)
        self.meta = dict(meta)
        self.meta_file = meta_path(self.path)
        self.resume = resume
        self.done = 0  # lines already in the file (resumed)
        self.done_errors = 0
        self.images = 0
        self.errors = 0
        self._fh = None
        self._truncate_to: int | None = None
        self._check()

    def _check(self) -> None:
        if not check_fresh(self.path, self.resume, self.shown):
            return
        try:
            old = json.loads(self.meta_file.read_text())
        except (OSError, ValueError):
            raise ShuntedError(
                f"--output {self.shown}: cannot resume: {self.meta_file.name} beside it is missing or unreadable, "
                "so it cannot be checked to come from the same model; choose another file"
            ) from None
        for key in MATCH_KEYS + (("batch_size",) if self.meta.get("world_size", 1) > 1 else ()):
            if old.get(key) != self.meta.get(key):
                raise ShuntedError(
                    f"--output {self.shown}: cannot resume: it was written with another {key.replace('_', ' ')} "
                    f"({_short(old.get(key))}, now {_short(self.meta.get(key))}); choose another file"
                )
        self._truncate_to = _complete_length(self.path)

    def skip_done(self, items: Iterator[tuple[str, str | None]]) -> Iterator[tuple[str, str | None]]:
        """Consume from ``items`` the images already in the file, checking each line's path; return the rest."""
        if self._truncate_to is None:
            return items
        with open(self.path, "rb") as fh:
            for number, raw in enumerate(_lines(fh, self._truncate_to), start=1):
                try:
                    line = json.loads(raw)
                    written = line["path"]
                except (ValueError, KeyError, TypeError):
                    raise ShuntedError(
                        f"--output {self.shown}: line {number} is not a prediction record"
                    ) from None
                item = next(items, None)
                if item is None:
                    raise ShuntedError(
                        f"--output {self.shown}: holds {number} or more images but the inputs have only "
                        f"{number - 1} for it: the inputs changed; choose another file"
                    )
                if item[0] != written and os.path.realpath(item[0]) != os.path.realpath(written):
                    raise ShuntedError(
                        f"--output {self.shown}: line {number} is {written!r} but image {number} of the inputs is "
                        f"{item[0]!r}: the inputs changed since it was written; choose another file"
                    )
                self.done += 1
                self.done_errors += "error" in line
        return items

    def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.meta["complete"] = False  # until close(complete=True) adds the counts
        write_json_atomic(self.meta_file, self.meta)
        if self._truncate_to is None:  # a new file (or an empty one)
            self._fh = open(self.path, "wb")  # noqa: SIM115
        else:
            self._fh = open(self.path, "r+b")  # noqa: SIM115
            self._fh.truncate(self._truncate_to)  # a torn last line: cut off
            self._fh.seek(self._truncate_to)

    def write(self, rows: list[Row], names: list[str] | None) -> None:
        data = "".join(
            json.dumps(finite_json(r.record(names)), ensure_ascii=True, allow_nan=False) + "\n" for r in rows
        ).encode()
        self._fh.write(data)
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self.images += len(rows)
        self.errors += sum(r.error is not None for r in rows)

    def counts(self) -> dict:
        total_errors = self.done_errors + self.errors
        total = self.done + self.images
        return {"images": total, "predicted": total - total_errors, "unreadable": total_errors}

    def close(self, complete: bool) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        if complete:
            write_json_atomic(self.meta_file, {**self.meta, "complete": True, "counts": self.counts()})


def check_fresh(path: str | os.PathLike, resume: bool, shown: str | None = None) -> bool:
    """Whether ``path`` holds lines to resume; an error if it does and ``resume`` is off."""
    path = Path(path)
    if path.exists() and not path.is_file():
        raise ShuntedError(f"--output {shown or path}: is not a regular file")
    if not path.is_file() or path.stat().st_size == 0:
        return False
    if not _ours(path):
        raise ShuntedError(
            f"--output {shown or path}: is not a prediction stream of shunted ({meta_path(path).name} beside it "
            "is missing or not ours); nothing was changed: choose another file"
        )
    if not resume:
        raise ShuntedError(
            f"--output {shown or path}: already holds predictions; pass --resume to continue it, "
            "or remove it / choose another file"
        )
    return True


def _ours(path: Path) -> bool:
    """Whether ``path`` is a ``.jsonl`` of ours: its meta file beside it names our format (written first)."""
    try:
        meta = json.loads(read_input_text(meta_path(path), "record"))
    except (OSError, ShuntedError, UnicodeDecodeError, ValueError, RecursionError):
        return False
    return isinstance(meta, dict) and meta.get("format") == FORMAT


JSON_HEAD = b'{\n  "model": '  # how JsonWriter starts F.json (its header's first key)


def check_replaceable(path: str | os.PathLike, shown: str | None = None) -> None:
    """An existing ``F.json`` is replaced only when it is an earlier output of ours (a user's notes.json is not)."""
    path = Path(path)
    if not path.is_file() or path.stat().st_size == 0:
        return
    try:
        with open_input(path) as fh:
            head = fh.read(1 << 16)
    except (OSError, ShuntedError):
        head = b""
    if not (head.startswith(JSON_HEAD) and b'"predictions": [' in head):
        raise ShuntedError(
            f"--output {shown or path}: exists and is not an earlier prediction output of shunted; nothing was "
            "changed: choose another file"
        )


def _short(value) -> str:
    text = json.dumps(value) if not isinstance(value, str) else value
    return text if len(text) <= 40 else text[:37] + "..."


def _complete_length(path: Path) -> int:
    """The byte length of ``path`` up to and including its last newline (what a kill mid-write leaves whole)."""
    with open(path, "rb") as fh:
        end = fh.seek(0, os.SEEK_END)
        pos = end
        while pos > 0:
            step = min(1 << 16, pos)
            fh.seek(pos - step)
            chunk = fh.read(step)
            cut = chunk.rfind(b"\n")
            if cut >= 0:
                return pos - step + cut + 1
            pos -= step
    return 0


def _lines(fh, limit: int) -> Iterator[bytes]:
    """The lines of a binary file up to byte ``limit``."""
    read = 0
    for raw in fh:
        read += len(raw)
        if read > limit:
            return
        yield raw


class JsonWriter:
    """The whole-file ``F.json`` of earlier releases, streamed into a temporary file renamed at the end."""

    def __init__(self, path: str | os.PathLike, header: dict):
        self.path = path
        self.header = header
        self.images = 0
        self.errors = 0
        self._ctx = None
        self._fh: TextIO | None = None

    def open(self) -> None:
        self._ctx = atomic_path(self.path)
        tmp = self._ctx.__enter__()
        self._fh = open(tmp, "w", encoding="utf-8")  # noqa: SIM115
        head = json.dumps(finite_json(self.header), indent=2)
        self._fh.write(head[: head.rfind("}")].rstrip() + ',\n  "predictions": [')

    def write(self, rows: list[Row], names: list[str] | None) -> None:
        for r in rows:
            sep = "," if self.images else ""
            self._fh.write(sep + "\n    " + json.dumps(finite_json(r.top_record(names)), allow_nan=False))
            self.images += 1
            self.errors += r.error is not None

    def counts(self) -> dict:
        return {"images": self.images, "predicted": self.images - self.errors, "unreadable": self.errors}

    def close(self, complete: bool) -> None:
        if self._fh is None:
            return
        if complete:
            self._fh.write('\n  ],\n  "counts": ' + json.dumps(self.counts()) + "\n}\n")
        self._fh.close()
        self._fh = None
        if complete:
            self._ctx.__exit__(None, None, None)
        else:
            exc = RuntimeError("prediction stopped")
            try:
                self._ctx.__exit__(RuntimeError, exc, None)  # removes the temporary file
            except RuntimeError:
                pass


# --------------------------------------------------------------------------------------------------- driver
@dataclass
class Summary:
    images: int = 0  # done in this run (this process)
    unreadable: int = 0
    resumed: int = 0  # already in the output before this run
    seconds: float = 0.0
    first_error: str | None = None
    totals: dict = field(default_factory=dict)  # every process, the whole output (resumed lines too)

    @property
    def img_s(self) -> float:
        return (self.images - self.unreadable) / self.seconds if self.seconds > 0 else 0.0


@dataclass
class Streaming:
    """How ``stream_predictions`` runs: top-k, class names, images per batch, decoding threads, the progress bar
    (``total``: the image count when known)."""

    topk: int = 5
    class_names: list[str] | None = None
    batch_size: int = 32
    workers: int = 0
    progress: bool = True
    total: int | None = None


def stream_predictions(
    items: Iterator[tuple[str, str | None]],
    transform,
    predict_batch: PredictBatch,
    how: Streaming | None = None,
    *,
    writer: JsonlWriter | JsonWriter | None = None,
    show: Callable[[list[dict]], None] | None = None,
    errors_to: TextIO | None = None,
) -> Summary:
    """Predict the images of ``items`` (``iter_inputs``, already ``shard``-ed) batch by batch into ``writer``
    (``JsonlWriter``: resumed first) and/or ``show`` (called with each batch's ``top_record`` dicts)."""
    from .infer import run_inference

    items = iter(items)
    summary = Summary()
    if isinstance(writer, JsonlWriter):
        items = writer.skip_done(items)
        summary.resumed = writer.done
    if writer is not None:
        writer.open()
    how = how or Streaming()
    total = how.total - summary.resumed if how.total is not None else None
    acc = _Predictions(how, summary, writer, show, errors_to)
    complete = False
    try:
        part = run_inference(
            _source(items, transform, how.batch_size, how.workers, total), acc, predict_batch, how.progress
        )
        complete = True
    finally:
        if writer is not None:
            writer.close(complete)
    summary.seconds = part.timing.wall_s
    summary.totals = (
        writer.counts()
        if writer is not None
        else {"images": summary.images, "predicted": summary.images - summary.unreadable,
              "unreadable": summary.unreadable}
    )  # fmt: skip
    return summary


class _Predictions:
    """Predict's accumulator in the one inference loop (engine/infer.py): each batch's top-k rows written (one
    write, flush and fsync per batch: ``JsonlWriter``) and/or shown, unreadable files counted and printed."""

    def __init__(self, how: Streaming, summary: Summary, writer, show, errors_to: TextIO | None):
        self.how, self.summary, self.writer, self.show, self.errors_to = how, summary, writer, show, errors_to

    def add(self, batch: list, run) -> int:
        rows = _run_batch(batch, run, self.how.topk)
        names, summary = self.how.class_names, self.summary
        if self.writer is not None:
            self.writer.write(rows, names)
        if self.show is not None:
            self.show([r.top_record(names) for r in rows])
        for r in rows:
            if r.error is not None:
                summary.unreadable += 1
                summary.first_error = summary.first_error or r.error
                if self.errors_to is not None and summary.unreadable <= SHOWN_ERRORS:
                    more = " (further ones are only counted)" if summary.unreadable == SHOWN_ERRORS else ""
                    print(f"skipped unreadable: {r.error}{more}", file=self.errors_to, flush=True)
        summary.images += len(rows)
        return len(rows)

    def flush(self, run) -> int:
        return 0

    def figures(self) -> dict[str, str]:
        return {}

    def state(self) -> Summary:
        return self.summary


def write_index(output: str | os.PathLike, meta: dict, per_rank: list[list[int]]) -> Path:
    """Rank 0's ``F.index.json``: the shards of an N-process run with their counts (``per_rank``: images,
    unreadable per rank)."""
    size = len(per_rank)
    shards = [
        {
            "file": shard_path(output, r, size).name,
            "images": c[0],
            "predicted": c[0] - c[1],
            "unreadable": c[1],
        }
        for r, c in enumerate(per_rank)
    ]
    common = {k: v for k, v in meta.items() if k not in ("rank", "complete", "counts")}
    index = {
        **common,
        "order": f"batch b ({meta['batch_size']} images of the input order) is in shard b % {size}",
        "shards": shards,
        "counts": {
            "images": sum(s["images"] for s in shards),
            "predicted": sum(s["predicted"] for s in shards),
            "unreadable": sum(s["unreadable"] for s in shards),
        },
        "complete": True,
    }
    path = index_path(output)
    write_json_atomic(path, index)
    return path


def merged_lines(index: str | os.PathLike) -> Iterator[str]:
    """The lines of an N-process run's shards in input order (``batch_size`` from each shard in turn)."""
    index = Path(index)
    info = json.loads(index.read_text())
    files = [open(index.parent / s["file"], encoding="utf-8") for s in info["shards"]]  # noqa: SIM115
    try:
        while True:
            for fh in files:
                for _ in range(info["batch_size"]):
                    line = fh.readline()
                    if not line:  # the stream ended here: every shard must be at its end too
                        if any(f.readline() for f in files):
                            raise ValueError(f"{index}: the shards do not follow the order it records")
                        return
                    yield line
    finally:
        for fh in files:
            fh.close()


# ---------------------------------------------------------------------------------------------- the command
@dataclass
class PredictConfig:
    """What ``shunted predict`` runs (``commands/predict.py`` builds it from the flags)."""

    model: str
    weights: str | os.PathLike
    inputs: list[str] = field(default_factory=list)
    lists: list[str] = field(default_factory=list)
    labels: str | None = None
    topk: int = 5
    img_size: int | None = None
    crop_pct: float | None = None
    resize_short: int | None = None
    interpolation: str | None = None
    batch_size: int = 32
    workers: int = 2
    output: str | None = None
    resume: bool = False
    backend: str = "dygraph"
    threads: int | None = None
    cache: bool = True  # the start-up cache (shunted/runtime/cache.py); --no-cache

    @property
    def suffix(self) -> str | None:
        return os.path.splitext(self.output)[1].lower() if self.output else None


def _check_predict(cfg: PredictConfig, world) -> Path | str | None:
    """Before the model is built: the flags, the inputs, the outputs (one line each). Returns this rank's
    results file."""
    from ..fileio import check_output_file, check_outputs, lock_output

    if cfg.topk < 1:
        raise ShuntedError(f"--topk {cfg.topk}: must be at least 1")
    if not cfg.inputs and not cfg.lists:
        raise ShuntedError("give image files or folders, or --list FILE")
    suffix = cfg.suffix
    if cfg.output and suffix not in (".jsonl", ".json"):
        raise ShuntedError(
            f"--output {cfg.output}: give a .jsonl file (streamed, resumable) or a .json file (one document)"
        )
    if cfg.resume and suffix != ".jsonl":
        raise ShuntedError("--resume: continues an --output F.jsonl; give one")
    if world.size > 1 and suffix != ".jsonl":
        raise ShuntedError(
            f"{world.size} processes: give --output F.jsonl (each process writes its own shard)"
        )
    results = shard_path(cfg.output, world.rank, world.size) if suffix == ".jsonl" else cfg.output
    lock_output(results, "--output")  # one writer per output (cli.py releases it)
    outputs = [("--output", cfg.output)]
    if suffix == ".jsonl":
        outputs = [("--output", results), (None, meta_path(results))]
        if world.size > 1 and world.main:
            outputs.append((None, index_path(cfg.output)))
    for _, path in outputs:
        if path is not None:
            check_output_file(path)
    check_inputs(cfg.inputs, cfg.lists)
    # an output that is an input image (or the weights, the labels, a list) or an image in an input folder
    check_outputs(
        outputs,
        [("--weights", cfg.weights), ("--labels", cfg.labels), *(("--list", p) for p in cfg.lists),
         *((None, p) for p in cfg.inputs)],
        data=[(None, p) for p in cfg.inputs if os.path.isdir(p)],
    )  # fmt: skip
    # an output that needs --resume fails before the model is built (several processes: later, together)
    if suffix == ".jsonl" and world.size == 1:
        check_fresh(results, cfg.resume)
    elif suffix == ".json":
        check_replaceable(cfg.output)  # a user's notes.json is never replaced
    return results


def _class_names(cfg: PredictConfig, opened) -> tuple[list[str] | None, str | None]:
    """(class names or None, where they came from): --labels, else what is recorded beside the weights."""
    from ..data.classnames import known_class_names, resolve_class_names

    names = resolve_class_names(cfg.labels, opened.num_classes)
    known = None  # names recorded beside the weights (convert sidecar, training run, the bundled demo)
    if names is None:
        known = known_class_names(cfg.weights, opened.num_classes, sha256=opened.weights_sha256)
        names = list(known.names) if known and len(known.names) == opened.num_classes else None
    return names, cfg.labels or (known.source if known and names else "imagenet" if names else None)


def _writer(cfg: PredictConfig, results, opened, transform, names, labels, world):
    """The output writer (None without --output); for F.jsonl every rank checks its shard and all stop if one
    cannot go on (none waits for the others later)."""
    import hashlib

    if cfg.suffix == ".json":
        header = {
            "model": cfg.model,
            "weights": {"path": str(cfg.weights), "sha256": opened.weights_sha256},
            "num_classes": opened.num_classes,
            "labels": labels,
            "preprocessing": transform.describe(),
        }
        return JsonWriter(cfg.output, header)
    if cfg.suffix != ".jsonl":
        return None
    meta = {
        "format": FORMAT,
        "model": cfg.model,
        "weights": str(cfg.weights),
        "weights_sha256": opened.weights_sha256,
        "num_classes": opened.num_classes,
        "labels": labels,
        "class_names_sha256": hashlib.sha256("\n".join(names).encode()).hexdigest() if names else None,
        "preprocessing": transform.describe(),
        "topk": cfg.topk,
        "batch_size": cfg.batch_size,
        "world_size": world.size,
        "rank": world.rank,
        "backend": opened.backend,
        "inputs": [str(p) for p in cfg.inputs],
        "lists": [str(p) for p in cfg.lists],
    }
    failure = None
    try:
        writer = JsonlWriter(results, meta, cfg.resume)
    except ShuntedError as exc:
        failure = exc
    if world.sum([float(failure is not None)])[0] and failure is None:
        raise ShuntedError("another process cannot continue its shard (its log names the problem)")
    if failure is not None:
        raise failure
    return writer


class Listing:
    """The input stream with a digest of every path that passed (count and SHA-256 of the paths in order):
    what processes compare to know they walked the same listing."""

    def __init__(self, items: Iterable[tuple[str, str | None]]):
        import hashlib

        self.items = iter(items)
        self.count = 0
        self._hash = hashlib.sha256()

    def __iter__(self):
        for item in self.items:
            self.count += 1
            self._hash.update(item[0].encode("utf-8", "surrogateescape") + b"\0")
            yield item

    def words(self) -> list[int]:
        return [self.count, int.from_bytes(self._hash.digest()[:7], "big")]


def agree_on_listing(listed: list[list[int]], when: str) -> None:
    """Every process must have walked the same listing (``Listing.words`` per rank): else one line."""
    from .world import first_different

    rank = first_different(listed)
    if rank is not None:
        theirs = listed[rank]
        raise DataError(
            f"the inputs differ between processes {when}: process {rank} lists {theirs[0]:,} images, process 0 "
            f"{listed[0][0]:,}{'' if theirs[0] != listed[0][0] else ' (other files)'}; a folder changed while "
            "it was read (or is not the same on every node): run again on a folder that does not change"
        )


def run_predict(cfg: PredictConfig, world, show: Callable[[str], None] = print) -> dict:
    """``shunted predict`` as a function (module docstring); ``show`` gets the lines to print. Returns the
    counts over every process (``images``, ``predicted``, ``unreadable``).

    Several processes: every rank walks the listing first and they compare it (count and digest) before any
    work; every rank compares again at the end what it walked during the run, so shards from listings that
    differ (a folder that grew during the run) end in a one-line error and no ``F.index.json``."""
    from ..data.transforms import EvalTransform
    from ..models import get_pretrained_cfg
    from .evaluate import runtime_line
    from .session import RuntimeConfig, open_model
    from .world import threads_per_process

    try:
        pre = get_pretrained_cfg(cfg.model)
    except ValueError as exc:
        raise ShuntedError(f"--model: {exc}") from None
    results = _check_predict(cfg, world)
    transform = EvalTransform.from_config(
        pre, img_size=cfg.img_size, crop_pct=cfg.crop_pct, resize_short=cfg.resize_short,
        interpolation=cfg.interpolation,
    )  # fmt: skip
    threads = cfg.threads if cfg.threads is not None else threads_per_process(world)
    opened = open_model(
        cfg.model,
        cfg.weights,
        RuntimeConfig(cfg.backend, threads, img_size=transform.img_size, cache=cfg.cache),
    )
    names, labels = _class_names(cfg, opened)
    writer = _writer(cfg, results, opened, transform, names, labels, world)
    if world.size > 1:
        before = Listing(iter_inputs(cfg.inputs, cfg.lists))
        for _ in before:
            pass
        agree_on_listing(world.gather_ints(before.words()), "before the run")
    if world.main:
        show(runtime_line(opened.backend, threads, world.size))
    listing = Listing(iter_inputs(cfg.inputs, cfg.lists))
    human = cfg.suffix != ".jsonl"
    how = Streaming(
        cfg.topk, names, cfg.batch_size, cfg.workers, progress=world.main,
        total=count_inputs(cfg.inputs, cfg.lists) if world.size == 1 else None,
    )  # fmt: skip
    summary = stream_predictions(
        shard(listing, world.rank, world.size, cfg.batch_size), transform, opened.predictor, how, writer=writer,
        show=(lambda recs: show(format_predictions(recs))) if human else None,
        errors_to=None if human else sys.stdout,  # printed with the predictions in the human format
    )  # fmt: skip
    totals = summary.totals
    if world.size > 1:
        for _ in listing:  # the rest of the listing past this rank's last batch
            pass
        agree_on_listing(world.gather_ints(listing.words()), "during the run")
        per_rank = world.gather_ints([totals["images"], totals["unreadable"]])
        if world.main:
            write_index(cfg.output, writer.meta, per_rank)
        totals = {"images": sum(c[0] for c in per_rank), "unreadable": sum(c[1] for c in per_rank)}
        totals["predicted"] = totals["images"] - totals["unreadable"]
    if world.main and (totals["predicted"] or not totals["unreadable"]):
        where = f" -> {index_path(cfg.output) if world.size > 1 else cfg.output}" if cfg.output else ""
        resumed = f", {summary.resumed:,} already in the output" if summary.resumed else ""
        show(
            f"predicted {totals['predicted']:,} images, {totals['unreadable']:,} unreadable{resumed}; "
            f"this run {summary.images:,} in {summary.seconds:.1f} s ({summary.img_s:.1f} img/s"
            f"{' on rank 0' if world.size > 1 else ''}){where}"
        )
    if totals["predicted"] == 0 and totals["unreadable"]:
        first = f"; {summary.first_error}" if summary.first_error else ""
        raise DataError(f"no image could be read ({totals['unreadable']:,} unreadable{first})")
    return totals
