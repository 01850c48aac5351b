"""The child side of the code sandbox: isolate this process, then exec the program.

Run as `python -I -S sandbox_child.py CONFIG_JSON` by `lmforge.eval.sandbox` in a new session
(its own process group), with stdout/stderr already pointing at capped files. It imports nothing
from lmforge, so it runs before any site-packages are trusted. In order:

1. `"os"` mode (the parent is root): new mount and network namespaces (`unshare`), every mount
   remounted read-only except the program's own directory, so `rm -rf` and writes outside fail
   and no socket can reach anything (a fresh network namespace has no interface up);
2. resource limits: address space, CPU seconds, processes, file size, no core dumps;
3. `"os"` mode: drop to a fresh unprivileged uid/gid that owns nothing but the program's folder
   (RLIMIT_NPROC then counts this program's processes alone: a fork bomb hits the limit);
4. exec the interpreter on the program; in `"guard"` mode (no root) a Python prelude first
   blocks sockets, process creation and file changes outside the folder (a guard against
   accidents, not a security boundary: see docs/eval.md).
"""

import ctypes
import json
import os
import resource
import sys

CLONE_NEWNS, CLONE_NEWNET = 0x00020000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
_FLAG_NAMES = {"nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC}

GUARD = r'''
import builtins, io, os, shutil, socket, subprocess, sys
_ROOT = os.path.realpath(os.getcwd())
def _blocked(*args, **kwargs):
    raise PermissionError("blocked by the lmforge sandbox")
def _inside(path):
    try:
        real = os.path.realpath(os.fspath(path))
    except TypeError:
        return False
    return real == _ROOT or real.startswith(_ROOT + os.sep)
def _checked(fn, nargs=1):
    def wrapper(*args, **kwargs):
        if not all(_inside(a) for a in args[:nargs]):
            raise PermissionError(f"{fn.__name__} outside the sandbox directory is blocked")
        return fn(*args, **kwargs)
    return wrapper
_open = builtins.open
def _guarded_open(file, mode="r", *args, **kwargs):
    if isinstance(file, int) or not any(c in mode for c in "wax+") or _inside(file):
        return _open(file, mode, *args, **kwargs)
    raise PermissionError(f"writing {file!r} outside the sandbox directory is blocked")
builtins.open = io.open = _guarded_open
_os_open = os.open
def _guarded_os_open(path, flags, *args, **kwargs):
    if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND) and not _inside(path):
        raise PermissionError(f"writing {path!r} outside the sandbox directory is blocked")
    return _os_open(path, flags, *args, **kwargs)
os.open = _guarded_os_open
for _name in ("remove", "unlink", "rmdir", "removedirs", "truncate", "chmod", "chown", "mkdir", "makedirs"):
    if hasattr(os, _name):
        setattr(os, _name, _checked(getattr(os, _name)))
for _name in ("rename", "renames", "replace", "link", "symlink"):
    setattr(os, _name, _checked(getattr(os, _name), 2))
shutil.rmtree = _checked(shutil.rmtree)
shutil.move = _checked(shutil.move, 2)
for _name in ("system", "fork", "forkpty", "kill", "killpg", "setuid", "setgid", "execv", "execve",
              "execvp", "execvpe", "spawnv", "spawnve", "spawnvp", "spawnvpe", "posix_spawn", "posix_spawnp"):
    if hasattr(os, _name):
        setattr(os, _name, _blocked)
subprocess.Popen = _blocked
socket.socket = _blocked
socket.create_connection = _blocked
socket.socketpair = _blocked
del _name
sys.argv = sys.argv[1:]
import runpy
runpy.run_path(sys.argv[0], run_name="__main__")
'''


def _libc():
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p]
    return libc


def _check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount_points() -> list[tuple[str, int]]:
    points = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            target = fields[4].replace("\\040", " ")
            flags = sum(_FLAG_NAMES.get(opt, 0) for opt in fields[5].split(","))
            points.append((target, flags))
    return points


def isolate_namespaces(workdir: str) -> None:
    """New mount + network namespaces; everything read-only except `workdir`."""
    libc = _libc()
    _check(libc.unshare(CLONE_NEWNS | CLONE_NEWNET), "unshare")
    _check(libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None), "mount --make-rprivate /")
    wd = workdir.encode()
    _check(libc.mount(wd, wd, None, MS_BIND | MS_REC, None), f"bind {workdir}")
    for target, flags in _mount_points():
        if target == workdir or target.startswith(workdir + "/"):
            continue
        rc = libc.mount(None, target.encode(), None, MS_REMOUNT | MS_BIND | MS_RDONLY | flags, None)
        if rc != 0 and target == "/":
            _check(rc, "remount / read-only")


def set_limits(cfg: dict) -> None:
    def limit(kind, value):
        resource.setrlimit(kind, (value, value))

    limit(resource.RLIMIT_AS, cfg["memory_bytes"])
    resource.setrlimit(resource.RLIMIT_CPU, (cfg["cpu_seconds"], cfg["cpu_seconds"] + 1))
    limit(resource.RLIMIT_NPROC, cfg["max_processes"])
    limit(resource.RLIMIT_FSIZE, cfg["max_file_bytes"])
    limit(resource.RLIMIT_CORE, 0)
    limit(resource.RLIMIT_NOFILE, cfg["max_open_files"])


def main() -> None:
    cfg = json.loads(sys.argv[1])
    workdir = cfg["workdir"]
    if cfg["mode"] == "os":
        isolate_namespaces(workdir)
    set_limits(cfg)
    os.chdir(workdir)
    if cfg["mode"] == "os":
        os.setgroups([])
        os.setgid(cfg["gid"])
        os.setuid(cfg["uid"])
    argv = [cfg["python"], "-I"]
    if cfg["mode"] == "guard":
        argv += ["-c", GUARD]
    argv.append(cfg["program"])
    os.execve(cfg["python"], argv, cfg["env"])


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # noqa: BLE001 - report any setup failure as the run's error
        print(f"lmforge sandbox setup failed: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(125)
