"""Timings as log records: each is logged at DEBUG through its module's logger with the
seconds in the record's `elapsed` attribute, which `stoicc --time-passes` selects (and
an embedding program can filter on, with is_timing)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

ELAPSED = "elapsed"


def log_elapsed(log: logging.Logger, what: str, seconds: float) -> None:
    log.debug("%s: %.1f ms", what, seconds * 1e3, extra={ELAPSED: seconds})


@contextmanager
def timed(log: logging.Logger, what: str) -> Iterator[None]:
    """Log how long the `with` body took."""
    start = time.perf_counter()
    yield
    log_elapsed(log, what, time.perf_counter() - start)


def is_timing(record: logging.LogRecord) -> bool:
    return hasattr(record, ELAPSED)
