"""``shunted serve``: one checkpoint behind an HTTP API in PaddleX's serving shape, with dynamic batching.

- ``batcher.py``: the bounded queue and the one worker thread that coalesces requests into batches;
- ``tasks.py``: per task, the request's image decoded and pre-processed, a batch run and post-processed with
  the functions ``shunted predict`` / ``seg-predict`` use (so results equal theirs);
- ``metrics.py``: the Prometheus text of ``GET /metrics``;
- ``app.py``: the FastAPI application (routes, envelopes, limits, the page at ``/``); the only module that
  imports FastAPI;
- ``run.py``: ``ServeConfig`` and ``serve`` (open the model, warm it, run uvicorn, drain on SIGTERM).

Nothing here imports FastAPI or uvicorn at import time except ``app.py`` and ``run.serve``.
"""
