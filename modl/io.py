"""File output that never leaves a half-written file behind."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def atomic_write(path: Path | str, text: str) -> None:
    """Write ``text`` (UTF-8, LF line ends) to ``path`` via a temporary file and an atomic rename."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: Path | str, data: bytes, *, exclusive: bool = False) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder, then move it into place.

    The move is a rename (replacing ``path``), or with ``exclusive`` a hard link, which raises
    FileExistsError instead of replacing an existing file. Either way no reader ever sees a
    partial file, and on any error the temporary file is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if exclusive:
            os.link(tmp, path)
        else:
            os.replace(tmp, path)
    finally:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
