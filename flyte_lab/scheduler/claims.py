"""Who claims a fire time, and whether a claimant is still alive.

An owner is `host:pid:start-time-ms`. On the same host a dead owner is known at
once (the pid is gone, or belongs to a newer process), so a scheduler restarted
after a crash relaunches its claimed fire times immediately; on another host only
the claim's lease tells (`FLYTE_LAB_SCHEDULER_LEASE_S`, default 600 s).
"""

from __future__ import annotations

import os
import socket

import psutil

DEFAULT_LEASE_S = 600.0


def lease_s() -> float:
    try:
        return float(os.environ.get("FLYTE_LAB_SCHEDULER_LEASE_S", DEFAULT_LEASE_S))
    except ValueError:
        return DEFAULT_LEASE_S


def _started_ms(pid: int) -> int:
    return int(psutil.Process(pid).create_time() * 1000)


def this_owner() -> str:
    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{_started_ms(pid)}"


def owner_alive(owner: str) -> bool | None:
    """True/False for an owner on this host; None (ask the lease) for another host or a foreign format."""
    parts = owner.rsplit(":", 2)
    if len(parts) != 3 or not parts[1].isdigit() or not parts[2].isdigit():
        return None
    host = parts[0]
    if host != socket.gethostname():
        return None
    pid, started = int(parts[1]), int(parts[2])
    try:
        proc = psutil.Process(pid)
        return proc.status() != psutil.STATUS_ZOMBIE and _started_ms(pid) == started
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:  # someone else's process: the pid is not our claimant's any more
        return False


def driver_alive(host: str | None, pid: int | None) -> bool | None:
    """False when a run's driver process is known gone (same host, no such pid); None when we cannot tell.

    Without the driver's start time a reused pid reads as alive: the safe side for `--max-active`.
    """
    if host is None or pid is None or host != socket.gethostname():
        return None
    return None if psutil.pid_exists(pid) else False
