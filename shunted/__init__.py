"""Shunted Transformer (CVPR 2022) in PaddlePaddle, faithful to the official weights.

>>> import shunted
>>> model = shunted.create_model("shunted_s", pretrained="ckpt_S.pth")   # official file, no torch needed
"""

from __future__ import annotations

import os
import warnings

# Paddle warns about a C++ compiler cache on import; irrelevant to users of this package.
warnings.filterwarnings("ignore", message="No ccache found", category=UserWarning)
os.environ.setdefault("GLOG_minloglevel", "2")

from .mkl_dispatch import use_avx2_kernels_on_amd  # noqa: E402

use_avx2_kernels_on_amd()  # before Paddle loads its MKL (see mkl_dispatch.py)

from .models.registry import get_pretrained_cfg, list_models, list_seg_models  # noqa: E402  (plain Python)
from .version import __version__  # noqa: E402

__all__ = ["__version__", "create_model", "get_pretrained_cfg", "list_models", "list_seg_models"]


def __getattr__(name: str):
    """PEP 562: ``shunted.create_model`` imports Paddle on first use, so ``import shunted`` stays light."""
    if name == "create_model":
        from .factory import create_model

        return create_model
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
