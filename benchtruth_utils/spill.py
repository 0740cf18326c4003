"""Run lines kept on disk between the scan and the truth file, not in memory.

Each run's line of the truth file is made while its bench dir is scanned (in a worker
process), but written only once every dir is read and the runs are sorted. A million
lines take most of a gigabyte, so they wait in temporary files beside the outputs:
each process appends its dirs' lines to a file of its own, and the main process
reads them back, in the truth file's order, while it writes that file.

Each line is spilled with the separator that follows it in the truth file, and the audit
spills a dir's lines in the order the truth file lists them (by key and seed). So the truth
file's list of runs is, for the most part, whole stretches of spill file copied as they are:
reading a million lines back one at a time took longer than writing them.

The temporary files are named ``.tmp-runs-<audit pid>-<token>-<writer pid>.part`` and
removed by :func:`remove_spill_files` when the audit ends, failed or not; what a killed
audit leaves, the next audit in that folder removes (:func:`remove_orphaned_temporary_files`).
"""

from __future__ import annotations

import array
import contextlib
import glob
import itertools
import os
import secrets
from collections.abc import Iterator, Sequence
from typing import NamedTuple

import numpy as np

from .outputs import ITEM_SEPARATOR, FileRange

_SEPARATOR = ITEM_SEPARATOR.encode("ascii")

_open_files: dict[str, int] = {}


class SpilledDir(NamedTuple):
    """Where one dir's lines went: the file, and each line's first byte and length (without
    its separator), in the order the lines were given."""

    path: str
    offsets: list[int]
    lengths: list[int]


def new_spill_prefix(folder: str) -> str:
    """The path prefix of one audit's spill files, in ``folder`` (the output folder).

    It names the audit's process, so that a later audit can tell leftovers of a killed
    one (see :func:`remove_orphaned_temporary_files`).
    """
    return os.path.join(folder, f".tmp-runs-{os.getpid()}-{secrets.token_hex(6)}")


def remove_orphaned_temporary_files(folder: str) -> list[str]:
    """Delete the temporary files a killed audit left in ``folder``: every spill file
    (``.tmp-runs-...``), and each half-written output (``.tmp-<pid>-...``, see
    :func:`outputs.atomic_write_chunks`) whose process no longer runs.

    An audit ended by a signal (SIGTERM, SIGKILL) cannot remove its own; the next one in
    the same folder does. Call this holding :func:`outputs.output_dir_lock` and before
    writing anything: then no other audit is writing spill files here, whatever its
    process id says on this machine, and an output named by this very process id is a
    previous process's (the first process of a container always has id 1). Returns the
    names removed.
    """
    removed = []
    for path in glob.glob(os.path.join(glob.escape(folder), ".tmp-*-*.part")):
        name = os.path.basename(path)
        spilled = name.startswith(".tmp-runs-")
        owner = name.split("-")[2 if spilled else 1]
        if not owner.isdigit():
            continue
        if spilled or int(owner) == os.getpid() or not _process_alive(int(owner)):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
                removed.append(name)
    return sorted(removed)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def spill_lines(prefix: str, lines: Sequence[str | bytes]) -> SpilledDir:
    """Append ``lines`` (text, or UTF-8 bytes; without line ends) to this process's spill
    file, each followed by the truth file's item separator."""
    path = f"{prefix}-{os.getpid()}.part"
    if not lines:
        return SpilledDir(path, [], [])
    descriptor = _open_files.get(path)
    if descriptor is None:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        _open_files[path] = descriptor

    encoded = [
        line if type(line) is bytes else line.encode("utf-8", "backslashreplace") for line in lines
    ]
    lengths = list(map(len, encoded))
    offsets = list(
        itertools.accumulate(
            (length + len(_SEPARATOR) for length in lengths[:-1]),
            initial=os.lseek(descriptor, 0, os.SEEK_END),
        )
    )

    # One unbuffered write a dir: nothing waits in a buffer when a worker process ends.
    data = _SEPARATOR.join(encoded) + _SEPARATOR
    written = 0
    while written < len(data):
        written += os.write(descriptor, data[written:])
    return SpilledDir(path, offsets, lengths)


def remove_spill_files(prefix: str) -> None:
    """Close and delete every spill file of the audit with this ``prefix``."""
    for path in list(_open_files):
        if path.startswith(prefix + "-"):
            os.close(_open_files.pop(path))
    for path in glob.glob(glob.escape(prefix) + "-*.part"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


class SpillIndex:
    """Where each line lies, in the order the lines were gathered (one entry a run)."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        self._path_ids: dict[str, int] = {}
        self.file_ids = array.array("H")
        self.offsets = array.array("q")
        self.lengths = array.array("l")

    def add(self, spilled: SpilledDir) -> None:
        file_id = self._path_ids.setdefault(spilled.path, len(self.paths))
        if file_id == len(self.paths):
            self.paths.append(spilled.path)
        self.file_ids.extend(itertools.repeat(file_id, len(spilled.lengths)))
        self.offsets.extend(spilled.offsets)
        self.lengths.extend(spilled.lengths)

    def __len__(self) -> int:
        return len(self.offsets)

    def lines(self, positions: Sequence[int], release: bool = False) -> SpilledLines:
        """The lines at ``positions``, in that order, read lazily. With ``release``, they
        are to be joined and copied once (the truth file): their pages are freed as they
        are copied (see :class:`outputs.FileRange`)."""
        return SpilledLines(self, positions, release)


class SpilledLines(Sequence[bytes]):
    """A read-only sequence of spilled lines, read when asked for."""

    def __init__(self, index: SpillIndex, positions: Sequence[int], release: bool = False) -> None:
        self._index = index
        self._positions = positions
        self._release = release

    def __len__(self) -> int:
        return len(self._positions)

    def __getitem__(self, item):  # type: ignore[override]
        if isinstance(item, slice):
            return [self[i] for i in range(*item.indices(len(self)))]
        return next(iter(SpilledLines(self._index, [self._positions[item]])))

    def joined(self) -> Iterator[FileRange]:
        """The lines joined by the truth file's item separator, as ranges of spill files.

        Lines that follow one another in a spill file, separators included, make one
        range, which the file writer copies across without reading it
        (:func:`outputs.atomic_write_chunks`); only where the order jumps does a new one
        start.
        """
        if not self._positions:
            return
        index = self._index
        positions = np.asarray(self._positions, dtype=np.int64)
        files = np.frombuffer(index.file_ids, dtype=index.file_ids.typecode)[positions]
        starts = np.frombuffer(index.offsets, dtype=index.offsets.typecode)[positions]
        lengths = np.frombuffer(index.lengths, dtype=index.lengths.typecode)[positions]
        ends = starts + lengths + len(_SEPARATOR)
        # A stretch ends where the next line lies elsewhere: another file, or not right after.
        jumps = np.flatnonzero((starts[1:] != ends[:-1]) | (files[1:] != files[:-1])) + 1
        firsts = np.concatenate(([0], jumps))
        lasts = np.concatenate((jumps, [len(positions)])) - 1

        for first, last in zip(firsts.tolist(), lasts.tolist(), strict=True):
            start, end = int(starts[first]), int(ends[last])
            if last == len(positions) - 1:
                end -= len(_SEPARATOR)  # no separator after the last line
            yield FileRange(index.paths[int(files[first])], start, end, self._release)

    def __iter__(self) -> Iterator[bytes]:
        # A line at a time, for a look at a few runs (and the tests): the truth file takes
        # the lines joined.
        index = self._index
        for position in self._positions:
            start = index.offsets[position]
            path = index.paths[index.file_ids[position]]
            yield FileRange(path, start, start + index.lengths[position]).read()
