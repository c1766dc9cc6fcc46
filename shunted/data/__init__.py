"""Data: the official evaluation preprocessing, the two dataset layouts, class names.

``transforms``, ``classnames`` and ``datasets`` need only PIL/numpy (the datasets are plain map-style classes:
any loader takes them, Paddle's included).
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
