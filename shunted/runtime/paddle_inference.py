"""The ``inference`` / ``inference_bf16`` runtimes: Paddle Inference with oneDNN on a Paddle export.

Two oneDNN fusion passes are deleted: on Shunted, Paddle 3.3.1 mis-fuses ``reshape_transpose_matmul_fuse_pass``
(conv → reshape([0, C, -1]) → transpose → Linear) and ``matmul_transpose_reshape_fuse_pass`` (the stage-4
attention) — logits off by up to 0.2. See ``tools/onednn_fusion_repro.py``; the test suite notices when an
upgrade changes that. ``inference_bf16`` uses oneDNN bfloat16 kernels (AVX-512 BF16 / AMX CPUs)
with the fp32 recheck of near-ties (``recheck.py``). A program with interpolation ops (a segmentation export)
runs on Paddle's native CPU kernels: oneDNN cannot run those ops in Paddle 3.3.1 (``INTERPOLATION_OP``).
"""

from __future__ import annotations

import os
import re

import numpy as np

from ..errors import ShuntedError
from .layout import existing_paddle_files
from .recheck import DEFAULT_MARGIN, Predictor, with_fp32_recheck

# Paddle 3.3.1 oneDNN passes that produce wrong Shunted outputs (see the module docstring).
BROKEN_ONEDNN_PASSES = ("reshape_transpose_matmul_fuse_pass", "matmul_transpose_reshape_fuse_pass")
# With bfloat16, fusing the unsqueeze of the feed-forward's 1×1-conv weight drops its two unit dimensions
# (predictor creation fails: "filter's shape is [512, 64]").
BROKEN_ONEDNN_BF16_PASSES = ("operator_unsqueeze_onednn_fuse_pass",)
# Paddle 3.3.1's oneDNN executor cannot run the interpolation ops (bilinear/nearest resize) of a PIR program: it
# fails at the first run with "ConvertPirAttribute2RuntimeAttribute not support [pir::ArrayAttribute<pir::
# DoubleAttribute>]" (Paddle issue 79749), whether the resize is given a size or a scale. Programs with such ops
# (the segmentation models' FPN head) run on Paddle's native CPU kernels instead.
INTERPOLATION_OP = re.compile(r'"#":"1\.[a-z]*_interp"')


def has_interpolation(json_path: str | os.PathLike) -> bool:
    """Whether a PIR ``model.json`` holds an interpolation op (``*_interp``)."""
    with open(json_path, encoding="utf-8", errors="replace") as f:
        return INTERPOLATION_OP.search(f.read()) is not None


def inference_config(export_dir: str | os.PathLike, threads: int, bf16: bool = False):
    """A CPU ``paddle.inference.Config`` for a Paddle export: oneDNN on, the broken passes deleted."""
    import paddle.inference as pi

    json_path, params_path = existing_paddle_files(export_dir)
    config = pi.Config(str(json_path), str(params_path))
    config.disable_gpu()
    config.set_cpu_math_library_num_threads(int(threads))
    if has_interpolation(json_path):  # see INTERPOLATION_OP
        if bf16:
            raise ShuntedError(
                f"--backend inference_bf16: {export_dir} resizes feature maps (a segmentation model), which "
                "Paddle 3.3.1's oneDNN cannot run; use inference, onnxruntime, openvino or openvino_bf16"
            )
        config.disable_onednn()
        config.switch_ir_optim(True)
        config.disable_glog_info()
        return config
    config.enable_onednn()
    if bf16:
        config.enable_onednn_bfloat16()
    config.switch_ir_optim(True)
    config.disable_glog_info()
    for name in BROKEN_ONEDNN_PASSES + (BROKEN_ONEDNN_BF16_PASSES if bf16 else ()):
        config.delete_pass(name)
    return config


def _paddle_runner(config) -> tuple[Predictor, int]:
    """(predict, number of outputs) of one Paddle Inference predictor."""
    import paddle.inference as pi

    predictor = pi.create_predictor(config)
    (input_name,) = predictor.get_input_names()
    handle = predictor.get_input_handle(input_name)
    outputs = [predictor.get_output_handle(n) for n in predictor.get_output_names()]

    def predict(x: np.ndarray):
        handle.reshape(list(x.shape))
        handle.copy_from_cpu(np.ascontiguousarray(x, dtype=np.float32))
        predictor.run()
        result = [o.copy_to_cpu() for o in outputs]
        return result[0] if len(result) == 1 else result

    return predict, len(outputs)


def inference_predictor(
    export_dir: str | os.PathLike, threads: int, bf16: bool = False, recheck_margin: float = DEFAULT_MARGIN
) -> Predictor:
    """Paddle Inference; with ``bf16``, near-tie rows of a logits output are recomputed in fp32."""
    run, n_outputs = _paddle_runner(inference_config(export_dir, threads, bf16))
    if not bf16 or n_outputs != 1:
        return run  # a --features export: no class decision to protect
    exact = _paddle_runner(inference_config(export_dir, threads))[0]
    return with_fp32_recheck(run, exact, recheck_margin)
