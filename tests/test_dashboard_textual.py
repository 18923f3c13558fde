"""What the dashboard relies on in Textual, checked against the Textual installed.

The dashboard uses public API only (tests/test_dashboard_code.py checks that), but one repaint
rests on how DataTable behaves: EventsTable (dashboard/widgets/events.py) watches the table's
``virtual_size`` to learn that the columns were widened, and rewrites a cell to repaint. A
Textual release that changes either fails here, naming what to look at.
"""

from __future__ import annotations

import asyncio
import inspect

import textual
from textual.app import App
from textual.widgets import DataTable

from dashboard.widgets.events import EventsTable

WHAT_BREAKS = (f"with Textual {textual.__version__}: EventsTable (dashboard/widgets/events.py) "
               "no longer repaints the rows after DataTable widened its columns")


class Watched(DataTable):
    """A DataTable noting the column widths each time its virtual_size changes."""

    def on_mount(self) -> None:
        self.seen: list[tuple[int, ...]] = []
        self.watch(self, "virtual_size", lambda: self.seen.append(widths(self)), init=False)


def widths(table: DataTable) -> tuple[int, ...]:
    return tuple(column.get_render_width(table) for column in table.ordered_columns)


class OneTable(App[None]):
    def compose(self):
        table = Watched()
        table.add_column("path", key="path")
        yield table


def test_a_datatable_widening_its_columns_for_a_new_row_changes_its_virtual_size():
    async def scenario():
        app = OneTable()
        async with app.run_test(size=(40, 6)) as pilot:
            table = app.query_one(Watched)
            table.add_row("/a", key="short")
            await pilot.pause()
            before = widths(table)
            table.add_row("/a/much/longer/path", key="long")
            await pilot.pause()
            assert widths(table) > before, \
                f"DataTable did not widen its column for a longer row ({WHAT_BREAKS})"
            assert table.seen and table.seen[-1] == widths(table), (
                f"DataTable widened its columns without a change of virtual_size ({WHAT_BREAKS}: "
                "find another public signal of the widening)")
    asyncio.run(asyncio.wait_for(scenario(), 30))


def test_the_datatable_methods_events_table_calls_keep_their_signatures():
    expected = {"update_cell": ["row_key", "column_key", "value"], "get_cell": ["row_key", "column_key"],
                "watch": ["obj", "attribute_name", "callback"]}
    for name, parameters in expected.items():
        method = getattr(EventsTable, name, None)
        assert method is not None, f"DataTable.{name} is gone ({WHAT_BREAKS})"
        found = list(inspect.signature(method).parameters)[1:len(parameters) + 1]
        assert found == parameters, f"DataTable.{name}{inspect.signature(method)} changed ({WHAT_BREAKS})"
    assert all(hasattr(EventsTable, name) for name in ("ordered_rows", "ordered_columns", "row_count")), \
        f"DataTable lost ordered_rows, ordered_columns or row_count ({WHAT_BREAKS})"
