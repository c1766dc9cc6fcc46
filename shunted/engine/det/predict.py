"""Detect objects in image files: per image a picture with the boxes drawn, and a JSON of every detection.

For an input ``photo.jpg`` the output folder gets (the folder rules of shunted/engine/seg/outputs.py: new, empty or
an earlier output of ours; nothing of the user's is replaced or deleted; a failure leaves nothing half-written):

- ``photo_det.jpg`` (``.png`` for inputs that are not JPEG): the image at its own size with each detection above
  ``score_threshold`` drawn as a box in its class's colour (the Pascal VOC colour map), tagged with the class name
  and the score, above a white legend strip naming the classes found and how many of each;
- ``det_outputs.json``: the model, weights, class names and colours, the settings and, per image, its size, the
  picture's name and the detections (class, class index, score, box [x1, y1, x2, y2] in the image's pixels).

The image is resized and normalised as in evaluation (``DetTransform`` of shunted/data/det_transforms.py, no flip)
and the detections are taken back to its pixels as det-eval does (``evaluate.to_results``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...errors import ShuntedError
from ..seg.outputs import OutputFolder, check_predict_outputs, write_predictions
from ..seg.palette import _font, voc_palette
from .evaluate import DetAccumulator, collate, open_det_model, to_results, unreadable

MANIFEST = "det_outputs.json"
SUFFIX = "_det"


def picture_name(path: Path) -> str:
    return path.stem + SUFFIX + (".jpg" if path.suffix.lower() in (".jpg", ".jpeg") else ".png")


def class_colours(num_classes: int) -> np.ndarray:
    """(K, 3) uint8: the VOC colour map without its first entry (black, the background's)."""
    return voc_palette(num_classes + 1)[1:]


def draw_detections(image, dets: Sequence[dict], names: Sequence[str], colours: np.ndarray):
    """``image`` (PIL RGB) with the boxes drawn (class colour, name and score on a tag) above a legend strip."""
    from PIL import Image, ImageDraw

    pic = image.convert("RGB").copy()
    draw = ImageDraw.Draw(pic)
    size = max(10, min(24, pic.width // 40))
    font, line = _font(size), max(2, round(min(pic.size) / 250))
    for d in dets:
        x1, y1, x2, y2 = d["box"]
        colour = tuple(int(v) for v in colours[d["class_id"]])
        draw.rectangle([x1, y1, x2, y2], outline=colour, width=line)
        text = f"{names[d['class_id']]} {d['score']:.2f}"
        tw = draw.textlength(text, font=font)
        top = y1 - size - 4 if y1 - size - 4 >= 0 else y1
        draw.rectangle([x1, top, x1 + tw + 4, top + size + 4], fill=colour)
        dark = sum(colour) > 384
        draw.text(
            (x1 + 2, top + (size + 4) / 2),
            text,
            fill=(0, 0, 0) if dark else (255, 255, 255),
            font=font,
            anchor="lm",
        )
    counts: dict[int, int] = {}
    for d in dets:
        counts[d["class_id"]] = counts.get(d["class_id"], 0) + 1
    strip = _legend(pic.width, counts, names, colours, size, font)
    out = Image.new("RGB", (pic.width, pic.height + strip.height), (255, 255, 255))
    out.paste(pic, (0, 0))
    out.paste(strip, (0, pic.height))
    return out


def _legend(width: int, counts: dict[int, int], names, colours, size: int, font):
    from PIL import Image, ImageDraw

    pad = max(3, size // 3)
    strip = Image.new("RGB", (width, size + 2 * pad), (255, 255, 255))
    draw = ImageDraw.Draw(strip)
    x = pad
    entries = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) or [(None, 0)]
    for c, n in entries:
        if c is None:
            draw.text((x, pad + size / 2), "no detections", fill=(0, 0, 0), font=font, anchor="lm")
            break
        draw.rectangle(
            [x, pad, x + size - 1, pad + size - 1], fill=tuple(int(v) for v in colours[c]), outline=(0, 0, 0)
        )
        text = f"{names[c]}: {n}"
        draw.text((x + size + pad // 2, pad + size / 2), text, fill=(0, 0, 0), font=font, anchor="lm")
        x += size + pad + int(draw.textlength(text, font=font)) + 2 * pad
    return strip


class DetImages:
    """``[i] -> (image, no boxes, no labels, info)`` of the image files ``paths`` through ``transform``."""

    def __init__(self, paths: list[Path], transform):
        self.paths, self.transform = paths, transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        from ...data.transforms import load_rgb

        index = int(index)
        x, boxes, info = self.transform(load_rgb(self.paths[index]), np.zeros((0, 4), np.float32))
        info["index"] = index
        return x, boxes, np.zeros(0, np.int64), info


class DetPictures(DetAccumulator):
    """det-predict's accumulator: per image its picture in the output folder and its manifest record."""

    def __init__(self, images: DetImages, folder, names, class_names, colours, threshold: float):
        super().__init__(
            images, image_ids=list(range(len(images))), category_ids=list(range(len(class_names)))
        )
        self.images, self.folder, self.names = images, folder, names
        self.class_names, self.colours, self.threshold = class_names, colours, threshold
        self.records: list[dict] = []

    def image_path(self, index: int) -> Path:
        return self.images.paths[index]

    def take(self, index: int, det: dict, info: dict) -> None:
        from ...data.transforms import load_rgb

        dets = [
            {
                "class": self.class_names[r["category_id"]],
                "class_id": r["category_id"],
                "score": round(r["score"], 5),
                "box": [
                    round(r["bbox"][0], 2),
                    round(r["bbox"][1], 2),
                    round(r["bbox"][0] + r["bbox"][2], 2),
                    round(r["bbox"][1] + r["bbox"][3], 2),
                ],
            }  # fmt: skip
            for r in to_results(det, info, index, self.category_ids)
            if r["score"] >= self.threshold
        ]
        image = load_rgb(self.images.paths[index])
        name = self.names[index][0]
        save_args = {"quality": 95} if name.endswith(".jpg") else {}
        self.folder.write_image(
            name, draw_detections(image, dets, self.class_names, self.colours), **save_args
        )
        self.records.append(
            {
                "image": str(self.images.paths[index]),
                "size": [image.width, image.height],
                "picture": name,
                "detections": dets,
            }
        )

    def state(self) -> list[dict]:
        return self.records


@dataclass
class DetPredictConfig:
    """What ``shunted det-predict`` runs (``commands/det_predict.py`` builds it from the flags)."""

    inputs: list[str | os.PathLike]
    output_dir: str | os.PathLike
    model: str
    weights: str | os.PathLike | None
    class_names: str | os.PathLike | None = None
    score_threshold: float = 0.3
    img_scale: tuple[int, int] = (1333, 800)
    workers: int = 0
    backend: str = "dygraph"
    threads: int | None = None
    progress: bool = True


def _check(cfg: DetPredictConfig) -> tuple[list[Path], OutputFolder, list[list[str]]]:
    """Before the work: inputs listed, the output folder allowed, every output name distinct."""
    if not 0 <= cfg.score_threshold <= 1:
        raise ShuntedError(f"--score-threshold {cfg.score_threshold}: must be between 0 and 1")
    return check_predict_outputs(
        cfg, "shunted det-predict", lambda p: [picture_name(p)], "pictures", manifest=MANIFEST
    )


def _class_names(path, num_classes: int) -> list[str]:
    if path is None:
        return [f"class {k}" for k in range(num_classes)]
    from ...data.det_datasets import read_label_list

    names = read_label_list(path)
    if len(names) != num_classes:
        raise ShuntedError(
            f"--class-names {path}: {len(names)} names, but the model has {num_classes} classes"
        )
    return names


def detect_images(cfg: DetPredictConfig, opened=None, world=None) -> dict | None:
    """``shunted det-predict`` as a function (module docstring); rank 0 returns the manifest it writes."""
    from ...data.det_transforms import DetTransform
    from ..infer import Source
    from ..world import World

    world = world or World()
    paths, folder, names = _check(cfg)
    opened = opened or open_det_model(cfg.model, cfg.weights, cfg.backend, cfg.threads)
    k = opened.num_classes
    class_names = _class_names(cfg.class_names, k)
    colours = class_colours(k)
    pre = opened.pretrained_cfg
    images = DetImages(paths, DetTransform(img_scale=cfg.img_scale, mean=pre.mean, std=pre.std))
    acc = DetPictures(images, folder, names, class_names, colours, cfg.score_threshold)
    source = Source(images, unreadable, collate, world.shard(len(images)), batch_size=1, workers=cfg.workers)
    settings = {
        "class_names": class_names,
        "colors": colours.tolist(),
        "score_threshold": cfg.score_threshold,
        "img_scale": list(cfg.img_scale),
    }
    return write_predictions(folder, names, source, acc, opened, world, cfg.progress, settings)


def format_summary(manifest: dict, output_dir) -> str:
    lines = []
    for r in manifest["images"]:
        counts: dict[str, int] = {}
        for d in r["detections"]:
            counts[d["class"]] = counts.get(d["class"], 0) + 1
        found = ", ".join(f"{n} ×{c}" for n, c in sorted(counts.items(), key=lambda kv: -kv[1])) or "nothing"
        lines.append(f"{r['image']}: {found}")
    lines.append(
        f"wrote {len(manifest['images'])} pictures to {output_dir} "
        f"({manifest['throughput_img_s']} img/s, {manifest['wall_time_s']:.1f} s)"
    )
    return "\n".join(lines)
