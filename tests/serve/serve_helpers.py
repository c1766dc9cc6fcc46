"""Helpers of the ``shunted serve`` tests: images as base64, a fast stand-in model, a server process."""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

from shunted.engine.serve.run import serving_port

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "shunted" / "assets" / "demo" / "ckpt_T_cifar10_fp16.pth"
CIFAR = REPO / "shunted" / "assets" / "cifar10-demo"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def cifar_images(n: int) -> list[Path]:
    """``n`` bundled CIFAR-10 images, one class after the other (different answers per image)."""
    classes = sorted(p for p in CIFAR.iterdir() if p.is_dir())
    return [sorted(classes[i % len(classes)].glob("*.jpg"))[i // len(classes)] for i in range(n)]


def png_bytes(array: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


class Opened:
    """What a task needs of ``engine/session.py:Opened``: a predictor (numpy, blocking while ``gate`` is
    clear), the class count, the backend name."""

    def __init__(self, num_classes: int = 4):
        self.num_classes, self.backend, self.weights_sha256 = num_classes, "stand-in", None
        self.gate = threading.Event()
        self.gate.set()
        self.calls: list[int] = []
        self.fail = False

    def predictor(self, x: np.ndarray) -> np.ndarray:
        assert self.gate.wait(30), "the test never opened the gate"
        if self.fail:
            raise RuntimeError("the runtime broke\nsecond line")
        self.calls.append(len(x))
        # class c's logit: the mean of channel c % 3 times (c + 1): depends on each image alone
        means = x.reshape(len(x), 3, -1).mean(axis=2)
        return np.stack([means[:, c % 3] * (c + 1) for c in range(self.num_classes)], axis=1)


def start_server(*extra: str) -> tuple[subprocess.Popen, int]:
    cmd = [sys.executable, "-m", "shunted", "serve", "--model", "shunted_t", "--weights", str(DEMO),
           "--img-size", "64", "--port", "0", "--backend", "dygraph", *extra]  # fmt: skip
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy()
    )
    port, line = serving_port(proc.stdout)
    if port is None:
        proc.kill()
        raise AssertionError(f"no serving line: {line!r} {proc.stderr.read()[-2000:]}")
    return proc, port


def post(port: int, payload: dict, timeout: float = 60) -> tuple[int, dict]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/image-classification",
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())
