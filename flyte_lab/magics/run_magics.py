"""`%flyte_run`, `%flyte_runs`, `%flyte_load`, `%flyte_debug` (filled in below)."""

from __future__ import annotations

from IPython.core.magic import Magics, magics_class


@magics_class
class RunMagics(Magics):
    pass
