"""What each part of `RunStore` (cache, leases, schedules, scale events) uses of the whole.

The parts are mixins kept in modules of their own; `RunStore` provides their transactions and resolves run
ids. Declared once here, so each part type-checks alone and none repeats the declarations.
"""

from __future__ import annotations

from contextlib import AbstractContextManager

from sqlalchemy import Connection


class StorePart:
    def _read(self) -> AbstractContextManager[Connection]:
        """A read transaction (`RunStore._read`)."""
        raise NotImplementedError

    def _write(self) -> AbstractContextManager[Connection]:
        """A write transaction, holding the store's write lock (`RunStore._write`)."""
        raise NotImplementedError

    def _resolve(self, conn: Connection, run_id: str) -> str:
        """The full id of a run named by its id or a unique prefix (`RunStore._resolve`)."""
        raise NotImplementedError

    def _not_found(self, run_id: str) -> Exception:
        """The error for a run that does not exist (`RunStore._not_found`)."""
        raise NotImplementedError
