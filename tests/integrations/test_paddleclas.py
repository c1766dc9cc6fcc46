"""``shunted.integrations.paddleclas.register()``: PaddleClas's ``build_model`` resolves ``Arch: {name: shunted_*}``.

The factory contract is checked here against a stand-in for PaddleClas's arch module (its ``build_model`` looks
``Arch.name`` up on the module and calls it with the other ``Arch`` keys). The real package is tested in its own
environment, because ``paddleclas`` pins numpy 1.24.4 (the main one has numpy 2): a Python with PaddleClas is
taken from ``SHUNTED_PADDLECLAS_PYTHON``, or ``.venv-paddleclas/`` in the repository; with
``SHUNTED_TEST_PADDLECLAS=1`` that venv is created when missing (``pip install paddleclas==2.6.0
paddlepaddle==3.3.1``, about 2.5 minutes and 1.6 GB). Otherwise that test is skipped and says so.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import numpy as np
import pytest

import shunted
from shunted.errors import ShuntedError
from shunted.integrations.paddleclas import register

REPO = Path(__file__).resolve().parents[2]
CKPT = REPO / "shunted" / "assets" / "demo" / "ckpt_T_cifar10_fp16.pth"
PADDLECLAS_VENV = REPO / ".venv-paddleclas"
PADDLECLAS_PINS = ["paddleclas==2.6.0", "paddlepaddle==3.3.1"]


def build_model_like_paddleclas(module, config):
    arch_config = copy.deepcopy(config["Arch"])
    name = arch_config.pop("name")
    return getattr(module, name)(**arch_config)


def test_register_sets_factories_with_paddleclas_signature():
    import paddle

    arch = types.ModuleType("fake_ppcls_arch")
    arch.__all__ = ["build_model"]
    assert register(arch) == shunted.list_models()
    assert arch.__all__ == ["build_model", *shunted.list_models()]

    model = build_model_like_paddleclas(
        arch, {"Arch": {"name": "shunted_t", "class_num": 10, "pretrained": str(CKPT)}}
    )
    direct = shunted.create_model("shunted_t", pretrained=CKPT)
    x = paddle.to_tensor(np.random.default_rng(0).standard_normal((2, 3, 64, 64)).astype("float32"))
    model.eval()
    direct.eval()
    with paddle.no_grad():
        np.testing.assert_array_equal(model(x).numpy(), direct(x).numpy())

    fresh = build_model_like_paddleclas(arch, {"Arch": {"name": "shunted_s", "class_num": 100}})
    assert fresh.num_classes == 100 and fresh.variant.name == "shunted_s"
    with pytest.raises(ShuntedError, match="set Arch.pretrained to the path"):
        build_model_like_paddleclas(arch, {"Arch": {"name": "shunted_b", "pretrained": True}})


def _paddleclas_python() -> Path:
    explicit = os.environ.get("SHUNTED_PADDLECLAS_PYTHON")
    if explicit:
        return Path(explicit)
    python = PADDLECLAS_VENV / "bin" / "python"
    if python.exists():
        return python
    if os.environ.get("SHUNTED_TEST_PADDLECLAS") != "1":
        pytest.skip(
            "PaddleClas pins numpy 1.24.4 and lives outside the main venv: set SHUNTED_TEST_PADDLECLAS=1 to build "
            ".venv-paddleclas (~2.5 min, 1.6 GB) or SHUNTED_PADDLECLAS_PYTHON to a Python that has paddleclas"
        )
    subprocess.run([sys.executable, "-m", "venv", str(PADDLECLAS_VENV)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", *PADDLECLAS_PINS], check=True)
    return python


SCRIPT = textwrap.dedent(
    """
    import sys
    import numpy as np
    import paddle
    from paddleclas.ppcls.arch import build_model
    from paddleclas.ppcls.utils.config import get_config
    from shunted.integrations.paddleclas import register

    config_path, ckpt, x_path, out_path = sys.argv[1:5]
    register()
    config = get_config(config_path, overrides=["Arch.class_num=10", f"Arch.pretrained={ckpt}"], show=False)
    model = build_model(config)
    model.eval()
    with paddle.no_grad():
        logits = model(paddle.to_tensor(np.load(x_path))).numpy()
    np.save(out_path, logits)
    print("numpy", np.__version__, "paddle", paddle.__version__, type(model).__name__)
    """
)


def test_real_paddleclas_build_model_from_our_config(tmp_path):
    """PaddleClas's own config reader and build_model, on configs/shunted_t.yaml, give our model's logits."""
    import paddle

    python = _paddleclas_python()
    x = np.random.default_rng(1).standard_normal((2, 3, 64, 64)).astype("float32")
    np.save(tmp_path / "x.npy", x)
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    args = [
        str(REPO / "configs" / "shunted_t.yaml"),
        str(CKPT),
        str(tmp_path / "x.npy"),
        str(tmp_path / "y.npy"),
    ]
    proc = subprocess.run(
        [str(python), str(script), *args], env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "numpy 1.24.4" in proc.stdout and "ShuntedTransformer" in proc.stdout

    model = shunted.create_model("shunted_t", pretrained=CKPT)
    model.eval()
    with paddle.no_grad():
        expected = model(paddle.to_tensor(x)).numpy()
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), expected, rtol=0, atol=1e-5)
