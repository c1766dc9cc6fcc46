"""Detection samples: images with boxes, from Pascal VOC (PaddleDetection's layout) or a COCO JSON file.

    samples = list_det_samples(root, "train.txt")            # VOC: ids or "image xml" pairs, label_list.txt
    samples = list_det_samples(root, "instances_val.json")   # COCO: images under root, the JSON's categories
    dataset = DetDataset(samples, DetTransform(...), seed=0)  # [i] -> (image, boxes, labels, info)

**VOC** (``root/Annotations/*.xml``, ``root/JPEGImages/``, a list, ``label_list.txt``): a list line is an image id
(``JPEGImages/<id>.jpg`` + ``Annotations/<id>.xml``, VOC's ``ImageSets/Main``) or an ``image xml`` pair relative
to ``root`` (PaddleDetection's ``trainval.txt``). The class order is ``label_list.txt`` (one name a line; looked
for beside the list, then under ``root``; ``label_list=`` names another); ``image_id`` is the image's 0-based
position in the list and ``category_id`` its class's 1-based position in ``label_list.txt``. **COCO**: the JSON's
``images`` (``file_name`` under ``root``), ``annotations`` (``bbox`` [x, y, w, h]; ``iscrowd`` ones are left out
of training, as mmdet does) and ``categories`` (class order = sorted by id; the file's own ids are kept).

Boxes are taken as given, ``[xmin, ymin, xmax, ymax]`` in pixels, width = xmax − xmin (no +1; PaddleDetection's
VOC reader and COCO). A box of zero area, or one outside its image (the annotation's size), is dropped and
counted (``DetSamples.dropped``: said once by the caller and kept in the run's summary), never an error; a box
crossing the border is clipped to it. Images without boxes are kept. Bad input is one DataError line naming the
file: malformed XML / JSON, unknown class names (all of them named), a missing image or annotation, a class name
twice in ``label_list.txt``, a box coordinate that is not a number.
"""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DataError
from .transforms import load_rgb

__all__ = ["DetDataset", "DetSamples", "list_det_samples", "read_label_list"]

LABEL_LIST = "label_list.txt"


@dataclass
class DetSamples:
    """Images with their boxes (G, 4) float32 and 0-based labels (G,), in listing order."""

    root: Path
    source: Path  # the list or JSON file
    format: str  # "voc" or "coco"
    class_names: list[str]
    category_ids: list[int]  # per class, the id results files use
    images: list[Path] = field(default_factory=list)
    image_ids: list[int] = field(default_factory=list)
    sizes: list[tuple[int, int] | None] = field(default_factory=list)  # (w, h) from the annotation
    boxes: list[np.ndarray] = field(default_factory=list)
    labels: list[np.ndarray] = field(default_factory=list)
    dropped: dict[str, int] = field(default_factory=dict)  # reason → boxes dropped
    dropped_example: str | None = None
    clipped: int = 0

    def __len__(self) -> int:
        return len(self.images)

    def relative(self, i: int) -> str:
        try:
            return self.images[i].relative_to(self.root).as_posix()
        except ValueError:
            return self.images[i].as_posix()

    @property
    def num_boxes(self) -> int:
        return int(sum(len(b) for b in self.boxes))

    def dropped_note(self) -> str | None:
        """One sentence on the boxes dropped, or None."""
        total = sum(self.dropped.values())
        if not total:
            return None
        reasons = ", ".join(f"{n} {why}" for why, n in sorted(self.dropped.items()))
        return f"{self.source}: {total} box(es) dropped ({reasons}; first: {self.dropped_example})"

    def summary(self) -> dict:
        return {
            "format": self.format,
            "source": str(self.source),
            "images": len(self),
            "boxes": self.num_boxes,
            "boxes_dropped": dict(sorted(self.dropped.items())),
            "boxes_clipped": self.clipped,
            "classes": list(self.class_names),
        }

    def _add(self, image: Path, image_id: int, size, boxes: list, labels: list[int], where: str) -> None:
        arr = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        keep = np.ones(len(arr), dtype=bool)
        zero = (arr[:, 2] <= arr[:, 0]) | (arr[:, 3] <= arr[:, 1])
        self._drop(zero, "zero-area", where)
        keep &= ~zero
        if size is not None:
            w, h = size
            outside = keep & ((arr[:, 0] >= w) | (arr[:, 1] >= h) | (arr[:, 2] <= 0) | (arr[:, 3] <= 0))
            self._drop(outside, "outside the image", where)
            keep &= ~outside
            clipped = np.clip(arr, 0, [w, h, w, h]).astype(np.float32)
            self.clipped += int((np.any(clipped != arr, axis=1) & keep).sum())
            arr = clipped
        self.images.append(image)
        self.image_ids.append(image_id)
        self.sizes.append(size)
        self.boxes.append(arr[keep])
        self.labels.append(np.asarray(labels, dtype=np.int64)[keep])

    def _drop(self, mask: np.ndarray, reason: str, where: str) -> None:
        if mask.any():
            self.dropped[reason] = self.dropped.get(reason, 0) + int(mask.sum())
            if self.dropped_example is None:
                self.dropped_example = f"{where} ({reason})"


def list_det_samples(
    root: str | os.PathLike, list_file: str | os.PathLike, label_list: str | os.PathLike | None = None
) -> DetSamples:
    """The samples of a VOC list (ids or ``image xml`` pairs) or a COCO JSON file (``*.json``) under ``root``."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: not a directory (--data expects the dataset's root folder)")
    path = Path(list_file)
    if not path.is_file() and not path.is_absolute() and (root / path).is_file():
        path = root / path
    if not path.is_file():
        raise DataError(f"{list_file}: no such list or annotation file (looked as given and under {root})")
    if path.suffix.lower() == ".json":
        if label_list is not None:
            raise DataError(f"{label_list}: a COCO file names its own categories; give no label list with it")
        samples = _from_coco(root, path)
    else:
        samples = _from_voc(root, path, _find_label_list(root, path, label_list))
    if not samples.images:
        raise DataError(f"{path}: no images listed")
    return samples


def read_label_list(path: str | os.PathLike) -> list[str]:
    """Class names, one a line (blank lines skipped); a name twice is a DataError."""
    try:
        names = [
            line.strip() for line in Path(path).read_text(encoding="utf-8-sig").splitlines() if line.strip()
        ]
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(
            f"{path}: cannot read the label list ({getattr(exc, 'strerror', None) or exc})"
        ) from None
    twice = sorted(n for n, c in Counter(names).items() if c > 1)
    if twice:
        raise DataError(f"{path}: class name(s) listed twice: {', '.join(twice)}")
    if not names:
        raise DataError(f"{path}: the label list names no classes")
    return names


def _find_label_list(root: Path, list_path: Path, given) -> Path:
    if given is not None:
        if not Path(given).is_file():
            raise DataError(f"{given}: no such label list")
        return Path(given)
    for candidate in (list_path.parent / LABEL_LIST, root / LABEL_LIST):
        if candidate.is_file():
            return candidate
    raise DataError(
        f"{list_path}: no {LABEL_LIST} beside it or under {root} (the class order of VOC data; one name a line)"
    )


def _voc_entry(root: Path, fields: list[str], where: str) -> tuple[Path, Path]:
    if len(fields) == 1:
        image = root / "JPEGImages" / f"{fields[0]}.jpg"
        xml = root / "Annotations" / f"{fields[0]}.xml"
    elif len(fields) == 2:
        image, xml = root / fields[0], root / fields[1]
    else:
        raise DataError(
            f"{where}: expected an image id or 'image annotation' (two paths), got {len(fields)} fields"
        )
    if not image.is_file():
        raise DataError(
            f"{where}: image {image.relative_to(root) if image.is_relative_to(root) else image} not found"
        )
    if not xml.is_file():
        raise DataError(
            f"{where}: annotation {xml.relative_to(root) if xml.is_relative_to(root) else xml} not found"
        )
    return image, xml


def _read_voc_xml(path: Path) -> tuple[tuple[int, int] | None, list[tuple[str, list[float]]]]:
    try:
        tree = ET.parse(path)
    except (ET.ParseError, OSError) as exc:
        raise DataError(f"{path}: malformed annotation XML ({exc})") from None
    node = tree.getroot()
    size = None
    w, h = node.findtext("size/width"), node.findtext("size/height")
    try:
        if w is not None and h is not None and int(float(w)) > 0 and int(float(h)) > 0:
            size = (int(float(w)), int(float(h)))
    except ValueError:
        raise DataError(f"{path}: size is not a number ({w!r} × {h!r})") from None
    objects = []
    for k, obj in enumerate(node.findall("object")):
        name = (obj.findtext("name") or "").strip()
        box = obj.find("bndbox")
        if not name or box is None:
            raise DataError(f"{path}: object {k} has no name or no bndbox")
        try:
            coords = [float(box.findtext(t)) for t in ("xmin", "ymin", "xmax", "ymax")]
        except (TypeError, ValueError):
            raise DataError(
                f"{path}: object {k} ({name}): bndbox needs numeric xmin, ymin, xmax, ymax"
            ) from None
        objects.append((name, coords))
    return size, objects


def _from_voc(root: Path, list_path: Path, label_path: Path) -> DetSamples:
    names = read_label_list(label_path)
    index = {n: i for i, n in enumerate(names)}
    samples = DetSamples(root, list_path, "voc", names, list(range(1, len(names) + 1)))
    try:
        lines = list_path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(
            f"{list_path}: cannot read the list ({getattr(exc, 'strerror', None) or exc})"
        ) from None
    unknown: dict[str, str] = {}
    for lineno, line in enumerate(lines, start=1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        image, xml = _voc_entry(root, fields, f"{list_path}:{lineno}")
        size, objects = _read_voc_xml(xml)
        for name, _ in objects:
            if name not in index:
                unknown.setdefault(name, xml.name)
        if unknown:
            continue
        samples._add(
            image,
            len(samples.images),
            size,
            [c for _, c in objects],
            [index[n] for n, _ in objects],
            xml.name,
        )
    if unknown:
        listed = ", ".join(f"{n!r} (first in {f})" for n, f in sorted(unknown.items()))
        raise DataError(
            f"{label_path}: does not name the class(es) {listed} found in the annotations of {list_path}"
        )
    return samples


def _from_coco(root: Path, path: Path) -> DetSamples:
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: not a readable COCO JSON file ({exc})") from None
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list) for k in ("images", "categories")):
        raise DataError(f"{path}: a COCO file needs 'images' and 'categories' lists (and 'annotations')")
    try:
        cats = sorted((int(c["id"]), str(c["name"])) for c in data["categories"])
        images = [
            (int(im["id"]), str(im["file_name"]), im.get("width"), im.get("height")) for im in data["images"]
        ]
        anns = [
            (
                int(a["image_id"]),
                int(a["category_id"]),
                [float(v) for v in a["bbox"]],
                int(a.get("iscrowd", 0)),
            )
            for a in data.get("annotations", [])
        ]
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"{path}: malformed COCO entry ({type(exc).__name__}: {exc})") from None
    cat_index = {cid: i for i, (cid, _) in enumerate(cats)}
    by_image: dict[int, list] = {}
    bad_cats = sorted({cid for _, cid, _, _ in anns} - set(cat_index))
    if bad_cats:
        raise DataError(f"{path}: annotations use category id(s) {bad_cats} that 'categories' does not name")
    for image_id, cid, bbox, crowd in anns:
        if len(bbox) != 4:
            raise DataError(f"{path}: image {image_id}: bbox {bbox} is not [x, y, w, h]")
        if not crowd:
            by_image.setdefault(image_id, []).append((cat_index[cid], bbox))
    samples = DetSamples(root, path, "coco", [n for _, n in cats], [cid for cid, _ in cats])
    for image_id, file_name, w, h in images:
        image = root / file_name
        if not image.is_file():
            raise DataError(f"{path}: image {file_name} (id {image_id}) not found under {root}")
        size = (int(w), int(h)) if w and h else None
        objects = by_image.get(image_id, [])
        boxes = [[x, y, x + bw, y + bh] for _, (x, y, bw, bh) in objects]
        samples._add(image, image_id, size, boxes, [c for c, _ in objects], f"{file_name} (id {image_id})")
    return samples


class DetDataset:
    """``[i] -> (image float32 3×h×w, boxes (G, 4) float32, labels (G,) int64, info dict)`` through ``transform``
    (a ``DetTransform``), its random draws from a Generator seeded by (seed, epoch, i) (``set_epoch``)."""

    def __init__(self, samples: DetSamples, transform: Callable, seed: int = 0) -> None:
        self.samples = samples
        self.transform = transform
        self.seed = int(seed)
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.samples)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __getitem__(self, index: int):
        index = int(index)
        image = load_rgb(self.samples.images[index])
        size = self.samples.sizes[index]
        if size is not None and size != image.size:
            raise DataError(
                f"{self.samples.images[index]}: image is {image.width}×{image.height}, its annotation says "
                f"{size[0]}×{size[1]}"
            )
        rng = np.random.default_rng([self.seed, self.epoch, index])
        x, boxes, info = self.transform(image, self.samples.boxes[index], rng)
        info["index"] = index
        return x, boxes, self.samples.labels[index].copy(), info
