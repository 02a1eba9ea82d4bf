"""Scheduled notebook runs: when a schedule fires, who launches each fire time, and who hears about the result.

- `timing`: fire times of a cron or fixed-rate schedule in a named timezone (DST included);
- `checks`: the timing rules every schedule passes, typed or stored (its next fire times computable);
- `spec`: the one schedule spec (`schedule add`, REST body, preview, sidebar form): checked, then a store row;
- `claims`: who this process is, and whether another claimant is still alive;
- `loop`: the `flyte-lab scheduler` process: plan, claim, launch, reap;
- `launch`: one claimed fire time made into a run (a child process of the loop);
- `firing_log`: the scheduler's log, one line per fire time;
- `notify`: HTTP and mail notifications about finished runs;
- `overview`: schedules as readers see them (next fire time, last run, warnings).

The store (`store/schedules.py`) is the only shared state: any number of schedulers
may run on one store, and each (schedule, fire time) still makes at most one run.
"""

from __future__ import annotations
