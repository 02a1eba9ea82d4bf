"""The worker side of the engine: what runs in a Dask worker for one task attempt (`run_attempt`), the kernels it
runs them in (`kernels`: pools of kernels forked from a `kernel_template`, or spawned), and the worker's files."""
