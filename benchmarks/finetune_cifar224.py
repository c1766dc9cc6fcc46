"""A shunted_t trained for 224-px input, to time data-dependent backends on a realistic model (needs torch).

The bf16 backend's cost depends on the data: it recomputes in fp32 the rows whose top-2 logits are nearly tied.
Random weights (``shunted bench``'s default) make nearly every row a near-tie, and the only trained checkpoint
shipped (the CIFAR-10 demo) was trained at 64 px. This script fine-tunes that demo checkpoint at 224 px on the
CIFAR-10 train subset (its square images upscaled as the evaluation pipeline does: 256×256, centre crop 224, plus
a random horizontal flip; an image that is not square would be squashed) and saves an official-format checkpoint for ``shunted bench --weights ... --data ...``.

It trains the tests' PyTorch transcription of the model (``shunted/runtime/torch_reference.py``, no dropout or
stochastic depth; BatchNorm kept in eval mode) because PyTorch trains ~3× faster on this CPU; the result is an
ordinary official-format ``.pth`` that ``shunted convert`` reads. About 15 minutes on 2 cores:

    python benchmarks/finetune_cifar224.py --output /tmp/ckpt_T_cifar10_224.pth
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import random
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO / ".." / "shared"


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--weights", type=Path, default=REPO / "shunted" / "assets" / "demo" / "ckpt_T_cifar10_fp16.pth"
    )
    parser.add_argument("--data", type=Path, default=SHARED / "data" / "cifar10" / "train-5k")
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import torch
    from PIL import Image

    # Preprocessing facts from the package (registry.py imports nothing, so Paddle stays out of this process).
    registry = _load("shunted_registry", REPO / "shunted" / "models" / "registry.py")
    reference = _load("shunted_torch_reference", REPO / "shunted" / "runtime" / "torch_reference.py")

    torch.manual_seed(args.seed)
    random.seed(args.seed)
    torch.set_num_threads(args.threads)
    classes = sorted(p.name for p in args.data.iterdir() if p.is_dir())
    samples = [(f, i) for i, c in enumerate(classes) for f in sorted((args.data / c).iterdir())]
    mean = np.asarray(registry.IMAGENET_MEAN, np.float32)
    std = np.asarray(registry.IMAGENET_STD, np.float32)
    resize = int(args.img_size / registry.PretrainedConfig().crop_pct)

    def load(path: Path, flip: bool) -> np.ndarray:
        # A square resize is the shorter-side resize of the evaluation pipeline for square (CIFAR) images.
        img = Image.open(path).convert("RGB").resize((resize, resize), Image.BICUBIC)
        top = (resize - args.img_size) // 2
        img = img.crop((top, top, top + args.img_size, top + args.img_size))
        if flip:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        x = (np.asarray(img, np.float32) / 255.0 - mean) / std
        return x.transpose(2, 0, 1)

    model = reference.build("shunted_t", num_classes=len(classes))
    state = torch.load(args.weights, map_location="cpu", weights_only=True)
    state = state.get("model", state)
    model.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    model.train()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.eval()
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.05)
    steps = args.epochs * (len(samples) // args.batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    start, step = time.perf_counter(), 0
    for _ in range(args.epochs):
        random.shuffle(samples)
        for b in range(len(samples) // args.batch_size):
            batch = samples[b * args.batch_size : (b + 1) * args.batch_size]
            x = torch.from_numpy(np.stack([load(p, random.random() < 0.5) for p, _ in batch]))
            y = torch.tensor([label for _, label in batch])
            loss = torch.nn.functional.cross_entropy(model(x), y, label_smoothing=0.1)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            step += 1
            if step % 10 == 0 or step == steps:
                print(
                    f"step {step}/{steps} loss {loss.item():.3f} ({time.perf_counter() - start:.0f} s)",
                    flush=True,
                )
    tmp = args.output.with_name(args.output.name + ".partial")  # written whole, then renamed into place
    torch.save({"model": {k: v.detach().clone() for k, v in model.state_dict().items()}}, tmp)
    os.replace(tmp, args.output)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
