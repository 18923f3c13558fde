"""The problem banner: why the data is missing or stale, and when the next attempt comes."""

from __future__ import annotations

import math

from rich.text import Text
from textual.widgets import Static

from ..client import ApplianceError
from ..safetext import plain
from ..state import DashboardState


def countdown(retry_in: float | None) -> str:
    return "" if retry_in is None else f" — retrying in {max(0, math.ceil(retry_in))} s (r: now)"


def switch_lines(switches) -> list[tuple[str, str]]:
    """A fault injected on purpose and a drain: said first, so nobody takes them for an outage."""
    if not isinstance(switches, dict):
        return []
    lines = []
    fault = switches.get("active")
    if isinstance(fault, dict):
        until = fault.get("until") or "FAULT_* is unset"
        lines.append(("warning", f"⚠ Fault injected ({fault.get('source')}): error rate "
                                 f"{fault.get('error_rate')}, delay {fault.get('delay_ms')} ms on "
                                 f"{', '.join(map(str, fault.get('routes') or []))} until {until}"))
    if switches.get("draining") is True:
        lines.append(("warning", "⚠ Drained: /readyz answers 503 until POST /readyz/enable"))
    return lines


def banner_lines(state: DashboardState, retry_in: float | None) -> list[tuple[str, str]]:
    """(style class, text) per problem, the worst first; empty when all is well."""
    failure = state.failure
    if failure is not None:
        what = ("Appliance unreachable at" if failure.kind == ApplianceError.UNREACHABLE
                else "No status from")
        return [("error", f"✖ {what} {state.url}: {failure.reason}{countdown(retry_in)}")]
    lines = switch_lines(state.status.get("switches"))
    lines += [("warning", f"▲ {reason}") for _, reason in sorted(state.problems.items())]
    agent = state.agent
    if state.status.get("stale") and agent.get("detail"):
        lines.append(("warning", f"▲ status agent {str(agent.get('state', '')).lower()}: {agent['detail']}"))
    return lines


def stats_banner_lines(url: str, problem: ApplianceError | None,
                       retry_in: float | None) -> list[tuple[str, str]]:
    """The stats screen's one problem: why its last /events/stats got no answer."""
    if problem is None:
        return []
    if problem.kind == ApplianceError.UNREACHABLE:
        return [("error", f"✖ Appliance unreachable at {url}: {problem.reason}{countdown(retry_in)}")]
    return [("warning", f"▲ {problem.reason}{countdown(retry_in)}")]


class Banner(Static):
    """Hidden while there is nothing to say."""

    def show(self, lines: list[tuple[str, str]]) -> None:
        self.display = bool(lines)
        self.set_class(any(kind == "error" for kind, _ in lines), "-error")
        body = Text("\n", overflow="ellipsis").join(plain(text) for _, text in lines)
        self.update(body)
