"""Joining or starting Ray for lmforge's Ray paths (the data pipeline's executor, RL rollout workers).

`ray.init` joins the cluster named by RAY_ADDRESS, or starts a local one, unless this process is
already connected. It also installs a SIGTERM handler (`sys.exit`) that stays after `ray.shutdown`;
a process forked later from this one (the data pipeline's local pool) then runs Ray's exit path when
its pool terminates it, and can hang there. So the handler this process had before is put back.
"""

from __future__ import annotations

import signal
import threading


def init_ray(missing_hint: str):
    """The `ray` module, connected; `missing_hint` is the ImportError's message when Ray is absent."""
    try:
        import ray
    except ImportError:
        raise ImportError(missing_hint) from None
    if not ray.is_initialized():
        main = threading.current_thread() is threading.main_thread()
        previous = signal.getsignal(signal.SIGTERM) if main else None
        ray.init(ignore_reinit_error=True, include_dashboard=False, log_to_driver=False)
        if main and previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return ray
