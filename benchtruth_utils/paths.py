"""Paths as the evidence shows them: relative to the project root, never absolute.

Every path that reaches an output goes through :func:`display_path`, so a local
folder, a home directory or a user name cannot leak into the truth file, the log
or the executed notebooks.
"""

from __future__ import annotations

import os
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
        return relative
    return f"{OUTSIDE_ROOT}/{os.path.basename(os.path.normpath(os.fspath(path)))}"


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
