"""``shunted serve``'s HTTP side on a stand-in model (fast): PaddleX's envelope, every refusal with its status
and one line, the queue bound, the time-out, the metrics, the batcher's coalescing and order."""

from __future__ import annotations

import re
import struct
import threading
import time
import zlib

import numpy as np
import pytest
from serve_helpers import b64, png_bytes

pytest.importorskip("fastapi")

ROUTE = "/image-classification"


def image(seed: int = 0, size: int = 40) -> str:
    rng = np.random.default_rng(seed)
    return b64(png_bytes(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)))


def bomb_png(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width``×``height`` (its data would decompress to gigabytes)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 1000))
        + chunk(b"IEND", b"")
    )


def test_answers_in_paddlex_shape_highest_first(stand_in, client_of):
    make, opened = stand_in
    client = client_of(make())
    assert client.get("/health").json()["errorMsg"] == "Healthy"
    body = client.post(ROUTE, json={"image": image(), "inferenceParams": {"topk": 3}}).json()
    assert body["errorCode"] == 0 and body["errorMsg"] == "Success" and len(body["logId"]) == 32
    cats = body["result"]["categories"]
    assert [c["name"] for c in cats] == [["a", "b", "c", "d"][c["id"]] for c in cats] and len(cats) == 3
    assert [c["score"] for c in cats] == sorted((c["score"] for c in cats), reverse=True)
    # PaddleX 3's top-level topk is read too; the default is 5, capped by nothing but the class count (4)
    assert len(client.post(ROUTE, json={"image": image(), "topk": 1}).json()["result"]["categories"]) == 1


def test_the_same_image_gets_the_same_answer_alone_or_in_a_batch(stand_in, client_of):
    """Results are routed back to their own request: 6 different images sent together, batched by 3."""
    make, opened = stand_in
    single = client_of(make(max_batch=1))
    alone = [single.post(ROUTE, json={"image": image(i)}).json()["result"] for i in range(6)]
    client = client_of(make(max_batch=3, max_wait_ms=2000))
    opened.calls.clear()
    together: list = [None] * 6

    def send(i):
        together[i] = client.post(ROUTE, json={"image": image(i)}).json()["result"]

    threads = [threading.Thread(target=send, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert together == alone
    assert opened.calls == [3, 3]  # coalesced: the 2 s window fills at 3 requests each time
    assert 'shunted_serve_batch_size_bucket{le="3"} ' in client.get("/metrics").text


def test_results_handed_back_out_of_order_are_caught(stand_in, client_of, monkeypatch):
    """The check above fails when a batch's results go to the wrong requests (reversed here)."""
    from shunted.engine.serve.tasks import Classify

    make, opened = stand_in
    single = client_of(make(max_batch=1))
    alone = [single.post(ROUTE, json={"image": image(i)}).json()["result"] for i in range(3)]
    real = Classify.run
    monkeypatch.setattr(Classify, "run", lambda self, items: real(self, items)[::-1])
    client = client_of(make(max_batch=3, max_wait_ms=2000))
    together: list = [None] * 3
    threads = [
        threading.Thread(
            target=lambda i=i: together.__setitem__(
                i, client.post(ROUTE, json={"image": image(i)}).json()["result"]
            )
        )
        for i in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert together != alone and sorted(map(str, together)) == sorted(map(str, alone))


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "the body is not JSON"),
        (b'["image"]', "must be a JSON object"),
        (b'{"image": 3}', '"image" must be a string'),
        (b'{"image": "%%%%"}', "image: not valid base64"),
        (b'{"image": "aGVsbG8gd29ybGQ="}', "image: not an image file"),
        (b'{"image": "https://example.com/cat.jpg"}', "URLs and paths are not fetched"),
        (b'{"image": "file:///etc/passwd"}', "URLs and paths are not fetched"),
        (b'{"image": "iVBORw0KGgo=", "inferenceParams": []}', '"inferenceParams" must be a JSON object'),
        (
            b'{"image": "' + image().encode() + b'", "inferenceParams": {"topk": 0}}',
            "inferenceParams.topk: 0",
        ),
        (
            b'{"image": "' + image().encode() + b'", "inferenceParams": {"topk": true}}',
            "inferenceParams.topk",
        ),
    ],
)
def test_bad_requests_are_400_with_one_line(stand_in, client_of, body, message):
    make, opened = stand_in
    client = client_of(make())
    opened.calls.clear()  # the warm-up's
    r = client.post(ROUTE, content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 400, r.text
    assert r.json()["errorCode"] == 400 and message in r.json()["errorMsg"]
    assert "\n" not in r.json()["errorMsg"] and opened.calls == []  # refused before the model
    assert client.post(ROUTE, json={"image": image()}).status_code == 200  # and goes on


def test_a_decompression_bomb_is_refused_from_its_header(stand_in, client_of, monkeypatch):
    """40,000² pixels claimed in a 1 kB PNG: 400 before any pixel is decoded (``convert`` is never called)."""
    from PIL import Image

    make, opened = stand_in
    client = client_of(make())
    converted = []
    real = Image.Image.convert
    monkeypatch.setattr(
        Image.Image, "convert", lambda self, *a, **k: converted.append(1) or real(self, *a, **k)
    )
    r = client.post(ROUTE, json={"image": b64(bomb_png(12000, 12000))})  # between the limit and twice it
    message = r.json()["errorMsg"]  # ours, or Pillow's where the commands make its warning an error
    assert r.status_code == 400 and re.search(r"144,?000,?000 pixels.*limit of 89,?478,?485", message), (
        message
    )
    r = client.post(ROUTE, json={"image": b64(bomb_png(40000, 40000))})  # beyond Pillow's own refusal
    assert r.status_code == 400 and "decompression bomb" in r.json()["errorMsg"]
    assert converted == []
    # a PNG just under the limit is not refused for its size (only for its truncated data)
    r = client.post(ROUTE, json={"image": b64(bomb_png(9000, 9000))})
    assert r.status_code == 400 and "more than the limit" not in r.json()["errorMsg"]


def test_body_limit_is_413(stand_in, client_of):
    from shunted.engine.serve.service import HttpLimits

    make, _ = stand_in
    client = client_of(make(HttpLimits(max_body_bytes=2000)))
    r = client.post(ROUTE, json={"image": image(size=64)})  # ~16 kB
    assert r.status_code == 413 and r.json()["errorCode"] == 413
    assert 'shunted_serve_rejections_total{reason="body_too_large"} 1' in client.get("/metrics").text


def test_full_queue_is_503_with_retry_after_and_a_slow_model_is_504(stand_in, client_of):
    from shunted.engine.serve.service import HttpLimits

    make, opened = stand_in
    service = make(HttpLimits(timeout_s=0.5), max_batch=1, max_wait_ms=0, max_queue=1)
    client = client_of(service)
    opened.gate.clear()  # the model hangs: the first request times out while the worker holds it
    r = client.post(ROUTE, json={"image": image()})
    assert r.status_code == 504 and "no answer within 0.5 s" in r.json()["errorMsg"]
    service.batcher.submit((np.zeros((3, 32, 32), np.float32), 1))  # the one queue place, taken
    r = client.post(ROUTE, json={"image": image()})
    assert r.status_code == 503 and r.headers["retry-after"] == "1" and "busy" in r.json()["errorMsg"]
    opened.gate.set()
    deadline = time.monotonic() + 30
    while service.batcher.depth() and time.monotonic() < deadline:
        time.sleep(0.01)
    metrics = client.get("/metrics").text
    assert 'reason="queue_full"} 1' in metrics and 'reason="timeout"} 1' in metrics
    assert client.post(ROUTE, json={"image": image()}).status_code == 200


def test_a_failing_model_is_500_in_one_line_and_the_server_goes_on(stand_in, client_of, capsys):
    make, opened = stand_in
    client = client_of(make())
    opened.fail = True
    r = client.post(ROUTE, json={"image": image()})
    assert (
        r.status_code == 500
        and r.json()["errorMsg"] == "internal error: RuntimeError: the runtime broke second line"
    )
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1
    opened.fail = False
    assert client.post(ROUTE, json={"image": image()}).status_code == 200


def test_unknown_routes_and_methods_use_the_envelope(stand_in, client_of):
    make, _ = stand_in
    client = client_of(make())
    assert client.get("/object-detection").json()["errorCode"] == 404
    assert client.get(ROUTE).status_code == 405 and client.get(ROUTE).json()["errorCode"] == 405
    page = client.get("/")
    assert page.status_code == 200 and "<script>" in page.text
    assert "http://" not in page.text and "https://" not in page.text  # no external assets


def test_batcher_drains_on_close_and_skips_cancelled():
    from shunted.engine.serve.batcher import Batcher, BatchLimits, Closed, QueueFull

    gate, seen = threading.Event(), []

    def run(items):
        gate.wait(30)
        seen.append(list(items))
        return [i * 10 for i in items]

    batcher = Batcher(run, BatchLimits(max_batch=2, max_wait_ms=0, max_queue=3)).start()
    first = batcher.submit(1)
    deadline = time.monotonic() + 30
    while batcher.depth() and time.monotonic() < deadline:  # the worker holds item 1 (waiting on the gate)
        time.sleep(0.005)
    futures = [batcher.submit(i) for i in (2, 3, 4)]
    with pytest.raises(QueueFull):
        batcher.submit(5)
    futures[0].cancel()  # a request that timed out before its batch started
    gate.set()
    batcher.close(30)
    with pytest.raises(Closed):
        batcher.submit(6)
    assert first.result() == 10 and [f.result() for f in futures[1:]] == [30, 40]
    assert seen == [[1], [3], [4]]  # the batch [2, 3] lost 2; 4 came in the next


def test_without_fastapi_the_command_says_what_to_install(monkeypatch, capsys):
    """The [serve] extra missing: one line naming it, before any model is built (``None`` in sys.modules makes
    ``import fastapi`` fail as if it were not installed)."""
    import sys

    from shunted.cli import main

    monkeypatch.setitem(sys.modules, "fastapi", None)
    monkeypatch.setitem(sys.modules, "uvicorn", None)
    code = main(["serve", "--model", "shunted_t", "--weights", "missing.pth", "--port", "0"])
    err = capsys.readouterr().err
    assert code != 0 and err.strip().count("\n") == 0
    assert "needs fastapi and uvicorn: pip install 'shunted-paddle[serve]'" in err


def test_the_parser_and_the_package_do_not_import_fastapi():
    import json
    import subprocess
    import sys

    probe = (
        "import json, sys, shunted, shunted.cli; shunted.cli.build_parser(); import shunted.engine.serve.service; "
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('fastapi', 'uvicorn', 'starlette'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
