"""Any input size on a segmentation export: pad height and width to a multiple of the network's stride, crop back.

``ShuntedFPN.forward`` (``shunted/models/fpn.py``) pads its input with zeros at the bottom/right to a multiple of 32
and crops the logits back. Its export has a dynamic height and width but leaves that step out (the traced shape
is unknown), so the runtimes do it here, on the arrays, with the same zeros and the same crop: the result equals
the dygraph model's for every size (``shunted export`` checks that at a size that is not a multiple of 32).
"""

from __future__ import annotations

from .recheck import Predictor


def padded_predictor(run: Predictor, multiple: int) -> Predictor:
    """``run`` (NCHW float32 → N×K×H×W logits, H and W multiples of ``multiple``) for any H and W."""
    import numpy as np

    def predict(x):
        height, width = x.shape[-2], x.shape[-1]
        pad_h, pad_w = -height % multiple, -width % multiple
        if not (pad_h or pad_w):
            return run(x)
        padded = np.pad(np.asarray(x, np.float32), ((0, 0), (0, 0), (0, pad_h), (0, pad_w)))
        y = run(padded)
        return np.ascontiguousarray(y[:, :, :height, :width])

    predict.pad_to = multiple
    return predict
