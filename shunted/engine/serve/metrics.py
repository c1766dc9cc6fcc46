"""``GET /metrics``: counters and histograms in Prometheus's text format (0.0.4), without a client library.

shunted_serve_requests_total{route, status}, shunted_serve_request_seconds (histogram, by route),
shunted_serve_batch_size (histogram), shunted_serve_queue_depth (gauge), shunted_serve_rejections_total{reason}
(queue_full, body_too_large, timeout, read_timeout, disconnected, shutting_down), shunted_serve_images_total.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections import Counter

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Histogram:
    def __init__(self, buckets: tuple[float, ...]):
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)  # the last one: above every bound (+Inf only)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.buckets, value)] += 1
        self.sum += value
        self.count += 1

    def lines(self, name: str, labels: str = "") -> list[str]:
        sep = "," if labels else ""
        out, total = [], 0
        for bound, n in zip(self.buckets, self.counts, strict=False):
            total += n
            out.append(f'{name}_bucket{{{labels}{sep}le="{bound:g}"}} {total}')
        out.append(f'{name}_bucket{{{labels}{sep}le="+Inf"}} {self.count}')
        braces = f"{{{labels}}}" if labels else ""
        out += [f"{name}_sum{braces} {self.sum:.6f}", f"{name}_count{braces} {self.count}"]
        return out


class Metrics:
    """Thread-safe counters of one server (the request handlers and the batch worker write them)."""

    def __init__(self, max_batch: int):
        self._lock = threading.Lock()
        self.requests: Counter = Counter()  # (route, status) -> n
        self.latency: dict[str, Histogram] = {}
        self.batches = Histogram(tuple(float(b) for b in range(1, max_batch + 1)))
        self.rejections: Counter = Counter()
        self.images = 0

    def request(self, route: str, status: int, seconds: float) -> None:
        with self._lock:
            self.requests[(route, status)] += 1
            self.latency.setdefault(route, Histogram(LATENCY_BUCKETS)).observe(seconds)

    def batch(self, size: int) -> None:
        with self._lock:
            self.batches.observe(float(size))
            self.images += size

    def rejected(self, reason: str) -> None:
        with self._lock:
            self.rejections[reason] += 1

    def render(self, queue_depth: int) -> str:
        with self._lock:
            lines = [
                "# HELP shunted_serve_requests_total Requests answered, by route and HTTP status.",
                "# TYPE shunted_serve_requests_total counter",
                *(f'shunted_serve_requests_total{{route="{r}",status="{s}"}} {n}'
                  for (r, s), n in sorted(self.requests.items())),
                "# HELP shunted_serve_request_seconds Time from the request's arrival to its answer.",
                "# TYPE shunted_serve_request_seconds histogram",
                *(line for r, h in sorted(self.latency.items())
                  for line in h.lines("shunted_serve_request_seconds", f'route="{r}"')),
                "# HELP shunted_serve_batch_size Images per model call.",
                "# TYPE shunted_serve_batch_size histogram",
                *self.batches.lines("shunted_serve_batch_size"),
                "# HELP shunted_serve_images_total Images run through the model.",
                "# TYPE shunted_serve_images_total counter",
                f"shunted_serve_images_total {self.images}",
                "# HELP shunted_serve_queue_depth Requests waiting for the model.",
                "# TYPE shunted_serve_queue_depth gauge",
                f"shunted_serve_queue_depth {queue_depth}",
                "# HELP shunted_serve_rejections_total Requests refused before the model, by reason.",
                "# TYPE shunted_serve_rejections_total counter",
                *(f'shunted_serve_rejections_total{{reason="{k}"}} {n}' for k, n in sorted(self.rejections.items())),
            ]  # fmt: skip
        return "\n".join(lines) + "\n"
