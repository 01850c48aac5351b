"""Peak resident memory of a benchmark child process (Linux /proc), shared by the benches that run
each side in a fresh process: reset the high-water mark, note the current size, run, read the peak."""

from __future__ import annotations

import resource


def current_rss() -> int:
    """Resident set size of this process now, in bytes."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def reset_peak_rss() -> None:
    """Lower this process's peak resident set size (VmHWM) to its current size."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def peak_rss() -> int:
    """This process's peak resident set size (VmHWM) since start or the last reset, in bytes."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))
