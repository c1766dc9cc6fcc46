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

__version__ = "0.1.0"

from .models import create_model, get_pretrained_cfg, list_models  # noqa: E402

__all__ = ["__version__", "create_model", "get_pretrained_cfg", "list_models"]
