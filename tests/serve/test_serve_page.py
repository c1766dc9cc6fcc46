"""The page at ``/`` in a real headless browser (Debian's chromium, slow stage): a file chosen in its file input
is sent, and the top-5 it shows are the server's answer for that file. The screenshot is written to
``docs/serve.png`` when ``SHUNTED_UPDATE_DOCS=1`` (else into the test's folder)."""

from __future__ import annotations

import base64
import json
import os
import signal
from pathlib import Path

import pytest
from cdp import Browser, find_chromium
from serve_helpers import REPO, b64, cifar_images, post, start_server

pytest.importorskip("fastapi")
pytestmark = pytest.mark.slow


def test_the_page_shows_the_servers_top5_for_an_uploaded_image(tmp_path):
    chromium = find_chromium()
    if chromium is None:
        pytest.skip("no chromium on this machine (Debian: apt-get install chromium)")
    image = tmp_path / "dog.png"
    from PIL import Image

    Image.open(cifar_images(6)[5]).resize((192, 192), Image.Resampling.BICUBIC).save(image)  # a dog, visible
    proc, port = start_server()
    browser = Browser(chromium, str(tmp_path / "profile"))
    try:
        browser.call("Page.enable")
        browser.call("Page.navigate", url=f"http://127.0.0.1:{port}/")
        browser.wait_for(
            "document.getElementById('about') && !document.getElementById('about').textContent.startsWith('loading')"
        )
        root = browser.call("DOM.getDocument")["root"]["nodeId"]
        node = browser.call("DOM.querySelector", nodeId=root, selector="#file")["nodeId"]
        browser.call("DOM.setFileInputFiles", nodeId=node, files=[str(image)])
        status = browser.wait_for(
            "(s => s.includes('done') || s.startsWith('error') ? s : '')(document.getElementById('status').textContent)"
        )
        assert "done" in status, status
        shown = json.loads(browser.evaluate(
            "JSON.stringify([...document.querySelectorAll('.category')].map(r => [r.dataset.name, +r.dataset.score]))"
        ))  # fmt: skip
        shot = base64.b64decode(browser.call("Page.captureScreenshot", format="png")["data"])
    finally:
        browser.close()
        served = post(port, {"image": b64(image.read_bytes())})
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    expected = served[1]["result"]["categories"]
    assert [n for n, _ in shown] == [c["name"] for c in expected] and len(shown) == 5
    assert [s for _, s in shown] == pytest.approx([c["score"] for c in expected], abs=1e-6)
    target = (
        REPO / "docs" / "serve.png"
        if os.environ.get("SHUNTED_UPDATE_DOCS") == "1"
        else tmp_path / "serve.png"
    )
    Path(target).write_bytes(shot)
    assert shot[:8] == b"\x89PNG\r\n\x1a\n"
