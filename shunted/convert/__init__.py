"""Checkpoint conversion without PyTorch: official ``.pth`` ⇄ ``.pdparams`` / ``.safetensors``.

- ``reader.py``: ``read_weights`` — any supported file into a strictly checked Paddle-layout state dict.
- ``writer.py``: ``convert_file`` (atomic, with a JSON sidecar), ``write_pdparams``, ``sidecar_path``.
- ``safe_pickle.py``: the allow-list unpickler every pickle goes through (``.pdparams``, ``.pdckpt``, ``.pth``);
  ``torch_pickle.py``: the ``.pth`` containers (zip and legacy) on top of it.
- ``safetensors_io.py``, ``torch_writer.py``: the other formats; ``mapping.py``: torch ⇄ Paddle names and layouts;
  ``detect.py``: the variant and class count from keys and shapes.
"""

from __future__ import annotations

from .reader import LoadedWeights, read_weights
from .writer import convert_file, sidecar_path, write_pdparams

__all__ = ["LoadedWeights", "convert_file", "read_weights", "sidecar_path", "write_pdparams"]
