"""Run the hostile and careless inputs of issue 11 through the ``shunted`` command and tabulate the outcomes.

python tools/reliability_cases.py                      # every case; writes docs/reliability.md
python tools/reliability_cases.py --quick --no-write   # the fast subset (what tests/test_reliability_cases.py runs)
python tools/reliability_cases.py --only 2 --only 6    # the cases of items 2 and 6 of issue 11

Each case builds its inputs in a fresh temporary folder (crafted pickles, zips and safetensors are made here, in
code, byte by byte), runs ``python -m shunted CMD ...`` of this checkout as a subprocess (stdin closed, a timeout,
an address-space limit; peak RSS from ``os.wait4`` in a small wrapper process) and compares what happened with what the case expects: the exit
code; for an error, that stderr is exactly one line ``shunted CMD: error: ...`` naming the user's file or flag (an
argparse usage block before it is allowed), short, and never naming an internal ``.tmp`` file; the user's files
unchanged (sha256 before and after); files that must not exist (orphan ``.tmp``, a checkpoint holding NaN/inf);
a peak-memory bound; and any case-specific check (e.g. the accuracy an evaluation reports).

Read-only and full output locations are real: the command runs in a private mount namespace (``unshare -m``) with
a read-only bind mount or a full tmpfs over the case's folder; without ``unshare`` those cases are SKIPped.
The good weights are the repository's demo checkpoint (``shunted/assets/demo``, shunted_t, 10 CIFAR-10 classes,
64 px), converted once to ``.pdparams`` by the command itself; images come from ``shunted/assets/cifar10-demo``.
``--shared DIR`` (default ``../shared`` beside the checkout) is only used for the cases marked as needing it;
``--alt-pillow DIR`` is a ``pip install --target DIR pillow==13.*`` folder for the Pillow-13 cases of item 7.

The cases are plain tables, one module per area: ``tools/reliability/cases_<area>.py`` (``cases()`` returns its
``Case`` entries, in report order); ``tools/reliability/harness.py`` holds the ``Case`` record and the builders they
share, ``craft.py`` the byte-level file crafting, ``run.py`` the run of one case. This script selects, runs and
reports. To add a case, add a ``Case(...)`` to the table of its area (or a new ``cases_<area>.py`` listed in
``TABLES`` below), then re-run this script.

Exit status: 0 when no case FAILs, 1 otherwise.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from reliability import (  # noqa: E402
    cases_classes,
    cases_deletion,
    cases_flags,
    cases_loaders,
    cases_messages,
    cases_pillow,
    cases_shared,
    cases_symlinks,
    cases_train20,
    cases_trust,
)
from reliability.harness import MAX_MESSAGE, MAX_TIMEOUT, REPO, Case, Context, Result  # noqa: E402
from reliability.run import ABBREVIATIONS, run_case  # noqa: E402

ITEMS = {
    1: "no command deletes files it did not write",
    2: "safe loaders: memory bounded by the file, validation first",
    3: "non-finite checkpoints; out-of-range flags",
    4: "class folders map by name",
    5: "symlink loops",
    6: "one line, not a traceback",
    7: "Pillow 13",
    8: "no hangs: pipes and devices refused, text inputs bounded (issue 20)",
    9: "memory and threads bounded by the work (issue 20)",
    10: "one writer per output, only our outputs replaced (issue 20)",
    11: "signals and messages (issue 20)",
    12: "training: checked before it starts, resumes say what they do (issue 20)",
}

TABLES = (
    cases_deletion,
    cases_loaders,
    cases_flags,
    cases_classes,
    cases_symlinks,
    cases_messages,
    cases_pillow,
    cases_shared,
    cases_trust,
    cases_train20,
)


def all_cases() -> list[Case]:
    """Every case, table by table (the order of docs/reliability.md)."""
    cases = [case for table in TABLES for case in table.cases()]
    for c in cases:
        c.timeout = min(c.timeout, MAX_TIMEOUT)
    return cases


# ---------------------------------------------------------------------------------------------------------------
# Report


def _cell(text: str, width: int) -> str:
    text = " ".join(str(text).split()).replace("|", "\\|")
    return text if len(text) <= width else text[: width - 1] + "…"


def versions(python: str) -> str:
    code = (
        "import platform, PIL, paddle, numpy; "
        "print(f'Python {platform.python_version()}, Paddle {paddle.__version__}, Pillow {PIL.__version__}, "
        "numpy {numpy.__version__}')"
    )
    try:
        proc = subprocess.run(
            [python, "-c", code], capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL
        )
        return proc.stdout.strip() or "versions unavailable"
    except (OSError, subprocess.SubprocessError):
        return "versions unavailable"


def render(
    results: list[Result],
    argv: list[str],
    started: datetime.datetime,
    seconds: float,
    ctx: Context,
    jobs: int,
) -> str:
    passed = sum(r.status == "PASS" for r in results)
    failed = sum(r.status == "FAIL" for r in results)
    skipped = sum(r.status == "SKIP" for r in results)
    alt = ""
    if ctx.alt_pillow is not None:
        alt = f"; the --alt-pillow cases with Pillow {ctx.alt_pillow_version} (`{ctx.alt_pillow.name}`) first on PYTHONPATH"
    lines = [
        "# Reliability: hostile and careless inputs (issues 11 and 20)",
        "",
        "Generated by `python tools/reliability_cases.py"
        + (" " + " ".join(shlex.quote(a) for a in argv) if argv else "")
        + f"` on {started:%Y-%m-%d %H:%M} UTC in {seconds / 60:.1f} min ({jobs} cases at a time, {os.cpu_count()} CPUs); "
        + f"{versions(ctx.python)}{alt}. Do not edit by hand: re-run the script.",
        "",
        "Each case builds its inputs in a temporary folder (crafted pickles, zips and safetensors are written byte by "
        "byte by the script), runs `python -m shunted …` of this checkout with stdin closed, a timeout and an "
        "address-space limit, and checks the outcome: the exit code; for errors, that stderr is one line "
        "`shunted CMD: error: …` naming the user's file or flag (after an argparse usage block, if any), at most "
        f"{MAX_MESSAGE} characters and never an internal `.tmp` name; peak RSS (`os.wait4`) under the case's bound; "
        "the user's files unchanged (sha256); no orphan `.tmp` and no checkpoint holding NaN/inf. Read-only and full "
        "file systems are real mounts in a private mount namespace. `.` is the case's folder, `$PREP` the prepared "
        "inputs (`demo.pth`: the bundled demo checkpoint; `good.pdparams`: it converted by `shunted convert`). "
        "Abbreviations in the command column: "
        + "; ".join(f"`{short}` = `{long}`" for long, short in ABBREVIATIONS)
        + ".",
        "",
        f"**{passed} passed, {failed} failed**"
        + (f", {skipped} skipped" if skipped else "")
        + f" ({len(results)} cases).",
        "",
        "Items of issues 11 and 20 (passed / cases): "
        + "; ".join(
            f"{k}. {v} ({sum(r.status == 'PASS' for r in results if r.case.item == k)} / "
            f"{sum(r.case.item == k for r in results)})"
            for k, v in ITEMS.items()
        )
        + ".",
        "",
        "| # | case | item | command | exit | one-line message (truncated) | peak RSS MB | files kept | verdict |",
        "|---:|---|:-:|---|:-:|---|---:|:-:|---|",
    ]
    for i, r in enumerate(results, 1):
        expected = "/".join(map(str, r.case.exit))
        exit_cell = (
            "—"
            if r.exit is None
            else (f"{r.exit}" if r.exit in r.case.exit else f"**{r.exit}** (want {expected})")
        )
        verdict = r.status if r.status == "PASS" else f"**{r.status}**: {'; '.join(r.reasons)}"
        lines.append(
            f"| {i} | {_cell(r.case.name, 70)} | {r.case.item} | `{_cell(r.shown_argv, 110).replace('`', '')}` | "
            f"{exit_cell} | {_cell(r.message, 140)} | "
            f"{'—' if r.rss_mb is None else f'{r.rss_mb:.0f}'} | {r.files} | {_cell(verdict, 220)} |"
        )
    lines += ["", f"{passed} passed, {failed} failed" + (f", {skipped} skipped" if skipped else "") + "."]
    return "\n".join(lines) + "\n"


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def select(cases: list[Case], quick: bool, only: list[int], names: list[str]) -> list[Case]:
    out = [c for c in cases if (not quick or c.quick) and (not only or c.item in only)]
    if names:
        out = [c for c in out if any(n.lower() in c.name.lower() for n in names)]
    return out


def run_all(
    cases: list[Case], ctx: Context, jobs: int = 2, progress: Callable[[Result], None] | None = None
) -> list[Result]:
    ctx.prepare(
        any("weights" in c.needs or _uses_good(c) for c in cases),
        any(c.mounts for c in cases),
        any("seg" in c.needs for c in cases),
    )
    results: dict[int, Result] = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        order = sorted(range(len(cases)), key=lambda i: -_cost(cases[i]))  # longest first: shorter total time
        futures = {pool.submit(run_case, cases[i], ctx): i for i in order}
        for fut in concurrent.futures.as_completed(futures):
            r = fut.result()
            results[futures[fut]] = r
            if progress:
                progress(r)
    return [results[i] for i in range(len(cases))]


def _cost(case: Case) -> float:
    """A rough guess of a case's seconds, for scheduling only."""
    command = case.name.split()[0]
    if re.fullmatch(r"\w+ --[\w-]+ \S+", case.name) or case.argv_is_python:
        return 2  # refused by argparse, before Paddle is imported
    if command in ("train", "export", "demo"):
        return 30 if 0 in case.exit else 12
    return 12 if command in ("eval", "predict", "bench") or case.needs else 4


def _uses_good(case: Case) -> bool:
    return callable(case.argv) or case.setup is not None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="only the fast subset (for tests)")
    parser.add_argument(
        "--only",
        type=int,
        action="append",
        default=[],
        choices=sorted(ITEMS),
        metavar="ITEM",
        help="only the cases of this item (repeatable)",
    )
    parser.add_argument(
        "--case", action="append", default=[], help="only cases whose name contains this text (repeatable)"
    )
    parser.add_argument(
        "--shared",
        type=Path,
        default=REPO.parent / "shared",
        help="real data for the cases that need it (default ../shared)",
    )
    parser.add_argument(
        "--alt-pillow", type=Path, default=None, help="a `pip install --target` folder holding Pillow 13"
    )
    parser.add_argument("--jobs", type=int, default=2, help="cases run at a time (default 2)")
    parser.add_argument(
        "--repo",
        type=Path,
        default=REPO,
        help="the checkout whose shunted the cases run (default this one; an older one shows which cases it fails)",
    )
    parser.add_argument(
        "--output", type=Path, default=REPO / "docs" / "reliability.md", help="the Markdown table"
    )
    parser.add_argument("--no-write", action="store_true", help="print the table instead of writing --output")
    parser.add_argument(
        "--keep-temp", action="store_true", help="keep the temporary folder (its path is printed)"
    )
    parser.add_argument("--list", action="store_true", help="list the selected cases and exit")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs {args.jobs}: must be at least 1")
    cases = select(all_cases(), args.quick, args.only, args.case)
    if args.list:
        for c in cases:
            print(f"{c.item}  {c.name}")
        return 0
    started = datetime.datetime.now(datetime.timezone.utc)
    t0 = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix="shunted-reliability-"))
    try:
        ctx = Context(root, args.shared, args.alt_pillow, sys.executable, args.repo.resolve())

        def progress(r: Result) -> None:
            why = "" if r.status == "PASS" else ": " + "; ".join(r.reasons)[:200]
            print(f"{r.status:4}  {r.seconds:5.1f} s  [{r.case.item}] {r.case.name}{why}", flush=True)

        results = run_all(cases, ctx, args.jobs, progress)
        seconds = time.monotonic() - t0
        shown = [a for a in argv if a not in ("--no-write", "--keep-temp")]
        text = render(results, shown, started, seconds, ctx, args.jobs)
        if args.no_write:
            print(text)
        else:
            write_atomic(args.output, text)
            print(f"wrote {args.output}")
    finally:
        if args.keep_temp:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    passed = sum(r.status == "PASS" for r in results)
    failed = sum(r.status == "FAIL" for r in results)
    print(f"{passed} passed, {failed} failed, {len(results) - passed - failed} skipped in {seconds:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
