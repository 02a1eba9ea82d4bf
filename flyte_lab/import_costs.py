"""Import-time work that flyte_lab's own processes decline.

jsonschema, imported with nbformat (so by every notebook read and every papermill run), compiles a Lark
grammar for the RFC 3987 `iri` formats at import when the optional `rfc3987_syntax` package is installed
(jupyter-events pulls it in): about 2 CPU-s per process here, more than a forked kernel costs ten times over.
nbformat's schemas and ours never check those formats, so the `flyte-lab` CLI process (driver and local
workers) tells Python the package is absent before anything imports jsonschema. Only there: the engine also
runs inside users' kernels (`%flyte_run`), Jupyter servers and `dask worker` processes, where other code may
check those formats (a remote worker pays the cost once per process).
"""

from __future__ import annotations

import sys


def skip_unused_grammars() -> None:
    if "jsonschema" not in sys.modules:  # too late once jsonschema is in: leave the process as it is
        sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]
