"""Open the run store for reading, once per server process (`store.shared`), and say plainly why it cannot be."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flyte_lab.errors import FlyteLabError, NoStore, StoreTooNew
from flyte_lab.store.shared import shared_store


@dataclass(frozen=True)
class StoreProblem:
    """Why there is nothing to show: `kind` is "empty" (no store yet), "newer" (schema) or "error"."""

    kind: str
    message: str


def open_store() -> Any:
    """The shared read-only `RunStore` of this environment, or a `StoreProblem` (never raises)."""
    try:
        return shared_store()
    except NoStore as exc:
        return StoreProblem("empty", f"No runs yet ({exc.message}). Start one with `flyte-lab run NOTEBOOK` "
                                     "and it appears here.")
    except StoreTooNew as exc:
        return StoreProblem("newer", f"{exc.message[0].upper()}{exc.message[1:]}.")
    except FlyteLabError as exc:
        return StoreProblem("error", exc.message)

