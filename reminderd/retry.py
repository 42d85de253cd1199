"""One backoff rule for every retry: calendar requests, SMS sends, the daemon's sync worker.

Exponential, capped, with jitter so that several clients (or several daemons
on one database) that failed together do not all come back in the same
instant. Pure: it returns a delay; the caller decides how to wait.
"""

from __future__ import annotations

import random

MAX_BACKOFF = 300.0  # seconds: never wait longer than this between tries


def backoff(
    attempt: int,
    *,
    base: float,
    cap: float = MAX_BACKOFF,
    jitter: float = 0.2,
    rnd: random.Random | None = None,
) -> float:
    """Seconds to wait before try `attempt + 1` (attempt 0: the first retry waits about `base`).

    `base * 2**attempt`, at most `cap`, times a factor drawn from [1 - jitter, 1 + jitter].
    """
    exponent = min(max(attempt, 0), 64)  # 2**64 s is already past any cap
    delay = min(cap, base * 2.0**exponent)
    factor = (rnd or random).uniform(1.0 - jitter, 1.0 + jitter)
    return delay * factor
