"""Object detection engine (issue 23): RetinaNet's evaluation, prediction and training task.

- ``metrics.py``: COCO metrics by pycocotools for COCO and VOC data; ``evaluate.py``: ``DetAccumulator`` (the
  inference loop's detection accumulator) and ``det-eval``; ``predict.py``: ``det-predict``'s pictures;
  ``train.py``: ``DetectionTask``, the task the one training loop (shunted/engine/train/loop.py) runs.

Nothing is imported here, so each module loads only what it needs.
"""
