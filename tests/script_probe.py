"""Did any script a task put in its outputs run? For the pages that show `notebooks/html_output_xss.ipynb`.

Each vector in that notebook pushes its name onto `window.__pwned` of the document it runs in. Image error
handlers fire only once the image has failed, so the page is read after all its images (shadow roots
included) have loaded or failed, and one task later; then every frame. (A frame that may not run scripts
runs no timers or listeners either, a probe's included: frames are read as they are.)
"""

from __future__ import annotations

from typing import Any

SETTLED_MARKS = """async () => {
    const images = [];
    const walk = (root) => root.querySelectorAll('*').forEach(el => {
        if (el.tagName === 'IMG') images.push(el);
        if (el.shadowRoot) walk(el.shadowRoot);
    });
    walk(document);
    await Promise.all(images.map(img => img.complete ? null : new Promise(done => {
        img.addEventListener('load', done);
        img.addEventListener('error', done);
    })));
    await new Promise(done => setTimeout(done, 0));
    return window.__pwned ?? null;
}"""


def marks_by_frame(page: Any) -> dict[str, Any]:
    """`window.__pwned` of every frame of `page` (index:url -> vector names, or None: nothing ran there)."""
    found = {f"0:{page.main_frame.url}": page.main_frame.evaluate(SETTLED_MARKS)}
    for frame in page.frames:
        if frame is not page.main_frame:
            frame.wait_for_load_state()
            found[f"{len(found)}:{frame.url}"] = frame.evaluate("() => window.__pwned ?? null")
    return found
