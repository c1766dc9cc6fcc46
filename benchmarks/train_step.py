"""Throughput of one training step (forward + backward + AdamW) in Paddle next to the PyTorch reference.

    .venv/bin/python benchmarks/train_step.py                 # shunted_t, 224 px, batch 16, 2 threads
    .venv/bin/python benchmarks/train_step.py --quick         # CI smoke: 64 px, batch 4, 2 rounds
    .venv/bin/python benchmarks/train_step.py --profile       # plus Paddle's top operators by time

Both frameworks run the same model (the tests' independent PyTorch transcription, tests/reference/shunted_torch.py,
stands for the official code), the same batch, the soft-target cross-entropy of the recipe and AdamW with the
recipe's parameter groups; drop path is 0 in both (the reference is an inference transcription). The two are
timed in alternating rounds (background load hits both alike) with a pause between them, because Paddle's OpenMP
runtime keeps its threads spinning for a while after each parallel region. Medians are reported.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def paddle_step(name: str, batch: int, size: int, classes: int):
    import paddle

    from shunted import create_model
    from shunted.data.mixup import smooth_one_hot, soft_target_cross_entropy
    from shunted.engine.train_optim import build_optimizer

    model = create_model(name, num_classes=classes)
    model.train()
    opt = build_optimizer(model, 1e-4)
    x = paddle.randn([batch, 3, size, size])
    target = smooth_one_hot(paddle.arange(batch) % classes, classes, 0.1)

    def step() -> None:
        loss = soft_target_cross_entropy(model(x), target)
        loss.backward()
        opt.step()
        opt.clear_grad()
        float(loss)

    return step


def torch_step(name: str, batch: int, size: int, classes: int):
    import torch

    sys.path.insert(0, str(REPO / "tests"))
    from reference.shunted_torch import build

    model = build(name, num_classes=classes).train()
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.05}, {"params": no_decay, "weight_decay": 0.0}],
        lr=1e-4,
        eps=1e-8,
    )
    x = torch.randn(batch, 3, size, size)
    target = torch.full((batch, classes), 0.1 / classes)
    target[torch.arange(batch), torch.arange(batch) % classes] += 0.9

    def step() -> None:
        loss = torch.sum(-target * torch.log_softmax(model(x), dim=-1), dim=-1).mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        loss.item()

    return step


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def profile_paddle(step, top: int = 15) -> None:
    import paddle.profiler as profiler

    prof = profiler.Profiler(targets=[profiler.ProfilerTarget.CPU])
    prof.start()
    for _ in range(2):
        step()
        prof.step()
    prof.stop()
    prof.summary(sorted_by=profiler.SortedKeys.CPUTotal, op_detail=False, thread_sep=False, time_unit="ms")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="shunted_t")
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--pause", type=float, default=0.5, help="seconds between timed steps")
    parser.add_argument("--quick", action="store_true", help="64 px, batch 4, 2 rounds, 1 warm-up")
    parser.add_argument("--profile", action="store_true", help="print Paddle's operator profile afterwards")
    parser.add_argument("--no-torch", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.img_size, args.batch_size, args.rounds, args.warmup, args.pause = 64, 4, 2, 1, 0.1
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))

    import paddle

    paddle.set_device("cpu")
    paddle.base.core.set_num_threads(args.threads)
    steps = {"paddle": paddle_step(args.model, args.batch_size, args.img_size, 1000)}
    if not args.no_torch:
        try:
            import torch

            torch.set_num_threads(args.threads)
            steps["torch"] = torch_step(args.model, args.batch_size, args.img_size, 1000)
        except ImportError:
            print("torch not importable: Paddle only")
    for fn in steps.values():
        for _ in range(args.warmup):
            fn()
    times: dict[str, list[float]] = {k: [] for k in steps}
    order = list(steps)
    for r in range(args.rounds):
        for key in order[r % len(order) :] + order[: r % len(order)]:
            time.sleep(args.pause)
            times[key].append(timed(steps[key]))
    print(
        f"{args.model} {args.img_size}px batch {args.batch_size}, {args.threads} threads, "
        f"{args.rounds} rounds (median s/step, img/s):"
    )
    med = {k: statistics.median(v) for k, v in times.items()}
    for key, value in med.items():
        print(f"  {key:7s} {value:8.3f} s/step  {args.batch_size / value:8.2f} img/s")
    if "torch" in med:
        print(f"  paddle / torch step time: {med['paddle'] / med['torch']:.2f}x")
    if args.profile:
        profile_paddle(steps["paddle"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
