"""The one place reminderd reads the wall clock.

Everything that needs "now" takes a `Clock` (a function returning an aware
UTC datetime), so tests pass a fixed or moving clock instead of patching
`datetime`, and nothing depends on the day a test runs.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    """Now, aware, in UTC."""
    return datetime.now(UTC)


def fixed_clock(at: datetime) -> Clock:
    """A clock stopped at `at` (aware): for tests and examples with known dates."""
    if at.tzinfo is None:
        raise ValueError("fixed_clock needs an aware datetime")
    frozen = at.astimezone(UTC)
    return lambda: frozen
