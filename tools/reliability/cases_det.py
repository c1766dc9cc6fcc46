"""Issue 23, detection (branch ``det``; the locks and ``-c`` / ``-o`` of det-eval
and det-predict from branch ``detfollow``): bad VOC / COCO data is one line naming the file, dropped boxes are
counted, a second writer stops, the one schema's keys. ``VOC`` is three 200×150 images a/b/c with classes cat, dog,
bird: b.xml has a zero-area box, one crossing the border and one outside the image, c.xml none. The detector is
the prepared ``shunted_t_retinanet`` (3 classes, random weights); images are resized to 100×75."""

from __future__ import annotations

import json
from pathlib import Path

from .cases_trust import hold_lock, release_lock
from .harness import Case, Context, check_stderr_has, seq

CLASSES = ("cat", "dog", "bird")
SCENES = {
    "a": [("cat", (20, 30, 80, 100)), ("dog", (100, 20, 180, 90)), ("bird", (60, 110, 120, 140))],
    "b": [("dog", (10, 10, 10, 40)), ("cat", (190, 100, 230, 160)), ("bird", (300, 10, 320, 30))],
    "c": [],
}
SMALL = ("--img-scale", "100", "75", "--workers", "0", "--no-progress")
TRAIN = [
    "det-train",
    "--model",
    "shunted_t_retinanet",
    "--data",
    "VOC",
    "--list",
    "train.txt",
    "--output",
    "r",
]
TRAIN += ["--epochs", "1", "--max-steps", "1", "--img-scale", "64", "48", "--workers", "0"]


def _xml(name: str, objects) -> str:
    objs = "".join(
        f"<object><name>{n}</name><difficult>0</difficult><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin>"
        f"<xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"
        for n, b in objects
    )
    return f"<annotation><filename>{name}.jpg</filename><size><width>200</width><height>150</height></size>{objs}</annotation>"


def voc(d: Path, ctx: Context) -> None:
    from PIL import Image

    root = d / "VOC"
    (root / "Annotations").mkdir(parents=True)
    (root / "JPEGImages").mkdir()
    for name, objects in SCENES.items():
        Image.open(ctx.images["cat"][0]).convert("RGB").resize((200, 150)).save(
            root / "JPEGImages" / f"{name}.jpg"
        )
        (root / "Annotations" / f"{name}.xml").write_text(_xml(name, objects))
    (root / "label_list.txt").write_text("\n".join(CLASSES) + "\n")
    (root / "train.txt").write_text("\n".join(SCENES) + "\n")


def write(name: str, content: str | bytes):
    def setup(d: Path, ctx: Context) -> None:
        (d / name).parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            (d / name).write_bytes(content)
        else:
            (d / name).write_text(content)

    return setup


def remove(name: str):
    def setup(d: Path, ctx: Context) -> None:
        (d / name).unlink()

    return setup


def det(command: str, *args: str, weights: str = "det"):
    """``det-eval`` / ``det-predict`` of the prepared detector (``weights="demo"``: the classification demo .pth)."""

    def argv(d: Path, ctx: Context) -> list[str]:
        w = ctx.det if weights == "det" else ctx.demo_pth
        return [command, "--model", "shunted_t_retinanet", "--weights", str(w), *args]

    return argv


def det_eval(*args: str, weights: str = "det"):
    return det("det-eval", "--data", "VOC", "--list", "train.txt", *SMALL, *args, weights=weights)


COCO_BAD_CATEGORY = {
    "images": [{"id": 1, "file_name": "JPEGImages/a.jpg", "width": 200, "height": 150}],
    "annotations": [
        {"id": 1, "image_id": 1, "category_id": 5, "bbox": [20, 30, 60, 70], "area": 4200, "iscrowd": 0}
    ],
    "categories": [{"id": 1, "name": "cat"}],
}
ONE_DETECTION_OF_IMAGE_9 = [{"image_id": 9, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 1}]
ONE_GOOD_DETECTION = [{"image_id": 0, "category_id": 1, "bbox": [20, 30, 60, 70], "score": 0.9}]


def dropped_in_summary(d: Path, ctx: Context, r) -> str | None:
    try:
        summary = json.loads((d / "r" / "summary.json").read_text())
    except (OSError, ValueError) as exc:
        return f"r/summary.json: {exc}"
    dropped = summary.get("train_data", {}).get("boxes_dropped")
    return (
        None if dropped == {"zero-area": 1, "outside the image": 1} else f"summary boxes_dropped: {dropped!r}"
    )


def config_yaml(d: Path, ctx: Context) -> None:
    """A det-train config.yaml naming the data, the list, the classes and a resize (no model is run after)."""
    (d / "config.yaml").write_text(
        "DataLoader:\n  Train:\n    dataset: {image_root: VOC, list: train.txt, label_list: VOC/label_list.txt}\n"
        "    transform: {img_scale: [100, 75]}\n  Eval:\n    dataset: {list: train.txt}\n"
    )


def cases() -> list[Case]:
    cases: list[Case] = []
    add = cases.append
    model = {"needs": ("det",), "mem_limit_mb": 6144, "timeout": 60}
    add(
        Case(
            "det-eval: malformed annotation XML (23)",
            14,
            det_eval(),
            seq(voc, write("VOC/Annotations/a.xml", "<annotation><object>\n")),
            mentions=("VOC/Annotations/a.xml", "malformed annotation XML"),
            keep=("VOC",),
            **model,
        )
    )
    add(
        Case(
            "det-eval: label_list.txt lacks a class of the annotations (23)",
            14,
            det_eval(),
            seq(voc, write("VOC/label_list.txt", "cat\ndog\n")),
            mentions=("VOC/label_list.txt", "'bird'"),
            keep=("VOC",),
            **model,
        )
    )
    add(
        Case(
            "det-eval: label_list.txt names a class twice (23)",
            14,
            det_eval(),
            seq(voc, write("VOC/label_list.txt", "cat\ndog\ncat\nbird\n")),
            mentions=("VOC/label_list.txt", "listed twice: cat"),
            keep=("VOC",),
            **model,
        )
    )
    add(
        Case(
            "det-train: an image of the list is missing (23)",
            14,
            TRAIN,
            seq(voc, remove("VOC/JPEGImages/b.jpg")),
            mentions=("VOC/train.txt:2", "JPEGImages/b.jpg not found"),
            keep=("VOC",),
            absent=("r",),
            **model,
        )
    )
    add(
        Case(
            "det-eval: a COCO file that is not JSON (23)",
            14,
            det("det-eval", "--data", "VOC", "--list", "a.json", *SMALL),
            seq(voc, write("VOC/a.json", "{not json")),
            mentions=("a.json", "not a readable COCO JSON file"),
            keep=("VOC",),
            **model,
        )
    )
    add(
        Case(
            "det-eval: COCO annotations of a category 'categories' lacks (23)",
            14,
            det("det-eval", "--data", "VOC", "--list", "c.json", *SMALL),
            seq(voc, write("VOC/c.json", json.dumps(COCO_BAD_CATEGORY))),
            mentions=("c.json", "category id(s) [5]"),
            keep=("VOC",),
            **model,
        )
    )
    add(
        Case(
            "det-eval: a corrupt image, --workers 2 (23)",
            14,
            det(
                "det-eval",
                "--data",
                "VOC",
                "--list",
                "train.txt",
                "--img-scale",
                "100",
                "75",
                "--workers",
                "2",
                "--no-progress",
            ),  # fmt: skip
            seq(voc, write("VOC/JPEGImages/b.jpg", b"junk")),
            mentions=("VOC/JPEGImages/b.jpg", "cannot read image"),
            keep=("VOC",),
            **model,
        )
    )
    add(
        Case(
            "det-train: zero-area and outside boxes dropped, counted once (23)",
            14,
            TRAIN,
            voc,
            exit=(0,),
            keep=("VOC",),
            check=lambda d, ctx, r: (
                check_stderr_has(r"VOC/train\.txt: 2 box\(es\) dropped", "the dropped boxes are not said")(
                    d, ctx, r
                )
                or dropped_in_summary(d, ctx, r)
            ),
            **model,
        )
    )
    add(
        Case(
            "det-eval --detections naming an image not in the list (23)",
            14,
            ["det-eval", "--data", "VOC", "--list", "train.txt", "--detections", "d.json"],
            seq(voc, write("d.json", json.dumps(ONE_DETECTION_OF_IMAGE_9))),
            mentions=("d.json", "image_id 9 is not an image of the evaluated list"),
            keep=("VOC", "d.json"),
        )
    )
    add(
        Case(
            "det-train -o with a misspelt key (23)",
            14,
            [*TRAIN, "-o", "Optimizer.lr.warmup_iter=3"],
            voc,
            mentions=("Optimizer.lr.warmup_iter", "did you mean Optimizer.lr.warmup_iters"),
            absent=("r",),
        )
    )
    add(
        Case(
            "det-eval --model shunted_t_fpn (a segmentation model) (23)",
            14,
            [
                "det-eval",
                "--model",
                "shunted_t_fpn",
                "--weights",
                "w.pdparams",
                "--data",
                "VOC",
                "--list",
                "train.txt",
            ],
            voc,
            mentions=("'shunted_t_fpn'", "shunted_t_retinanet", "--model"),
        )
    )
    add(
        Case(
            "det-predict --output-dir holding a user's file (23)",
            14,
            det(
                "det-predict",
                "VOC/JPEGImages",
                "--output-dir",
                "pout",
                "--img-scale",
                "100",
                "75",
                "--no-progress",
            ),
            seq(voc, write("pout/notes.txt", "mine")),
            mentions=("--output-dir pout", "notes.txt"),
            keep=("pout", "VOC"),
            **model,
        )
    )
    add(
        Case(
            "det-eval --weights a classification checkpoint (23)",
            14,
            det_eval(weights="demo"),
            voc,
            mentions=("demo.pth", "is a classification checkpoint", "backbone"),
            **model,
        )
    )
    add(
        Case(
            "det-eval --output another run is writing (23)",
            14,
            det_eval("--output", "r.json"),
            seq(voc, hold_lock("r.json")),
            mentions=("--output r.json", "another shunted process"),
            absent=("r.json",),
            check=release_lock,
            **model,
        )
    )
    add(
        Case(
            "det-predict into a folder another run is writing (23)",
            14,
            det("det-predict", "VOC/JPEGImages/a.jpg", "--output-dir", "pout", "--no-progress"),
            seq(voc, hold_lock("pout")),
            mentions=("--output-dir pout", "another shunted process"),
            absent=("pout",),
            check=release_lock,
            **model,
        )
    )
    add(
        Case(
            "det-train --output a run folder another run is writing (23)",
            14,
            TRAIN,
            seq(voc, hold_lock("r")),
            mentions=("--output r", "another shunted process"),
            absent=("r",),
            check=release_lock,
        )
    )
    add(
        Case(
            "det-eval -c: det-train's keys give data, list, classes and resize (23)",
            14,
            ["det-eval", "-c", "config.yaml", "--detections", "d.json", "--output", "s.json"],
            seq(voc, config_yaml, write("d.json", json.dumps(ONE_GOOD_DETECTION))),
            exit=(0,),
            keep=("VOC", "config.yaml", "d.json"),
            check=lambda d, ctx, r: None if (d / "s.json").is_file() else "s.json not written",
        )
    )
    add(
        Case(
            "det-predict -o a segmentation key (23)",
            14,
            det("det-predict", "VOC/JPEGImages", "--output-dir", "pout", "-o", "Infer.mode=slide"),
            voc,
            mentions=("Infer.mode", "a segmentation key"),
            absent=("pout",),
        )
    )
    return cases
