"""Semantic segmentation engine (issue 15): metrics, training, evaluation, prediction.

- ``config.py``: the ``shunted seg-train`` schema, defaults (the Semantic FPN setting) and config resolution.
- ``train.py``: ``SegmentationTask``, the task the one training loop (shunted/engine/train/loop.py) runs, and ``seg_train``.
- ``metrics.py``: the confusion matrix and its scores; ``evaluate.py``: ``evaluate_segmentation``, ``seg-eval``;
  ``predict.py`` / ``palette.py`` / ``outputs.py``: ``seg-predict``'s masks, colours and output folders.

Nothing is imported here, so each module loads only what it needs.
"""
