"""One claimed fire time made into a run: the `fire` action of `run_launch` (its own process, started by the loop).

The scheduler starts one process per fire time, so a long run never holds up the next fire of another schedule,
and each run has its own driver process. The fire is marked `launched` as soon as its run exists; a launch
refused by validation (the notebook changed and no longer validates, or is gone) is marked `failed` with the
reason, and never retried.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

from flyte_lab.errors import FlyteLabError
from flyte_lab.scheduler.notify import Notifier, parse_targets
from flyte_lab.scheduler.spec import fire_params
from flyte_lab.scheduler.timing import parse_time

log = logging.getLogger("flyte_lab.scheduler")


def launch_fire(name: str, fire_time: str, on_created: Callable[[str], None]) -> tuple[str, str | None]:
    """Run the fire time `fire_time` (ISO, UTC) of schedule `name`: (run id, its final status), status None when
    another launcher made that run already. A refusal (exit code 2) is recorded on the fire, then raised."""
    from flyte_lab.engine.api import run_notebook
    from flyte_lab.errors import ScheduledRunExists
    from flyte_lab.graph.validate import validate_notebook
    from flyte_lab.store import RunStore

    # our own fire-by-fire log at INFO; Dask, alembic and the rest only when they warn
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("flyte_lab").setLevel(logging.INFO)
    refused = False
    try:
        fire = parse_time(fire_time, what="fire time")
        db_fire, shown = fire.replace(tzinfo=None), fire.isoformat()
        with RunStore.from_env() as store:
            schedule = store.get_schedule(name)

            def created(run_id: str) -> None:
                store.mark_fire(name, db_fire, "launched", run_id=run_id)
                log.info("schedule %s: fire time %s is run %s", name, shown, run_id)
                on_created(run_id)

            try:
                declared = set(validate_notebook(schedule["notebook"]).workflow_inputs)
                record = run_notebook(schedule["notebook"], fire_params(schedule, declared, fire), schedule=name,
                                      scheduled_time=db_fire, cluster="shared", on_created=created,
                                      on_finished=Notifier(parse_targets(schedule["notify"]), store))
            except ScheduledRunExists as exc:
                store.mark_fire(name, db_fire, "launched", run_id=exc.run_id)
                log.info("schedule %s: fire time %s already has run %s; not launching another",
                         name, shown, exc.run_id)
                return exc.run_id, None
            except FlyteLabError as exc:
                if exc.exit_code == 2:
                    refused = True
                    store.mark_fire(name, db_fire, "failed", reason=exc.message)
                    log.error("schedule %s: fire time %s refused: %s", name, shown, exc.message)
                raise
    except FlyteLabError as exc:
        if not refused:
            log.error("schedule %s: %s", name, exc.message)
        raise
    log.info("schedule %s: run %s (fire time %s) %s", name, record["run_id"], shown, record["status"])
    return record["run_id"], record["status"]
