"""``shunted serve`` as a process on 127.0.0.1 (an ephemeral port) and segmentation against ``seg-predict``
(slow stage): SIGTERM answers the request in flight and exits 0; a body that trickles in is 408 while other
clients are served; no traceback ever reaches stderr."""

from __future__ import annotations

import base64
import io
import signal
import socket
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from serve_helpers import b64, cifar_images, post, start_server

pytest.importorskip("fastapi")
pytestmark = pytest.mark.slow


def test_sigterm_answers_the_request_in_flight_and_exits_0():
    proc, port = start_server("--max-wait-ms", "3000")  # a lone request waits 3 s for company: in flight
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=30) as r:
            assert r.status == 200
        image = b64(cifar_images(1)[0].read_bytes())
        answer: dict = {}
        sender = threading.Thread(
            target=lambda: answer.update(zip(("status", "body"), post(port, {"image": image}), strict=True))
        )
        sender.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # the request has reached the queue
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as r:
                if "shunted_serve_queue_depth 1" in r.read().decode():
                    break
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        sender.join(60)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert answer["status"] == 200 and answer["body"]["result"]["categories"][0]["name"] == "airplane"
    assert proc.returncode == 0, err
    assert "queue drained" in out and "Traceback" not in err


def test_a_trickling_body_is_408_and_the_others_are_served():
    proc, port = start_server("--timeout", "2")
    try:
        slow = socket.create_connection(("127.0.0.1", port), timeout=30)
        slow.sendall(b"POST /image-classification HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 1000\r\n\r\n{")  # fmt: skip
        image = b64(cifar_images(1)[0].read_bytes())
        for _ in range(3):
            slow.sendall(b" ")  # one byte now and then: never the whole body
            status, body = post(port, {"image": image})
            assert status == 200, body
        slow.settimeout(30)
        reply = b""
        while not reply.endswith(
            b"}"
        ):  # the status line, the headers, the JSON body (in any number of pieces)
            chunk = slow.recv(4096)
            if not chunk:
                break
            reply += chunk
        reply = reply.decode()
        slow.close()
        assert reply.startswith("HTTP/1.1 408") and "did not arrive within 2 s" in reply
        for bad in ({"image": "%%%"}, {"image": b64(b"not an image")}, {"nothing": 1}):
            assert post(port, bad)[0] == 400
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0 and "Traceback" not in err, err


def test_segmentation_equals_seg_predict(tmp_path, client_of):
    """A random shunted_t_fpn (11 classes): the label map of each image equals seg-predict's IMAGE.png, as PNG
    and as PaddleX's flat list."""
    import paddle
    from PIL import Image

    from shunted.engine.seg.predict import SegPredictConfig, segment_images
    from shunted.engine.serve.service import ServeConfig, open_service
    from shunted.factory import create_model

    paddle.seed(3)
    weights = tmp_path / "fpn.pdparams"
    paddle.save(create_model("shunted_t_fpn", num_classes=11).state_dict(), str(weights))
    images = tmp_path / "in"
    images.mkdir()
    for i, path in enumerate(cifar_images(3)):  # 32×32 → 96×64: a size that is not square
        Image.open(path).convert("RGB").resize((96, 64 + 32 * (i % 2))).save(images / f"{i}.png")
    segment_images(
        SegPredictConfig(
            [images], tmp_path / "out", "shunted_t_fpn", weights, backend="dygraph", progress=False
        )
    )
    client = client_of(open_service(ServeConfig("shunted_t_fpn", weights, "dygraph")))
    assert client.get("/info").json()["result"]["task"] == "semantic-segmentation"
    for path in sorted(images.iterdir()):
        expected = np.asarray(Image.open(tmp_path / "out" / path.name))
        body = client.post("/semantic-segmentation", json={"image": b64(path.read_bytes())}).json()["result"]
        got = np.asarray(Image.open(io.BytesIO(base64.b64decode(body["labelMap"]))))
        assert body["size"] == list(expected.shape) and np.array_equal(got, expected), path
        flat = client.post(
            "/semantic-segmentation",
            json={"image": b64(path.read_bytes()), "inferenceParams": {"labelMapFormat": "list"}},
        ).json()["result"]
        assert flat["labelMap"] == expected.ravel().tolist()
    assert len(np.unique(expected)) > 1  # a mask of one class would compare nothing


def test_detection_equals_det_predict(tmp_path, client_of):
    """A random shunted_t_retinanet (3 classes) at a small scale: each image's detections (threshold 0: all of
    them) equal det-predict's manifest, in order; two images of one size sent together run as one batch."""
    import paddle
    from PIL import Image

    from shunted.engine.det.predict import DetPredictConfig, detect_images
    from shunted.engine.serve.batcher import BatchLimits
    from shunted.engine.serve.service import ServeConfig, open_service
    from shunted.factory import create_model

    paddle.seed(5)
    weights = tmp_path / "det.pdparams"
    model = create_model("shunted_t_retinanet", num_classes=3)
    bias = (
        model.bbox_head.retina_cls.bias
    )  # from the prior 0.01 (nothing above the 0.05 floor) to varied scores
    bias.set_value(np.random.default_rng(5).normal(0, 1.5, bias.shape).astype(np.float32))
    paddle.save(model.state_dict(), str(weights))
    images = tmp_path / "in"
    images.mkdir()
    for i, path in enumerate(cifar_images(3)):
        Image.open(path).convert("RGB").resize((96, 64 + 32 * (i == 2))).save(images / f"{i}.png")
    scale = (160, 128)
    manifest = detect_images(DetPredictConfig(
        [images], tmp_path / "out", "shunted_t_retinanet", weights, score_threshold=0.0, img_scale=scale,
        backend="dygraph", progress=False,
    ))  # fmt: skip
    cfg = ServeConfig("shunted_t_retinanet", weights, "dygraph", det_img_scale=scale,
                      batch=BatchLimits(max_batch=2, max_wait_ms=3000))  # fmt: skip
    client = client_of(open_service(cfg))
    answers: dict = {}
    paths = sorted(images.iterdir())

    def send(path):
        body = {"image": b64(path.read_bytes()), "inferenceParams": {"threshold": 0.0}}
        answers[path.name] = client.post("/object-detection", json=body).json()["result"]["detectedObjects"]

    threads = [threading.Thread(target=send, args=(p,)) for p in paths[:2]]  # one size: one batch of 2
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    send(paths[2])
    for record in manifest["images"]:
        got = answers[Path(record["image"]).name]
        want = record["detections"]
        assert len(got) == len(want) > 0
        assert [g["categoryId"] for g in got] == [w["class_id"] for w in want]
        assert [g["score"] for g in got] == pytest.approx([w["score"] for w in want], abs=1e-5)
        assert np.allclose([g["bbox"] for g in got], [w["box"] for w in want], atol=0.01)
    assert 'shunted_serve_batch_size_bucket{le="1"} 1' in client.get("/metrics").text  # the third alone
