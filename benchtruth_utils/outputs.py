"""Writing outputs: atomically, into the output folder only, as strict JSON and safe CSV."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import itertools
import json
import logging
import os
import sys
import tempfile
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import pandas as pd

from .errors import ParameterError

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)


# Held by the audit writing an output folder; see output_dir_lock.
LOCK_FILE = ".benchtruth-audit.lock"


@contextlib.contextmanager
def output_dir_lock(output_dir: str) -> Iterator[None]:
    """Hold ``output_dir`` for this audit alone while the block runs.

    Two audits writing one folder at once (two hosts or containers sharing a volume) took
    each other's spill files for a killed audit's leftovers and deleted them. The second
    is refused instead. The lock is the kernel's (``flock``, which NFS maps to its own
    locks) on a hidden file left in the folder; it goes with the process, killed or not.
    Where there is no ``fcntl`` (Windows), nothing is locked.

    Raises
    ------
    ParameterError
        When another audit holds the folder, or the lock file is a symbolic link.
    """
    os.makedirs(output_dir, exist_ok=True)
    # Not through a symbolic link: the audit would create or lock a file outside the folder.
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
    try:
        descriptor = os.open(os.path.join(output_dir, LOCK_FILE), flags, 0o644)
    except OSError as error:
        if error.errno != errno.ELOOP:
            raise
        raise ParameterError(
            "output_dir", output_dir, f"a folder whose {LOCK_FILE} is not a symbolic link"
        ) from None
    try:
        if fcntl is not None:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise ParameterError(
                    "output_dir", output_dir, "a folder no other audit is writing to right now"
                ) from None
        yield
    finally:
        os.close(descriptor)


def atomic_write_bytes(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a reader sees the old file or the new one, never half.

    The bytes go to a temporary file in the same folder, are flushed to disk, and
    then replace the target in one rename.
    """
    atomic_write_chunks(path, [data])


def atomic_write_text(path: str, text: str) -> None:
    """Write UTF-8 text with LF line ends atomically.

    A lone surrogate that slipped through (it cannot be encoded) is written as its
    escape rather than stopping the audit.
    """
    atomic_write_bytes(path, text.encode("utf-8", "backslashreplace"))


class FileRange(NamedTuple):
    """Bytes ``start`` up to ``end`` of the file at ``path``: a piece that
    :func:`atomic_write_chunks` copies across without reading it into memory.

    With ``release``, the bytes are not needed once copied: the writer frees their pages
    (see :func:`release_file_range`), and the range must not be read again.
    """

    path: str
    start: int
    end: int
    release: bool = False

    def read(self) -> bytes:
        with open(self.path, "rb") as handle:
            handle.seek(self.start)
            data = handle.read(self.end - self.start)
        if len(data) != self.end - self.start:
            raise OSError(f"{self.path} ends before byte {self.end}")
        return data


def atomic_write_chunks(path: str, chunks: Iterable[str | bytes | FileRange]) -> None:
    """Write pieces of text (as UTF-8), bytes and ranges of other files atomically, never
    holding them whole.

    See :func:`atomic_write_bytes`; a lone surrogate in the text is written as its escape.
    """
    publish_file(write_unpublished(path, chunks), path)


def write_unpublished(path: str, chunks: Iterable[str | bytes | FileRange]) -> str:
    """:func:`atomic_write_chunks` up to, not including, the rename: the pieces go to a new
    temporary file beside ``path`` and are flushed to disk. Returns its name, to be given to
    :func:`publish_file` or :func:`discard_file`; when writing fails, nothing is left.
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    # Named by the process, so that the next audit can remove what a killed one left.
    handle, temporary = tempfile.mkstemp(prefix=f".tmp-{os.getpid()}-", suffix=".part", dir=folder)
    try:
        with _ChunkWriter(handle) as writer:
            for chunk in chunks:
                writer.write(chunk)
            writer.flush()
            os.fsync(handle)
        os.chmod(temporary, 0o644)
    except BaseException:
        discard_file(temporary)
        raise
    return temporary


def publish_file(temporary: str, path: str) -> None:
    """Put the file :func:`write_unpublished` wrote in the place of ``path``, in one rename."""
    try:
        os.replace(temporary, path)
    except BaseException:
        discard_file(temporary)
        raise


def discard_file(temporary: str) -> None:
    """Remove a file :func:`write_unpublished` wrote, if it is still there."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(temporary)


# Small pieces are gathered up to this size before a write.
WRITE_BLOCK_BYTES = 1 << 20
# The most a copy through memory (where the kernel cannot copy) reads at once.
COPY_BLOCK_BYTES = 16 << 20
# Errors of copy_file_range that a copy through memory would meet too; any other (EXDEV,
# ENOSYS, EINVAL, EOPNOTSUPP, EPERM from a container's seccomp filter, ...) means the kernel
# cannot copy this range itself, and the copy goes through memory instead.
_WRITE_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EFBIG, errno.EBADF}


class _ChunkWriter:
    """Writes pieces to a descriptor (which it closes): text and bytes gathered into
    blocks, file ranges copied by the kernel where it can (``os.copy_file_range``).

    Copying the truth file's 700 MB of run lines from the spill files through Python's
    memory took seconds; the kernel copies them in a fraction of that.
    """

    def __init__(self, descriptor: int) -> None:
        self.descriptor = descriptor
        self.pending: list[bytes] = []
        self.pending_bytes = 0
        self.sources: dict[str, int] = {}
        self.kernel_copy = hasattr(os, "copy_file_range")

    def __enter__(self) -> _ChunkWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        for source in self.sources.values():
            os.close(source)
        os.close(self.descriptor)

    def write(self, chunk: str | bytes | FileRange) -> None:
        if isinstance(chunk, FileRange):
            self.flush()
            self._copy(chunk)
            return

        # Bytes are lines encoded already (see EncodedItems).
        if isinstance(chunk, str):
            chunk = chunk.encode("utf-8", "backslashreplace")
        self.pending.append(chunk)
        self.pending_bytes += len(chunk)
        if self.pending_bytes >= WRITE_BLOCK_BYTES:
            self.flush()

    def flush(self) -> None:
        data = memoryview(b"".join(self.pending))
        self.pending.clear()
        self.pending_bytes = 0
        while data:
            data = data[os.write(self.descriptor, data) :]

    def _copy(self, piece: FileRange) -> None:
        source = self.sources.get(piece.path)
        if source is None:
            source = self.sources[piece.path] = _open_source(piece)

        start = piece.start
        while start < piece.end:
            if self.kernel_copy:
                try:
                    copied = os.copy_file_range(source, self.descriptor, piece.end - start, start)
                except OSError as err:
                    if err.errno in _WRITE_ERRORS:
                        raise
                    copied = 0
                if copied == 0:
                    # Refused, or nothing copied (some file systems say so wrongly): through
                    # memory from here on, which tells a source that really ends short.
                    self.kernel_copy = False
                    continue
            else:
                data = os.pread(source, min(piece.end - start, COPY_BLOCK_BYTES), start)
                self.pending.append(data)
                self.flush()
                copied = len(data)
            if copied == 0:
                raise OSError(f"{piece.path} ends before byte {piece.end}")
            start += copied
        if piece.release:
            release_file_range(source, piece.start, piece.end)


def _open_source(piece: FileRange) -> int:
    """A descriptor to copy ``piece`` from: open for writing too where its pages are to be
    freed (which needs it), read-only where that is refused (a umask that took the owner's
    write bit, say): freeing is best effort, the copy is not."""
    if piece.release:
        with contextlib.suppress(PermissionError):
            return os.open(piece.path, os.O_RDWR)
    return os.open(piece.path, os.O_RDONLY)


_FALLOC_FL_KEEP_SIZE = 0x01
_FALLOC_FL_PUNCH_HOLE = 0x02


@functools.cache
def _fallocate() -> Callable[[int, int, int, int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).fallocate
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    return function


def release_file_range(descriptor: int, start: int, end: int) -> None:
    """Free the pages that hold bytes ``start`` up to ``end`` of a file (which then reads
    as zeros there), where Linux and the file system allow; elsewhere do nothing.

    The truth file's run lines are copied from spill files that are deleted afterwards.
    Freed as they are copied, the spill files' pages take the copies at once: on this
    project's machine, memory the kernel had not handed out lately cost five times as much
    to write into (a 650 MB copy took 0.7 s into such memory and 0.2 s into reused pages).
    """
    fallocate = _fallocate()
    if fallocate is not None and end > start:
        # Best effort: a file system that cannot punch holes keeps its pages until the
        # spill file is deleted, as before.
        fallocate(descriptor, _FALLOC_FL_PUNCH_HOLE | _FALLOC_FL_KEEP_SIZE, start, end - start)


class EncodedItems:
    """Items of a JSON list, each already encoded as one line of strict JSON.

    Made by :func:`benchtruth_utils.truth.encode_run_records`, or from lines checked the same
    way; the file writer copies the lines (text or UTF-8 bytes) as they are.
    """

    def __init__(self, lines: Sequence[str | bytes], property_name: str) -> None:
        self.lines = lines
        self.property_name = property_name

    def __len__(self) -> int:
        return len(self.lines)

    def __iter__(self) -> Iterator[str | bytes]:
        return iter(self.lines)


def iter_strict_json(
    document: Any,
    one_line_items: Collection[str] = (),
    item_encoders: Mapping[str, Callable[[Any], bytes]] | None = None,
) -> Iterator[str | bytes | FileRange]:
    """Strict JSON (a NaN or Infinity anywhere raises), indented by two, in pieces.

    The lists named in ``one_line_items`` (top-level keys of ``document``) hold one item
    a line: a million runs read as a million greppable lines, and are encoded by the
    json module's C encoder instead of its far slower indenting one, or by the list's
    own encoder in ``item_encoders`` (which must be as strict, and return UTF-8 bytes).
    """
    item_encoders = item_encoders or {}
    if not isinstance(document, dict) or not document:
        yield json.dumps(document, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
        return

    compact = json.JSONEncoder(ensure_ascii=False, allow_nan=False)
    yield "{\n"
    last = len(document) - 1
    for position, (key, value) in enumerate(document.items()):
        ending = ",\n" if position < last else "\n"
        name = compact.encode(str(key))
        if isinstance(value, EncodedItems):
            yield from _encoded_list(name, value, ending)
            continue
        if key in one_line_items and isinstance(value, list) and value:
            yield f"  {name}: [\n"
            encode = item_encoders.get(key)
            for index, item in enumerate(value):
                comma = "," if index < len(value) - 1 else ""
                if encode is None:
                    yield f"    {compact.encode(item)}{comma}\n"
                else:
                    yield b"    " + encode(item) + comma.encode() + b"\n"
            yield f"  ]{ending}"
            continue
        text = json.dumps(value, indent=2, ensure_ascii=False, allow_nan=False)
        # JSON strings hold no raw line breaks, so every "\n" is the indenter's.
        yield f"  {name}: {text.replace(chr(10), chr(10) + '  ')}{ending}"
    yield "}\n"


# Lines joined into pieces of this many: a million one-line pieces cost more to pass
# along than to join.
_LINES_A_PIECE = 4096


# What stands between two items of a one-line list: a comma, and the next line's indent.
ITEM_SEPARATOR = ",\n    "


def _encoded_list(name: str, items: EncodedItems, ending: str) -> Iterator[str | bytes | FileRange]:
    if not len(items):
        yield f"  {name}: []{ending}"
        return
    yield f"  {name}: [\n"
    # Spilled lines come already joined (see spill.SpilledLines.joined).
    joined = getattr(items.lines, "joined", None)
    if joined is not None:
        yield "    "
        yield from joined()
        yield f"\n  ]{ending}"
        return
    lines = iter(items)
    first = True
    while batch := list(itertools.islice(lines, _LINES_A_PIECE)):
        if not first:
            yield ",\n"
        first = False
        if isinstance(batch[0], bytes):
            yield b"    " + ITEM_SEPARATOR.encode("ascii").join(batch)
        else:
            yield "    " + ITEM_SEPARATOR.join(batch)
    yield f"\n  ]{ending}"


def write_json(path: str, document: Any, one_line_items: Collection[str] = ()) -> None:
    atomic_write_chunks(path, iter_strict_json(document, one_line_items))


_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralise_formula(text: str) -> str:
    """Prefix text that a spreadsheet would run as a formula with an apostrophe.

    Text that reads as a number (``-0.5``, ``+1e3``) is left as it is: a spreadsheet
    shows it as that number, and the table must not change any number.
    """
    if not text.startswith(_FORMULA_STARTS):
        return text
    try:
        float(text)
    except ValueError:
        return "'" + text
    return text


def _one_line_end(text: str) -> str:
    # The csv writer quotes a cell holding "\n" (our line end) but not a lone "\r", which
    # readers then take for a line end and split the row; inside a cell both become "\n".
    return text.replace("\r\n", "\n").replace("\r", "\n")


def frame_to_csv_text(frame: pd.DataFrame, text_columns: list[str] | tuple[str, ...]) -> str:
    """Render a frame as CSV: blanks for missing values, safe text cells, LF line ends."""
    safe = frame.copy()
    for column in text_columns:
        if column in safe.columns:
            safe[column] = safe[column].map(
                lambda cell: (
                    neutralise_formula(_one_line_end(cell)) if isinstance(cell, str) else cell
                )
            )
    return safe.to_csv(index=False, na_rep="", lineterminator="\n")


def write_csv(path: str, frame: pd.DataFrame, text_columns: list[str] | tuple[str, ...]) -> None:
    atomic_write_text(path, frame_to_csv_text(frame, text_columns))
