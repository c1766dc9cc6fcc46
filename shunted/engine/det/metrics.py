"""COCO detection metrics by pycocotools, for COCO and VOC data alike (mmdet's ``CocoMetric``).

The ground truth is the COCO file itself for COCO data (crowd boxes and areas as the file has them), and for VOC
data a COCO dataset built from the samples (``voc_ground_truth``: ``image_id`` = the image's position in the list,
``category_id`` = its class's 1-based position in ``label_list.txt``, area = w·h, the boxes dropped when reading
left out). Detections are the COCO results format (``image_id``, ``category_id``, ``bbox`` [x, y, w, h] in the
original image's pixels, ``score``). Figures are in percent: AP (IoU .50:.95), AP50, AP75, AP small / medium /
large, AR@100, and per class the AP at IoU .50:.95 over all areas with 100 detections per image (mmdet's
``classwise``); a figure pycocotools cannot compute (no ground truth of that size or class) is None.
"""

from __future__ import annotations

import contextlib
import copy
import io
from collections.abc import Sequence

import numpy as np

from ...errors import DataError

KEYS = ("ap", "ap50", "ap75", "ap_small", "ap_medium", "ap_large")
AR100 = 8  # index of AR@100 (all areas) in COCOeval.stats


def voc_ground_truth(samples) -> dict:
    """A COCO ground-truth dict of ``DetSamples`` (shunted/data/det_datasets.py)."""
    images, annotations = [], []
    for i, image in enumerate(samples.images):
        size = samples.sizes[i]
        if size is None:  # no <size> in the XML: read it from the image header
            from PIL import Image

            with Image.open(image) as im:
                size = im.size
        images.append(
            {
                "id": samples.image_ids[i],
                "file_name": samples.relative(i),
                "width": size[0],
                "height": size[1],
            }
        )
        for box, label in zip(samples.boxes[i], samples.labels[i], strict=True):
            x1, y1, x2, y2 = (float(v) for v in box)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": samples.image_ids[i],
                    "category_id": samples.category_ids[int(label)],
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": (x2 - x1) * (y2 - y1),
                    "iscrowd": 0,
                }
            )
    categories = [
        {"id": c, "name": n} for c, n in zip(samples.category_ids, samples.class_names, strict=True)
    ]
    return {"images": images, "annotations": annotations, "categories": categories}


def _quiet(fn, *args):
    with contextlib.redirect_stdout(io.StringIO()):
        return fn(*args)


def ground_truth(samples):
    """The pycocotools ``COCO`` of the samples' ground truth (module docstring)."""
    from pycocotools.coco import COCO

    if samples.format == "coco":
        return _quiet(COCO, str(samples.source))
    coco = COCO()
    coco.dataset = voc_ground_truth(samples)
    _quiet(coco.createIndex)
    return coco


def check_detections(dets, samples, source: str) -> None:
    """A results list's entries refer to the samples' images and classes (one-line DataError otherwise)."""
    if not isinstance(dets, list):
        raise DataError(f"{source}: not a COCO results list (a JSON array of detections)")
    images, cats = set(samples.image_ids), set(samples.category_ids)
    for k, d in enumerate(dets):
        ok = isinstance(d, dict) and {"image_id", "category_id", "bbox", "score"} <= set(d)
        if not ok or not isinstance(d["bbox"], list) or len(d["bbox"]) != 4:
            raise DataError(f"{source}: entry {k} is not {{image_id, category_id, bbox [x, y, w, h], score}}")
        if d["image_id"] not in images:
            raise DataError(
                f"{source}: entry {k}: image_id {d['image_id']!r} is not an image of the evaluated list"
            )
        if d["category_id"] not in cats:
            raise DataError(
                f"{source}: entry {k}: category_id {d['category_id']!r} is not a class of the data"
            )
        try:
            [float(v) for v in (*d["bbox"], d["score"])]
        except (TypeError, ValueError):
            raise DataError(f"{source}: entry {k}: bbox and score must be numbers") from None


def coco_metrics(gt, dets: Sequence[dict], samples) -> dict:
    """The figures of ``dets`` against ``gt`` (a pycocotools ``COCO``) over the samples' images, in percent."""
    from pycocotools.cocoeval import COCOeval

    names = samples.class_names
    if not dets:  # pycocotools cannot load an empty results list
        return {**{k: 0.0 for k in KEYS}, "ar100": 0.0, "class_ap": {n: 0.0 for n in names}}
    res = _quiet(gt.loadRes, copy.deepcopy(list(dets)))
    ev = COCOeval(gt, res, "bbox")
    ev.params.imgIds = list(samples.image_ids)
    _quiet(ev.evaluate)
    _quiet(ev.accumulate)
    _quiet(ev.summarize)
    stats = [None if s < 0 else round(100.0 * float(s), 4) for s in ev.stats]
    precision = ev.eval["precision"]  # T × R × K × areas × maxDets
    class_ap = {}
    for k, cat in enumerate(ev.params.catIds):
        p = precision[:, :, k, 0, -1]
        p = p[p > -1]
        name = names[samples.category_ids.index(cat)] if cat in samples.category_ids else str(cat)
        class_ap[name] = round(100.0 * float(np.mean(p)), 4) if p.size else None
    return {**dict(zip(KEYS, stats[:6], strict=True)), "ar100": stats[AR100], "class_ap": class_ap}
