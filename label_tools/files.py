"""Safe file output: atomic writes and the checks made before anything is written."""
from __future__ import annotations

import contextlib
import os
import tempfile

from .errors import OutputError


@contextlib.contextmanager
def atomic_path(path: str):
    """Yield a temporary path beside ``path``; on success it is renamed onto ``path``.

    An interrupted or failed write leaves ``path`` as it was and no partial file behind.
    The temporary name keeps the extension, so writers that pick a format from it still work.
    """
    d, base = os.path.split(os.path.abspath(path))
    ext = os.path.splitext(base)[1]
    fd, tmp = tempfile.mkstemp(prefix=f".{base}.", suffix=f".part{ext}", dir=d)
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def check_writable_dir(directory: str):
    """Raise OutputError unless ``directory`` exists (or can be made) and is writable."""
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise OutputError(f"output directory {directory!r} is a file; give a directory with -o/--output")
    if not os.path.isdir(directory):
        parent = os.path.dirname(os.path.abspath(directory))
        if not os.path.isdir(parent) or not os.access(parent, os.W_OK | os.X_OK):
            raise OutputError(f"output directory {directory!r} does not exist and cannot be created")
        return
    if not os.access(directory, os.W_OK | os.X_OK):
        raise OutputError(f"output directory {directory!r} is not writable; choose another with -o/--output")
    # access() says yes for root on read-only mounts: try for real
    try:
        fd, tmp = tempfile.mkstemp(prefix=".label_tools_probe", dir=directory)
        os.close(fd)
        os.remove(tmp)
    except OSError as e:
        raise OutputError(f"output directory {directory!r} is not writable ({e.strerror})") from None


def check_not_existing(paths, *, overwrite: bool):
    """Raise OutputError naming the first existing path unless ``overwrite``."""
    if overwrite:
        return
    for p in paths:
        if os.path.exists(p):
            raise OutputError(f"output {p!r} already exists; pass --overwrite to replace it or -o to write elsewhere")
