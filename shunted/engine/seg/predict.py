"""Segment image files: per image an index mask, a colour mask with a legend, and an overlay on the image.

For an input ``photo.jpg`` the output folder gets (shunted/engine/seg/outputs.py: the folder rules):

- ``photo.png``: the 8-bit index mask (mode L, the class of each pixel), the input's size;
- ``photo_color.png``: the mask in the palette's colours (the top H rows, the input's size) above a white legend
  strip naming the classes present with their share of the pixels, largest first;
- ``photo_overlay.jpg`` (``.png`` for inputs that are not JPEG): the colour mask blended on the image
  (``alpha`` × colour + (1 − alpha) × image), the input's size;
- ``seg_outputs.json``: the model, weights, palette, class names and, per image, the files and the classes present.

EXIF orientation is ignored when decoding, as ``shunted predict`` and ``seg-eval`` do (shunted/data/transforms.py):
the mask is pixel-aligned with the image's stored pixels. The index mask and the overlay carry the input's EXIF
Orientation tag, so a viewer that turns the photo upright turns them the same way (``exif_orientation`` per image
in the manifest); the colour mask with its legend is not turned.

The image is decoded and normalised as in evaluation (SegEvalTransform, shunted/data/seg_transforms.py); the
logits of the whole image (or of a sliding window, ``mode="slide"``) are resized back to the input's size when a
``scale`` shrank it, then the argmax is taken.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...errors import ShuntedError
from ..infer import numpy
from .evaluate import SegAccumulator, SegInference, _single, _unreadable, predicted_labels
from .outputs import OutputFolder, check_predict_outputs, write_predictions
from .palette import color_with_legend, default_class_names, get_palette, overlay, read_class_names

MASK, COLOR, OVERLAY = ".png", "_color.png", "_overlay"


def overlay_name(path: Path) -> str:
    return path.stem + OVERLAY + (".jpg" if path.suffix.lower() in (".jpg", ".jpeg") else ".png")


def names_of(path: Path) -> list[str]:
    """The three files written for ``path``: mask, colour mask, overlay."""
    return [path.stem + MASK, path.stem + COLOR, overlay_name(path)]


class SegImages:
    """``[i] -> (network input float32 3×H'×W', RGB uint8 H×W×3, i)`` for the image files ``paths``."""

    def __init__(self, paths: list[Path], transform):
        self.paths, self.transform = paths, transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        from ...data.transforms import load_rgb

        image = load_rgb(self.paths[int(index)])
        return np.asarray(self.transform(image), np.float32), np.asarray(image), int(index)


@dataclass
class SegPredictConfig:
    """What ``shunted seg-predict`` runs (``commands/seg_predict.py`` builds it from the flags)."""

    inputs: list[str | os.PathLike]
    output_dir: str | os.PathLike
    model: str
    weights: str | os.PathLike | None
    num_classes: int | None = None
    class_names: str | os.PathLike | None = None
    palette: str = "voc"
    alpha: float = 0.5
    scale: float | None = None
    inference: SegInference = field(default_factory=SegInference)
    workers: int = 0
    backend: str = "dygraph"
    threads: int | None = None
    cache: bool = True  # the start-up cache (shunted/runtime/cache.py); --no-cache
    progress: bool = True


class MaskFiles(SegAccumulator):
    """seg-predict's accumulator: per image its three files in the output folder and its manifest record."""

    def __init__(self, images: SegImages, inference, num_classes, folder, names, colours, labels, alpha):
        super().__init__(inference, num_classes, lambda i: images.paths[i])
        self.read = lambda i: images[i]
        self.images, self.folder, self.names = images, folder, names
        self.colours, self.labels, self.alpha = colours, labels, alpha
        self.records: list[dict] = []

    def take(self, index: int, logits: np.ndarray, rgb) -> None:
        from PIL import Image

        image = Image.fromarray(np.asarray(numpy(rgb), np.uint8), "RGB")
        mask = predicted_labels(logits, (image.height, image.width))
        path = self.images.paths[index]
        mask_name, color_name, overlay_file = self.names[index]
        orientation = exif_orientation(path)
        tag = {"exif": _orientation_exif(orientation)} if orientation else {}
        self.folder.write_image(mask_name, _index_image(mask), **tag)
        self.folder.write_image(color_name, color_with_legend(mask, self.colours, self.labels))
        save_args = {"quality": 95, **tag} if overlay_file.endswith(".jpg") else tag
        self.folder.write_image(overlay_file, overlay(image, mask, self.colours, self.alpha), **save_args)
        counts = np.bincount(mask.ravel(), minlength=self.num_classes)
        self.records.append(
            {
                "image": str(path),
                "size": [image.width, image.height],
                "exif_orientation": orientation,
                "mask": mask_name,
                "color": color_name,
                "overlay": overlay_file,
                "classes": {
                    self.labels[c]: round(100.0 * int(counts[c]) / mask.size, 3)
                    for c in np.flatnonzero(counts)
                },
            }
        )

    def state(self) -> list[dict]:
        return self.records


def _check_seg_predict(cfg: SegPredictConfig) -> tuple[list[Path], OutputFolder, list[list[str]]]:
    """Before the work: the inputs listed, the output folder allowed (not holding or inside an input, nothing
    else in it), every output name distinct."""
    if not 0 <= cfg.alpha <= 1:
        raise ShuntedError(f"--alpha {cfg.alpha}: must be between 0 and 1")
    return check_predict_outputs(cfg, "shunted seg-predict", names_of, "outputs")


def segment_images(cfg: SegPredictConfig, opened=None, world=None) -> dict | None:
    """``shunted seg-predict`` as a function (module docstring); returns the manifest it writes.

    world: the processes sharing the images (shunted/engine/world.py): each segments its contiguous share into
    the output folder, rank 0 gathers the records, writes the manifest and returns it (the others None)."""
    from ...data.seg_transforms import SegEvalTransform
    from ..infer import Source
    from ..world import World
    from .evaluate import opened_for

    world = world or World()
    paths, folder, names = _check_seg_predict(cfg)
    opened = opened_for(cfg, opened)
    k = opened.num_classes
    colours = get_palette(cfg.palette, k)
    labels = (
        read_class_names(cfg.class_names, k)
        if cfg.class_names is not None
        else default_class_names(cfg.palette, k)
    )
    pre = opened.pretrained_cfg
    images = SegImages(paths, SegEvalTransform(mean=pre.mean, std=pre.std, scale=cfg.scale))
    acc = MaskFiles(images, cfg.inference, k, folder, names, colours, labels, cfg.alpha)
    source = Source(images, _unreadable, _single, world.shard(len(images)), batch_size=1, workers=cfg.workers)
    settings = {
        "class_names": labels,
        "palette": {"name": cfg.palette, "colors": colours.tolist()},
        "alpha": cfg.alpha,
        "inference": {**cfg.inference.describe(), "scale": cfg.scale},
    }
    return write_predictions(folder, names, source, acc, opened, world, cfg.progress, settings)


def exif_orientation(path) -> int | None:
    """The EXIF Orientation (2..8) of the image file ``path``; None when it has none, 1 (upright) or bad EXIF."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            value = img.getexif().get(0x0112)
    except Exception:  # noqa: BLE001 — no usable EXIF: nothing to carry over
        return None
    return int(value) if isinstance(value, int) and 2 <= value <= 8 else None


def _orientation_exif(orientation: int) -> bytes:
    from PIL import Image

    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


def _index_image(mask: np.ndarray):
    from PIL import Image

    return Image.fromarray(mask.astype(np.uint8), "L")


def format_summary(manifest: dict, output_dir) -> str:
    lines = []
    for r in manifest["images"]:
        top = sorted(r["classes"].items(), key=lambda kv: -kv[1])[:4]
        lines.append(f"{r['image']}: " + ", ".join(f"{name} {share:.1f}%" for name, share in top))
    lines.append(
        f"wrote {3 * len(manifest['images'])} files to {output_dir} "
        f"({manifest['throughput_img_s']} img/s, {manifest['wall_time_s']:.1f} s)"
    )
    return "\n".join(lines)
