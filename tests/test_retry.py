"""The one backoff rule: grows, is capped, jitters within bounds."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from reminderd.retry import MAX_BACKOFF, backoff


@given(st.integers(-5, 10_000), st.floats(0.01, 10.0), st.floats(0.0, 0.9), st.integers(0, 2**32))
def test_within_bounds(attempt: int, base: float, jitter: float, seed: int) -> None:
    delay = backoff(attempt, base=base, jitter=jitter, rnd=random.Random(seed))
    ideal = min(MAX_BACKOFF, base * 2.0 ** min(max(attempt, 0), 64))
    assert ideal * (1 - jitter) - 1e-9 <= delay <= ideal * (1 + jitter) + 1e-9


def test_grows_then_stays_at_the_cap() -> None:
    flat = [backoff(a, base=1.0, jitter=0.0) for a in range(12)]
    assert flat[:4] == [1.0, 2.0, 4.0, 8.0]
    assert flat[-1] == MAX_BACKOFF and backoff(5, base=1.0, cap=10.0, jitter=0.0) == 10.0
