"""`flyte-lab executor status|stop`: the user's warm local executors (`engine/shared_executor.py`)."""

from __future__ import annotations

import argparse
import json
import time


def status(args: argparse.Namespace) -> int:
    from flyte_lab.engine.api import flyte_home
    from flyte_lab.engine.shared_executor import idle_timeout, running

    found = running(flyte_home(create=False))
    rows = [{"address": e.address, "pid": e.pid, "workers": e.workers, "started": e.started,
             "folder": str(e.folder)} for e in found]
    if args.json:
        print(json.dumps({"executors": rows, "idle_timeout_s": idle_timeout()}))
        return 0
    if not rows:
        print("no executor runs (the next run starts one)")
        return 0
    from flyte_lab.presentation.formats import format_duration

    for e in found:
        print(f"pid {e.pid}  {e.address}  workers {e.workers}  up {format_duration(time.time() - e.started)}")
    return 0


def stop(args: argparse.Namespace) -> int:
    from flyte_lab.engine.api import flyte_home
    from flyte_lab.engine.shared_executor import stop as stop_all

    stopped = stop_all(flyte_home(create=False))
    print(f"stopped {len(stopped)} executor(s)" if stopped else "no executor was running")
    return 0
