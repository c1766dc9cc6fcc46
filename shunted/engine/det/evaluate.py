"""Detection evaluation (``shunted det-eval``): detections of a split through the one inference loop, COCO metrics.

``DetAccumulator`` is detection's accumulator of shunted/engine/infer.py: a loader batch (images padded to one
size, shunted/data/det_transforms.py ``collate_detection``) goes through the model (raw outputs, cls and box
deltas), is post-processed by the same numpy code for every runtime (shunted/models/retinanet.py
``postprocess_outputs``), and each image's detections are taken back to its original pixels (divided by the
resize's per-axis scale factor, as mmdet) in the COCO results format. Under the launcher each rank runs its
contiguous share of whole batches (``World.shard(n, batch_size)``: the padding of every batch is a one-process
run's), rank 0 concatenates the shares in rank order (= sample order) and scores them: the one-process result.

``evaluate_det_checkpoint`` is the command as a function: outputs checked first, the checkpoint opened
(``session.open_model``), the data listed, the pass, the metrics (``metrics.py``), ``--output`` and
``--save-detections`` written atomically. ``--detections FILE`` (``DetEvalConfig.detections``) scores a saved
results file without a model (as mmdet's ``eval_metric``).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from functools import partial

import numpy as np

from ...data.loader_guard import failure_of
from ...errors import DataError, ShuntedError
from ...fileio import check_output_file, check_outputs, write_json_atomic
from ..infer import numpy


def unreadable(index: int) -> tuple:
    """A sample the loader could not produce: an empty image and its index."""
    return (
        np.zeros((3, 0, 0), np.float32),
        np.zeros((0, 4), np.float32),
        np.zeros(0, np.int64),
        {"index": index},
    )


def collate(batch: list, targets: bool = False):
    """``collate_detection``'s padded images and infos, with unreadable samples apart (they have no size to pad
    to) as a list of indices: ``(images, infos, failed)``; with ``targets`` (training) ``(images, boxes, labels,
    pad shapes, failed)``, boxes and labels as Python lists. Paddle's loader (3.3) ends the iteration silently at a
    batch holding no array and fails on an empty array from a worker process (an image without boxes): the image
    array is never empty and nothing else is an array."""
    from ...data.det_transforms import collate_detection

    good = [b for b in batch if b[0].size]
    failed = [int(b[3]["index"]) for b in batch if not b[0].size]
    if not good:
        empty = np.zeros((1, 3, 32, 32), np.float32)
        return (empty, [], [], [], failed) if targets else (empty, [], failed)
    images, boxes, labels, infos = collate_detection(good)
    if not targets:
        return images, infos, failed
    return (
        images,
        [np.asarray(b, np.float32).reshape(-1, 4).tolist() for b in boxes],
        [np.asarray(lab, np.int64).tolist() for lab in labels],
        [list(info["pad_shape"]) for info in infos],
        failed,
    )


def to_results(det: dict, info: dict, image_id: int, category_ids) -> list[dict]:
    """One image's detections (boxes in the network input's pixels) in the COCO results format, in the original
    image's pixels (boxes ÷ the per-axis scale factor, clipped to the image)."""
    sx, sy = info["scale_factor"]
    h, w = info["orig_size"]
    boxes = det["boxes"] / np.array([sx, sy, sx, sy], np.float32)
    boxes = np.clip(boxes, 0, [w, h, w, h])
    return [
        {
            "image_id": image_id,
            "category_id": int(category_ids[int(label)]),
            "bbox": [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])],
            "score": float(score),
        }
        for b, score, label in zip(boxes, det["scores"], det["labels"], strict=True)
    ]


class DetAccumulator:
    """detect: per loader batch, the model's raw outputs → detections per image → ``take(index, results)``."""

    def __init__(self, dataset, image_ids=None, category_ids=None):
        self.dataset = dataset
        self.image_ids = image_ids if image_ids is not None else dataset.samples.image_ids
        self.category_ids = category_ids if category_ids is not None else dataset.samples.category_ids
        self.results: list[dict] = []
        self.count = 0

    def image_path(self, index: int):
        return self.dataset.samples.images[index]

    def add(self, batch, run) -> int:
        from ...models.retinanet import postprocess_outputs

        images, infos, failed = batch
        if len(failed):
            i = int(failed[0])
            raise failure_of(self.image_path(i), partial(self.dataset.__getitem__, i))
        images = np.asarray(numpy(images), np.float32)
        out = run(images)
        cls, reg = (np.asarray(o, np.float32) for o in out)
        shapes = [tuple(info["image_shape"]) for info in infos]
        for det, info in zip(postprocess_outputs(cls, reg, images.shape[2:], shapes), infos, strict=True):
            self.take(int(info["index"]), det, info)
        self.count += len(infos)
        return len(infos)

    def take(self, index: int, det: dict, info: dict) -> None:
        self.results += to_results(det, info, self.image_ids[index], self.category_ids)

    def flush(self, run) -> int:
        return 0

    def figures(self) -> dict[str, str]:
        return {"dets": str(len(self.results))}

    def state(self) -> dict:
        return {"results": self.results, "images": self.count}


def detect_dataset(predictor, dataset, batch_size: int, workers: int, world, progress: bool = True):
    """Run ``predictor`` (a float32 NCHW batch → [cls, box deltas]) over ``dataset`` (a ``DetDataset``) on every
    rank; rank 0 gets (results in sample order, images, timing dict), the others None."""
    from ..infer import Source, gather_parts, per_rank, run_inference

    indices = world.shard(len(dataset), batch_size)
    source = Source(dataset, unreadable, collate, indices, batch_size=batch_size, workers=workers)
    part = run_inference(source, DetAccumulator(dataset), predictor, progress)
    parts = gather_parts(part, world)
    if parts is None:
        return None
    timing = {
        "model_s": round(sum(p.timing.model_s for p in parts), 3),
        "data_wait_s": round(sum(p.timing.data_wait_s for p in parts), 3),
    }
    if world.size > 1:
        timing["per_rank"] = per_rank(parts, images=lambda s: s["images"])
    results = [r for p in parts for r in p.state["results"]]
    return results, sum(p.state["images"] for p in parts), timing


def open_det_model(model: str, weights, backend: str = "dygraph", threads: int | None = None):
    """A detection checkpoint on ``backend`` (shunted/engine/session.py ``Opened``): the predictor returns the raw
    outputs [cls (B, N, K), box deltas (B, N, 4)] of the dygraph model or of its export (dynamic H × W), which
    ``DetAccumulator`` post-processes with the same numpy code."""
    from ...fileio import sha256_file
    from ...models.registry import is_det_model, list_det_models
    from ..session import RuntimeConfig, open_model

    if not is_det_model(model):
        raise ShuntedError(
            f"--model {model!r}: not a detection model; choose one of {', '.join(list_det_models())}"
        )
    if backend == "auto":  # the evaluation commands' default: for the detectors, dygraph
        backend = "dygraph"
    opened = open_model(model, weights, RuntimeConfig(backend, threads=threads))
    if opened.weights_sha256 is None and weights is not None:
        opened.weights_sha256 = sha256_file(weights)
    return opened


@dataclass
class DetEvalConfig:
    """What ``shunted det-eval`` runs (``commands/det_eval.py`` builds it from the flags).

    detections: a COCO results file to score instead of running ``model`` (``model`` / ``weights`` unused).
    """

    model: str | None
    weights: str | os.PathLike | None
    data: str | os.PathLike
    list_file: str | os.PathLike
    label_list: str | os.PathLike | None = None
    img_scale: tuple[int, int] = (1333, 800)
    limit: int | None = None
    batch_size: int = 1
    workers: int = 2
    backend: str = "dygraph"
    threads: int | None = None
    output: str | os.PathLike | None = None
    save_detections: str | os.PathLike | None = None
    detections: str | os.PathLike | None = None
    progress: bool = True


def _list_path(cfg: DetEvalConfig):
    path = cfg.list_file
    if not os.path.isfile(path) and os.path.isfile(os.path.join(cfg.data, path)):
        path = os.path.join(cfg.data, path)
    return path


def _check_outputs(cfg: DetEvalConfig) -> None:
    check_outputs(
        [("--output", cfg.output), ("--save-detections", cfg.save_detections)],
        [("--weights", cfg.weights), ("--list", _list_path(cfg)), ("--label-list", cfg.label_list),
         ("--detections", cfg.detections)],
        data=[("--data", cfg.data)],
    )  # fmt: skip
    for path in (cfg.output, cfg.save_detections):
        if path is not None:
            check_output_file(path)
    if cfg.detections is not None and cfg.save_detections is not None:
        raise ShuntedError(
            "--save-detections: --detections scores a saved file; there is nothing new to save"
        )


def list_samples(cfg: DetEvalConfig):
    from ...data.det_datasets import list_det_samples

    samples = list_det_samples(cfg.data, cfg.list_file, cfg.label_list)
    if cfg.limit is not None:
        for name in ("images", "image_ids", "sizes", "boxes", "labels"):
            setattr(samples, name, getattr(samples, name)[: cfg.limit])
    return samples


def _read_detections(path) -> list:
    try:
        return json.loads(open(path, encoding="utf-8").read())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: not a readable COCO results JSON file ({exc})") from None


def evaluate_det_checkpoint(cfg: DetEvalConfig, opened=None, world=None) -> dict | None:
    """``shunted det-eval`` as a function (module docstring); rank 0 returns the result it writes to
    ``cfg.output``, the other ranks None."""
    from ...data.det_datasets import DetDataset
    from ...data.det_transforms import DetTransform
    from ..evaluate import versions
    from ..world import World
    from .metrics import check_detections, coco_metrics, ground_truth

    world = world or World()
    _check_outputs(cfg)
    samples = list_samples(cfg)
    start = time.perf_counter()
    record: dict = {}
    if cfg.detections is not None:
        results = _read_detections(cfg.detections)
        check_detections(results, samples, str(cfg.detections))
        images, timing = len(samples), {}
        record = {"detections": str(cfg.detections)}
    else:
        if opened is None:
            opened = open_det_model(cfg.model, cfg.weights, cfg.backend, cfg.threads)
        if opened.num_classes != len(samples.class_names):
            raise ShuntedError(
                f"{cfg.weights}: detects {opened.num_classes} classes, the data has {len(samples.class_names)} "
                f"({', '.join(samples.class_names)})"
            )
        pre = opened.pretrained_cfg
        dataset = DetDataset(samples, DetTransform(img_scale=cfg.img_scale, mean=pre.mean, std=pre.std))
        out = detect_dataset(
            opened.predictor, dataset, cfg.batch_size, cfg.workers, world, cfg.progress and world.main
        )
        if out is None:
            return None
        results, images, timing = out
        record = {
            "model": opened.model_name,
            "weights": {"path": opened.weights, "sha256": opened.weights_sha256},
            "backend": opened.backend,
        }
    if not world.main:
        return None
    metrics = coco_metrics(ground_truth(samples), results, samples)
    wall = time.perf_counter() - start
    result = {
        **record,
        **metrics,
        "images": images,
        "detections_count": len(results),
        "data": {**samples.summary(), "root": str(samples.root), "limit": cfg.limit},
        "evaluation": {
            "img_scale": list(cfg.img_scale),
            "batch_size": cfg.batch_size,
            "metric": "COCO bbox (pycocotools)",
        },
        "world_size": world.size,
        "wall_time_s": round(wall, 3),
        "throughput_img_s": round(images / wall, 3) if wall and cfg.detections is None else None,
        "timing": timing,
        "versions": versions(),
    }
    if cfg.save_detections is not None:
        write_json_atomic(cfg.save_detections, results)
    if cfg.output is not None:
        write_json_atomic(cfg.output, result)
    return result


def format_table(result: dict) -> str:
    """The printed summary: the COCO figures, then one row per class."""

    def pct(v):
        return "—" if v is None else f"{v:.2f}"

    head = result.get("model") or f"detections {result.get('detections')}"
    lines = [
        f"{head}: {result['images']} images, {result['detections_count']} detections",
        "AP {} | AP50 {} | AP75 {} | AP small {} medium {} large {} | AR100 {}".format(
            *(pct(result[k]) for k in ("ap", "ap50", "ap75", "ap_small", "ap_medium", "ap_large", "ar100"))
        ),
        f"{'class':<20} {'AP %':>8}",
    ]
    lines += [f"{name[:20]:<20} {pct(ap):>8}" for name, ap in result["class_ap"].items()]
    note = result["data"].get("boxes_dropped")
    if note:
        lines.append(f"ground-truth boxes dropped when reading: {note}")
    return "\n".join(lines)
