"""What runs inside a kernel for the magics of `flyte_lab.magics`.

`hidden_state` words an `undefined-name` found in a
kernel; `notebook_path` finds this kernel's notebook;
`run_widget` and `run_follow` show a run live from the run store; `triage`
reads a task's last attempt back for `%flyte_debug` and `flyte-lab debug`. The
graph picture is `presentation.graph_render` (shared with the dashboard); live
values are checked against declared types by `graph.value_checks` (shared with
the engine's task kernels).
"""
