"""The run's tasks as a table (status, attempts, duration, cache, resources, cell), following the page's
`RunState`; a click on a row selects that task in it."""

from __future__ import annotations

from typing import Any

import pandas as pd
import panel as pn
import param

from flyte_lab.dashboard.common import CSS, status_formatter
from flyte_lab.dashboard.run_state import RunPart, RunState
from flyte_lab.dashboard.table_rows import TASK_COLUMNS, task_rows

TASK_ROW_PX = 26
TASK_PAGE = 25  # rows of the task table sent and drawn at a time (50 cost Chromium ~0.5 s more on 1,000 tasks)


class TaskTable(RunPart):
    def __init__(self, state: RunState) -> None:
        super().__init__(state)
        self.table = pn.widgets.Tabulator(
            self._rows(), show_index=False, disabled=True, selectable=1,
            formatters={"status": status_formatter()}, sizing_mode="stretch_width", layout="fit_data_stretch",
            pagination="remote", page_size=TASK_PAGE, stylesheets=[CSS],
            # a known height spares Tabulator measuring itself again on every redraw of a full page
            height=TASK_ROW_PX * TASK_PAGE + 100 if len(state.task_names) > TASK_PAGE else None)
        self.table.on_click(self._clicked)

    def __panel__(self) -> pn.viewable.Viewable:
        return self.table

    def _rows(self) -> pd.DataFrame:
        return pd.DataFrame(task_rows(self.state.run), columns=TASK_COLUMNS)

    @param.depends("state.run", watch=True)
    def _refill(self) -> None:
        self.table.value = self._rows()

    def _clicked(self, event: Any) -> None:
        row = event.row
        if row is not None and 0 <= row < len(self.table.value):
            self.state.select(self.table.value.iloc[row]["task"])
