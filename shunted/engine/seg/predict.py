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
import time
from pathlib import Path

import numpy as np

from ...errors import ShuntedError
from ...fileio import check_outputs
from .evaluate import SegPredict, batch_logits, default_stride, out_of_memory, predicted_labels
from .outputs import OutputFolder, output_names
from .palette import color_with_legend, default_class_names, get_palette, overlay, read_class_names

MASK, COLOR, OVERLAY = ".png", "_color.png", "_overlay"


def overlay_name(path: Path) -> str:
    return path.stem + OVERLAY + (".jpg" if path.suffix.lower() in (".jpg", ".jpeg") else ".png")


def names_of(path: Path) -> list[str]:
    """The three files written for ``path``: mask, colour mask, overlay."""
    return [path.stem + MASK, path.stem + COLOR, overlay_name(path)]


def expand_inputs(inputs: list[str | os.PathLike]) -> list[Path]:
    """Files as given, folders as their image files (recursive, sorted by relative path; linked folders are
    not followed, so a link loop cannot repeat them); a missing path or a folder without images is an error."""
    from ...data.datasets import is_image_file
    from ...errors import DataError

    paths: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(
                (Path(top) / name for top, _, names in os.walk(p) for name in names),
                key=lambda q: q.relative_to(p).as_posix(),
            )
            found = [q for q in found if is_image_file(q) and q.is_file()]
            if not found:
                raise DataError(f"{p}: no image files in this folder")
            paths.extend(found)
        elif p.is_file():
            paths.append(p)
        else:
            raise DataError(f"{p}: no such file or folder")
    return paths


def predict_mask(
    predict_fn: SegPredict,
    transform,
    path: Path,
    num_classes: int,
    mode: str = "whole",
    crop_size: tuple[int, int] | None = None,
    stride: tuple[int, int] | None = None,
    batch_size: int = 1,
):
    """(RGB PIL image, H×W uint8 mask at the image's size) for the image file ``path``."""
    from ...data.transforms import load_rgb

    image = load_rgb(path)
    x = np.asarray(transform(image), np.float32)
    try:
        logits = batch_logits(predict_fn, x[None], num_classes, mode, crop_size, stride, batch_size)[0]
    except MemoryError:
        raise out_of_memory(path, x.shape, mode) from None
    return image, predicted_labels(logits, (image.height, image.width))


def segment_images(
    inputs: list[str | os.PathLike],
    output_dir: str | os.PathLike,
    model: str,
    weights: str | os.PathLike,
    num_classes: int | None = None,
    class_names: str | os.PathLike | None = None,
    palette: str = "voc",
    alpha: float = 0.5,
    backend: str = "dygraph",
    threads: int | None = None,
    scale: float | None = None,
    mode: str = "whole",
    crop_size: tuple[int, int] | None = None,
    stride: tuple[int, int] | None = None,
    batch_size: int = 1,
    progress: bool = True,
    opened=None,
    cache: bool = True,
) -> dict:
    """``shunted seg-predict`` as a function (module docstring); returns the manifest it writes."""
    from tqdm import tqdm

    from ...data.seg_transforms import SegEvalTransform
    from .evaluate import MODES, open_seg_model

    if mode not in MODES:
        raise ShuntedError(f"--mode {mode!r}: choose one of {', '.join(MODES)}")
    if mode == "slide" and crop_size is None:
        raise ShuntedError("--mode slide needs --crop-size")
    if not 0 <= alpha <= 1:
        raise ShuntedError(f"--alpha {alpha}: must be between 0 and 1")
    paths = list(dict.fromkeys(expand_inputs(inputs)))  # a file given twice (itself and its folder) once
    # before the work: the output folder must not hold or be inside an input, nor hold other files
    check_outputs(
        [],
        [("--weights", weights), ("--class-names", class_names), *((None, p) for p in inputs)],
        folders=[("--output-dir", output_dir)],
    )
    for item in inputs:
        if os.path.isdir(item) and os.path.realpath(item) in map(
            str, Path(os.path.realpath(output_dir)).parents
        ):
            raise ShuntedError(
                f"--output-dir {output_dir}: is inside the input folder {item}; its outputs would be read as "
                "images next time: write them outside"
            )
    folder = OutputFolder(output_dir, "--output-dir", "shunted seg-predict")
    folder.check()
    names = output_names(paths, names_of, "--output-dir")
    if opened is None:
        opened = open_seg_model(model, weights, backend, threads, expect_num_classes=num_classes, cache=cache)
    elif num_classes is not None and num_classes != opened.num_classes:
        raise ShuntedError(f"--num-classes {num_classes}: the model has {opened.num_classes} classes")
    k = opened.num_classes
    colours = get_palette(palette, k)
    labels = read_class_names(class_names, k) if class_names is not None else default_class_names(palette, k)
    cfg = opened.pretrained_cfg
    transform = SegEvalTransform(mean=cfg.mean, std=cfg.std, scale=scale)
    step = (stride or default_stride(crop_size)) if mode == "slide" else None

    folder.begin([n for group in names for n in group])
    records = []
    start = time.perf_counter()
    bar = tqdm(
        total=len(paths), unit="img", disable=None if progress else True, dynamic_ncols=True, leave=False
    )
    try:
        for path, (mask_name, color_name, overlay_file) in zip(paths, names, strict=True):
            image, mask = predict_mask(
                opened.predictor, transform, path, k, mode, crop_size, step, batch_size
            )
            orientation = exif_orientation(path)
            tag = {"exif": _orientation_exif(orientation)} if orientation else {}
            folder.write_image(mask_name, _index_image(mask), **tag)
            folder.write_image(color_name, color_with_legend(mask, colours, labels))
            save_args = {"quality": 95, **tag} if overlay_file.endswith(".jpg") else tag
            folder.write_image(overlay_file, overlay(image, mask, colours, alpha), **save_args)
            counts = np.bincount(mask.ravel(), minlength=k)
            records.append(
                {
                    "image": str(path),
                    "size": [image.width, image.height],
                    "exif_orientation": orientation,
                    "mask": mask_name,
                    "color": color_name,
                    "overlay": overlay_file,
                    "classes": {
                        labels[c]: round(100.0 * int(counts[c]) / mask.size, 3)
                        for c in np.flatnonzero(counts)
                    },
                }
            )
            bar.update(1)
            bar.set_postfix(img_s=f"{len(records) / (time.perf_counter() - start):.2f}", refresh=False)
    except BaseException:  # an unreadable image, a full disk, Ctrl-C: no partial output
        folder.abort()
        raise
    finally:
        bar.close()
    wall = time.perf_counter() - start
    manifest = {
        "model": opened.model_name,
        "weights": {"path": opened.weights, "sha256": opened.weights_sha256},
        "backend": opened.backend,
        "num_classes": k,
        "class_names": labels,
        "palette": {"name": palette, "colors": colours.tolist()},
        "alpha": alpha,
        "inference": {
            "mode": mode,
            "crop_size": list(crop_size) if mode == "slide" else None,
            "stride": list(step) if step else None,
            "scale": scale,
        },
        "images": records,
        "wall_time_s": round(wall, 3),
        "throughput_img_s": round(len(records) / wall, 3) if wall else None,
    }
    folder.finish(manifest)
    return manifest


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
