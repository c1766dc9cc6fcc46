"""Load on ``shunted serve`` over loopback: throughput, latency and batch sizes against offline batch-8.

Starts ``shunted serve`` (a child process on 127.0.0.1, a free port), then for each client count (default
1, 4, 16, 64) runs that many clients, each sending real images (the bundled CIFAR-10 subset, one request at a
time over a kept-alive connection) until ``--requests`` answers (200s) or ``--seconds`` have passed. Per level: images/s,
p50 / p95 / p99 latency, errors by status, the batch sizes the server ran (from ``/metrics``). Then the same
16 clients with a slow client (one body byte a second) and ``--bad`` malformed requests mixed in: the good
clients' p99 against the plain 16-client level; then more clients than ``--max-queue`` + two batches + 8 (only
503s expected among the errors). In the same run, without the server busy, the offline batch-8
throughput of the same backend (the model called on preprocessed batches of 8, median of ``--offline-calls``,
as ``shunted bench``). Prints a Markdown table with the load average before and after; ``--output`` writes JSON.

    python benchmarks/serve_load.py [--backend openvino] [--img-size 224] [--clients 1,4,16,64] [--quick]

Bounded: at most ``--requests`` per level and ``--seconds`` each; loopback only.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from shunted.engine.serve.run import serving_port

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "shunted" / "assets" / "demo" / "ckpt_T_cifar10_fp16.pth"
CIFAR = REPO / "shunted" / "assets" / "cifar10-demo"
ROUTE = "/image-classification"


def bodies(count: int) -> list[bytes]:
    paths = sorted(CIFAR.glob("*/*.jpg"))[:: max(1, 1000 // count)][:count]
    return [json.dumps({"image": base64.b64encode(p.read_bytes()).decode()}).encode() for p in paths]


def start(args) -> tuple[subprocess.Popen, int]:
    cmd = [
        sys.executable,
        "-m",
        "shunted",
        "serve",
        "--model",
        args.model,
        "--weights",
        str(args.weights),
        "--img-size",
        str(args.img_size),
        "--port",
        "0",
        "--max-batch",
        str(args.max_batch),
        "--max-wait-ms",
        str(args.max_wait_ms),
        "--max-queue",
        str(args.max_queue),
        "--timeout",
        "60",
    ]
    if args.backend:
        cmd += ["--backend", args.backend]
    if args.threads:
        cmd += ["--threads", str(args.threads)]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=REPO)
    port, line = serving_port(proc.stdout)
    if port is None:
        proc.kill()
        raise SystemExit(f"the server did not start: {line!r}")
    print(line.strip(), file=sys.stderr)
    return proc, port


def served_backend(port: int) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("GET", "/info")
    backend = json.loads(conn.getresponse().read())["result"]["backend"]
    conn.close()
    return backend


def metrics(port: int) -> dict[str, float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    conn.close()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            out[key] = float(value)
    return out


def batch_sizes(before: dict, after: dict, max_batch: int) -> dict[int, int]:
    """{batch size: calls} run between two /metrics readings (from the cumulative histogram)."""
    cum = [after.get(f'shunted_serve_batch_size_bucket{{le="{b}"}}', 0) - before.get(f'shunted_serve_batch_size_bucket{{le="{b}"}}', 0)
           for b in range(1, max_batch + 1)]  # fmt: skip
    return {
        b + 1: int(c - (cum[b - 1] if b else 0)) for b, c in enumerate(cum) if c - (cum[b - 1] if b else 0)
    }


def client(port: int, payloads: list[bytes], offset: int, stop: dict, out: list) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=90)
    i = offset
    while not stop["now"]:
        body = payloads[i % len(payloads)]
        i += 1
        start = time.perf_counter()
        try:
            conn.request("POST", ROUTE, body=body, headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            response.read()
            status = response.status
        except (OSError, http.client.HTTPException):
            status = 0
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=90)
        out.append((status, time.perf_counter() - start))
        with stop["lock"]:
            stop["done"] += status == 200  # --requests counts answers (a 503 comes back at once)
            if stop["done"] >= stop["limit"]:
                stop["now"] = True
    conn.close()


def slow_client(port: int, stop: dict) -> None:
    """One body byte a second, never finishing (the server answers 408 at its time-out; then again)."""
    while not stop["now"]:
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(
                f"POST {ROUTE} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n".encode()
            )
            while not stop["now"]:
                s.sendall(b" ")
                time.sleep(1.0)
        except OSError:
            time.sleep(0.2)  # answered (408) and closed: start over
        finally:
            s.close()


def bad_client(port: int, count: int, seconds: float, stop: dict, out: list) -> None:
    kinds = [b"{not json", b'{"image": "%%%"}', b'{"image": "aGVsbG8="}', b'{"nothing": 1}']
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    for i in range(count):
        if stop["now"]:
            break
        conn.request("POST", ROUTE, body=kinds[i % len(kinds)], headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        r.read()
        out.append(r.status)
        time.sleep(seconds / count)
    conn.close()


def level(port: int, payloads, clients: int, args, mixed: bool = False) -> dict:
    stop = {"now": False, "done": 0, "limit": args.requests, "lock": threading.Lock()}
    results: list[list] = [[] for _ in range(clients)]
    bad: list[int] = []
    threads = [
        threading.Thread(target=client, args=(port, payloads, 7 * c, stop, results[c]))
        for c in range(clients)
    ]
    if mixed:
        threads.append(threading.Thread(target=slow_client, args=(port, stop)))
        threads.append(
            threading.Thread(target=bad_client, args=(port, args.bad, args.seconds / 2, stop, bad))
        )
    before = metrics(port)
    start = time.perf_counter()
    for t in threads:
        t.start()
    deadline = start + args.seconds
    while not stop["now"] and time.perf_counter() < deadline:
        time.sleep(0.05)
    stop["now"] = True
    for t in threads:
        t.join(120)
    wall = time.perf_counter() - start
    after = metrics(port)
    flat = [r for rs in results for r in rs]
    ok = sorted(t for s, t in flat if s == 200)
    errors: dict[str, int] = {}
    for s, _ in flat:
        if s != 200:
            errors[str(s)] = errors.get(str(s), 0) + 1
    sizes = batch_sizes(before, after, args.max_batch)
    calls = sum(sizes.values())

    def pct(q):
        return round(1000 * ok[min(len(ok) - 1, int(q * len(ok)))], 1) if ok else None

    return {
        "clients": clients, "mixed": mixed, "answered": len(flat), "ok": len(ok), "errors": errors,
        "wall_s": round(wall, 2), "img_per_s": round(len(ok) / wall, 2),
        "p50_ms": pct(0.50), "p95_ms": pct(0.95), "p99_ms": pct(0.99),
        "batch_sizes": sizes, "mean_batch": round(sum(b * n for b, n in sizes.items()) / calls, 2) if calls else None,
        "bad_answers": {str(s): bad.count(s) for s in sorted(set(bad))} if mixed else None,
    }  # fmt: skip


def offline(args) -> float:
    """Offline batch-8 img/s of the same backend on the same images (median of ``--offline-calls`` calls)."""
    import numpy as np

    from shunted.data.transforms import EvalTransform
    from shunted.engine.session import RuntimeConfig, open_model
    from shunted.models import get_pretrained_cfg

    transform = EvalTransform.from_config(get_pretrained_cfg(args.model), img_size=args.img_size)
    opened = open_model(
        args.model, args.weights, RuntimeConfig(args.backend or "auto", args.threads, img_size=args.img_size)
    )
    print(f"offline: runtime {opened.backend}", file=sys.stderr)
    paths = sorted(CIFAR.glob("*/*.jpg"))[::125][:8]
    batch = np.stack([transform.load(p) for p in paths])
    for _ in range(3):
        opened.predictor(batch)
    times = []
    for _ in range(args.offline_calls):
        t0 = time.perf_counter()
        opened.predictor(batch)
        times.append(time.perf_counter() - t0)
    return 8 / statistics.median(times)


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def table(rows: list[dict], offline_img_s: float) -> str:
    out = ["| clients | img/s | of offline b8 | p50 ms | p95 ms | p99 ms | errors | mean batch | batch sizes |",
           "|---|---:|---:|---:|---:|---:|---|---:|---|"]  # fmt: skip
    for r in rows:
        name = f"{r['clients']} + slow + bad" if r["mixed"] else str(r["clients"])
        name += " (over the queue)" if r.get("over_queue") else ""
        errors = ", ".join(f"{n}×{s}" for s, n in r["errors"].items()) or "0"
        sizes = " ".join(f"{b}:{n}" for b, n in sorted(r["batch_sizes"].items()))
        out.append(f"| {name} | {r['img_per_s']:.1f} | {r['img_per_s'] / offline_img_s:.0%} | {r['p50_ms']} | "
                   f"{r['p95_ms']} | {r['p99_ms']} | {errors} | {r['mean_batch']} | {sizes} |")  # fmt: skip
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="shunted_t")
    parser.add_argument("--weights", type=Path, default=DEMO)
    parser.add_argument("--backend", default=None, help="passed to shunted serve (default: its default)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--clients", default="1,4,16,64")
    parser.add_argument("--requests", type=int, default=400, help="answers per level at most")
    parser.add_argument("--seconds", type=float, default=30.0, help="seconds per level at most")
    parser.add_argument("--bad", type=int, default=100, help="malformed requests in the mixed level")
    parser.add_argument("--max-batch", type=int, default=8)
    parser.add_argument("--max-wait-ms", type=int, default=10)
    parser.add_argument("--max-queue", type=int, default=64)
    parser.add_argument("--offline-calls", type=int, default=20)
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run: 64 px, 1 and 4 clients, a few seconds"
    )
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.quick:
        args.img_size, args.clients, args.requests, args.seconds, args.bad, args.offline_calls = (
            64,
            "1,4",
            40,
            5.0,
            8,
            5,
        )
    if args.quick:
        args.max_queue = 4
    load_before = os.getloadavg()
    payloads = bodies(64)
    proc, port = start(args)
    rows = []
    try:
        args.served_backend = served_backend(port)
        counts = [int(c) for c in args.clients.split(",")]
        for c in counts:
            rows.append(level(port, payloads, c, args))
            print(f"{c} clients: {rows[-1]['img_per_s']} img/s, p99 {rows[-1]['p99_ms']} ms", file=sys.stderr)
        mixed_clients = 16 if 16 in counts else counts[-1]
        mixed = level(port, payloads, mixed_clients, args, mixed=True)
        rows.append(mixed)
        # more clients than the queue, the batch in the model and the decoders hold: the surplus must get 503s
        over = level(port, payloads, args.max_queue + 2 * args.max_batch + 8, args)
        over["over_queue"] = True
        rows.append(over)
    finally:
        proc.terminate()
        proc.wait(120)
    offline_img_s = offline(args)
    load_after = os.getloadavg()
    plain = next(r for r in rows if r["clients"] == mixed["clients"] and not r["mixed"])
    p99_ratio = mixed["p99_ms"] / plain["p99_ms"] if plain["p99_ms"] and mixed["p99_ms"] else None
    record = {
        "model": args.model, "backend": args.served_backend, "img_size": args.img_size, "cpu": cpu_name(),
        "cores": os.cpu_count(), "load_average_before": load_before, "load_average_after": load_after,
        "max_batch": args.max_batch, "max_wait_ms": args.max_wait_ms, "max_queue": args.max_queue,
        "offline_batch8_img_per_s": round(offline_img_s, 2), "levels": rows,
        "mixed_p99_over_plain_p99": round(p99_ratio, 2) if p99_ratio else None,
    }  # fmt: skip
    print(f"{args.model} at {args.img_size} px, backend {record['backend']}, {record['cpu']} ({record['cores']} "
          f"cores); load average {load_before[0]:.2f} before, {load_after[0]:.2f} after")  # fmt: skip
    print(f"offline batch-8: {offline_img_s:.1f} img/s")
    print(table(rows, offline_img_s))
    print(f"bad requests' answers: {mixed['bad_answers']}")
    if p99_ratio:
        print(
            f"good clients' p99 with a slow client and {args.bad} bad requests: {p99_ratio:.2f}× the plain level's"
        )
    if args.output:
        args.output.write_text(json.dumps(record, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
