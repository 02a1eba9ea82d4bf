"""Running a validated graph: the run state machine, the Dask driver and the task runner."""
