"""Semantic segmentation evaluation: mIoU, per-class IoU and accuracy, pixel accuracy, the confusion matrix.

``evaluate_segmentation(predict_fn, dataset, num_classes, inference)`` is backend-agnostic: ``predict_fn`` maps a
float32 N×3×H×W batch to logits N×K×H×W (the dygraph model, or a runtime of shunted/runtime/). Every image is
evaluated at full resolution, as mmseg and PaddleSeg do: the whole image at once (``mode="whole"``), or a sliding
window of ``crop_size`` moved by ``stride`` whose overlapping logits are averaged (``mode="slide"``, mmseg's
``slide_inference``; for inputs too large to run at once). With a ``scale`` (SegEvalTransform, shunted/data/
seg_transforms.py) the image is resized before the model and the logits are resized back to the label's size
bilinearly (align_corners=False, no antialiasing, as mmseg's ``resize``): the metrics are always counted on the
label's pixels. Pixels labelled ``ignore_index`` are not counted. The confusion matrix is summed over the whole
split and the scores come from it (shunted/engine/seg/metrics.py).

``evaluate_seg_checkpoint`` is ``shunted seg-eval`` as a function: it checks the outputs, opens the checkpoint
(``open_seg_model``, the one place a segmentation checkpoint is put on a runtime), lists the data, evaluates,
writes the JSON and, with ``save_masks``, one index PNG per image at the label's size
(shunted/engine/seg/outputs.py: the folder rules).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

from ...data.loader_guard import failure_of
from ...errors import DataError, ShuntedError
from ...fileio import check_output_file, check_outputs, write_json_atomic
from ..infer import numpy
from . import memory
from .config import check_ignore_index

SegPredict = Callable[[np.ndarray], np.ndarray]
MODES = ("auto", "whole", "slide")
MASK_SUFFIX = ".png"


# ---------------------------------------------------------------------------------------------- inference


def _interp_matrix(out_size: int, in_size: int) -> np.ndarray:
    """``out_size`` × ``in_size`` weights of 1-D linear interpolation with half-pixel centres (align_corners=False):
    source coordinate (i + 0.5) × in / out − 0.5, clamped at 0, as torch / paddle ``interpolate`` compute it."""
    m = np.zeros((out_size, in_size), np.float64)
    scale = in_size / out_size
    src = np.maximum((np.arange(out_size) + 0.5) * scale - 0.5, 0.0)
    lo = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
    hi = np.minimum(lo + 1, in_size - 1)
    frac = src - lo
    rows = np.arange(out_size)
    np.add.at(m, (rows, lo), 1.0 - frac)
    np.add.at(m, (rows, hi), frac)
    return m.astype(np.float32)


def resize_logits(logits: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """K×h×w logits resized to K×H×W (``size`` = (H, W)) bilinearly, align_corners=False."""
    h, w = logits.shape[-2:]
    if (h, w) == tuple(size):
        return logits
    ry, rx = _interp_matrix(size[0], h), _interp_matrix(size[1], w)
    return np.einsum("yh,khw,xw->kyx", ry, logits.astype(np.float32), rx, optimize=True)


def _fit(logits, n: int, num_classes: int, h: int, w: int) -> np.ndarray:
    """The runtime's output as N×K×h×w float32: a list of one array is unwrapped; logits of the input padded to a
    multiple of 32 (bottom/right, shunted/models/fpn.py) are cropped back; anything else is an error."""
    if isinstance(logits, (list, tuple)):
        if len(logits) != 1:
            raise ValueError(f"the model returned {len(logits)} outputs, expected the logits only")
        logits = logits[0]
    logits = np.asarray(logits, dtype=np.float32)
    padded = (n, num_classes, -(-h // 32) * 32, -(-w // 32) * 32)
    if logits.shape == padded and padded != (n, num_classes, h, w):
        logits = logits[:, :, :h, :w]
    if logits.shape != (n, num_classes, h, w):
        raise ValueError(f"the model returned logits {logits.shape}, expected {(n, num_classes, h, w)}")
    return logits


def windows(height: int, width: int, crop: tuple[int, int], stride: tuple[int, int]) -> list[tuple[int, ...]]:
    """The (y1, y2, x1, x2) windows of mmseg's ``slide_inference``: a grid of ``stride`` steps, the last window
    of each row/column moved back inside the image, every window ``crop`` (or the whole side when smaller)."""
    (ch, cw), (sh, sw) = crop, stride
    rows = max(height - ch + sh - 1, 0) // sh + 1
    cols = max(width - cw + sw - 1, 0) // sw + 1
    out = []
    for r in range(rows):
        for c in range(cols):
            y2, x2 = min(r * sh + ch, height), min(c * sw + cw, width)
            out.append((max(y2 - ch, 0), y2, max(x2 - cw, 0), x2))
    return out


def slide_inference(
    predict_fn: SegPredict,
    image: np.ndarray,
    crop: tuple[int, int] | int,
    stride: tuple[int, int] | int,
    num_classes: int,
    batch_size: int = 1,
) -> np.ndarray:
    """K×H×W logits of ``image`` (3×H×W): ``crop``-sized windows every ``stride`` pixels (``windows``), run
    ``batch_size`` at a time; each pixel gets the mean of the logits of the windows covering it. A crop at least
    the image's size is one window, the whole image: the same logits as ``mode="whole"``."""
    crop = (crop, crop) if isinstance(crop, int) else tuple(crop)
    stride = (stride, stride) if isinstance(stride, int) else tuple(stride)
    if min(stride) < 1 or stride[0] > crop[0] or stride[1] > crop[1]:
        raise ValueError(f"stride {stride} must be between 1 and the crop size {crop}")
    _, height, width = image.shape
    boxes = windows(height, width, crop, stride)
    total = np.zeros((num_classes, height, width), np.float32)
    count = np.zeros((height, width), np.float32)
    for start in range(0, len(boxes), batch_size):
        chunk = boxes[start : start + batch_size]
        batch = np.stack([image[:, y1:y2, x1:x2] for y1, y2, x1, x2 in chunk])
        out = _fit(predict_fn(batch), len(chunk), num_classes, *batch.shape[-2:])
        for (y1, y2, x1, x2), logits in zip(chunk, out, strict=True):
            total[:, y1:y2, x1:x2] += logits
            count[y1:y2, x1:x2] += 1
    return total / count


def batch_logits(
    predict_fn: SegPredict,
    images: np.ndarray,
    num_classes: int,
    mode: str = "whole",
    crop_size: tuple[int, int] | None = None,
    stride: tuple[int, int] | None = None,
    batch_size: int = 1,
) -> np.ndarray:
    """N×K×H×W logits of ``images`` (N×3×H×W, one size) in ``mode`` (``whole`` or ``slide``)."""
    if mode == "whole":
        return _fit(predict_fn(images), len(images), num_classes, *images.shape[-2:])
    if mode == "slide":
        if crop_size is None:
            raise ValueError("mode 'slide' needs a crop size")
        step = stride or default_stride(crop_size)
        return np.stack(
            [slide_inference(predict_fn, im, crop_size, step, num_classes, batch_size) for im in images]
        )
    raise ValueError(f"mode {mode!r}: choose one of {', '.join(MODES)}")


def out_of_memory(path, shape, mode: str) -> ShuntedError:
    """The one-line error for a model call that ran out of memory on the image ``path`` (network input
    ``shape`` …×H×W): what to give instead."""
    h, w = shape[-2:]
    advice = (
        "use --mode slide --crop-size 512 or a smaller --scale"
        if mode == "whole"
        else "use a smaller --crop-size or --batch-size"
    )
    return ShuntedError(f"{path}: out of memory segmenting it at {w}×{h} (--mode {mode}): {advice}")


def default_stride(crop: tuple[int, int]) -> tuple[int, int]:
    """Two thirds of the crop (mmseg's ADE20K setting: crop 512, stride 341)."""
    return tuple(max(1, c * 2 // 3) for c in crop)


def predicted_labels(logits: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """H×W uint8 class indices (argmax, the first class on ties) of K×h×w logits resized to ``size``."""
    return resize_logits(logits, size).argmax(axis=0).astype(np.uint8)


# --------------------------------------------------------------------------------------------- evaluation


UNREADABLE = -1  # the second field of a sample the loader could not produce: no label or image is negative


def _unreadable(index: int) -> tuple:
    """A sample the loader could not produce: a 1×1 image and a 1×1 int64 ``UNREADABLE`` second field (a label is
    never negative, an RGB image is uint8), with its index. Not empty: Paddle's worker processes cannot pass
    empty arrays (the old empty placeholder crashed seg-eval --workers 2 with a traceback)."""
    return np.zeros((3, 1, 1), np.float32), np.full((1, 1), UNREADABLE, np.int64), np.int64(index)


def _marked(extra) -> bool:
    return extra.dtype == np.int64 and extra.shape == (1, 1) and int(extra[0, 0]) == UNREADABLE


def _single(batch):
    return batch[0]


@dataclass
class SegInference:
    """How an image goes through the model: whole, or by sliding window (``crop_size``, ``stride``), with
    ``batch_size`` images of one size (whole) or windows (slide) per model call. ``plan_for`` is the one place
    the mode of an image is chosen: ``auto`` (the default) runs the whole image when the estimate of its peak
    memory (shunted/engine/seg/memory.py, for ``model``) fits ``max_memory`` (default: a share of the memory
    available), else slides, and says so in one line; ``whole`` above the budget is refused before it runs."""

    mode: str = "auto"
    crop_size: tuple[int, int] | None = None
    stride: tuple[int, int] | None = None
    batch_size: int = 1
    model: str | None = None
    max_memory: int | None = None

    def __post_init__(self) -> None:
        """The flags' rules, as one-line errors naming them."""
        if self.mode not in MODES:
            raise ShuntedError(f"--mode {self.mode!r}: choose one of {', '.join(MODES)}")
        if self.mode == "slide" and self.crop_size is None:
            raise ShuntedError("--mode slide needs --crop-size")
        if self.mode == "whole" and (self.crop_size is not None or self.stride is not None):
            raise ShuntedError("--crop-size and --stride are for --mode slide (or auto)")
        if self.stride is not None and self.crop_size is None:
            raise ShuntedError("--stride needs --crop-size")
        if self.stride is not None and (
            self.stride[0] > self.crop_size[0] or self.stride[1] > self.crop_size[1]
        ):
            raise ShuntedError(
                f"--stride {self.stride[0]}x{self.stride[1]}: larger than --crop-size, the windows would leave gaps"
            )
        if self.crop_size is not None and self.stride is None:
            self.stride = default_stride(self.crop_size)
        if self.max_memory is None and self.mode != "slide":
            self.max_memory = memory.default_budget()
        self._plans: dict[tuple[int, ...], memory.Plan] = {}

    def plan_for(self, shape: tuple[int, ...], num_classes: int = 19) -> memory.Plan:
        """The plan (mode, window) for a network input of ``shape`` (…×H×W, N images when 4-D)."""
        key = tuple(shape)
        if key not in self._plans:
            h, w = shape[-2:]
            n = shape[0] if len(shape) == 4 else 1
            if self.mode == "slide":
                self._plans[key] = memory.Plan("slide", self.crop_size, self.stride, 0, 0, 0)
            else:
                self._plans[key] = memory.plan(
                    self.model or "",
                    h,
                    w,
                    self.max_memory,
                    memory.Window(self.mode, self.crop_size, self.stride),
                    n,
                    num_classes,
                )
        return self._plans[key]

    def mode_for(self, shape: tuple[int, ...]) -> str:
        """The mode for a network input of ``shape`` (…×H×W)."""
        return self.plan_for(shape).mode

    def logits(self, run: SegPredict, images: np.ndarray, num_classes: int, where) -> np.ndarray:
        """N×K×H×W logits of ``images`` (one size); out of memory is one line naming ``where``."""
        fresh = tuple(images.shape) not in self._plans
        plan = self.plan_for(images.shape, num_classes)
        if self.mode == "whole" and self.model is not None and plan.whole_bytes > plan.budget:
            raise ShuntedError(
                f"{where}: the whole-image pass at {images.shape[-1]}×{images.shape[-2]} would need about "
                f"{memory.gb(plan.whole_bytes)}, more than the {memory.gb(plan.budget)} budget (--max-memory): "
                "use --mode auto (a sliding window) or a smaller --scale"
            )
        if fresh and self.mode == "auto" and plan.mode == "slide":
            print(plan.note(str(where), images.shape[-2:]), file=sys.stderr, flush=True)
        try:
            return batch_logits(run, images, num_classes, plan.mode, plan.crop, plan.stride, self.batch_size)
        except MemoryError:
            raise out_of_memory(where, images.shape, plan.mode) from None

    def describe(self) -> dict:
        slide = self.mode == "slide" or (self.mode == "auto" and self.crop_size is not None)
        return {
            "mode": self.mode,
            "crop_size": list(self.crop_size) if slide else None,
            "stride": list(self.stride) if slide and self.stride else None,
            "max_memory": self.max_memory,
        }


class SegAccumulator:
    """The segmentation side of the inference loop (shunted/engine/infer.py): loader items ``(image 3×H'×W',
    extra, index)`` one at a time, held until a batch of one size is full (``SegInference``), then per image
    ``take(index, K×H'×W' logits, extra)``. Subclasses: the confusion matrix (seg-eval), the mask files
    (seg-predict)."""

    def __init__(self, inference: SegInference, num_classes: int, image_path):
        self.inference, self.num_classes, self.image_path = inference, num_classes, image_path
        self.pending: list[tuple] = []
        self.read = None  # index -> reads the sample again (its one-line error); set by the subclass

    def add(self, item, run) -> int:
        image, extra, index = item
        i = int(numpy(index))
        image, extra = numpy(image), numpy(extra)
        if _marked(extra):  # marked by MarkFailures (_unreadable): its error, in one line
            raise failure_of(self.image_path(i), partial(self.read, i))
        image = np.asarray(image, np.float32)
        done = 0
        if self.pending and (
            self.inference.mode_for(image.shape) == "slide"
            or len(self.pending) >= self.inference.batch_size
            or self.pending[0][0].shape != image.shape
        ):
            done = self.flush(run)
        self.pending.append((image, extra, i))
        return done

    def flush(self, run) -> int:
        if not self.pending:
            return 0
        images = np.stack([p[0] for p in self.pending])
        logits = self.inference.logits(run, images, self.num_classes, self.image_path(self.pending[0][2]))
        for (_, extra, i), lg in zip(self.pending, logits, strict=True):
            self.take(i, lg, extra)
        done = len(self.pending)
        self.pending.clear()
        return done

    def take(self, index: int, logits: np.ndarray, extra) -> None:
        raise NotImplementedError

    def figures(self) -> dict[str, str]:
        return {}


class ConfusionAccumulator(SegAccumulator):
    """seg-eval's accumulator: the K×K confusion matrix (rows = label) of the shard and its image count."""

    def __init__(self, dataset, inference: SegInference, num_classes: int, ignore_index: int, on_mask=None):
        from .metrics import ConfusionMatrix

        super().__init__(inference, num_classes, lambda i: dataset.samples.images[i])
        self.read = lambda i: dataset[i]
        self.dataset = dataset
        self.cm = ConfusionMatrix(num_classes, ignore_index)
        self.on_mask = on_mask
        self.images = 0

    def take(self, index: int, logits: np.ndarray, label) -> None:
        label = np.asarray(numpy(label), np.int64)
        pred = predicted_labels(logits, label.shape)
        self.cm.update(pred, label, where=str(self.dataset.samples.labels[index]))
        if self.on_mask is not None:
            self.on_mask(index, pred)
        self.images += 1

    def state(self) -> dict:
        return {"confusion": self.cm.matrix, "images": self.images}


def evaluate_segmentation(
    predict_fn: SegPredict,
    dataset,
    num_classes: int,
    inference: SegInference | None = None,
    workers: int = 0,
    on_mask: Callable[[int, np.ndarray], None] | None = None,
    progress: bool = True,
    world=None,
) -> dict:
    """Evaluate ``predict_fn`` on ``dataset`` (a SegDataset, shunted/data/seg_datasets.py: ``[i] -> (image
    float32 3×H'×W', label int64 H×W, i)``, ``.samples.images``; its ``ignore_index`` pixels are not counted);
    see the module docstring.

    inference: whole or slide, and ``batch_size`` images per model call in ``whole`` mode (consecutive images of
    one size), windows per call in ``slide`` mode. on_mask(i, mask): called with each image's predicted H×W
    uint8 mask at its label's size. world: shunted/engine/world.py ``World``; each process evaluates its
    contiguous share of the images (``World.shard``), rank 0 gathers and sums the confusion matrices, every rank
    returns the result.

    Returns shunted/engine/seg/metrics.py's ``seg_scores`` of the split's confusion matrix plus ``confusion``
    (K×K pixel counts, rows = label), ``images``, ``pixels`` (counted pixels) and timings.
    """
    from ..infer import Source, gather_parts, per_rank, run_inference
    from ..world import World
    from .metrics import seg_scores

    inference = inference or SegInference()
    world = world or World()
    indices = world.shard(len(dataset))
    acc = ConfusionAccumulator(dataset, inference, num_classes, dataset.ignore_index, on_mask)
    source = Source(dataset, _unreadable, _single, indices, batch_size=1, workers=workers)
    start = time.perf_counter()
    parts = gather_parts(run_inference(source, acc, predict_fn, progress), world)
    result = None
    if parts is not None:
        wall = time.perf_counter() - start
        matrix = np.sum([p.state["confusion"] for p in parts], axis=0, dtype=np.int64)
        images = sum(p.state["images"] for p in parts)
        result = dict(seg_scores(matrix))
        result.update(
            confusion=matrix.tolist(),
            images=images,
            pixels=int(matrix.sum()),
            wall_time_s=round(wall, 3),
            throughput_img_s=round(len(dataset) / wall, 3) if wall else None,
            timing={
                "model_s": round(sum(p.timing.model_s for p in parts), 3),
                "data_wait_s": round(sum(p.timing.data_wait_s for p in parts), 3),
            },
        )
        if world.size > 1:
            result["timing"]["per_rank"] = per_rank(parts, images=lambda s: s["images"])
    return world.broadcast(result) if world.size > 1 else result


# ------------------------------------------------------------------------------------------ the checkpoint


def open_seg_model(
    model: str,
    weights: str | os.PathLike | None,
    backend: str = "dygraph",
    threads: int | None = None,
    expect_num_classes: int | None = None,
    cache: bool = True,
):
    """A segmentation checkpoint on ``backend`` (shunted/engine/session.py ``Opened``): the one function
    ``seg-eval`` and ``seg-predict`` open a model with. The model's class count is the checkpoint's;
    ``expect_num_classes`` (``--num-classes``) must equal it."""
    from ...fileio import sha256_file
    from ...models.registry import is_seg_model, list_seg_models
    from ..session import RuntimeConfig, open_model

    if not is_seg_model(model):
        raise ShuntedError(
            f"--model {model!r}: not a segmentation model; choose one of {', '.join(list_seg_models())}"
        )
    opened = open_model(
        model,
        weights,
        RuntimeConfig(backend, threads=threads, cache=cache),
        expect_num_classes=expect_num_classes,
    )
    if opened.weights_sha256 is None and weights is not None:
        opened.weights_sha256 = sha256_file(weights)
    return opened


def _inside(path, folder) -> bool:
    real, top = Path(os.path.realpath(path)), Path(os.path.realpath(folder))
    return real == top or top in real.parents


@dataclass
class SegEvalConfig:
    """What ``shunted seg-eval`` runs (``commands/seg_eval.py`` builds it from the flags and ``-c`` / ``-o``).

    class_names: a file of class names, one per line in index order (recorded in the result as ``class_names``).
    reduce_zero_label: read labels as ADE20K's (``data/seg_datasets.py:reduce_zero_label``).
    """

    model: str
    weights: str | os.PathLike | None
    data: str | os.PathLike
    list_file: str | os.PathLike | None = None
    num_classes: int | None = None
    ignore_index: int = 255
    reduce_zero_label: bool = False
    class_names: str | os.PathLike | None = None
    limit: int | None = None
    scale: float | None = None
    inference: SegInference = field(default_factory=SegInference)
    workers: int = 2
    backend: str = "dygraph"
    threads: int | None = None
    cache: bool = True  # the start-up cache (shunted/runtime/cache.py); --no-cache
    output: str | os.PathLike | None = None
    save_masks: str | os.PathLike | None = None
    progress: bool = True


def _check_seg_eval_outputs(cfg: SegEvalConfig):
    """Before the work: an output that is an input, or a location that cannot be written, fails now (the list
    as list_seg_samples finds it: --list val.txt is also looked for under --data). Returns the masks folder."""
    from .outputs import OutputFolder

    list_path = cfg.list_file
    if (
        cfg.list_file is not None
        and not Path(cfg.list_file).is_file()
        and (Path(cfg.data) / cfg.list_file).is_file()
    ):
        list_path = Path(cfg.data) / cfg.list_file
    check_outputs(
        [("--output", cfg.output)],
        [("--weights", cfg.weights), ("--list", list_path), ("--class-names", cfg.class_names)],
        data=[("--data", cfg.data)],
        folders=[("--save-masks", cfg.save_masks)],
    )
    if cfg.output is not None:
        check_output_file(cfg.output)
    if cfg.save_masks is None:
        return None
    if cfg.output is not None and _inside(cfg.output, cfg.save_masks):
        raise ShuntedError(
            f"--output {cfg.output}: is inside --save-masks {cfg.save_masks}; write it outside"
        )
    masks = OutputFolder(cfg.save_masks, "--save-masks", "shunted seg-eval")
    masks.check()
    return masks


def _seg_eval_samples(cfg: SegEvalConfig, masks):
    """The labelled samples to evaluate and (with --save-masks) the mask file name of each."""
    from ...data.seg_datasets import list_seg_samples
    from .outputs import output_names

    samples = list_seg_samples(cfg.data, cfg.list_file).head(cfg.limit)
    if len(samples) == 0:
        raise DataError(f"{cfg.list_file or cfg.data}: no images to evaluate")
    missing = [i for i, label in enumerate(samples.labels) if label is None]
    if missing:
        raise DataError(f"{samples.images[missing[0]]}: has no label ({len(missing)} images without one)")
    if masks is None:
        return samples, None
    for folder in sorted({p.parent for p in [*samples.images, *samples.labels]}):
        if _inside(cfg.save_masks, folder):
            raise ShuntedError(
                f"--save-masks {cfg.save_masks}: is inside the data folder {folder}; write the masks outside it"
            )
    return samples, [
        n[0] for n in output_names(samples.images, lambda p: [p.stem + MASK_SUFFIX], "--save-masks")
    ]


def opened_for(cfg, opened=None):
    """``opened`` (checked against ``cfg.num_classes``) or the checkpoint of ``cfg`` opened here."""
    if opened is None:
        return open_seg_model(
            cfg.model,
            cfg.weights,
            cfg.backend,
            cfg.threads,
            expect_num_classes=cfg.num_classes,
            cache=cfg.cache,
        )
    if cfg.num_classes is not None and cfg.num_classes != opened.num_classes:
        raise ShuntedError(f"--num-classes {cfg.num_classes}: the model has {opened.num_classes} classes")
    return opened


def evaluate_seg_checkpoint(cfg: SegEvalConfig, opened=None, world=None) -> dict | None:
    """``shunted seg-eval`` as a function (module docstring); returns the result it writes to ``cfg.output``.

    opened: a checkpoint already opened (``open_seg_model``) instead of opening ``cfg.model`` here.
    world: the processes sharing the images (shunted/engine/world.py); rank 0 gathers, writes and returns the
    result, the other ranks write their masks and return None.
    """
    from ...data.seg_datasets import SegDataset
    from ...data.seg_transforms import SegEvalTransform
    from ..world import World
    from .palette import read_class_names

    world = world or World()
    masks = _check_seg_eval_outputs(cfg)
    samples, names = _seg_eval_samples(cfg, masks)
    opened = opened_for(cfg, opened)
    num_classes = opened.num_classes
    names_list = read_class_names(cfg.class_names, num_classes) if cfg.class_names is not None else None
    if masks is not None and num_classes > 256:
        raise ShuntedError(f"--save-masks: {num_classes} classes do not fit an 8-bit index PNG")
    check_ignore_index(cfg.ignore_index, num_classes)
    pre = opened.pretrained_cfg
    dataset = SegDataset(
        samples,
        SegEvalTransform(mean=pre.mean, std=pre.std, scale=cfg.scale),
        ignore_index=cfg.ignore_index,
        reduce_zero_label=cfg.reduce_zero_label,
    )
    on_mask = None
    if masks is not None:
        from PIL import Image

        masks.begin(names, world)

        def on_mask(i: int, mask: np.ndarray) -> None:
            masks.write_image(names[i], Image.fromarray(mask, "L"))

    progress = cfg.progress and world.main
    try:
        scores = evaluate_segmentation(
            opened.predictor, dataset, num_classes, cfg.inference, cfg.workers, on_mask, progress, world
        )
    except BaseException:  # a bad label, a full disk, Ctrl-C: no partial --save-masks output
        if masks is not None:
            masks.abort()
        raise
    if not world.main:  # rank 0 writes the result
        return None
    result = _seg_eval_result(cfg, opened, samples, names_list, scores, world.size)
    if masks is not None:
        masks.finish(
            {
                "model": result["model"],
                "weights": result["weights"],
                "data": result["data"],
                "masks": "one 8-bit index PNG per image (mode L), the predicted class of each pixel, at the "
                "label's size",
                "images": [{"image": samples.relative(i), "mask": names[i]} for i in range(len(samples))],
            }
        )
    if cfg.output is not None:
        write_json_atomic(cfg.output, result)
    return result


def _seg_eval_result(cfg: SegEvalConfig, opened, samples, names_list, scores: dict, world_size: int) -> dict:
    """The JSON of ``shunted seg-eval``: what was run on what, then the scores (``_rounded``)."""
    from ..evaluate import versions

    return {
        "model": opened.model_name,
        "weights": {"path": opened.weights, "sha256": opened.weights_sha256},
        "backend": opened.backend,
        "num_classes": opened.num_classes,
        "class_names": names_list,
        "ignore_index": cfg.ignore_index,
        "reduce_zero_label": cfg.reduce_zero_label,
        "data": {
            "root": str(samples.root),
            "list": str(cfg.list_file) if cfg.list_file is not None else None,
            "samples": len(samples),
            "limit": cfg.limit,
        },
        "evaluation": {
            **cfg.inference.describe(),
            "scale": cfg.scale,
            "metrics_at": "the label's size (logits resized back bilinearly when --scale is given)",
            "mean": list(opened.pretrained_cfg.mean),
            "std": list(opened.pretrained_cfg.std),
            "batch_size": cfg.inference.batch_size,
            "workers": cfg.workers,
        },
        "world_size": world_size,
        **_rounded(scores),
        "masks": str(cfg.save_masks) if cfg.save_masks is not None else None,
        "versions": versions(),
    }


def _rounded(scores: dict) -> dict:
    """Percent figures to 4 decimals (None stays None)."""

    def r(v):
        if isinstance(v, float):
            return round(v, 4)
        if isinstance(v, list):
            return [r(x) for x in v]
        return v

    return {k: (v if k == "confusion" else r(v)) for k, v in scores.items()}


def format_table(result: dict, class_names: list[str] | None = None) -> str:
    """The printed summary: the headline figures, then one row per class (IoU, accuracy)."""
    k = result["num_classes"]
    names = class_names or result.get("class_names") or [str(i) for i in range(k)]
    sha = (result["weights"].get("sha256") or "?")[:12]
    rows = [
        ("model", f"{result['model']} ({result['weights']['path']}, sha256 {sha}…)"),
        ("images", f"{result['images']:,} ({result['pixels']:,} labelled pixels)"),
        ("mIoU", f"{_pct(result['miou'])} % (mean over {result.get('mean_over', '?')})"),
    ]
    if "miou_counting_absent_as_zero" in result:
        rows.append(
            ("mIoU absent=0", f"{_pct(result['miou_counting_absent_as_zero'])} % (PaddleSeg's convention)")
        )
    rows += [
        ("pixel acc.", f"{_pct(result['pixel_accuracy'])} %"),
        ("throughput", f"{result['throughput_img_s']} img/s, {result['wall_time_s']:.1f} s wall"),
    ]
    width = max(len(k) for k, _ in rows)
    lines = [f"{k:<{width}}  {v}" for k, v in rows]
    lines += ["", f"{'class':<16} {'IoU %':>8} {'acc %':>8}"]
    accs = result.get("class_accuracy") or [None] * k
    for name, iou, acc in zip(names, result["class_iou"], accs, strict=True):
        lines.append(f"{name[:16]:<16} {_pct(iou, 8)} {_pct(acc, 8)}")
    return "\n".join(lines)


def _pct(v, width: int = 0) -> str:
    return f"{'—' if v is None else f'{v:.2f}':>{width}}"
