"""`flyte-lab dashboard`: a Panel app that reads the run store (never a driver).

One module per job:

- `store_access`: open the store read-only, and say clearly why it cannot be (no store, newer schema, bad URL);
- `table_rows`: store records -> the plain rows and columns the pages show (pure, no Panel);
- `run_state`: the run page's one state (`RunState`: the run record, which the page's tick assigns, and the task
  shown in detail) and the base of its parts (`RunPart`, a Panel `Viewer` following that state);
- `run_graph`: the bokeh DAG (layers from `presentation.graph_render.layout`, left to right);
- `timeline`: the bokeh Gantt of every attempt on every worker;
- `task_table`: the run's tasks as a table;
- `task_detail`: one task's inputs, outputs, error and executed notebooks;
- `notebook_view`: an executed notebook as nbconvert HTML cleaned by nh3, in a sandboxed frame (runs no script);
- `actions`: Cancel through `engine.api`; Resume / Relaunch each a run in its own process (`run_launch`);
- `runs_page`, `run_page`: the two pages; `server`: Panel's server with both routes.
"""
