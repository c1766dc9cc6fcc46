"""Data: the official evaluation preprocessing, the two dataset layouts, class names.

``transforms`` and ``classnames`` need only PIL/numpy; ``datasets.ImageDataset`` is a ``paddle.io.Dataset``.
"""

from .classnames import imagenet_class_names, imagenet_synsets, resolve_class_names
from .transforms import EvalTransform, load_rgb, pillow_version

__all__ = [
    "EvalTransform",
    "imagenet_class_names",
    "imagenet_synsets",
    "load_rgb",
    "pillow_version",
    "resolve_class_names",
]
