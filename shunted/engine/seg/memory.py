"""How much memory segmenting one image takes, so that the work, not the input, bounds it (issue 20 #4).

The whole-image pass of a Shunted FPN grows with the square of the pixel count: stage 1's attention relates each
of the P/16 tokens to P/1024 + P/256 aggregated ones, for every head. Measured peak RSS of ``shunted seg-predict``
(benchmarks/seg_memory.py ``--fit``: the real command in a child process, dygraph, float32, batch 1, random
weights, 11 classes) fits

    peak(P) = BASE + A·P + B·P²   bytes, P = the network input's pixels (padded to multiples of 32)

per variant, with the constants below. ``BASE`` is the process with Paddle and the model loaded; ``A`` the
per-pixel arrays (image, logits, the outputs); ``B`` the attention.

``plan`` chooses: the whole image when its estimate fits the budget, else a sliding window (the largest of 512,
384, 256, … whose estimate fits, stride two thirds of it), said in one line. The budget is ``--max-memory`` or
``SHARE`` of the memory available now (``available_bytes``: ``/proc/meminfo`` ``MemAvailable``, ``ulimit -v``,
the cgroup's limit). Labels are the whole image's
whenever the whole image fits (``auto`` then is ``whole``).
"""

from __future__ import annotations

import os
import resource
from dataclasses import dataclass

MB = 1 << 20
GB = 1 << 30
SHARE = 0.5  # of the memory available when the command starts
# model: (BASE bytes, A bytes per pixel, B bytes per pixel²): benchmarks/seg_memory.py (--fit: 320×240 … 1120×840,
# and the table's whole-image rows up to 1600×1200), least squares of the relative error with A, B >= 0
CONSTANTS = {
    "shunted_t_fpn": (571 * MB, 80.0, 2.291e-3),
    "shunted_s_fpn": (689 * MB, 0.0, 2.279e-3),
    "shunted_b_fpn": (856 * MB, 0.0, 2.413e-3),
}
MARGIN = (
    1.2  # on the image-dependent part: measured peaks were up to 1.19 x the fit (allocator growth in steps)
)
CROPS = (512, 384, 256, 192, 128, 64)  # sliding windows tried, largest first


def padded_pixels(height: int, width: int) -> int:
    """The network input's pixels: both sides padded to a multiple of 32 (shunted/models/fpn.py)."""
    return (-(-height // 32) * 32) * (-(-width // 32) * 32)


def _constants(model: str) -> tuple[float, float, float]:
    return CONSTANTS.get(model, CONSTANTS["shunted_b_fpn"])  # an unknown name: the largest, to be safe


def whole_image_bytes(model: str, height: int, width: int, batch: int = 1) -> int:
    """Estimated peak RSS of the process segmenting ``batch`` images of height × width (network input) at once."""
    base, a, b = _constants(model)
    p = padded_pixels(height, width)
    return int(base + MARGIN * batch * (a * p + b * p * p))


def slide_bytes(
    model: str, height: int, width: int, crop: tuple[int, int], batch: int = 1, num_classes: int = 19
) -> int:
    """Estimated peak RSS of the sliding window over a height × width image: ``batch`` windows of ``crop`` at a
    time (each a whole-image pass of its own) and the arrays kept at the image's size (``slide_pixel_bytes``)."""
    base, a, b = _constants(model)
    c = padded_pixels(min(crop[0], height), min(crop[1], width))
    return int(base + slide_pixel_bytes(num_classes) * height * width + MARGIN * batch * (a * c + b * c * c))


def slide_pixel_bytes(num_classes: int) -> int:
    """Bytes per image pixel the sliding window keeps besides the windows: the float32 input (3), the summed
    logits and their mean (2 K), the window count (1), the argmax (int64) and the decoded image and outputs."""
    return 4 * (3 + 2 * num_classes + 1) + 8 + 24


def available_bytes() -> int:
    """What this process can still use: ``MemAvailable`` of /proc/meminfo (else the physical memory), bounded by
    its address-space limit (``ulimit -v``) and its cgroup's ``memory.max`` when they are smaller."""
    found = [_meminfo_available()]
    limit = resource.getrlimit(resource.RLIMIT_AS)[0]
    if limit != resource.RLIM_INFINITY:
        found.append(limit)
    found.append(_cgroup_room())
    return min(x for x in found if x is not None)


def _meminfo_available() -> int:
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (OSError, ValueError):
        return 4 * GB


def _cgroup_room() -> int | None:
    """``memory.max − memory.current`` of this process's cgroup (v2), or None (no limit, not readable)."""
    try:
        with open("/proc/self/cgroup", encoding="ascii") as fh:
            path = next((line.split(":", 2)[2].strip() for line in fh if line.startswith("0::")), None)
        if path is None:
            return None
        folder = "/sys/fs/cgroup" + path
        with open(os.path.join(folder, "memory.max"), encoding="ascii") as fh:
            top = fh.read().strip()
        if top == "max":
            return None
        with open(os.path.join(folder, "memory.current"), encoding="ascii") as fh:
            return max(0, int(top) - int(fh.read().strip()))
    except (OSError, ValueError, IndexError):
        return None


def default_budget() -> int:
    return int(SHARE * available_bytes())


@dataclass(frozen=True)
class Plan:
    mode: str  # "whole" or "slide"
    crop: tuple[int, int] | None
    stride: tuple[int, int] | None
    whole_bytes: int  # the whole-image estimate
    bytes: int  # the estimate of what will run
    budget: int

    def note(self, what: str, size: tuple[int, int]) -> str:
        """The one line said when the sliding window was chosen for the budget."""
        return (
            f"{what} ({size[1]}×{size[0]}): the whole-image pass would need about {gb(self.whole_bytes)}, more "
            f"than the {gb(self.budget)} budget (--max-memory); segmenting it by sliding window "
            f"{self.crop[1]}×{self.crop[0]}, stride {self.stride[1]}×{self.stride[0]} (about {gb(self.bytes)})"
        )


def gb(n: int) -> str:
    return f"{n / GB:.1f} GB" if n >= GB else f"{n / MB:.0f} MB"


@dataclass(frozen=True)
class Window:
    """What the user asked for: ``mode`` (``auto`` / ``whole`` / ``slide``), and the window's ``crop`` and
    ``stride`` (H, W) when given."""

    mode: str = "auto"
    crop: tuple[int, int] | None = None
    stride: tuple[int, int] | None = None


def plan(
    model: str,
    height: int,
    width: int,
    budget: int,
    window: Window = Window(),
    batch: int = 1,
    num_classes: int = 19,
) -> Plan:
    """Whole image or sliding window for a ``height`` × ``width`` network input (see the module docstring).

    ``window.mode`` ``whole`` / ``slide`` are kept as asked (the estimate is still reported); ``auto`` chooses.
    An explicit ``window.crop`` is used by ``auto`` when it slides; otherwise the largest of ``CROPS`` that fits."""
    mode, crop, stride = window.mode, window.crop, window.stride
    whole = whole_image_bytes(model, height, width, batch)
    if mode == "whole" or (mode == "auto" and whole <= budget):
        return Plan("whole", None, None, whole, whole, budget)
    if crop is None:
        fitting = [
            c for c in CROPS if slide_bytes(model, height, width, (c, c), batch, num_classes) <= budget
        ]
        side = fitting[0] if fitting else CROPS[-1]
        crop = (side, side)
    stride = stride or tuple(max(1, c * 2 // 3) for c in crop)
    return Plan(
        "slide", crop, stride, whole, slide_bytes(model, height, width, crop, batch, num_classes), budget
    )
