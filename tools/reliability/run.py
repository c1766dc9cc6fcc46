"""Running one case: build its folder, run the command under limits, compare what happened with what it expects."""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import os
import re
import resource
import shlex
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from .craft import MB
from .harness import EVAL_64, MAX_MESSAGE, REPO, Case, Context, Result, child_env

# ---------------------------------------------------------------------------------------------------------------
# Running one case


def fingerprint(path: Path) -> Any:
    if path.is_symlink() and not path.exists():
        return ("dangling", os.readlink(path))
    if path.is_file():
        return hashlib.sha256(path.read_bytes()).hexdigest()
    if path.is_dir():
        return sorted(
            (str(p.relative_to(path)), hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir")
            for p in path.rglob("*")
        )
    return None


# The command runs under this small wrapper, which forks it and reports its peak RSS. Measured directly with
# os.wait4 from this (large) process, a child's ru_maxrss starts at the RSS this process had when it forked.
RSS_WRAPPER = """
import os, signal, sys
pid = os.fork()
if pid == 0:
    try:
        os.execvp(sys.argv[2], sys.argv[2:])
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as fh:
    fh.write(str(usage.ru_maxrss))
code = os.waitstatus_to_exitcode(status)
if code < 0:
    signal.signal(-code, signal.SIG_DFL)
    os.kill(os.getpid(), -code)
sys.exit(code)
"""


def _preexec(mem_mb: int):
    def fn() -> None:
        limit = mem_mb * MB
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    return fn


def _mount_wrapper(case: Case, d: Path, inside_log: Path) -> list[str]:
    lines = ["set -e"]
    for kind, rel in case.mounts:
        p = shlex.quote(str(d / rel))
        if kind == "ro":
            lines += [f"mount --bind {p} {p}", f"mount -o remount,ro,bind {p}"]
        else:
            lines += [
                f"mount -t tmpfs -o size=64k tmpfs {p}",
                f"dd if=/dev/zero of={p}/.filler bs=4096 2>/dev/null || true",
            ]
    lines += ["set +e", '"$@"', "rc=$?"]
    for kind, rel in case.mounts:
        if kind == "full":
            p = shlex.quote(str(d / rel))
            lines.append(
                f"(cd {p} && find . -mindepth 1 ! -name .filler) >> {shlex.quote(str(inside_log))} 2>/dev/null"
            )
    lines.append("exit $rc")
    return ["unshare", "-m", "sh", "-c", "\n".join(lines), "sh"]


def run_case(case: Case, ctx: Context) -> Result:
    r = Result(case)
    missing = [n for n in case.needs if not _available(n, ctx)]
    if missing:
        r.status = "SKIP"
        r.reasons = [_skip_reason(missing[0], ctx)]
        return r
    slug = (
        re.sub(r"[^A-Za-z0-9]+", "-", case.name).strip("-")[:60]
        + "-"
        + hashlib.md5(case.name.encode()).hexdigest()[:6]
    )
    d = ctx.root / "cases" / slug
    logs = ctx.root / "logs"
    logs.mkdir(exist_ok=True)
    d.mkdir(parents=True)
    try:
        if case.setup:
            case.setup(d, ctx)
    except Exception as exc:  # noqa: BLE001 - a case that cannot be built is a FAIL of this script, shown
        r.reasons = [f"setup failed: {type(exc).__name__}: {exc}"]
        return r
    argv = case.argv(d, ctx) if callable(case.argv) else list(case.argv)
    r.argv = argv
    before = {k: fingerprint(d / k) for k in case.keep}
    if argv[:1] == ["-c"]:  # python -c CODE (a list, or what a callable gave)
        cmd = [ctx.python, *argv]
        r.shown_argv = "python -c '" + argv[1].strip().splitlines()[-1][:50] + "…'"
    else:
        cmd = [ctx.python, "-m", "shunted", *argv]
        r.shown_argv = abbreviate("shunted " + " ".join(shlex.quote(_show_path(a, d, ctx)) for a in argv))
    inside_log = logs / f"{slug}.inside"
    if case.mounts:
        cmd = _mount_wrapper(case, d, inside_log) + cmd
    env = child_env(ctx, case.env)
    if case.alt_pillow and ctx.alt_pillow is not None:
        env["PYTHONPATH"] = f"{ctx.alt_pillow}{os.pathsep}{ctx.repo}"
    out_path, err_path, rss_path = logs / f"{slug}.out", logs / f"{slug}.err", logs / f"{slug}.rss"
    cmd = [ctx.python, "-I", "-S", "-c", RSS_WRAPPER, str(rss_path), *cmd]
    start = time.monotonic()
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        proc = subprocess.Popen(
            cmd,
            cwd=d,
            env=env,
            stdin=subprocess.PIPE if case.stdin is not None else subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            preexec_fn=_preexec(case.mem_limit_mb),
            start_new_session=True,
        )
        if case.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.write(case.stdin)
            with contextlib.suppress(OSError):
                proc.stdin.close()
        status, timed_out = _wait(proc, case.timeout)
    r.seconds = time.monotonic() - start
    r.exit = os.waitstatus_to_exitcode(status)
    with contextlib.suppress(OSError, ValueError):
        r.rss_mb = int(rss_path.read_text()) / 1024  # KiB; absent when the case was killed
    r.stdout = out_path.read_text(errors="replace")
    r.stderr = err_path.read_text(errors="replace")
    if inside_log.exists():
        r.inside = [
            line[2:] if line.startswith("./") else line for line in inside_log.read_text().splitlines()
        ]
    reasons = r.reasons
    if timed_out:
        reasons.append(f"timed out after {case.timeout:.0f} s (killed)")
    elif r.exit not in case.exit:
        reasons.append(f"exit {r.exit}, expected {'/'.join(map(str, case.exit))}" + _traceback_hint(r.stderr))
    r.message = _message(r, reasons)
    if case.max_rss_mb is not None and r.rss_mb is not None and r.rss_mb > case.max_rss_mb:
        reasons.append(f"peak RSS {r.rss_mb:.0f} MB > {case.max_rss_mb:.0f} MB")
    file_problems = []
    for k, fp in before.items():
        if fingerprint(d / k) != fp:
            file_problems.append(f"{k} changed or deleted")
    for pattern in case.absent:
        hits = [str(p.relative_to(d)) for p in d.glob(pattern)] + [
            p for p in r.inside for kind, rel in case.mounts if fnmatch.fnmatch(f"{rel}/{p}", pattern)
        ]
        if hits:
            file_problems.append(f"{hits[0]} exists")
    if case.check is not None and not timed_out:
        try:
            why = case.check(d, ctx, r)
        except Exception as exc:  # noqa: BLE001
            why = f"check failed: {type(exc).__name__}: {exc}"
        if why:
            (file_problems if "non-finite" in why or "unreadable" in why else reasons).append(why)
    if case.keep or case.absent or "finite" in getattr(case.check, "__qualname__", ""):
        r.files = "✗" if file_problems else "✓"
    reasons.extend(file_problems)
    r.status = "FAIL" if reasons else "PASS"
    return r


def _available(need: str, ctx: Context) -> bool:
    return {
        "weights": not ctx.good_error and ctx.good.is_file(),
        "seg": not ctx.seg_error and ctx.seg.is_file(),
        "shared": ctx.shared is not None,
        "unshare": ctx.unshare_ok,
        "alt_pillow": ctx.alt_pillow is not None,
    }[need]


def _skip_reason(need: str, ctx: Context) -> str:
    return {
        "weights": ctx.good_error or "the good weights were not prepared",
        "seg": ctx.seg_error or "the segmentation weights were not prepared",
        "shared": "needs --shared (../shared not found)",
        "unshare": "needs `unshare -m` with mount rights (read-only / full file systems)",
        "alt_pillow": "needs --alt-pillow DIR (pip install --target DIR 'pillow==13.*')",
    }[need]


def _wait(proc: subprocess.Popen, timeout: float):
    deadline = time.monotonic() + timeout
    timed_out = False
    while True:
        pid, status = os.waitpid(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)  # Popen must not wait for it again
            return status, timed_out
        if time.monotonic() > deadline and not timed_out:
            timed_out = True
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        time.sleep(0.05)


def _traceback_hint(stderr: str) -> str:
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
    if any("Traceback (most recent call last)" in ln for ln in lines):
        last = next(
            (ln for ln in reversed(lines) if re.match(r"^\w[\w.]*(Error|Exception|Interrupt)\b", ln)),
            lines[-1],
        )
        return f" (traceback: {last[:120]})"
    return ""


USAGE_LINE = re.compile(r"^(usage: |\s)")
# Lines a run may print before it stops with an error: progress bars and log warnings (not tracebacks).
PROGRESS_LINE = re.compile(
    r"\d+%\||\d+/\d+ \[|\bs/it\b|\bit/s\b|^\[\d{4}-\d\d-\d\d [\d:,]+\] \[ ?(WARNING|INFO)\]"
)


def _message(r: Result, reasons: list[str]) -> str:
    """The one-line message of an error, checked; or the last stderr line of anything else (for the table)."""
    case = r.case
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    if r.exit != 2 or 2 not in case.exit:
        if r.exit not in case.exit:
            return lines[-1] if lines else ""
        return (r.stdout.strip().splitlines() or [""])[-1] if r.exit == 0 else (lines[-1] if lines else "")
    cmd = case.error_command or (r.argv[0] if r.argv else "?")
    prefix = f"shunted {cmd}: error: "
    errors = [i for i, ln in enumerate(lines) if ln.startswith(prefix)]
    if len(errors) != 1:
        reasons.append(f"{len(errors)} lines start with {prefix.strip()!r}; stderr has {len(lines)} lines")
        return lines[-1] if lines else ""
    i = errors[0]
    before = lines[:i]
    in_usage = bool(before) and before[0].startswith("usage: ") and all(USAGE_LINE.match(ln) for ln in before)
    extra = [ln for ln in before if not PROGRESS_LINE.search(ln)] if not in_usage else []
    extra += lines[i + 1 :]
    message = lines[i]
    if extra:
        reasons.append(f"stderr has {len(extra)} more line(s): {extra[0][:80]!r}")
    if len(message) > MAX_MESSAGE:
        reasons.append(f"message is {len(message):,} characters long")
    if re.search(r"\.tmp\b", message):
        reasons.append("message names an internal .tmp file")
    for m in case.mentions:
        if m not in message:
            reasons.append(f"message does not name {m!r}")
    return message


ABBREVIATIONS = (
    ("--weights $PREP/good.pdparams", "W"),
    (" ".join(EVAL_64), "E64"),
    ("--epochs 1 --max-steps 1 --batch-size 4 --img-size 32 --workers 0", "T1"),
    ("--model shunted_t W --img-size 64 --resize-short 73", "P64"),
    ("--model shunted_t W --format paddle --img-size 32", "X32"),
)


def abbreviate(shown: str) -> str:
    """Shorten the arguments every case of a command repeats (the legend is in the report's header)."""
    shown = shown.replace("'$PREP/good.pdparams'", "$PREP/good.pdparams")
    for long, short in ABBREVIATIONS:
        shown = shown.replace(long, short)
    return shown


def _show_path(arg: str, d: Path, ctx: Context) -> str:
    for base, label in ((str(d), "."), (str(ctx.prep), "$PREP"), (str(REPO), "$REPO")):
        if arg.startswith(base + os.sep):
            rel = arg[len(base) + 1 :]
            return rel if label == "." else f"{label}/{rel}"
    if ctx.shared is not None and arg.startswith(str(ctx.shared)):
        return "$SHARED" + arg[len(str(ctx.shared)) :]
    return arg
