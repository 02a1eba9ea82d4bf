"""The kernel side of flyte_lab: the `%%flyte_setup`, `%%flyte_task` and `%flyte_graph` magics.

`magics` is the IPython surface; `runtime_types` checks live values against
declared types (shared with the engine's task notebooks); `graph_render`
draws a workflow as SVG/HTML (shared with the run widget and dashboard).
"""
