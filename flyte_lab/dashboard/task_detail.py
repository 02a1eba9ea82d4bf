"""One task of a run in detail: inputs, outputs, error and traceback (all escaped), and each attempt's executed
notebook as HTML in a sandboxed frame (`notebook_view`)."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from html import escape
from typing import Any

from flyte_lab.dashboard.notebook_view import render
from flyte_lab.dashboard.views import debug_command, error_text, task_inputs, task_outputs

_lock = threading.Lock()
_rendered: dict[str, str] = {}  # finished attempts' notebooks never change: render each once


def notebook_html(url: str, final: bool) -> str:
    """The executed notebook at `url` (a path or any fsspec URL) as HTML, or a one-line reason it cannot be shown."""
    with _lock:
        if url in _rendered:
            return _rendered[url]
    import fsspec
    import nbformat

    try:
        with fsspec.open(url, "r", encoding="utf-8") as handle:
            nb = nbformat.read(handle, as_version=4)
        frame = render(nb, f"executed notebook {url}")
    except (OSError, ValueError) as exc:
        return f'<p class="flyte-missing">executed notebook {escape(url)} cannot be read: {escape(str(exc))}</p>'
    html = f'<div class="flyte-notebook">{frame}</div>'
    if final:
        with _lock:
            _rendered[url] = html
    return html


def _table(rows: list[dict[str, str]], columns: list[str], empty: str) -> str:
    if not rows:
        return f"<p><i>{escape(empty)}</i></p>"
    head = "".join(f"<th>{escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td><code>{escape(str(r.get(c, '')))}</code></td>" for c in columns) + "</tr>"
                   for r in rows)
    return f'<table class="flyte-io"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def summary_html(graph: Mapping[str, Any], run: Mapping[str, Any], task: str) -> str:
    """Inputs, outputs, error with traceback and the `debug` command of `task`."""
    info = (run.get("tasks") or {}).get(task) or {}
    parts = [f'<h3 class="flyte-task-title">{escape(task)} <small>({escape(str(info.get("status")))}, '
             f'cell {escape(str(info.get("cell")))})</small></h3>',
             "<h4>inputs</h4>", _table(task_inputs(graph, run, task), ["name", "type", "from", "preview"],
                                       "no inputs"),
             "<h4>outputs</h4>", _table(task_outputs(run, task), ["name", "type", "preview", "uri"],
                                        "no outputs recorded")]
    error = info.get("error")
    if error:
        parts += [f'<h4>error</h4><p class="flyte-error" style="color:#c0392b"><b>{escape(error_text(error))}</b></p>',
                  f'<pre class="flyte-traceback">{escape(error.get("traceback") or "")}</pre>',
                  "<p>reproduce it with its inputs: "
                  f'<code class="flyte-debug">{escape(debug_command(run["run_id"], task))}</code></p>']
    return "\n".join(parts)


def attempts(run: Mapping[str, Any], task: str) -> list[dict[str, Any]]:
    """The task's attempts that left an executed notebook, newest first."""
    found = [a for a in ((run.get("attempts_detail") or {}).get(task) or []) if a.get("output_notebook")]
    return sorted(found, key=lambda a: -int(a.get("number") or 0))
