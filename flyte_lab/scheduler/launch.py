"""One claimed fire time made into a run: the `fire` action of `run_launch` (its own process, started by the loop).

The scheduler starts one process per fire time, so a long run never holds up the next fire of another schedule,
and each run has its own driver process. The fire is marked `launched` as soon as its run exists; a launch
refused by validation (the notebook changed and no longer validates, or is gone) is marked `failed` with the
reason, and never retried. Its one line in the scheduler's log (`firing_log`) says which run the fire time
made, or why none.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

from flyte_lab.errors import FlyteLabError
from flyte_lab.scheduler import firing_log
from flyte_lab.scheduler.notify import Notifier, parse_targets
from flyte_lab.scheduler.spec import fire_params
from flyte_lab.scheduler.timing import parse_time
from flyte_lab.statuses import RunStatus

log = logging.getLogger("flyte_lab.scheduler")


def launch_fire(name: str, fire_time: str, on_created: Callable[[str], None],
                why: str | None = None) -> tuple[str, str | None]:
    """Run the fire time `fire_time` (ISO, UTC) of schedule `name`: (run id, its final status), status None when
    another launcher made that run already. A refusal (exit code 2) is recorded on the fire, then raised. `why`:
    why it fires now, for the log (the scheduler's `firing_log.why`; else how late it is by our clock)."""
    from flyte_lab.engine.api import run_notebook
    from flyte_lab.errors import ScheduledRunExists
    from flyte_lab.graph.validate import validate_notebook
    from flyte_lab.store import RunStore

    firing_log.configure(dask_loaded=True)  # our stderr is the scheduler's log
    refused = False
    try:
        fire = parse_time(fire_time, what="fire time")
        db_fire, shown = fire.replace(tzinfo=None), fire.isoformat()
        reason = why or firing_log.why(fire, datetime.now(UTC))
        with RunStore.from_env() as store:
            schedule = store.get_schedule(name)

            def created(run_id: str) -> None:
                store.mark_fire(name, db_fire, "launched", run_id=run_id)
                log.info("%s", firing_log.line(schedule, fire, reason, f"started run {run_id}"))
                on_created(run_id)

            try:
                declared = set(validate_notebook(schedule["notebook"]).workflow_inputs)
                record = run_notebook(schedule["notebook"], fire_params(schedule, declared, fire), schedule=name,
                                      scheduled_time=db_fire, cluster="shared", on_created=created,
                                      on_finished=Notifier(parse_targets(schedule["notify"]), store))
            except ScheduledRunExists as exc:
                store.mark_fire(name, db_fire, "launched", run_id=exc.run_id)
                log.info("%s", firing_log.line(schedule, fire, reason,
                                               f"already has run {exc.run_id}; not launching another"))
                return exc.run_id, None
            except FlyteLabError as exc:
                if exc.exit_code == 2:
                    refused = True
                    store.mark_fire(name, db_fire, "failed", reason=exc.message)
                    log.error("%s", firing_log.line(schedule, fire, reason, f"refused: {exc.message}"))
                raise
    except FlyteLabError as exc:
        if not refused:
            log.error("schedule %s: %s", name, exc.message)
        raise
    # its start was the fire time's line; only a run that did not succeed is worth another
    ended = log.debug if record["status"] == RunStatus.SUCCEEDED else log.warning
    ended("schedule %s: run %s (fire time %s) %s", name, record["run_id"], shown, record["status"])
    return record["run_id"], record["status"]
