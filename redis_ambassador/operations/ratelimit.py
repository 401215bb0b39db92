"""Log lines that a flood cannot multiply: at most N a second, then one line saying how many
were left out (sans-IO: the caller passes the time)."""

from __future__ import annotations

import logging


class LimitedLog:
    """Writes at most ``per_second`` lines a second to ``logger`` at ``level``."""

    def __init__(self, logger: logging.Logger, level: int, per_second: int, what: str) -> None:
        self._logger = logger
        self._level = level
        self._per_second = per_second
        self._what = what  # for the summary line: "slow requests"
        self._window = -1.0  # the current second's start
        self._logged = 0
        self.suppressed = 0  # left out in the current second

    def log(self, now: float, message: str, *args: object) -> bool:
        """Log the line unless this second's quota is used up; True if it was written."""
        if now - self._window >= 1.0:
            if self.suppressed:
                self._logger.log(self._level, "%s: %d more not logged", self._what, self.suppressed)
            self._window, self._logged, self.suppressed = now, 0, 0
        if self._logged >= self._per_second:
            self.suppressed += 1
            return False
        self._logged += 1
        self._logger.log(self._level, message, *args)
        return True
