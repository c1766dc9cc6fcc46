"""``shunted serve``'s process: open the checkpoint, warm it, serve it with uvicorn until SIGTERM or Ctrl-C.

On SIGTERM (or SIGINT) uvicorn stops accepting connections and lets the requests in flight finish (at most
the request timeout); then the batcher drains its queue and the process exits 0. The socket is bound before
uvicorn starts, so ``--port 0`` takes a free port; the ``serving … on http://HOST:PORT`` line names it.
"""

from __future__ import annotations

import re
import signal
import socket
import sys
from collections.abc import Iterable

from .service import ServeConfig, open_service

SERVING_LINE = re.compile(r"^serving .* on http://(?:\[[^\]]*\]|[^:/\s]+):(\d+) ")


def serving_port(lines: Iterable[str]) -> tuple[int | None, str]:
    """(port, line) of the ``serving … on http://HOST:PORT`` line ``serve`` prints once it accepts requests, read
    from a child's stdout ``lines`` (lines before it, an exporter's, are skipped); (None, last line) at their end."""
    line = ""
    for line in lines:
        if match := SERVING_LINE.match(line):
            return int(match.group(1)), line
    return None, line


def require_serving_packages() -> None:
    """FastAPI and uvicorn are the optional ``[serve]`` extra: one line when they are missing."""
    from ...errors import ShuntedError

    missing = []
    for name in ("fastapi", "uvicorn"):
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise ShuntedError(
            f"shunted serve needs {' and '.join(missing)}: pip install 'shunted-paddle[serve]'"
        )


def bind(host: str, port: int) -> socket.socket:
    from ...errors import ShuntedError

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ShuntedError(
            f"--host {host} --port {port}: cannot listen there ({exc.strerror or exc})"
        ) from None
    sock.listen(2048)  # connections wait in the backlog from now on, until uvicorn accepts them
    sock.set_inheritable(True)
    return sock


def serve(cfg: ServeConfig, out=sys.stdout) -> int:
    """Serve ``cfg`` until SIGTERM / SIGINT (module docstring); returns the exit code."""
    require_serving_packages()
    import uvicorn

    from .app import make_app

    sock = bind(cfg.host, cfg.port)  # before the model: a taken port fails at once
    service = open_service(cfg)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host

    def ready() -> None:
        print(
            f"serving {cfg.model} ({service.task.name}, runtime {service.task.opened.backend}, batches up to "
            f"{cfg.batch.max_batch} within {cfg.batch.max_wait_ms:g} ms) on http://{shown}:{port} — "
            f"POST {service.task.route}, GET /health /metrics /",
            file=out,
            flush=True,
        )

    config = uvicorn.Config(
        make_app(service, ready),
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=int(cfg.http.timeout_s) + 5,
        lifespan="on",
    )
    server = uvicorn.Server(config)
    # uvicorn re-raises the signal it caught once it has shut down: with this handler that is not a kill
    previous = {s: signal.signal(s, lambda *_: None) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.run(sockets=[sock])
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        sock.close()
    print("shunted serve: stopped (requests in flight answered, queue drained)", file=out, flush=True)
    return 0 if server.started else 1
