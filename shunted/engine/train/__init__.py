"""Training: ``shunted train`` and ``paddle.distributed.launch tools/launch.py train``.

- ``loop.py``: the one training loop of every task (``Trainer``: epochs, resume, checkpoints, EMA, AMP, ranks) and
  ``train(cfg, task)``.
- ``task.py``: ``Task``, what a task supplies to the loop, and ``LoopSettings``, the loop's own config keys.
- ``classification.py``: ``ClassificationTask`` (``shunted train``); segmentation is shunted/engine/seg/train.py.
- ``config.py``: the resolved configuration (recipe defaults from shunted/config_schema.py, YAML, ``-o``, flags).
- ``optim.py``: AdamW with the official decay groups and the warm-up + cosine schedule.
- ``sampler.py``: repeated augmentation (DeiT's ``RASampler``) as a batch sampler.
- ``ema.py``: the optional exponential moving average of the weights.
- ``state.py``: what a run writes into its folder (``last.pdckpt``, weights, metrics), atomically.

The names below resolve on first use (PEP 562), so ``shunted.engine.train.config`` and ``.state`` can be
imported without the loop's data and model modules.
"""

from __future__ import annotations

__all__ = ["Trainer", "train"]


def __getattr__(name: str):
    if name in __all__:
        from . import loop

        return getattr(loop, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
