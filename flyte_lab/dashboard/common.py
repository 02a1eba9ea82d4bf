"""What both pages share: the page frame, the status formatter, and the message shown instead of a page."""

from __future__ import annotations

from html import escape
from typing import Any

import panel as pn
from bokeh.models.widgets.tables import HTMLTemplateFormatter

from flyte_lab.dashboard.table_rows import STATUS_COLORS

TITLE = "flyte_lab"
CSS = """
.flyte-status { padding: 1px 8px; border-radius: 8px; color: white; font-weight: 600; }
.flyte-notebook { max-width: 100%; border: 1px solid #ddd; }
.flyte-traceback { white-space: pre-wrap; word-break: break-word; }
.flyte-traceback { background: #fbeeee; padding: 6px; }
table.flyte-io, table.flyte-schedules { border-collapse: collapse; }
table.flyte-io td, table.flyte-io th, table.flyte-schedules td, table.flyte-schedules th {
  border: 1px solid #ddd; padding: 2px 8px; text-align: left; }
""" + "\n".join(f".flyte-status-{s} {{ background: {c}; }}" for s, c in STATUS_COLORS.items())


def load_extensions() -> None:
    """The JS this session needs (Tabulator), also for a page whose first content is a message."""
    pn.extension("tabulator")


def status_badge(status: str | None) -> str:
    word = escape(status or "-")
    return f'<span class="flyte-status flyte-status-{word}" data-status="{word}">{word}</span>'


def status_formatter() -> HTMLTemplateFormatter:
    return HTMLTemplateFormatter(
        template='<span class="flyte-status flyte-status-<%= value %>" data-status="<%= value %>"><%= value %></span>')


def link_formatter(prefix: str) -> HTMLTemplateFormatter:
    return HTMLTemplateFormatter(template=f'<a href="{prefix}<%= value %>"><%= value %></a>')


def html(text: str = "", **kwargs: Any) -> pn.pane.HTML:
    """An HTML pane that knows the dashboard's styles (each pane is its own shadow root)."""
    kwargs.setdefault("sizing_mode", "stretch_width")
    return pn.pane.HTML(text, stylesheets=[CSS], **kwargs)


def frame(*objects: Any, name: str) -> pn.viewable.Viewable:
    """A page: a small header with the way back to the runs list, then `objects`."""
    header = html(f'<b>{TITLE}</b> · <a href="./">all runs</a>')
    return pn.Column(header, *objects, name=name, sizing_mode="stretch_width")


def message_page(title: str, text: str, kind: str) -> pn.viewable.Viewable:
    """A clear page in place of one that cannot be shown (`kind`: empty, newer, error, not-found, bad-id)."""
    body = html(f'<div class="flyte-message flyte-message-{escape(kind)}"><h2>{escape(title)}</h2>'
                f"<p>{escape(text)}</p></div>")
    return frame(body, name=title)
