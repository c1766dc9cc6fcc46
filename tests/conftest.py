"""Shared fixtures: the ``../shared`` folder, a fixed Paddle seed, the PyTorch reference, torch → Paddle weights.

Paddle and torch use 2 threads (the CI machine's cores, often shared). OMP_NUM_THREADS is deliberately left
alone: Paddle prints a multi-line warning to stderr when it is not 1, which subprocess tests would see.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import pytest

try:
    import paddle
except ImportError:  # the PIL/numpy-only tests also run without Paddle (scripts/pillow_check.sh)
    paddle = None

TESTS_DIR = Path(__file__).resolve().parent
REPO_ROOT = TESTS_DIR.parent
SHARED_DIR = (REPO_ROOT / ".." / "shared").resolve()
NUM_THREADS = 2
PADDLE_SEED = 2022

# The start-up cache (shunted/runtime/cache.py) of this test session: never the user's ~/.cache/shunted. Shared by
# the session's tests and their subprocesses (they inherit the variable), removed at exit.
TEST_CACHE_HOME = tempfile.mkdtemp(prefix="shunted-test-cache-")
os.environ["XDG_CACHE_HOME"] = TEST_CACHE_HOME
atexit.register(shutil.rmtree, TEST_CACHE_HOME, True)

if str(TESTS_DIR) not in sys.path:  # makes ``reference`` importable from every test directory
    sys.path.insert(0, str(TESTS_DIR))

if paddle is not None:
    paddle.set_device("cpu")
    paddle.base.core.set_num_threads(NUM_THREADS)
try:
    import torch

    torch.set_num_threads(NUM_THREADS)
except ImportError:  # the reference-based tests skip themselves
    pass


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository's root directory (holds ``hubconf.py``)."""
    return REPO_ROOT


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """``../shared`` beside the clone (SPEC.md, sample data); skips the test when it is absent."""
    if not SHARED_DIR.is_dir():
        pytest.skip(f"{SHARED_DIR} is absent (the shared folder lives beside the clone in CI)")
    return SHARED_DIR


@pytest.fixture(scope="session", autouse=True)
def paddle_seed() -> int:
    """Seed Paddle's global generator once per session, so fresh initialisations are reproducible."""
    if paddle is not None:
        paddle.seed(PADDLE_SEED)
    return PADDLE_SEED


@pytest.fixture(scope="session")
def reference():
    """``shunted/runtime/torch_reference.py``, the independent PyTorch transcription (skips without torch)."""
    pytest.importorskip("torch")
    from shunted.runtime import torch_reference

    return torch_reference


def to_numpy_state(state: Mapping) -> dict[str, np.ndarray]:
    """A state dict of torch tensors (or arrays) as numpy arrays."""
    return {
        k: (v.detach().cpu().numpy() if hasattr(v, "detach") else np.asarray(v)) for k, v in state.items()
    }


def load_torch_state_into(
    model: paddle.nn.Layer, torch_state: Mapping, source: str = "torch reference"
) -> None:
    """Map an official-layout (PyTorch) state dict by the two rules and load it strictly into ``model``."""
    from shunted.convert.mapping import torch_to_paddle
    from shunted.models.weights import apply_state_dict

    apply_state_dict(model, torch_to_paddle(to_numpy_state(torch_state)), source=source)


@pytest.fixture(scope="session")
def load_torch_state() -> Callable[[paddle.nn.Layer, Mapping], None]:
    """``load_torch_state(paddle_model, torch_state_dict)``: the two mapping rules + strict loading."""
    return load_torch_state_into


@pytest.fixture(scope="session")
def relative_error() -> Callable[[np.ndarray, np.ndarray], float]:
    """``relative_error(actual, expected)`` = ‖Δ‖ / ‖expected‖: the package's one parity measure."""
    from shunted.engine.export import rel_err

    return rel_err


@pytest.fixture(scope="session")
def no_torch_env(tmp_path_factory) -> dict[str, str]:
    """An environment for subprocesses in which ``import torch`` fails (a ``torch`` package that raises)."""
    import os

    fake = tmp_path_factory.mktemp("no_torch") / "torch"
    fake.mkdir()
    (fake / "__init__.py").write_text("raise ImportError('torch is not available in this test')\n")
    return dict(os.environ, PYTHONPATH=str(fake.parent))
