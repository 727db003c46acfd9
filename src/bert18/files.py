"""Folders written whole: a failure leaves the old folder (or none), never half of a new one."""

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def folder_written_whole(destination: str | os.PathLike) -> Iterator[Path]:
    """Yield a staging folder beside ``destination``; when the block ends, it replaces ``destination``
    (with the permissions ``mkdir`` would give it, not ``mkdtemp``'s 0700). If the block raises, or
    Ctrl-C stops it, the staging folder is removed and ``destination`` is left as it was."""
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{destination.name}.", dir=destination.parent))
    umask = os.umask(0)
    os.umask(umask)
    staging.chmod(0o777 & ~umask)
    try:
        yield staging
        if destination.exists():
            shutil.rmtree(destination)
        staging.rename(destination)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


__all__ = ["folder_written_whole"]
