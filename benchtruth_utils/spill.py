"""Run lines kept on disk between the scan and the truth file, not in memory.

Each run's line of the truth file is made while its bench dir is scanned (in a worker
process), but written only once every dir is read and the runs are sorted. A million
lines take most of a gigabyte, so they wait in temporary files beside the outputs:
each process appends its dirs' lines to a file of its own, and the main process
reads them back, in the truth file's order, while it writes that file.

The temporary files are named ``.tmp-runs-<audit pid>-<token>-<writer pid>.part`` and
removed by :func:`remove_spill_files` when the audit ends, failed or not; what a killed
audit leaves, the next audit in that folder removes (:func:`remove_orphaned_spill_files`).
"""

from __future__ import annotations

import array
import contextlib
import glob
import os
import secrets
from collections.abc import Iterator, Sequence
from typing import NamedTuple

# Lines near one another in the truth file mostly come from one dir, and so lie near one
# another in the spill file: read a block at a time, not a line at a time.
READ_BLOCK_BYTES = 1 << 20
BACKWARD_BYTES = 1 << 16

_open_files: dict[str, int] = {}


class SpilledDir(NamedTuple):
    """Where one dir's lines went: the file, the first byte, and each line's length."""

    path: str
    offset: int
    lengths: list[int]


def new_spill_prefix(folder: str) -> str:
    """The path prefix of one audit's spill files, in ``folder`` (the output folder).

    It names the audit's process, so that a later audit can tell leftovers of a killed
    one (see :func:`remove_orphaned_spill_files`).
    """
    return os.path.join(folder, f".tmp-runs-{os.getpid()}-{secrets.token_hex(6)}")


def remove_orphaned_spill_files(folder: str) -> list[str]:
    """Delete spill files in ``folder`` whose audit process no longer runs.

    An audit ended by a signal (SIGTERM, SIGKILL) cannot remove its own; the next one in
    the same folder does. Files of an audit still running are left alone. Returns the
    names removed.
    """
    removed = []
    for path in glob.glob(os.path.join(glob.escape(folder), ".tmp-runs-*-*-*.part")):
        owner = os.path.basename(path).split("-")[2]
        if owner.isdigit() and not _process_alive(int(owner)):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
                removed.append(os.path.basename(path))
    return sorted(removed)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def spill_lines(prefix: str, lines: Sequence[str]) -> SpilledDir:
    """Append ``lines`` (UTF-8, without line ends) to this process's spill file."""
    path = f"{prefix}-{os.getpid()}.part"
    descriptor = _open_files.get(path)
    if descriptor is None:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        _open_files[path] = descriptor

    encoded = [line.encode("utf-8", "backslashreplace") for line in lines]
    offset = os.lseek(descriptor, 0, os.SEEK_END)
    # One unbuffered write a dir: nothing waits in a buffer when a worker process ends.
    data = b"".join(encoded)
    written = 0
    while written < len(data):
        written += os.write(descriptor, data[written:])
    return SpilledDir(path, offset, [len(line) for line in encoded])


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
        offset = spilled.offset
        for length in spilled.lengths:
            self.file_ids.append(file_id)
            self.offsets.append(offset)
            self.lengths.append(length)
            offset += length

    def __len__(self) -> int:
        return len(self.offsets)

    def lines(self, positions: Sequence[int]) -> SpilledLines:
        """The lines at ``positions``, in that order, read lazily."""
        return SpilledLines(self, positions)


class SpilledLines(Sequence[bytes]):
    """A read-only sequence of spilled lines; iterating reads a block at a time."""

    def __init__(self, index: SpillIndex, positions: Sequence[int]) -> None:
        self._index = index
        self._positions = positions

    def __len__(self) -> int:
        return len(self._positions)

    def __getitem__(self, item):  # type: ignore[override]
        if isinstance(item, slice):
            return [self[i] for i in range(*item.indices(len(self)))]
        return next(iter(SpilledLines(self._index, [self._positions[item]])))

    def __iter__(self) -> Iterator[bytes]:
        index = self._index
        descriptors = {}
        block_file, block_start, block = -1, 0, b""
        try:
            for position in self._positions:
                file_id = index.file_ids[position]
                start, length = index.offsets[position], index.lengths[position]
                inside = block_start <= start and start + length <= block_start + len(block)
                if file_id != block_file or not inside:
                    if file_id not in descriptors:
                        descriptors[file_id] = os.open(index.paths[file_id], os.O_RDONLY)
                    # A little before the line too: a dir's runs are sorted by key, not
                    # by their place in metrics.json, so the next line may lie behind.
                    block_start = max(0, start - BACKWARD_BYTES)
                    size = max(READ_BLOCK_BYTES, start - block_start + length)
                    block = os.pread(descriptors[file_id], size, block_start)
                    block_file = file_id
                line = block[start - block_start : start - block_start + length]
                if len(line) != length:
                    raise OSError(f"spill file {index.paths[file_id]} ends before its lines")
                yield line
        finally:
            for descriptor in descriptors.values():
                os.close(descriptor)
