"""Run untrusted generated code safely: the HumanEval / MBPP execution sandbox.

Paper: InternLM2 report (its OpenCompass evaluation), arXiv 2403.17297; docs/papers.md §9.

Each program runs in its own process (a new session, so its whole process group can be killed),
in a fresh temporary directory that is its cwd, HOME and TMPDIR and is removed afterwards, with
stdout/stderr going to size-capped files. Limits: wall-clock timeout (the process group is
killed), RLIMIT_CPU, RLIMIT_AS (memory), RLIMIT_NPROC (fork bombs), RLIMIT_FSIZE, no core dumps.

Two isolation modes, chosen once per process by `isolation()`:

- `"os"` (the evaluating process is root, as in a container): the child enters new mount and
  network namespaces, remounts everything read-only except its own directory, and drops to a
  fresh unprivileged uid that owns nothing else; after the run every process of that uid is
  killed, so a daemonised grandchild cannot outlive it. The program runs under an interpreter
  that such a uid may execute (sys.executable when readable, else the system python3).
- `"guard"` (otherwise): the resource limits plus a Python prelude that blocks sockets,
  subprocesses, fork and file changes outside the directory - a guard against accidents and
  confused models, not against an adversary.

A program passes when it exits with status 0 within its limits; anything else - an exception,
a timeout, a signal, a memory error - is a failure that cannot harm the evaluation.
"""

from __future__ import annotations

import functools
import json
import math
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

CHILD = Path(__file__).with_name("sandbox_child.py")


@dataclass
class Limits:
    timeout: float = 10.0  # wall-clock seconds
    memory_bytes: int = 1 << 30  # RLIMIT_AS
    max_processes: int = 16  # RLIMIT_NPROC (per uid: the sandbox uid alone in "os" mode)
    max_file_bytes: int = 16 << 20  # RLIMIT_FSIZE, also caps stdout/stderr
    max_open_files: int = 128
    output_chars: int = 4000  # how much of stdout/stderr is kept in the result


@dataclass
class Result:
    status: str  # "passed", "failed", "timeout", "killed" (by a signal: CPU, file size, ...) or "error"
    returncode: int | None
    stdout: str
    stderr: str
    seconds: float

    @property
    def passed(self) -> bool:
        return self.status == "passed"


def _run_child(source: str, limits: Limits, mode: str, python: str) -> Result:
    workdir = Path(tempfile.mkdtemp(prefix="lmforge-sandbox-")).resolve()
    logs = Path(tempfile.mkdtemp(prefix="lmforge-sandbox-logs-"))
    uid = gid = None
    try:
        (workdir / "tmp").mkdir()
        program = workdir / "program.py"
        program.write_text(source, encoding="utf-8")
        if mode == "os":
            uid = gid = secrets.randbelow(1_000_000_000) + 1_000_000  # nobody else has it
            for p in (workdir, workdir / "tmp", program):
                os.chown(p, uid, gid)
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(workdir), "TMPDIR": str(workdir / "tmp"),
               "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONHASHSEED": "0"}
        cfg = {"mode": mode, "workdir": str(workdir), "program": str(program), "python": python, "env": env,
               "uid": uid, "gid": gid, "memory_bytes": limits.memory_bytes,
               # CPU time is a backstop for threads that burn it faster than the wall clock runs; one
               # thread cannot outrun the wall clock, so with a second's margin the wall-clock timeout
               # is what ends a plain infinite loop ("timeout"), even when this process wakes late.
               "cpu_seconds": math.ceil(limits.timeout) + 1, "max_processes": limits.max_processes,
               "max_file_bytes": limits.max_file_bytes, "max_open_files": limits.max_open_files}
        start = time.perf_counter()
        with open(logs / "stdout", "wb") as out, open(logs / "stderr", "wb") as err:
            proc = subprocess.Popen([sys.executable, "-I", "-S", str(CHILD), json.dumps(cfg)], stdin=subprocess.DEVNULL,
                                    stdout=out, stderr=err, cwd=workdir, start_new_session=True, env=env)
            try:
                rc = proc.wait(timeout=limits.timeout)
                timed_out = False
            except subprocess.TimeoutExpired:
                timed_out = True
            _kill_group(proc.pid)
            rc = proc.wait()
        seconds = time.perf_counter() - start
        stdout, stderr = (_head(logs / name, limits.output_chars) for name in ("stdout", "stderr"))
    finally:
        if uid is not None:
            _kill_uid(uid, gid)
        shutil.rmtree(workdir, ignore_errors=True)
        shutil.rmtree(logs, ignore_errors=True)
    if timed_out:
        status = "timeout"
    elif rc == 0:
        status = "passed"
    elif rc == 125 and "lmforge sandbox setup failed" in stderr:
        status = "error"
    elif rc < 0:
        status = "killed"
    else:
        status = "failed"
    return Result(status, rc, stdout, stderr, seconds)


def _head(path: Path, n: int) -> str:
    with open(path, "rb") as f:
        return f.read(4 * n).decode("utf-8", errors="replace")[:n]


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _kill_uid(uid: int, gid: int) -> None:
    """SIGKILL every process of the sandbox's uid: kill(-1) sent as that uid reaches exactly them
    (and never the sender). A helper process, not fork(), since several runs share threads here."""
    code = f"import os, signal\nos.setgroups([])\nos.setgid({gid})\nos.setuid({uid})\nos.kill(-1, signal.SIGKILL)"
    subprocess.run([sys.executable, "-I", "-S", "-c", code], stdin=subprocess.DEVNULL,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)


def _interpreters() -> list[str]:
    candidates = [sys.executable, "/usr/bin/python3", "/usr/local/bin/python3", shutil.which("python3") or ""]
    return [c for c in dict.fromkeys(candidates) if c and os.path.isfile(c)]


@functools.cache
def isolation() -> tuple[str, str]:
    """(mode, interpreter): "os" when namespaces + uid drop work here, else "guard"."""
    probe = "import os, socket\nassert os.getuid() != 0\ntry:\n    socket.create_connection(('127.0.0.1', 9), 1)\n" \
            "except OSError:\n    pass\nopen('ok', 'w').write('ok')\n"
    if os.geteuid() == 0:
        for python in _interpreters():
            if _run_child(probe, Limits(timeout=20), "os", python).passed:
                return "os", python
    return "guard", sys.executable


def run_program(source: str, limits: Limits | None = None, mode: str | None = None) -> Result:
    """Run one Python program in the sandbox. `mode` forces "os" or "guard" (tests use both)."""
    limits = limits or Limits()
    auto_mode, python = isolation()
    if mode is None:
        mode = auto_mode
    elif mode == "os" and auto_mode != "os":
        raise RuntimeError("sandbox mode 'os' needs root with mount/network namespaces; use 'guard'")
    if mode == "guard":
        python = sys.executable
    return _run_child(source, limits, mode, python)


def run_programs(sources: list[str], limits: Limits | None = None, workers: int | None = None) -> list[Result]:
    """Run many programs, a few at a time (each is a separate sandboxed process)."""
    if not sources:
        return []
    workers = workers or min(4, len(sources), os.cpu_count() or 1)
    isolation()  # probe once before the threads start
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda s: run_program(s, limits), sources))
