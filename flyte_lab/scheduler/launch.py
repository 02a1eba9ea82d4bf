"""One claimed fire time made into a run: `python -m flyte_lab.scheduler.launch SCHEDULE FIRE_TIME`.

The scheduler starts one of these per fire time, so a long run never holds up the
next fire of another schedule, and each run has its own driver process. The fire
is marked `launched` as soon as its run exists; a launch refused by validation
(the notebook changed and no longer validates, or is gone) is marked `failed`
with the reason, and never retried.
"""

from __future__ import annotations

import logging
import sys
from datetime import datetime

from flyte_lab.errors import FlyteLabError
from flyte_lab.scheduler.notify import Notifier, parse_targets
from flyte_lab.scheduler.spec import fire_params
from flyte_lab.scheduler.timing import parse_time
from flyte_lab.statuses import RunStatus

log = logging.getLogger("flyte_lab.scheduler")


def launch(name: str, fire: datetime) -> int:
    """Run the fire time `fire` (aware UTC) of schedule `name`; the run's exit code (0, 1), or 2 if refused."""
    from flyte_lab.engine.api import run_notebook
    from flyte_lab.errors import ScheduledRunExists
    from flyte_lab.graph.validate import validate_notebook
    from flyte_lab.store import RunStore

    db_fire = fire.replace(tzinfo=None)
    with RunStore.from_env() as store:
        schedule = store.get_schedule(name)

        def created(run_id: str) -> None:
            store.mark_fire(name, db_fire, "launched", run_id=run_id)
            log.info("schedule %s: fire time %s is run %s", name, fire.isoformat(), run_id)

        try:
            declared = set(validate_notebook(schedule["notebook"]).workflow_inputs)
            record = run_notebook(schedule["notebook"], fire_params(schedule, declared, fire), schedule=name,
                                  scheduled_time=db_fire, cluster="shared", on_created=created,
                                  on_finished=Notifier(parse_targets(schedule["notify"]), store))
        except ScheduledRunExists as exc:
            store.mark_fire(name, db_fire, "launched", run_id=exc.run_id)
            log.info("schedule %s: fire time %s already has run %s; not launching another",
                     name, fire.isoformat(), exc.run_id)
            return 0
        except FlyteLabError as exc:
            if exc.exit_code != 2:
                raise
            store.mark_fire(name, db_fire, "failed", reason=exc.message)
            log.error("schedule %s: fire time %s refused: %s", name, fire.isoformat(), exc.message)
            return 2
    log.info("schedule %s: run %s (fire time %s) %s", name, record["run_id"], fire.isoformat(), record["status"])
    return 0 if record["status"] == RunStatus.SUCCEEDED else 1


def main(argv: list[str] | None = None) -> int:
    from flyte_lab.private_process import hide_memory

    hide_memory()  # started with the scheduler's environment, the source of the scheduled runs' secrets
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m flyte_lab.scheduler.launch SCHEDULE FIRE_TIME", file=sys.stderr)
        return 2
    # our own fire-by-fire log at INFO; Dask, alembic and the rest only when they warn
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("flyte_lab").setLevel(logging.INFO)
    try:
        return launch(args[0], parse_time(args[1], what="fire time"))
    except FlyteLabError as exc:
        log.error("schedule %s: %s", args[0], exc.message)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
