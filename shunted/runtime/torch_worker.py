"""The ``torch`` / ``torch_compile`` yardstick of ``shunted bench``: the PyTorch transcription in a child process.

The model is ``torch_reference.py`` (an independent transcription of the official code, see docs/model.md),
loaded with the Paddle model's weights in the official layout. It runs in a separate process (no Paddle in it):
in one process, Paddle's libiomp5 and torch's libgomp OpenMP runtimes interfere and torch ran 2–3× slower than
on its own. The worker times its own calls (``last_seconds``), so the pipe is not in the figure. torch is an
optional package: ``available()`` says whether it is importable; nothing here imports it in this process.
"""

from __future__ import annotations

import importlib.util
import os
import pickle
import subprocess
import sys

import numpy as np

from . import TORCH_BACKENDS  # noqa: F401  (re-exported: the backends this worker runs)


def available() -> bool:
    """Whether torch is importable (the torch backends need it; the package never does)."""
    return importlib.util.find_spec("torch") is not None


def _torch_worker() -> None:
    """Child process (``python -c``): build the reference, then answer arrays with (seconds, output) until None.

    Messages are pickles on stdin / the original stdout; anything else the child prints goes to stderr.
    """
    import time

    import torch

    from . import torch_reference

    inp, out = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr
    variant, num_classes, state, threads, compile, keep_memory = pickle.load(inp)
    if keep_memory:
        from ..cpu_memory import keep_freed_memory

        keep_freed_memory()
    torch.set_num_threads(threads)
    net = torch_reference.build(variant, num_classes=num_classes)
    net.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=True)
    net.eval()
    runner = torch.compile(net) if compile else net

    def reply(obj) -> None:
        pickle.dump(obj, out, protocol=pickle.HIGHEST_PROTOCOL)
        out.flush()

    reply("ready")
    while (x := pickle.load(inp)) is not None:
        with torch.inference_mode():
            start = time.perf_counter()
            y = runner(torch.from_numpy(x)).numpy()
            reply((time.perf_counter() - start, y))


class TorchPredictor:
    """The reference PyTorch model with given weights (official layout, numpy arrays), in a child process.

    Calling it returns the output; ``last_seconds`` is the time the child measured for that call.
    keep_memory: run the child under shunted's glibc allocator policy (``shunted/cpu_memory.py``).
    """

    def __init__(
        self,
        variant: str,
        num_classes: int,
        state: dict[str, np.ndarray],
        threads: int,
        compile: bool = False,
        keep_memory: bool = False,
    ):
        state = {k: np.ascontiguousarray(v) for k, v in state.items()}
        # Importing Paddle sets OMP_NUM_THREADS=1 in this process's environment: not for the child.
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
        self._proc = subprocess.Popen(
            [sys.executable, "-c", "from shunted.runtime.torch_worker import _torch_worker; _torch_worker()"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        self._send((variant, num_classes, state, threads, compile, keep_memory))
        if self._recv() != "ready":
            raise RuntimeError("the PyTorch reference worker did not start")
        self.last_seconds = 0.0

    def _send(self, obj) -> None:
        pickle.dump(obj, self._proc.stdin, protocol=pickle.HIGHEST_PROTOCOL)
        self._proc.stdin.flush()

    def _recv(self):
        try:
            return pickle.load(self._proc.stdout)
        except EOFError:
            raise RuntimeError(f"the PyTorch reference worker exited (status {self._proc.wait()})") from None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self._send(np.ascontiguousarray(x, dtype=np.float32))
        self.last_seconds, y = self._recv()
        return y

    def close(self) -> None:
        if self._proc.poll() is None:
            try:
                self._send(None)
                self._proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self._proc.kill()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass
