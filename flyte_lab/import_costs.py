"""Optional imports that flyte_lab's own processes decline, each only where one given module asks for it.

- jsonschema's `_format` imports a checker package per string format (fqdn, idna, webcolors, isoduration with
  arrow, RFC 3986/3987/3339 validators...) with nbformat (so by every notebook read and every papermill run).
  Only a validator given a `format_checker` uses them: nbformat's schemas and ours never are. The RFC 3987 one
  (`rfc3987_syntax`, which jupyter-events pulls in) compiles a Lark grammar at import, about 2 CPU-s.
- papermill's `iorw` imports a handler per remote store at import: S3 (boto3, ~60 ms), Azure, GCS, HDFS
  (pyarrow.fs, which loads pyarrow and numpy) and GitHub. flyte_lab's papermill reads and writes a local file
  only (executed notebooks reach their URL through fsspec, `engine/worker/files.py`), so those handlers are
  never called.

Declined for that importer only (the same package imported by anyone else loads as usual, later too), and only in
flyte_lab's own driver processes (with their local workers): the `flyte-lab` CLI, the shared executor (its workers
run papermill; task code runs in kernels) and the runs launched from Jupyter (the server's launch template, whose
forks drive them, and a launcher started as a new interpreter). The engine also runs inside users' kernels
(`%flyte_run`), Jupyter servers and `dask worker` processes, where other code may use these. Kernels are started as
new interpreters, so they never inherit the finder.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from importlib.machinery import ModuleSpec

_DECLINED: dict[str, frozenset[str]] = {
    "jsonschema._format": frozenset({
        "fqdn", "idna", "rfc3987", "rfc3986_validator", "rfc3987_syntax", "rfc3339_validator", "webcolors",
        "jsonpointer", "uri_template", "isoduration",
    }),
    "papermill.iorw": frozenset({
        "papermill.s3", "papermill.adl", "papermill.abs", "gcsfs", "gcsfs.retry", "gcsfs.utils", "pyarrow",
        "pyarrow.fs", "github",
    }),
}
_NAMES = frozenset().union(*_DECLINED.values())


class _Decline:
    """First on `sys.meta_path`: asked only for modules not loaded yet, so a loaded one is never refused.
    (Not an `importlib.abc.MetaPathFinder`: importing that module loads `importlib.resources`, ~10 ms.)"""

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> ModuleSpec | None:
        if fullname in _NAMES and fullname in _DECLINED.get(_importer(), ()):
            raise ModuleNotFoundError(f"flyte-lab declines {fullname} here", name=fullname)
        return None  # the next finder loads it


def _importer() -> str:
    """The module whose code runs the import statement being served (per thread: it is this thread's stack)."""
    frame = sys._getframe(2)  # above find_spec and _importer: importlib's own frames, then the importer
    while frame is not None and frame.f_code.co_filename.startswith("<frozen importlib"):
        frame = frame.f_back  # type: ignore[assignment]
    return str(frame.f_globals.get("__name__", "")) if frame is not None else ""


def decline_unused_imports() -> None:
    if not any(isinstance(finder, _Decline) for finder in sys.meta_path):
        sys.meta_path.insert(0, _Decline())
