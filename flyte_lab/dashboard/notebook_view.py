"""A task's executed notebook as HTML that runs nothing: what its outputs carry is the task's, not the page's.

A task writes what it likes into its outputs (`display(HTML(...))`, SVG, JavaScript, widget views), and the
run page is a live page: script there could press Cancel/Resume/Relaunch over the page's own websocket, for
every user of a shared dashboard. Two walls, each enough alone:

- nh3 keeps only an allowlist of nbconvert's HTML: no script, event handler, style sheet, form, frame or
  `javascript:` URL; images only as inline `data:image/...`;
- what is left is shown in an `<iframe sandbox srcdoc>` without `allow-scripts` or `allow-same-origin`, whose
  content policy loads nothing from anywhere: even HTML nh3 let through runs no script, cannot reach the
  page and fetches nothing.
"""

from __future__ import annotations

from html import escape
from typing import Any

# the tags and attributes nbconvert's `basic` template and common outputs (pandas tables, markdown) use
_TAGS = {"a", "abbr", "b", "blockquote", "br", "caption", "code", "col", "colgroup", "dd", "del", "details", "div",
         "dl", "dt", "em", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "ins", "kbd", "li", "mark", "ol", "p",
         "pre", "q", "s", "samp", "small", "span", "strong", "sub", "summary", "sup", "table", "tbody", "td", "tfoot",
         "th", "thead", "tr", "u", "ul", "var"}
_ATTRIBUTES = {"*": {"class", "id", "title", "style"}, "a": {"href"}, "img": {"src", "alt", "width", "height"},
               "td": {"colspan", "rowspan", "align"}, "th": {"colspan", "rowspan", "align", "scope"},
               "ol": {"start"}, "details": {"open"}}
_STYLES = {"color", "background-color", "text-align", "vertical-align", "font-weight", "font-style",
           "text-decoration", "white-space"}
# inline images only (an SVG shown by <img> runs none of its script)
_IMAGES = ("data:image/png;", "data:image/jpeg;", "data:image/gif;", "data:image/svg+xml;")
_LINKS = ("http://", "https://", "mailto:", "#")

# the frame's own policy: nothing is loaded (no request to tell anyone the page was opened), no form is sent
_POLICY = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; form-action 'none'; base-uri 'none'"
_CSS = """
body { font: 13px/1.4 system-ui, sans-serif; margin: 4px 8px; color: #222; }
pre { white-space: pre-wrap; word-break: break-word; margin: 0; font-size: 12px; }
div.cell { margin: 6px 0; }
div.input_area { background: #f7f7f7; border: 1px solid #e4e4e4; padding: 4px 6px; }
div.prompt { color: #888; font: 11px monospace; }
div.output_subarea { padding: 2px 6px; overflow-x: auto; }
div.output_stderr { background: #fdecec; }
div.output_error pre { background: #fbeeee; }
img { max-width: 100%; }
table { border-collapse: collapse; }
th, td { border: 1px solid #ddd; padding: 2px 6px; }
"""
HEIGHT = "70vh"  # a sandboxed frame cannot tell the page its height: it scrolls inside


def _attribute(tag: str, name: str, value: str) -> str | None:
    """URLs: a link to the web or within the notebook; an image only as inline data."""
    if name == "src":
        return value if tag == "img" and value.startswith(_IMAGES) else None
    if name == "href":
        return value if value.strip().lower().startswith(_LINKS) else None
    return value


def clean(html: str) -> str:
    """`html` with only the allowlisted tags and attributes (script and style elements go with their content)."""
    import nh3

    return nh3.clean(html, tags=_TAGS, attributes=_ATTRIBUTES, attribute_filter=_attribute,
                     url_schemes={"http", "https", "mailto", "data"}, filter_style_properties=_STYLES,
                     strip_comments=True)


def framed(body: str, title: str) -> str:
    """`body` as the document of a sandboxed frame: no scripts, an origin of its own, nothing loaded."""
    document = (f'<!DOCTYPE html><html><head><meta charset="utf-8">'
                f'<meta http-equiv="Content-Security-Policy" content="{_POLICY}">'
                f"<style>{_CSS}</style></head><body>{body}</body></html>")
    return (f'<iframe class="flyte-notebook-frame" sandbox="" referrerpolicy="no-referrer" title="{escape(title)}" '
            f'style="width:100%;height:{HEIGHT};border:0" srcdoc="{escape(document, quote=True)}"></iframe>')


CONTEXT_TAG = "injected-parameters"  # the run context papermill injects (engine/worker/run_attempt.py)
COLLAPSED = "# run context (flyte_context, prelude): collapsed"


def collapse_context(nb: Any) -> Any:
    """A copy of `nb` whose run context cell (or any cell Jupyter shows with its source hidden) reads as one line:
    a long dict of internal paths is not what a reader came for."""
    import copy

    shown = copy.deepcopy(nb)
    for cell in shown.cells:
        meta = cell.get("metadata", {})
        if CONTEXT_TAG in meta.get("tags", ()) or meta.get("jupyter", {}).get("source_hidden"):
            cell.source = COLLAPSED
    return shown


def render(nb: Any, title: str) -> str:
    """The notebook node `nb` as a sandboxed frame of cleaned nbconvert HTML."""
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter(template_name="basic").from_notebook_node(collapse_context(nb))
    return framed(clean(body), title)
