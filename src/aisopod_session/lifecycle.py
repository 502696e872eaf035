"""Lifecycle, reset and retention policies (pure: no database here).

- :class:`LifecyclePolicy`: active → idle after ``idle_after`` of silence, idle → archived after
  ``archive_after``. Applied by ``store.sweep()``.
- :class:`ResetPolicy`: when a conversation is stale and the next message should start a fresh
  session (``daily`` at an hour in a time zone, or after ``idle`` minutes of silence), per agent
  and per channel through :class:`ResetPolicies`. Applied by ``agent.resolve(key)``.
- :class:`RetentionPolicy`: how long compacted-away messages and archived sessions are kept.
  Applied by ``store.purge()``.

"Silence" and "activity" are measured on ``updated_at``: the last append, patch or reset.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Annotated, Literal, Self, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BeforeValidator, Field, StrictInt, StrictStr, field_validator, model_validator

from aisopod_session.base import Model
from aisopod_session.models import UtcDatetime, normalize_name

__all__ = [
    "LifecyclePolicy",
    "Policies",
    "PurgeResult",
    "ResetPolicies",
    "ResetPolicy",
    "RetentionPolicy",
    "SweepResult",
    "daily_boundary",
]



def _duration_input(value: object) -> object:
    # pydantic would read a bare number as seconds; ``idle_after=30`` meaning 30 days (or
    # minutes) is a far more likely mistake than 30 seconds, so only a timedelta or an ISO 8601
    # duration string (``"P30D"``, from a config file) is accepted.
    if isinstance(value, timedelta | str):
        return value
    raise ValueError(
        f"expected a timedelta or an ISO 8601 duration such as 'P30D', got {type(value).__name__}"
    )


Duration = Annotated[
    timedelta,
    BeforeValidator(_duration_input),
    Field(gt=timedelta(0), le=timedelta(days=36_500)),
]


class LifecyclePolicy(Model):
    """When silent sessions go idle, and when idle ones are archived (None: never)."""

    idle_after: Duration | None = timedelta(days=1)
    archive_after: Duration | None = None

    @model_validator(mode="after")
    def _archive_later(self) -> Self:
        if (self.idle_after and self.archive_after and self.archive_after <= self.idle_after):
            raise ValueError("archive_after must be longer than idle_after")
        return self


class SweepResult(Model):
    """What a sweep changed (or, with ``dry_run``, would change)."""

    idled: int = 0
    archived: int = 0
    dry_run: bool = False
    at: UtcDatetime


class ResetPolicy(Model):
    """When a conversation is stale: ``daily`` at ``at_hour`` local time, or after
    ``idle_minutes`` of silence. ``daily`` resets at most once per local day, also across
    daylight-saving changes (a skipped hour resets at the first instant after it)."""

    mode: Literal["daily", "idle"]
    at_hour: Annotated[StrictInt, Field(ge=0, le=23)] = 4
    timezone: StrictStr = "UTC"
    idle_minutes: Annotated[StrictInt, Field(ge=1, le=525_600)] | None = None

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not an IANA time zone (e.g. Europe/Berlin)") from None
        return value

    @model_validator(mode="after")
    def _mode_fields(self) -> Self:
        if self.mode == "idle" and self.idle_minutes is None:
            raise ValueError("an idle reset policy needs idle_minutes")
        if self.mode == "daily" and self.idle_minutes is not None:
            raise ValueError("idle_minutes only applies to mode 'idle'")
        return self

    def is_stale(self, last_activity: datetime, now: datetime) -> bool:
        """Whether a session last active at ``last_activity`` must start afresh at ``now``."""
        if self.mode == "idle":
            assert self.idle_minutes is not None
            return now - last_activity >= timedelta(minutes=self.idle_minutes)
        return last_activity < daily_boundary(now, self.at_hour, ZoneInfo(self.timezone))


def daily_boundary(now: datetime, hour: int, zone: ZoneInfo) -> datetime:
    """The latest instant ≤ ``now`` at which the local clock in ``zone`` read ``hour``:00.

    Built from the local *date* (never by subtracting 24 hours), so each local day has exactly
    one boundary. An hour that does not exist that day (spring forward) maps to the first instant
    after the gap; an hour that occurs twice (fall back) counts once, at its first occurrence.
    """
    local_day = now.astimezone(zone).date()
    boundary = _local(local_day, hour, zone)
    if boundary > now:
        boundary = _local(local_day - timedelta(days=1), hour, zone)
    return boundary


def _local(day: date, hour: int, zone: ZoneInfo) -> datetime:
    # fold=0 takes the first occurrence of a repeated hour. For an hour that does not exist
    # (the clock jumps from 02:00 to 03:00) it applies the offset from before the jump, which
    # lands exactly on the first instant after the gap.
    return datetime.combine(day, time(hour), tzinfo=zone).astimezone(ZoneInfo("UTC"))


class ResetPolicies(Model):
    """Reset policies by agent and channel; the most specific one applies.

    Lookup order: ``agents[agent][channel]``, ``agents[agent]["*"]``, ``channels[channel]``,
    ``default``; the first entry that is *present* applies. None anywhere means "never reset
    automatically", so ``channels={"slack": None}`` exempts Slack from a default policy.
    """

    default: ResetPolicy | None = None
    channels: dict[str, ResetPolicy | None] = Field(default_factory=dict)
    agents: dict[str, dict[str, ResetPolicy | None]] = Field(default_factory=dict)

    @field_validator("channels")
    @classmethod
    def _normalise_channels(
        cls, value: dict[str, ResetPolicy | None]
    ) -> dict[str, ResetPolicy | None]:
        return _unique_names(value, "channel")

    @field_validator("agents")
    @classmethod
    def _normalise_agents(
        cls, value: dict[str, dict[str, ResetPolicy | None]]
    ) -> dict[str, dict[str, ResetPolicy | None]]:
        by_agent = _unique_names(value, "agent")
        return {agent: _unique_names(by, "channel", wildcard=True)
                for agent, by in by_agent.items()}

    def for_key(self, agent_id: str, channel: str) -> ResetPolicy | None:
        by_channel = self.agents.get(agent_id, {})
        if channel in by_channel:
            return by_channel[channel]
        if "*" in by_channel:
            return by_channel["*"]
        if channel in self.channels:
            return self.channels[channel]
        return self.default


V = TypeVar("V")


def _unique_names(value: dict[str, V], what: str, *, wildcard: bool = False) -> dict[str, V]:
    """Keys normalised like the key parts they match; two spellings of one name are refused
    (``{"Discord": a, "discord": b}`` would otherwise keep one of them silently)."""
    out: dict[str, V] = {}
    for name, item in value.items():
        normal = name if wildcard and name == "*" else normalize_name(name)
        if normal in out:
            raise ValueError(f"{what} {name!r} is given twice (names are case-insensitive)")
        out[normal] = item
    return out


class RetentionPolicy(Model):
    """How long to keep what is no longer live (None: forever). Something is purged once its
    period has fully passed: at exactly ``compacted_at + compacted_messages``, not before."""

    compacted_messages: Duration | None = None
    """Messages compacted out of the live history, counted from when they were compacted."""
    archived_sessions: Duration | None = None
    """Archived sessions (with all their messages), counted from when they were archived."""
    changes: Duration | None = timedelta(days=7)
    """Change-feed entries, counted from their commit: a consumer whose cursor is older gets
    CursorExpiredError."""


class PurgeResult(Model):
    messages: int = 0
    sessions: int = 0
    changes: int = 0
    dry_run: bool = False
    at: UtcDatetime


class Policies(Model):
    """All the policies a store applies: given to ``SessionStore.open(..., policies=...)``."""

    lifecycle: LifecyclePolicy = Field(default_factory=LifecyclePolicy)
    reset: ResetPolicies = Field(default_factory=ResetPolicies)
    retention: RetentionPolicy = Field(default_factory=RetentionPolicy)
