"""Presentation shared by the CLI, the run widget (in a kernel) and the dashboard (in its server): pure, reading no
store and no terminal.

- `formats`: the one text form of times, durations, resources, parameters, notebook names, a task's error line;
- `graph_render`: the one graph picture (SVG, and HTML with its diagnostics) and its layered layout, which the
  dashboard's bokeh graph reuses.
"""
