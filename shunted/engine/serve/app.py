"""The FastAPI application of ``shunted serve`` (the only module that imports FastAPI).

Routes: ``POST /<task>`` (``/image-classification`` or ``/semantic-segmentation``), ``GET /health``,
``GET /metrics``, ``GET /info``, ``GET /`` (the page). Every JSON answer is PaddleX's envelope: ``logId``,
``errorCode`` (0, or the HTTP status), ``errorMsg`` (``Success`` or one line), and ``result`` on success.
Statuses: 400 bad JSON / base64 / image / parameters, 404 / 405 unknown route or method, 408 the body did not
arrive in time, 413 body too large, 503 queue full or shutting down (with ``Retry-After``), 504 no answer in
time, 507 out of memory for this image, 499 (counted, not sent) the client left, 500 anything else (one line on stderr, never a traceback).
"""

# no "from __future__ import annotations": FastAPI reads the handlers' annotations (Request) at run time
import asyncio
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path

from .batcher import Closed, QueueFull
from .service import Service
from .tasks import RequestError, decode_image, parse_request

PAGE = Path(__file__).resolve().parents[2] / "assets" / "serve" / "index.html"


def envelope(log_id: str, status: int = 200, message: str = "Success", result=None) -> dict:
    body = {"logId": log_id, "errorCode": 0 if status == 200 else status, "errorMsg": message}
    if result is not None:
        body["result"] = result
    return body


async def read_body(request, limit: int, seconds: float) -> bytes:
    """The request's body, at most ``limit`` bytes (413 above, from Content-Length or while reading) within
    ``seconds`` (408 after)."""
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > limit):
        raise RequestError(413, f"the body is larger than {limit:,} bytes", "body_too_large")
    chunks: list[bytes] = []

    async def receive() -> None:
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise RequestError(413, f"the body is larger than {limit:,} bytes", "body_too_large")
            chunks.append(chunk)

    from starlette.requests import ClientDisconnect

    try:
        await asyncio.wait_for(receive(), max(seconds, 0.0))
    except ClientDisconnect:  # nobody to answer; counted (499, as nginx logs it)
        raise RequestError(499, "the client closed the connection", "disconnected") from None
    except asyncio.TimeoutError:
        raise RequestError(408, f"the body did not arrive within {seconds:.0f} s", "read_timeout") from None
    return b"".join(chunks)


def make_app(service: Service, on_ready=None):
    """The application serving ``service`` (started in its lifespan unless already started; stopped, after
    the queue drains, at its end). ``on_ready()`` is called once it accepts requests."""
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
    from starlette.exceptions import HTTPException

    task, http, metrics = service.task, service.http, service.metrics
    decoders = ThreadPoolExecutor(http.decoders, thread_name_prefix="shunted-decode")

    @asynccontextmanager
    async def lifespan(app):
        loop = asyncio.get_running_loop()
        if not service.ready:
            await loop.run_in_executor(None, service.start)
        if on_ready is not None:
            on_ready()
        try:
            yield
        finally:
            await loop.run_in_executor(None, service.stop)
            decoders.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)

    def answer(log_id: str, status: int, message: str, result=None, headers=None):
        return JSONResponse(envelope(log_id, status, message, result), status_code=status, headers=headers)

    def prepare(text: str, params: dict):
        return task.prepare(decode_image(text, http.max_pixels), params)

    @app.post(task.route)
    async def infer(request: Request):
        start, log_id, status = time.monotonic(), uuid.uuid4().hex, 500
        left = lambda: http.timeout_s - (time.monotonic() - start)  # noqa: E731
        try:
            text, params = parse_request(await read_body(request, http.max_body_bytes, left()))
            loop = asyncio.get_running_loop()
            item = await asyncio.wait_for(loop.run_in_executor(decoders, prepare, text, params), left())
            try:
                future = service.batcher.submit(item)
            except QueueFull as exc:
                raise RequestError(503, f"busy: {exc}; retry", "queue_full", {"Retry-After": "1"}) from None
            except Closed as exc:
                raise RequestError(503, str(exc), "shutting_down", {"Retry-After": "5"}) from None
            result = await asyncio.wait_for(asyncio.wrap_future(future), max(left(), 0.0))
            status = 200
            return answer(log_id, 200, "Success", result)
        except asyncio.TimeoutError:
            metrics.rejected("timeout")
            status = 504
            return answer(log_id, 504, f"no answer within {http.timeout_s:g} s")
        except RequestError as exc:
            if exc.reason:
                metrics.rejected(exc.reason)
            status = exc.status
            return answer(log_id, exc.status, exc.message, headers=exc.headers)
        except Exception as exc:  # noqa: BLE001 — one line, never a traceback; the server goes on
            message = f"internal error: {type(exc).__name__}: {' '.join(str(exc).split())}"[:300]
            print(f"shunted serve: {task.route} {log_id}: {message}", file=sys.stderr, flush=True)
            return answer(log_id, 500, message)
        finally:
            metrics.request(task.route, status, time.monotonic() - start)

    @app.get("/health")
    async def health():
        if service.ready:
            return answer(uuid.uuid4().hex, 200, "Healthy")
        return answer(uuid.uuid4().hex, 503, "not ready", headers={"Retry-After": "1"})

    @app.get("/metrics")
    async def prometheus():
        return PlainTextResponse(
            metrics.render(service.batcher.depth()), media_type="text/plain; version=0.0.4; charset=utf-8"
        )

    @app.get("/info")
    async def info():
        return answer(uuid.uuid4().hex, 200, "Success", service.info())

    @app.get("/")
    async def page():
        return HTMLResponse(PAGE.read_text(encoding="utf-8"))

    @app.exception_handler(HTTPException)
    async def http_error(request, exc):  # unknown route (404), wrong method (405)
        return answer(uuid.uuid4().hex, exc.status_code, " ".join(str(exc.detail).split()))

    @app.exception_handler(RequestValidationError)
    async def invalid(request, exc):
        return answer(uuid.uuid4().hex, 400, "invalid request")

    return app
