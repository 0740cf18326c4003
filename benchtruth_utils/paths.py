"""Paths as the evidence shows them: relative to the project root, never absolute.

Every path that reaches an output goes through :func:`display_path`, so a local
folder, a home directory or a user name cannot leak into the truth file, the log
or the executed notebooks.
"""

from __future__ import annotations

import os
import re
import reprlib
from pathlib import Path, PurePosixPath

OUTSIDE_ROOT = "[outside project root]"


def lexical_relative(path: str | os.PathLike[str], root: str | os.PathLike[str]) -> str | None:
    """Return ``path`` relative to ``root`` in POSIX form, or None when it lies outside.

    Both are taken as the process sees them (a relative path is relative to the
    working directory).

    The comparison is lexical (``..`` is folded, symlinks are not followed), so a
    ``runs/`` folder that is itself a link to another disk still counts as inside.
    """
    absolute_root = os.path.normpath(os.path.abspath(root))
    absolute_path = os.path.normpath(os.path.abspath(path))

    if os.sep == "/" and not (absolute_root.startswith("//") or absolute_path.startswith("//")):
        # What relpath answers for two normalised absolute POSIX paths, without its own
        # normalising again and pathlib's parsing: a bench list of 20k dirs passes here twice.
        # (normpath keeps a leading "//", which relpath reads as "/": left to relpath.)
        if absolute_path == absolute_root:
            return "."
        prefix = absolute_root if absolute_root.endswith("/") else absolute_root + "/"
        return absolute_path[len(prefix) :] if absolute_path.startswith(prefix) else None

    relative = os.path.relpath(absolute_path, absolute_root)
    if relative == os.pardir or relative.startswith(os.pardir + os.sep):
        return None
    return PurePosixPath(Path(relative)).as_posix()


def display_path(path: str | os.PathLike[str], root: str | os.PathLike[str]) -> str:
    """Return the form of ``path`` that may appear in an output.

    Inside ``root`` that is the relative path; outside it only the file name,
    behind a marker, because the folders above it are the local machine's business.
    """
    relative = lexical_relative(path, root)
    if relative is not None:
        return printable(relative)
    return printable(f"{OUTSIDE_ROOT}/{os.path.basename(os.path.normpath(os.fspath(path)))}")


def scrub_text(text: str, *roots: str | os.PathLike[str]) -> str:
    """Replace any absolute form of ``roots`` inside free text (an error message) with ``.``."""
    for root in roots:
        absolute = os.path.normpath(os.path.abspath(root))
        if absolute != os.sep:
            text = text.replace(absolute + os.sep, "").replace(absolute, ".")
    home = os.path.expanduser("~")
    if home not in ("~", os.sep):
        text = text.replace(home, "~")
    return text


# An absolute path inside free text: two or more "/name" steps (or a drive letter and
# backslashes), e.g. in a runner's error message quoted by a finding.
_ABSOLUTE_PATH = re.compile(
    r"(?<![\w.~-])(?:(?:/[^\s/'\"`,;()\[\]{}<>|]+){2,}/?|[A-Za-z]:\\[^\s'\"`,;]+|~/[^\s'\"`,;]+)"
)
MAX_QUOTED_CHARS = 200
_SHORT = reprlib.Repr()
_SHORT.maxlevel, _SHORT.maxstring, _SHORT.maxother = 3, 120, 60
_SHORT.maxlist, _SHORT.maxtuple, _SHORT.maxdict, _SHORT.maxlong = 6, 6, 6, 40


def printable(text: str) -> str:
    """Text that encodes as UTF-8: undecodable file-name bytes and lone surrogates escaped."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def safe_text(text: str) -> str:
    """Free text fit for an output: no absolute path (only its last part), valid UTF-8."""

    def shorten(match: re.Match[str]) -> str:
        return "[path]/" + re.split(r"[/\\]", match.group(0).rstrip("/\\"))[-1]

    return _ABSOLUTE_PATH.sub(shorten, printable(text))


def short_repr(value: object) -> str:
    """A bounded repr of an input value for a finding: cut to size, paths removed.

    Bounded because a value can be a YAML alias bomb whose full repr never ends.
    """
    text = _SHORT.repr(value)
    if len(text) > MAX_QUOTED_CHARS:
        text = text[: MAX_QUOTED_CHARS - 3] + "..."
    return safe_text(text)
