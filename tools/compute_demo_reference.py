"""Recompute what the official code gives on the demo's CIFAR-10 subset → shunted/assets/cifar10-demo/expected.json.

    .venv/bin/python tools/compute_demo_reference.py                      # the bundled subset (1,000 images)
    .venv/bin/python tools/compute_demo_reference.py --data ../shared/data/cifar10/test --out /tmp/full.json \
        --logits /tmp/full_torch_logits.npy                               # any class-folder tree

Runs the independent PyTorch transcription (shunted/runtime/torch_reference.py) with the float16 demo
checkpoint upcast to float32 and loaded strictly, on images preprocessed here with PIL and torch alone (none of
the package's code): Image.open(f).convert('RGB'); shorter side → 73, longer int(73·long/short), PIL bicubic;
centre crop 64 at int(round((h − 64) / 2)); ToTensor (/255) and Normalize with the ImageNet mean/std.
Needs torch (the ``test`` extra).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from shunted.runtime import torch_reference as shunted_torch  # noqa: E402

CHECKPOINT = REPO / "shunted" / "assets" / "demo" / "ckpt_T_cifar10_fp16.pth"
SUBSET = REPO / "shunted" / "assets" / "cifar10-demo"
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
SIZE, RESIZE = 64, 73  # int(256 / 224 * 64) = 73


def preprocess(path: Path) -> torch.Tensor:
    img = Image.open(path).convert("RGB")
    w, h = img.size
    if w <= h:
        size = (RESIZE, int(RESIZE * h / w))
    else:
        size = (int(RESIZE * w / h), RESIZE)
    if size != img.size:
        img = img.resize(size, Image.BICUBIC)
    w, h = img.size
    top, left = int(round((h - SIZE) / 2.0)), int(round((w - SIZE) / 2.0))
    img = img.crop((left, top, left + SIZE, top + SIZE))
    x = torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1).contiguous().float().div(255)
    return (x - MEAN) / STD


def class_folder_samples(root: Path) -> tuple[list[str], list[Path], list[int]]:
    """Classes = sorted folder names; samples sorted by relative path (the order expected.json describes)."""
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    rel = sorted(p.relative_to(root).as_posix() for c in classes for p in (root / c).iterdir() if p.is_file())
    return classes, [root / r for r in rel], [classes.index(r.split("/")[0]) for r in rel]


def load_reference(checkpoint: Path, num_classes: int) -> torch.nn.Module:
    model = shunted_torch.build("shunted_t", num_classes)
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    state = state.get("model", state)
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in state.items()}
    model.load_state_dict(state, strict=True)
    return model.eval()


@torch.no_grad()
def reference_logits(data: Path, checkpoint: Path = CHECKPOINT, batch_size: int = 100):
    """(logits float32 [N, K], labels, classes, paths) of the PyTorch reference on a class-folder tree."""
    classes, paths, labels = class_folder_samples(data)
    model = load_reference(checkpoint, len(classes))
    out = []
    for i in range(0, len(paths), batch_size):
        out.append(model(torch.stack([preprocess(p) for p in paths[i : i + batch_size]])).numpy())
    return np.concatenate(out).astype(np.float32), np.asarray(labels), classes, paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=SUBSET)
    parser.add_argument("--checkpoint", type=Path, default=CHECKPOINT)
    parser.add_argument("--out", type=Path, default=SUBSET / "expected.json")
    parser.add_argument("--logits", type=Path, help="also save the reference logits (.npy, sample order)")
    args = parser.parse_args(argv)
    torch.set_num_threads(min(2, os.cpu_count() or 1))

    start = time.perf_counter()
    logits, labels, classes, paths = reference_logits(args.data, args.checkpoint)
    order = np.argsort(-logits, axis=1, kind="stable")
    top1 = int((order[:, 0] == labels).sum())
    top5 = int((order[:, :5] == labels[:, None]).any(axis=1).sum())
    n = len(labels)
    try:
        data_name = args.data.resolve().relative_to(REPO).as_posix()
    except ValueError:
        data_name = str(args.data)
    import PIL

    result = {
        "data": data_name,
        "checkpoint": args.checkpoint.name,
        "checkpoint_sha256": hashlib.sha256(args.checkpoint.read_bytes()).hexdigest(),
        "n_images": n,
        "top1_correct": top1,
        "top5_correct": top5,
        "top1": round(100 * top1 / n, 2),
        "top5": round(100 * top5 / n, 2),
        "classes": classes,
        "image_order": "sorted relative paths <class>/<name>; label = index of <class> in the sorted folder names",
        "preprocessing": f"PIL convert('RGB'); shorter side -> {RESIZE}, longer int({RESIZE}*long/short), bicubic; "
        f"center crop {SIZE} at int(round((h-{SIZE})/2)); /255; ImageNet mean/std",
        "reference": "shunted/runtime/torch_reference.py (independent PyTorch transcription of docs/model.md), float16 "
        "weights upcast to float32, strict load, eval mode, CPU float32",
        "versions": {"torch": torch.__version__, "pillow": PIL.__version__},
        "command": "python tools/compute_demo_reference.py",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(f".{args.out.name}.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, args.out)
    if args.logits:
        with open(args.logits, "wb") as fh:
            np.save(fh, logits)
    print(
        f"{n} images: top-1 {top1} ({result['top1']} %), top-5 {top5} ({result['top5']} %) "
        f"in {time.perf_counter() - start:.1f} s → {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
