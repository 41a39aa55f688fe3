"""An exclusive lock on a file, held by this process (flock): it goes with the process, however that ends, so a
killed run leaves nothing to clean up. Used for a cell being computed and for the model cache being filled."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from harness.errors import HarnessError


@contextmanager
def exclusive(path: Path, wait: bool) -> Iterator[int | None]:
    """Hold `path` locked: yields None once held. With wait=False and the lock held by another process, yields
    that process's pid instead (-1 if unknown) and holds nothing."""
    import fcntl

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a+", encoding="utf-8")
    except OSError as exc:
        raise HarnessError(f"cannot create the lock file {path}: {exc.strerror or exc}") from exc
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip()
            yield int(holder) if holder.isdigit() else -1
            return
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        try:
            yield None
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
