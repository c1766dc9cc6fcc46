"""Top-k predictions with class names for image files and folders, with the evaluation preprocessing."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..data.datasets import is_image_file
from ..data.transforms import EvalTransform
from ..errors import DataError
from .evaluate import PredictBatch


def expand_inputs(inputs: list[str | os.PathLike]) -> list[Path]:
    """Files as given, folders as their image files (recursive, sorted relative paths); nothing found is an error."""
    paths: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(
                (q for q in p.rglob("*") if q.is_file() and is_image_file(q)),
                key=lambda q: q.relative_to(p).as_posix(),
            )
            if not found:
                raise DataError(f"{p}: no image files in this folder")
            paths.extend(found)
        elif p.is_file():
            paths.append(p)
        else:
            raise DataError(f"{p}: no such file or folder")
    return paths


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def predict(
    paths: list[Path],
    transform: EvalTransform,
    predict_batch: PredictBatch,
    topk: int = 5,
    class_names: list[str] | None = None,
    batch_size: int = 32,
) -> list[dict]:
    """Per image: ``{"path", "top": [{"index", "name", "prob", "logit"}, ...]}`` in input order."""
    results = []
    for start in range(0, len(paths), batch_size):
        chunk = paths[start : start + batch_size]
        batch = np.stack([transform.load(p) for p in chunk])
        logits = np.asarray(predict_batch(batch), dtype=np.float32)
        probs = softmax(logits)
        k = min(topk, logits.shape[1])
        for path, row_logits, row_probs in zip(chunk, logits, probs, strict=True):
            order = np.argsort(-row_logits, kind="stable")[:k]
            top = [
                {
                    "index": int(i),
                    "name": class_names[i] if class_names else None,
                    "prob": float(row_probs[i]),
                    "logit": float(row_logits[i]),
                }
                for i in order
            ]
            results.append({"path": str(path), "top": top})
    return results


def format_predictions(results: list[dict]) -> str:
    lines = []
    for r in results:
        lines.append(r["path"])
        for rank, t in enumerate(r["top"], start=1):
            name = f"  {t['name']}" if t["name"] is not None else ""
            lines.append(f"  {rank}. {100 * t['prob']:6.2f} %  [{t['index']}]{name}")
    return "\n".join(lines)
