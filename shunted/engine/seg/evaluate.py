"""Semantic segmentation evaluation: mIoU, per-class IoU and accuracy, pixel accuracy, the confusion matrix.

``evaluate_segmentation(predict_fn, dataset, num_classes, ignore_index)`` is backend-agnostic: ``predict_fn`` maps a
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
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np

from ...data.loader_guard import MarkFailures, failure_of
from ...errors import DataError, ShuntedError
from ...fileio import check_output_file, check_outputs, write_json_atomic

SegPredict = Callable[[np.ndarray], np.ndarray]
MODES = ("whole", "slide")
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


def _unreadable(index: int) -> tuple:
    """A sample the loader could not produce: an empty image (a real one never is) and its index."""
    return np.zeros((3, 0, 0), np.float32), np.zeros((0, 0), np.int64), np.int64(index)


def _single(batch):
    return batch[0]


def _numpy(x) -> np.ndarray:
    return x.numpy() if hasattr(x, "numpy") else np.asarray(x)


def evaluate_segmentation(
    predict_fn: SegPredict,
    dataset,
    num_classes: int,
    ignore_index: int,
    batch_size: int = 1,
    workers: int = 0,
    mode: str = "whole",
    crop_size: tuple[int, int] | None = None,
    stride: tuple[int, int] | None = None,
    on_mask: Callable[[int, np.ndarray], None] | None = None,
    progress: bool = True,
    world=None,
) -> dict:
    """Evaluate ``predict_fn`` on ``dataset`` (a SegDataset, shunted/data/seg_datasets.py: ``[i] -> (image
    float32 3×H'×W', label int64 H×W, i)``, ``.samples.images``); see the module docstring.

    batch_size: images per model call in ``whole`` mode (consecutive images of one size), windows per call in
    ``slide`` mode. on_mask(i, mask): called with each image's predicted H×W uint8 mask at its label's size.
    world: shunted/engine/world.py ``World``; each process evaluates every ``world.size``-th image and the
    confusion matrices are summed (all processes return the same result).

    Returns shunted/engine/seg/metrics.py's ``seg_scores`` of the split's confusion matrix plus ``confusion``
    (K×K pixel counts, rows = label), ``images``, ``pixels`` (counted pixels) and timings.
    """
    import paddle
    from tqdm import tqdm

    from .metrics import ConfusionMatrix, seg_scores

    if mode not in MODES:
        raise ValueError(f"mode {mode!r}: choose one of {', '.join(MODES)}")
    rank, size = (world.rank, world.size) if world is not None else (0, 1)
    indices = list(range(rank, len(dataset), size))
    loader = paddle.io.DataLoader(
        MarkFailures(dataset, _unreadable, indices),
        batch_size=1,
        shuffle=False,
        drop_last=False,
        num_workers=workers,
        collate_fn=_single,
    )
    cm = ConfusionMatrix(num_classes, ignore_index)
    bar = tqdm(
        total=len(indices), unit="img", disable=None if progress else True, dynamic_ncols=True, leave=False
    )
    timing = {"model_s": 0.0, "data_wait_s": 0.0}
    n = 0
    pending: list[tuple] = []
    start = wait_from = time.perf_counter()

    def flush():
        nonlocal n
        if not pending:
            return
        images = np.stack([p[0] for p in pending])
        t0 = time.perf_counter()
        try:
            logits = batch_logits(predict_fn, images, num_classes, mode, crop_size, stride, batch_size)
        except MemoryError:
            raise out_of_memory(dataset.samples.images[pending[0][2]], images.shape, mode) from None
        timing["model_s"] += time.perf_counter() - t0
        for (_, label, i), lg in zip(pending, logits, strict=True):
            pred = predicted_labels(lg, label.shape)
            cm.update(pred, label, where=str(dataset.samples.labels[i]))
            if on_mask is not None:
                on_mask(i, pred)
        n += len(pending)
        bar.update(len(pending))
        bar.set_postfix(img_s=f"{n / (time.perf_counter() - start):.2f}", refresh=False)
        pending.clear()

    try:
        for image, label, index in loader:
            timing["data_wait_s"] += time.perf_counter() - wait_from
            i = int(_numpy(index))
            if _numpy(image).size == 0:  # marked by MarkFailures (_unreadable): its error, in one line
                raise failure_of(dataset.samples.images[i], partial(dataset.__getitem__, i))
            image, label = np.asarray(image, np.float32), np.asarray(label, np.int64)
            if pending and (
                mode == "slide" or len(pending) >= batch_size or pending[0][0].shape != image.shape
            ):
                flush()
            pending.append((image, label, i))
            wait_from = time.perf_counter()
        flush()
    finally:
        bar.close()
    wall = time.perf_counter() - start
    matrix = cm.matrix
    if world is not None and world.size > 1:
        summed = world.sum([float(v) for v in matrix.ravel()] + [float(n)])
        matrix = np.rint(summed[:-1]).astype(np.int64).reshape(num_classes, num_classes)
        n = int(round(summed[-1]))
    result = dict(seg_scores(matrix))
    result.update(
        confusion=matrix.tolist(),
        images=n,
        pixels=int(matrix.sum()),
        wall_time_s=round(wall, 3),
        throughput_img_s=round(len(indices) / wall, 3) if wall else None,
        timing={k: round(v, 3) for k, v in timing.items()},
    )
    return result


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
    from ..session import open_model

    if not is_seg_model(model):
        raise ShuntedError(
            f"--model {model!r}: not a segmentation model; choose one of {', '.join(list_seg_models())}"
        )
    opened = open_model(
        model, weights, backend, threads=threads, expect_num_classes=expect_num_classes, cache=cache
    )
    if opened.weights_sha256 is None and weights is not None:
        opened.weights_sha256 = sha256_file(weights)
    return opened


def _inside(path, folder) -> bool:
    real, top = Path(os.path.realpath(path)), Path(os.path.realpath(folder))
    return real == top or top in real.parents


def evaluate_seg_checkpoint(
    model: str,
    weights: str | os.PathLike,
    data: str | os.PathLike,
    list_file: str | os.PathLike | None = None,
    num_classes: int | None = None,
    ignore_index: int = 255,
    reduce_zero_label: bool = False,
    output: str | os.PathLike | None = None,
    save_masks: str | os.PathLike | None = None,
    backend: str = "dygraph",
    threads: int | None = None,
    batch_size: int = 1,
    workers: int = 2,
    scale: float | None = None,
    mode: str = "whole",
    crop_size: tuple[int, int] | None = None,
    stride: tuple[int, int] | None = None,
    limit: int | None = None,
    progress: bool = True,
    class_names: str | os.PathLike | None = None,
    opened=None,
    cache: bool = True,
) -> dict:
    """``shunted seg-eval`` as a function (module docstring); returns the result it writes to ``output``.

    class_names: a file of class names, one per line in index order (recorded in the result as ``class_names``).
    reduce_zero_label: read labels as ADE20K's (``data/seg_datasets.py:reduce_zero_label``).
    opened: a checkpoint already opened (``open_seg_model``) instead of opening ``model`` / ``weights`` here.
    """
    from ...data.seg_datasets import SegDataset, list_seg_samples
    from ...data.seg_transforms import SegEvalTransform
    from ..evaluate import versions
    from .outputs import OutputFolder, output_names
    from .palette import read_class_names

    if mode not in MODES:
        raise ShuntedError(f"--mode {mode!r}: choose one of {', '.join(MODES)}")
    if mode == "slide" and crop_size is None:
        raise ShuntedError("--mode slide needs --crop-size")
    if (
        stride is not None
        and crop_size is not None
        and (stride[0] > crop_size[0] or stride[1] > crop_size[1])
    ):
        raise ShuntedError(
            f"--stride {stride[0]}x{stride[1]}: larger than --crop-size, windows would leave gaps"
        )
    # before the work: an output that is an input, or a location that cannot be written, fails now; the list
    # as list_seg_samples finds it (--list val.txt is also looked for under --data)
    list_path = list_file
    if list_file is not None and not Path(list_file).is_file() and (Path(data) / list_file).is_file():
        list_path = Path(data) / list_file
    check_outputs(
        [("--output", output)],
        [("--weights", weights), ("--list", list_path), ("--class-names", class_names)],
        data=[("--data", data)],
        folders=[("--save-masks", save_masks)],
    )
    if output is not None:
        check_output_file(output)
    masks = None
    if save_masks is not None:
        if output is not None and _inside(output, save_masks):
            raise ShuntedError(f"--output {output}: is inside --save-masks {save_masks}; write it outside")
        masks = OutputFolder(save_masks, "--save-masks", "shunted seg-eval")
        masks.check()
    samples = list_seg_samples(data, list_file).head(limit)
    if len(samples) == 0:
        raise DataError(f"{list_file or data}: no images to evaluate")
    missing = [i for i, label in enumerate(samples.labels) if label is None]
    if missing:
        raise DataError(f"{samples.images[missing[0]]}: has no label ({len(missing)} images without one)")
    names = None
    if masks is not None:
        for folder in sorted({p.parent for p in [*samples.images, *samples.labels]}):
            if _inside(save_masks, folder):
                raise ShuntedError(
                    f"--save-masks {save_masks}: is inside the data folder {folder}; write the masks outside it"
                )
        names = [n[0] for n in output_names(samples.images, lambda p: [p.stem + MASK_SUFFIX], "--save-masks")]
    if opened is None:
        opened = open_seg_model(model, weights, backend, threads, expect_num_classes=num_classes, cache=cache)
    elif num_classes is not None and num_classes != opened.num_classes:
        raise ShuntedError(f"--num-classes {num_classes}: the model has {opened.num_classes} classes")
    num_classes = opened.num_classes
    names_list = read_class_names(class_names, num_classes) if class_names is not None else None
    if masks is not None and num_classes > 256:
        raise ShuntedError(f"--save-masks: {num_classes} classes do not fit an 8-bit index PNG")
    if ignore_index < 0:
        raise ShuntedError(f"--ignore-index {ignore_index}: must be 0 or more")
    cfg = opened.pretrained_cfg
    transform = SegEvalTransform(mean=cfg.mean, std=cfg.std, scale=scale)
    dataset = SegDataset(samples, transform, reduce_zero_label=reduce_zero_label)

    on_mask = None
    if masks is not None:
        from PIL import Image

        masks.begin(names)

        def on_mask(i: int, mask: np.ndarray) -> None:
            masks.write_image(names[i], Image.fromarray(mask, "L"))

    try:
        scores = evaluate_segmentation(
            opened.predictor,
            dataset,
            num_classes,
            ignore_index,
            batch_size=batch_size,
            workers=workers,
            mode=mode,
            crop_size=crop_size,
            stride=(stride or default_stride(crop_size)) if mode == "slide" else None,
            on_mask=on_mask,
            progress=progress,
        )
    except BaseException:  # a bad label, a full disk, Ctrl-C: no partial --save-masks output
        if masks is not None:
            masks.abort()
        raise
    result = {
        "model": opened.model_name,
        "weights": {"path": opened.weights, "sha256": opened.weights_sha256},
        "backend": opened.backend,
        "num_classes": num_classes,
        "class_names": names_list,
        "ignore_index": ignore_index,
        "reduce_zero_label": reduce_zero_label,
        "data": {
            "root": str(samples.root),
            "list": str(list_file) if list_file is not None else None,
            "samples": len(samples),
            "limit": limit,
        },
        "evaluation": {
            "mode": mode,
            "crop_size": list(crop_size) if mode == "slide" else None,
            "stride": list(stride or default_stride(crop_size)) if mode == "slide" else None,
            "scale": scale,
            "metrics_at": "the label's size (logits resized back bilinearly when --scale is given)",
            "mean": list(cfg.mean),
            "std": list(cfg.std),
            "batch_size": batch_size,
            "workers": workers,
        },
        **_rounded(scores),
        "masks": str(save_masks) if save_masks is not None else None,
        "versions": versions(),
    }
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
    if output is not None:
        write_json_atomic(output, result)
    return result


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
