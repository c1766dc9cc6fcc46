"""Fixtures of the ``shunted serve`` tests: a service on the stand-in model, an app under TestClient."""

from __future__ import annotations

import pytest
from serve_helpers import Opened


@pytest.fixture
def stand_in():
    """(service factory, opened): a Classify task at 32 px on the stand-in model; the service is not started."""
    from shunted.data.transforms import EvalTransform
    from shunted.engine.serve.batcher import BatchLimits
    from shunted.engine.serve.service import HttpLimits, Service
    from shunted.engine.serve.tasks import Classify

    opened = Opened()

    def make(http: HttpLimits | None = None, **batch) -> Service:
        task = Classify(opened, EvalTransform(img_size=32, resize_short=32), ["a", "b", "c", "d"])
        return Service(task, BatchLimits(**batch), http or HttpLimits(), {"model": "stand-in"})

    return make, opened


@pytest.fixture
def client_of():
    """``client_of(service)``: a started TestClient on the service's app (closed at the end)."""
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from shunted.engine.serve.app import make_app

    clients = []

    def make(service):
        client = TestClient(make_app(service))
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)
