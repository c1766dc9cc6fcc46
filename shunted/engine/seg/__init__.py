"""Semantic segmentation engine (issue 15): metrics, training, evaluation, prediction.

- ``config.py``: the ``shunted seg-train`` schema, defaults (the Semantic FPN setting) and config resolution.
- ``train.py``: ``SegTrainer`` and ``seg_train`` (run folder, resume and launcher support as ``shunted train``).
- ``metrics.py``: the confusion matrix and its scores; ``evaluate.py``: ``evaluate_segmentation``, ``seg-eval``;
  ``predict.py`` / ``palette.py`` / ``outputs.py``: ``seg-predict``'s masks, colours and output folders.

Nothing is imported here, so each module loads only what it needs.
"""
