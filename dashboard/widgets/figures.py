"""The live figures: label, current value and a sparkline over the last minutes, one line each.

The sparkline has one column per slice of time (not per sample), starts at zero, and leaves a
blank where there was no data, so a reconnection gap shows as a gap and a lag of 100 -> 101 does
not look like a spike (Textual's Sparkline scales min..max and ignores time).
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.widget import Widget

from ..figures import FIGURES, INTERVAL_FIGURES
from ..format import figure_value
from ..state import DashboardState

BARS = "▁▂▃▄▅▆▇█"
LABEL_WIDTH, VALUE_WIDTH = 10, 8
SCALE_FLOOR = 1.0  # the least a full bar stands for, in the figure's unit (1/s, 1 %, 1 ms, 1 event)


def sparkline(points: list[tuple[float, float]], start: float, end: float, width: int, *,
              mean: bool = False) -> str:
    """One character per (end-start)/width seconds, ' ' for a slice without data; otherwise the
    slice's largest value, or with ``mean`` (figures whose points each sum up an interval) the
    mean of its points. The scale runs from zero to the largest slice, and to at least SCALE_FLOOR:
    0.2 req/s draws a low line, not a full one."""
    if width <= 0 or end <= start:
        return ""
    step = (end - start) / width
    slices: list[list[float]] = [[] for _ in range(width)]
    for at, value in points:
        index = int((at - start) / step)
        if 0 <= index <= width:
            slices[min(index, width - 1)].append(value)
    combined = [None if not values else sum(values) / len(values) if mean else max(values)
                for values in slices]
    top = max((v for v in combined if v is not None), default=0.0)
    top = max(top, SCALE_FLOOR)
    out = []
    for value in combined:
        if value is None:
            out.append(" ")
        elif value <= 0:
            out.append(BARS[0])
        else:
            out.append(BARS[max(1, min(len(BARS) - 1, round(value / top * (len(BARS) - 1))))])
    return "".join(out)


@dataclass
class FigureRow:
    label: str
    value: str
    points: list[tuple[float, float]]
    available: bool
    mean: bool = False  # the sparkline shows each slice's mean (see INTERVAL_FIGURES)


class FiguresPanel(Widget):
    """Redrawn from the last ``show`` on every resize, so the sparklines always fit."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.rows: list[FigureRow] = []
        self.span: tuple[float, float] = (0.0, 1.0)

    def show(self, state: DashboardState, now: float) -> None:
        self.span = (now - state.history_minutes * 60.0, now)
        self.rows = [self._row(state, now, name, label, unit) for name, label, unit in FIGURES]
        self.border_title = f"Last {state.history_minutes} min"
        self.border_subtitle = {"ok": "from /metrics", "missing": "no /metrics: from /status",
                                "failing": "/metrics failing: from /status"}.get(state.metrics_state, "")
        self.refresh()

    @staticmethod
    def _row(state: DashboardState, now: float, name: str, label: str, unit: str) -> FigureRow:
        points, latest, source = state.figure(name, now)
        if not source:
            return FigureRow(label, "n/a", [], False)
        return FigureRow(label, figure_value(latest, unit), points, True, name in INTERVAL_FIGURES)

    def render(self) -> Text:
        width = self.content_size.width
        spark_width = max(0, width - LABEL_WIDTH - VALUE_WIDTH - 1)
        text = Text(no_wrap=True, overflow="crop")
        for index, row in enumerate(self.rows):
            if index:
                text.append("\n")
            text.append(f"{row.label:<{LABEL_WIDTH}}", style="bold")
            text.append(f"{row.value:>{VALUE_WIDTH}}", style="" if row.available else "dim")
            if spark_width:
                text.append(" ")
                text.append(sparkline(row.points, *self.span, spark_width, mean=row.mean), style="cyan")
        return text
