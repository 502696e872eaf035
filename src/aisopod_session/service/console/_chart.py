"""The overview's usage chart: bars per day, stacked by agent, laid out here and drawn as inline
SVG by the template (no script, no charting library)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta

from aisopod_session.store import DailyUsage

PALETTE = ("#2f6fde", "#e0712c", "#2a9d5b", "#b8439b", "#8a6d1d", "#12878f", "#c0392b",
           "#5b4fc4")
OTHERS_COLOUR = "#8c8c8c"
MAX_AGENTS = len(PALETTE)
"""Agents drawn in their own colour; the rest share one bar segment named "others"."""

WIDTH, HEIGHT = 720, 170
LEFT, RIGHT, TOP, BOTTOM = 56, 8, 10, 24


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    colour: str
    label: str


@dataclass(slots=True)
class Chart:
    title: str
    peak: int
    bars: list[Bar] = field(default_factory=list)
    day_labels: list[tuple[float, str]] = field(default_factory=list)
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    top: int = TOP
    baseline: float = HEIGHT - BOTTOM


@dataclass(slots=True)
class UsageCharts:
    days: list[date]
    legend: list[tuple[str, str]]
    messages: Chart
    tokens: Chart
    empty: bool


def usage_charts(usage: Sequence[DailyUsage], days: int, today: date) -> UsageCharts:
    """Two charts (messages, tokens) over the ``days`` days ending ``today``."""
    span = [today - timedelta(days=offset) for offset in range(days - 1, -1, -1)]
    totals: dict[str, int] = {}
    for row in usage:
        totals[row.agent_id] = totals.get(row.agent_id, 0) + row.messages
    ranked = sorted(totals, key=lambda agent: (-totals[agent], agent))
    named = ranked[:MAX_AGENTS] if len(ranked) <= MAX_AGENTS else ranked[: MAX_AGENTS - 1]
    colours = {agent: PALETTE[index] for index, agent in enumerate(named)}
    legend = [(agent, colours[agent]) for agent in named]
    if len(named) < len(ranked):
        legend.append((f"{len(ranked) - len(named)} others", OTHERS_COLOUR))

    def layout(title: str, value: Callable[[DailyUsage], int]) -> Chart:
        per_day: dict[date, dict[str, int]] = {day: {} for day in span}
        for row in usage:
            if row.day in per_day:
                group = row.agent_id if row.agent_id in colours else ""
                per_day[row.day][group] = per_day[row.day].get(group, 0) + value(row)
        peak = max((sum(groups.values()) for groups in per_day.values()), default=0)
        chart = Chart(title=title, peak=peak)
        slot = (WIDTH - LEFT - RIGHT) / len(span)
        scale = (chart.baseline - TOP) / peak if peak else 0.0
        for index, day in enumerate(span):
            x = LEFT + index * slot + slot * 0.15
            y = chart.baseline
            for group in [*named, ""]:
                amount = per_day[day].get(group, 0)
                if not amount:
                    continue
                height = amount * scale
                y -= height
                chart.bars.append(Bar(x, y, slot * 0.7, height,
                                      colours.get(group, OTHERS_COLOUR),
                                      f"{day.isoformat()} {group or 'others'}: {amount:,}"))
            if index % max(1, len(span) // 7) == 0 or index == len(span) - 1:
                chart.day_labels.append((x + slot * 0.35, day.strftime("%b %d")))
        return chart

    return UsageCharts(days=span, legend=legend,
                       messages=layout("Messages per day", lambda row: row.messages),
                       tokens=layout("Tokens per day", lambda row: row.tokens),
                       empty=not usage)
