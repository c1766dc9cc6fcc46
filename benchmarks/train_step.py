"""Throughput of one training step (forward + backward + AdamW) in Paddle next to the PyTorch reference.

    .venv/bin/python benchmarks/train_step.py                 # shunted_t, 224 px, batch 16, 2 threads
    .venv/bin/python benchmarks/train_step.py --quick         # CI smoke: 64 px, batch 4, 2 rounds
    .venv/bin/python benchmarks/train_step.py --profile       # plus Paddle's top operators by time
    .venv/bin/python benchmarks/train_step.py --variants paddle paddle-tokens torch

Both frameworks run the same model (the tests' independent PyTorch transcription, shunted/runtime/torch_reference.py,
stands for the official code), the same batch size, the soft-target cross-entropy of the recipe and AdamW with
the recipe's parameter groups; drop path is 0 in both (the reference is an inference transcription). Each
variant runs in its own process, one after the other: in one process the two OpenMP runtimes slow each other
down (measured: torch's 64 px step 0.11 s alone, 3.6-8.5 s next to Paddle). Medians of the timed steps.
``--variants paddle paddle-tokens torch`` adds Paddle with the feed-forward computed on tokens (Linear layers,
the official formulation) instead of the model's NCHW 1x1 convs.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def mlp_on_tokens(mlp, x, height: int, width: int):
    """The official token formulation of the feed-forward: Linear fc1 / fc2, only the dwconv on the image."""
    from shunted.models.shunted import image_to_tokens, tokens_to_image

    x = mlp.fc1(x)
    x = mlp.act(x + image_to_tokens(mlp.dwconv(tokens_to_image(x, x.shape[-1], height, width))))
    return mlp.drop(mlp.fc2(mlp.drop(x)))


def paddle_step(name: str, batch: int, size: int, classes: int, mlp_tokens: bool = False):
    import types

    import paddle

    from shunted import create_model
    from shunted.data.mixup import smooth_one_hot, soft_target_cross_entropy
    from shunted.engine.train.optim import build_optimizer
    from shunted.models.shunted import Mlp

    model = create_model(name, num_classes=classes)
    if mlp_tokens:
        for layer in model.sublayers():
            if isinstance(layer, Mlp):
                layer.forward = types.MethodType(mlp_on_tokens, layer)
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

    from shunted.runtime.torch_reference import build

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


VARIANTS = {"paddle": "paddle", "paddle-tokens": "paddle, mlp on tokens", "torch": "torch"}


def measure(args: argparse.Namespace) -> dict[str, float]:
    """Median seconds per step of ``args.only`` (one variant) in this process."""
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    # Both frameworks under the allocator policy of the shunted command (loaded by path: no Paddle in torch's
    # process); it speeds both up.
    spec = importlib.util.spec_from_file_location("shunted_cpu_memory", REPO / "shunted" / "cpu_memory.py")
    cpu_memory = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cpu_memory)
    cpu_memory.keep_freed_memory()
    if args.only == "torch":
        import torch

        torch.set_num_threads(args.threads)
        step = torch_step(args.model, args.batch_size, args.img_size, 1000)
    else:
        import paddle

        paddle.set_device("cpu")
        paddle.base.core.set_num_threads(args.threads)
        step = paddle_step(args.model, args.batch_size, args.img_size, 1000, args.only == "paddle-tokens")
    for _ in range(args.warmup):
        step()
    times = []
    for _ in range(args.rounds):
        time.sleep(args.pause)
        times.append(timed(step))
    if args.profile and args.only == "paddle":
        profile_paddle(step)
    return {"median": statistics.median(times), "min": min(times)}


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
    parser.add_argument(
        "--variants", nargs="+", choices=tuple(VARIANTS), default=["paddle", "torch"], help="what to time"
    )
    parser.add_argument("--only", choices=tuple(VARIANTS), default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.img_size, args.batch_size, args.rounds, args.warmup, args.pause = 64, 4, 2, 1, 0.3
    if args.only:  # child process: print one JSON line
        print(json.dumps(measure(args)))
        return 0
    results = {}
    for variant in args.variants:
        if variant == "torch" and importlib.util.find_spec("torch") is None:
            print("torch not importable: skipped")
            continue
        cmd = [sys.executable, __file__, "--only", variant, *_forward(args)]
        env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if done.returncode:
            print(done.stderr[-3000:], file=sys.stderr)
            return done.returncode
        lines = done.stdout.strip().splitlines()
        results[variant] = json.loads(lines[-1])
        if args.profile and variant == "paddle":
            print("\n".join(lines[:-1]))
    print(
        f"{args.model} {args.img_size}px batch {args.batch_size}, {args.threads} threads, {args.rounds} rounds, "
        "each variant in its own process (seconds per step: median / best; img/s from the median):"
    )
    for variant, r in results.items():
        print(
            f"  {VARIANTS[variant]:22s} {r['median']:8.3f} / {r['min']:7.3f} s  {args.batch_size / r['median']:8.2f} img/s"
        )
    if "torch" in results:
        for variant, r in results.items():
            if variant != "torch":
                print(
                    f"  {VARIANTS[variant]} / torch step time: {r['median'] / results['torch']['median']:.2f}x"
                )
    return 0


def _forward(args: argparse.Namespace) -> list[str]:
    out = ["--model", args.model, "--img-size", str(args.img_size), "--batch-size", str(args.batch_size)]
    out += ["--threads", str(args.threads), "--rounds", str(args.rounds), "--warmup", str(args.warmup)]
    out += ["--pause", str(args.pause)] + (["--profile"] if args.profile else [])
    return out


if __name__ == "__main__":
    sys.exit(main())
