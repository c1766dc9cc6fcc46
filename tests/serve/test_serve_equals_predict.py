"""``shunted serve`` answers what ``shunted predict`` prints for the same file: the bundled demo checkpoint,
bundled CIFAR-10 images sent together (so they are batched), top-5 ids equal and probabilities equal to float32
rounding (a batch's composition may move the last bits of a dygraph result)."""

from __future__ import annotations

import threading

import pytest
from serve_helpers import DEMO, b64, cifar_images

pytest.importorskip("fastapi")


def test_serve_equals_predict_on_the_demo_checkpoint(client_of):
    from shunted.engine import predict as engine
    from shunted.engine.serve.batcher import BatchLimits
    from shunted.engine.serve.service import ServeConfig, open_service

    cfg = ServeConfig(
        "shunted_t", DEMO, "dygraph", img_size=64, batch=BatchLimits(max_batch=4, max_wait_ms=3000)
    )
    service = open_service(cfg)  # the demo checkpoint works at 64 px (its expected.json)
    paths = cifar_images(8)
    expected = engine.predict(
        paths, service.task.transform, service.task.opened.predictor, topk=5,
        class_names=service.task.names, batch_size=8,
    )  # fmt: skip
    client = client_of(service)
    answers: list = [None] * len(paths)

    def send(i):
        answers[i] = client.post("/image-classification", json={"image": b64(paths[i].read_bytes())}).json()

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(paths))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    for path, want, got in zip(paths, expected, answers, strict=True):
        cats = got["result"]["categories"]
        assert [c["id"] for c in cats] == [t["index"] for t in want["top"]], path
        assert [c["name"] for c in cats] == [t["name"] for t in want["top"]], path
        assert [c["score"] for c in cats] == pytest.approx([t["prob"] for t in want["top"]], abs=1e-5), path
    assert (
        sum(
            int(p.parent.name == c["result"]["categories"][0]["name"])
            for p, c in zip(paths, answers, strict=True)
        )
        >= 6
    )
    metrics = client.get("/metrics").text
    assert "shunted_serve_images_total 8" in metrics
    assert 'shunted_serve_batch_size_bucket{le="3"} 0' in metrics  # only full batches of 4: coalesced
