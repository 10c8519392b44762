"""The example notebooks, shipped inside the package so a wheel install has them too.

``folder()`` is where they are installed (read-only as far as the user is concerned);
``copy_to(dest)`` copies them out for running and editing, never touching a file already there.
"""

from __future__ import annotations

import shutil
from pathlib import Path

QUICKSTART = "quickstart.ipynb"


def folder() -> Path:
    """The installed notebooks' folder (inside the package)."""
    return Path(__file__).resolve().parent


def names() -> list[str]:
    """The bundled notebooks' file names, quickstart first."""
    found = sorted(p.name for p in folder().glob("*.ipynb"))
    return sorted(found, key=lambda name: name != QUICKSTART)


def copy_to(dest: Path, *, source: Path | None = None, overwrite: bool = False) -> tuple[list[Path], list[Path]]:
    """Copy the notebooks of ``source`` (default: the bundled ones) into ``dest``.

    Returns (copied, kept): a notebook already in ``dest`` is kept as it is unless ``overwrite``,
    so copying again never loses a user's edits.
    """
    source = source or folder()
    dest.mkdir(parents=True, exist_ok=True)
    copied: list[Path] = []
    kept: list[Path] = []
    for original in sorted(source.glob("*.ipynb")):
        target = dest / original.name
        if target.exists() and not overwrite:
            kept.append(target)
            continue
        shutil.copyfile(original, target)
        copied.append(target)
    return copied, kept
