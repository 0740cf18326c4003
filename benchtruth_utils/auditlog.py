"""The per-host audit log: the package's log records of one run, kept and written as a file.

The package only logs; this module catches what one audit logged so that it can be
written atomically next to the other outputs. Lines carry no clock time, so that
the same inputs give the same log.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Iterator
from typing import Any, TextIO

from .paths import safe_text

PACKAGE_LOGGER = "benchtruth_utils"
LINE_FORMAT = "%(levelname)-7s | %(module_name)s | %(message)s"


class _ShortNameFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.module_name = record.name.rsplit(".", 1)[-1]
        return True


class _KeptLines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.INFO)
        self.lines: list[str] = []
        self.addFilter(_ShortNameFilter())
        self.setFormatter(logging.Formatter(LINE_FORMAT))

    def emit(self, record: logging.LogRecord) -> None:
        # One record, one line: text quoted from inputs cannot forge further log lines.
        line = safe_text(self.format(record))
        self.lines.append(line.replace("\r", "\\r").replace("\n", "\\n"))


@contextlib.contextmanager
def capture_audit_log() -> Iterator[list[str]]:
    """Collect the package's INFO and higher records while the block runs.

    Yields the list the formatted lines are appended to.
    """
    package_logger = logging.getLogger(PACKAGE_LOGGER)
    handler = _KeptLines()
    previous_level = package_logger.level
    if package_logger.getEffectiveLevel() > logging.INFO:
        package_logger.setLevel(logging.INFO)
    package_logger.addHandler(handler)
    try:
        yield handler.lines
    finally:
        package_logger.removeHandler(handler)
        package_logger.setLevel(previous_level)


def configure_notebook_logging(level: int = logging.INFO) -> None:
    """Show the package's log in a notebook or terminal; call once, from the first cell.

    The log goes to stdout, the stream a cell's prints use: the kernel sends stdout and
    stderr on separate timers, so with two streams the order of a cell's outputs, and so
    the executed notebook's bytes, would change from run to run.
    """
    handler = logging.StreamHandler(sys.stdout)
    handler.addFilter(_ShortNameFilter())
    handler.setFormatter(logging.Formatter(LINE_FORMAT))
    package_logger = logging.getLogger(PACKAGE_LOGGER)
    package_logger.handlers = [
        h for h in package_logger.handlers if not isinstance(h, logging.StreamHandler)
    ]
    package_logger.addHandler(handler)
    package_logger.setLevel(level)
    package_logger.propagate = False


def progress_stream() -> TextIO:
    """Where a progress bar goes: where the package's log is shown, else stderr."""
    for handler in logging.getLogger(PACKAGE_LOGGER).handlers:
        if isinstance(handler, logging.StreamHandler) and not isinstance(handler, _KeptLines):
            return handler.stream
    return sys.stderr


class PhaseTimes:
    """How long each phase of one run took, kept for the timings log.

    Timings differ on every run, so they have a file of their own: the audit log,
    like every other output, stays byte-identical for the same inputs.
    """

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start

    def render(self, **figures: Any) -> str:
        """One line a phase, then the total and the given figures (runs, dirs, workers)."""
        width = max((len(name) for name in self.seconds), default=5)
        lines = [f"{name:<{width}}  {seconds:9.3f} s" for name, seconds in self.seconds.items()]
        lines.append(f"{'total':<{width}}  {sum(self.seconds.values()):9.3f} s")
        lines += [f"{name}: {value}" for name, value in figures.items()]
        return "\n".join(lines) + "\n"
