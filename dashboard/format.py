"""Short human texts: durations, clock times, figures, and the state words with their symbols."""

from __future__ import annotations

import math
from datetime import datetime, timezone

# state -> (symbol, style): readable without colour, coloured where there is colour
STATES = {
    "UP": ("✔", "bold green"),
    "DEGRADED": ("▲", "bold yellow"),
    "DOWN": ("✖", "bold red"),
    "DISABLED": ("–", "dim"),
}
UNKNOWN_STATE = ("?", "bold magenta")


def state_badge(state: object) -> tuple[str, str]:
    """("✔ UP", "bold green") for a state word; anything else is shown as it came."""
    symbol, style = STATES.get(str(state), UNKNOWN_STATE)
    return f"{symbol} {state}", style


def duration(seconds: float | None) -> str:
    """45s, 3m12s, 2h05m, 3d04h; "" when unknown."""
    if seconds is None or math.isnan(seconds):
        return ""
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


def clock_time(epoch: float | None) -> str:
    """10:30:45Z (UTC, like every stamp the appliance gives)."""
    if epoch is None:
        return "never"
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%H:%M:%SZ")


def event_time(stamp: object) -> str:
    """The time of day of an occurred_at stamp: 10:30:45 (UTC, as stored)."""
    text = str(stamp or "")
    if "T" not in text:
        return text
    return text.split("T", 1)[1][:8]


def figure_value(value: float | None, unit: str) -> str:
    if value is None:
        return "–"
    if unit == "%":
        return f"{value:.1f}%"
    if unit == "ms":
        return f"{value:.0f}ms" if value >= 10 else f"{value:.1f}ms"
    if abs(value) >= 10_000:
        return f"{value / 1000:.0f}k{unit}"
    if unit == "/s" and value < 100:
        return f"{value:.1f}{unit}"
    return f"{value:.0f}{unit}"
