"""The sandbox GitHub's one clock: real UTC time plus an offset that tests move forward.

GitHub stamps everything to the second, so "edited after it was labelled" needs the clock to
pass a second boundary; `advance` does that without a test having to sleep.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

ISO_FORMAT = "%Y-%m-%dT%H:%M:%SZ"  # GitHub's one format, which PyGithub's parser expects


class Clock:
    """Real UTC time shifted by an offset that only ever grows."""

    def __init__(self, offset: float = 0.0) -> None:
        self._offset = offset
        self._lock = threading.Lock()

    def now(self) -> datetime:
        """The sandbox's current time, aware and in UTC."""
        with self._lock:
            offset = self._offset
        return datetime.now(timezone.utc) + timedelta(seconds=offset)

    def iso(self) -> str:
        """The current time as GitHub writes it: `2011-04-14T16:00:49Z`."""
        return self.now().strftime(ISO_FORMAT)

    def advance(self, seconds: float) -> None:
        """Moves time forward; backwards would let a later change carry an earlier stamp."""
        if seconds < 0:
            raise ValueError(f"the clock only moves forward, not by {seconds} s")
        with self._lock:
            self._offset += seconds
