"""The emulated clock: real monotonic time scaled, plus manual jumps from `advance()`."""
from __future__ import annotations

import time


class Clock:
    def __init__(self, time_scale: float = 1.0, start: float | None = None) -> None:
        # Emulated time is a unix timestamp so created_at & co. look real.
        self._wall0 = time.time() if start is None else start
        self._mono0 = time.monotonic()
        self._scale = time_scale
        self._offset = 0.0

    def now(self) -> float:
        return self._wall0 + (time.monotonic() - self._mono0) * self._scale + self._offset

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("the emulated clock only moves forward")
        self._offset += seconds

    def set_scale(self, time_scale: float) -> None:
        # Rebase so changing the speed never makes the clock jump.
        self._wall0 = self.now()
        self._mono0 = time.monotonic()
        self._offset = 0.0
        self._scale = time_scale
