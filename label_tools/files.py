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
    tmp = owned_temp(d, base, suffix=f".part{ext}")
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


#: Temporary files and folders a run makes beside its outputs are named ``<TEMP_PREFIX><pid>@<host>+<name>``:
#: after a kill -9 the next run on that machine removes them (:func:`remove_orphans`); a run on another
#: machine sharing the folder (a cluster's workers on NFS) leaves them alone, as it cannot tell whether
#: their process still runs.
TEMP_PREFIX = ".label_tools-tmp-"


def _me() -> tuple:
    import socket

    return os.getpid(), socket.gethostname()


def owned_temp(directory: str, name: str, *, suffix: str = "") -> str:
    """Create an empty temporary file in ``directory`` named for this process and ``name``; its path."""
    pid, host = _me()  # the name only says what it is for: shortened, so a long one stays below 255 bytes
    fd, tmp = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{pid}@{host}+{name[:80]}.", suffix=suffix, dir=directory)
    os.close(fd)
    return tmp


def owned_tempdir(directory: str, name: str, *, suffix: str = "") -> str:
    """Create a temporary folder in ``directory`` named for this process and ``name`` (as :func:`owned_temp`)."""
    pid, host = _me()
    return tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{pid}@{host}+{name[:80]}.", suffix=suffix, dir=directory)


def _temp_owner(name: str):
    """(pid, host) of a :func:`owned_temp` name, or None for any other name."""
    if not name.startswith(TEMP_PREFIX):
        return None
    owner = name[len(TEMP_PREFIX):].partition("+")[0]
    pid, _, host = owner.partition("@")
    return (int(pid), host) if pid.isdigit() and host else None


def _gone(pid: int, host: str) -> bool:
    """Whether process ``pid`` of machine ``host`` has ended, as far as this machine can tell (another
    machine's process: not known, so not gone)."""
    me_pid, me_host = _me()
    return host == me_host and pid != me_pid and not _pid_alive(pid)


def remove_orphans(directory: str) -> list:
    """Remove the temporary files and folders (:func:`owned_temp`) that ended processes of this machine left
    in ``directory`` (a kill -9 midway); returns their paths."""
    import shutil

    done = []
    try:
        names = os.listdir(directory)
    except OSError:
        return done
    for name in names:
        owner = _temp_owner(name)
        if owner is None or not _gone(*owner):
            continue
        p = os.path.join(directory, name)
        if os.path.isdir(p) and not os.path.islink(p):
            shutil.rmtree(p, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                os.remove(p)
        done.append(p)
    return done


def write_png(path: str, a, params=()):
    """Encode ``a`` (OpenCV channel order) as PNG and write it to ``path``.

    Encoded in memory and written by Python, not by ``cv2.imwrite``: on a full disk libpng printed
    "libpng error: Write Error" on stderr beside label_tools' own one-line message; now the failure is
    an OSError (ENOSPC) like any other write.
    """
    import cv2

    ok, buf = cv2.imencode(".png", a, list(params))
    if not ok:
        raise OSError(f"could not encode {path!r} as PNG")
    with open(path, "wb") as f:
        f.write(buf.data)


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
        if os.path.exists(parent) and not os.path.isdir(parent):
            raise OutputError(f"output directory {directory!r} cannot be created: its parent {parent!r} is a file, "
                              "not a directory; choose another with -o/--output")
        if not os.path.isdir(parent):
            raise OutputError(f"output directory {directory!r} does not exist and cannot be created: its parent "
                              f"{parent!r} does not exist either (create it first, or check the path)")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise OutputError(f"output directory {directory!r} does not exist and cannot be created: its parent "
                              f"{parent!r} is not writable; choose another with -o/--output")
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


def check_model_path(path: str, *, overwrite: bool, outdirs=(), taken=None):
    """Raise OutputError unless a model can be saved at ``path`` (``--save-model``), before any work.

    Its directory must exist and be writable, or be one of ``outdirs`` (the run's output
    directories, already checked by :func:`check_writable_dir`, made before the model is saved:
    ``-o out --save-model out/m.skops`` into a new ``out``); a file already there is replaced only
    with ``overwrite`` (a model is work the user made). ``taken`` ({path: what it is}, the run's inputs
    and outputs) are refused even with ``overwrite``: the model would replace the image or a result.
    """
    if not str(path).strip() or not os.path.basename(path):  # "" (an unset variable) or "models/"
        raise OutputError(f"--save-model: expected a file path such as model.skops, got {path!r}")
    real = os.path.realpath(path)
    for other, what in (taken or {}).items():
        if other and os.path.realpath(other) == real:
            raise OutputError(f"--save-model: {path!r} is {what}; the model would replace it: give another file, "
                              "such as model.skops")
    if os.path.isdir(path):
        raise OutputError(f"--save-model: {path!r} is a directory; give a file path such as {os.path.join(path, 'model.skops')!r}")
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.exists(directory) and directory in {os.path.abspath(d) for d in outdirs}:
        return  # made with the outputs; its parent was checked as theirs
    if not os.path.isdir(directory):
        if os.path.exists(directory):  # "create it" would be no advice: a file is in the way
            raise OutputError(f"--save-model: {directory!r} is a file, not a directory; choose another path")
        raise OutputError(f"--save-model: directory {directory!r} does not exist; create it or choose another path")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise OutputError(f"--save-model: directory {directory!r} is not writable; choose another path")
    try:  # access() says yes for root on read-only mounts and immutable directories: try for real
        fd, tmp = tempfile.mkstemp(prefix=".label_tools_probe", dir=directory)
        os.close(fd)
        os.remove(tmp)
    except OSError as e:
        raise OutputError(f"--save-model: directory {directory!r} is not writable ({e.strerror})") from None
    if os.path.exists(path) and not overwrite:
        raise OutputError(f"--save-model: {path!r} already exists; pass --overwrite to replace it or choose another path")


def check_not_existing(paths, *, overwrite: bool, image: str | None = None):
    """Raise OutputError naming the first existing path unless ``overwrite``.

    Leftovers of an interrupted run in the paths' directory are dealt with first
    (:func:`recover_output_dir`), so what is checked is a whole set. With ``image``, a set that holds another
    image's results (same stem: ``a.tif`` labelled before ``a.png``) is said to be so.
    """
    paths = list(paths)
    for d in sorted({os.path.dirname(os.path.abspath(p)) for p in paths}):
        recover_output_dir(d)
    if overwrite:
        return
    for p in paths:
        if os.path.exists(p):
            other = results_of_other_image(paths, image) if image is not None else None
            if other is not None:
                raise OutputError(
                    f"output {p!r} already exists and holds the results of another image, {other!r} (same name "
                    f"{_set_stem(paths, image)!r}); write this one elsewhere with -o (or rename "
                    "it); --overwrite would replace that image's results")
            raise OutputError(f"output {p!r} already exists; pass --overwrite to replace it or -o to write elsewhere")


def _set_stem(paths, image: str) -> str:
    """The stem an output set is named by (from its report's name), else ``image``'s."""
    from .io import stem

    report = next((os.path.basename(p) for p in paths if str(p).endswith("_report.txt")), None)
    return report[: -len("_report.txt")] if report else stem(image)


def results_of_other_image(paths, image: str) -> str | None:
    """The image an existing output set was made from (its report's ``image:`` line), when that is another
    file than ``image``, else None. A recorded image of the same file name that no longer exists is taken to be
    ``image`` moved (a folder renamed): not another."""
    report = next((p for p in paths if str(p).endswith("_report.txt")), None)
    if report is None:
        return None
    try:
        with open(report, encoding="utf-8", errors="replace") as f:
            head = [f.readline() for _ in range(4)]
    except OSError:
        return None
    line = next((ln for ln in head if ln.startswith("image: ")), None)
    if line is None:
        return None
    recorded = line[len("image: "):].rstrip("\n")
    if os.path.realpath(recorded) == os.path.realpath(image):
        return None
    if os.path.basename(recorded) == os.path.basename(image) and not os.path.exists(recorded):
        return None
    if os.path.exists(recorded) and os.path.exists(image):
        try:
            if os.path.samefile(recorded, image):
                return None
        except OSError:
            pass
    return recorded


# ---------------------------------------------------------------------------- output sets
STAGING_PREFIX = ".label_tools-staging-"
LOCK_SUFFIX = ".label_tools.lock"
_COMMIT_MARK = ".complete"
_OWNER = ".owner"  # in a staging folder: "<pid> <host>" of the run that made it
LOCK_WAIT_SECONDS = 60.0


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def lock_path(outdir: str, stem: str) -> str:
    """The lock file a run holds while it writes the outputs of image ``stem`` in ``outdir``."""
    return os.path.join(outdir, f".{stem}{LOCK_SUFFIX}")


@contextlib.contextmanager
def output_lock(outdir: str, stem: str, *, wait: float | None = None):
    """Hold ``.<stem>.label_tools.lock`` in ``outdir`` (created exclusively, holding our pid).

    A lock left by a process that no longer runs (killed, power loss) is taken over. A lock held by a
    live process is waited for up to ``wait`` seconds (default: ``$LABEL_TOOLS_LOCK_WAIT`` or 60), then
    OutputError names it.
    """
    import socket
    import time

    if wait is None:
        try:
            wait = float(os.environ.get("LABEL_TOOLS_LOCK_WAIT", LOCK_WAIT_SECONDS))
        except ValueError:
            wait = LOCK_WAIT_SECONDS
    path = lock_path(outdir, stem)
    me = f"{os.getpid()} {socket.gethostname()}\n"
    deadline = time.monotonic() + wait
    acquired = False
    try:
        while True:
            try:
                acquired = _create_exclusive(path, me)
            except FileExistsError:
                owner = _lock_owner(path)
                if owner is None or (owner[1] == socket.gethostname() and not _pid_alive(owner[0])):
                    with contextlib.suppress(OSError):  # stale: its process is gone
                        os.remove(path)
                    continue
                if time.monotonic() >= deadline:
                    raise OutputError(
                        f"output directory {outdir!r} is locked by {path!r} (process {owner[0]} on {owner[1]} is "
                        f"writing the same outputs); wait for it to end, or delete the lock if that process is gone"
                    ) from None
                time.sleep(0.2)
                continue
            except OSError as e:
                raise OutputError(f"cannot create the lock file {path!r} in {outdir!r} ({e.strerror})") from None
            break
        yield path
    finally:
        with signals_deferred(), contextlib.suppress(OSError):
            if acquired and _lock_owner(path) == (os.getpid(), socket.gethostname()):
                os.remove(path)


def _create_exclusive(path, text):
    """Create ``path`` holding ``text``, atomically: it never exists empty (FileExistsError if it exists)."""
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        f.write(text)
    try:
        os.link(tmp, path)  # atomic and exclusive
    except FileExistsError:
        raise
    except OSError:  # no hard links here (FAT, some network mounts): exclusive create instead
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)
    finally:
        with contextlib.suppress(OSError):
            os.remove(tmp)
    return True


def _lock_owner(path):
    """(pid, host) written in a lock file, or None if it is unreadable or malformed."""
    try:
        with open(path) as f:
            pid, host = f.read().split()[:2]
        return int(pid), host
    except (OSError, ValueError):
        return None


def recover_output_dir(outdir: str) -> list:
    """Finish or remove what an interrupted run left in ``outdir``; returns the paths acted on.

    A staging directory marked complete was interrupted while renaming a finished set into place:
    the rest is renamed (the set becomes entirely new). An unmarked one held an unfinished set: it is
    removed (the set stays entirely old). Staging directories of live processes are left alone.
    """
    import shutil

    done = remove_orphans(outdir)
    try:
        names = os.listdir(outdir)
    except OSError:
        return done
    for name in names:
        if not name.startswith(STAGING_PREFIX):
            continue
        d = os.path.join(outdir, name)
        owner = _lock_owner(os.path.join(d, _OWNER))  # a folder made before owners were written: this machine's
        if owner is None:
            try:
                owner = (int(name.rsplit("-", 1)[1]), _me()[1])
            except (IndexError, ValueError):
                owner = (-1, _me()[1])
        if owner[0] > 0 and not _gone(*owner):  # running, or on another machine (which cannot be told here)
            continue
        if os.path.exists(os.path.join(d, _COMMIT_MARK)):
            with contextlib.suppress(OSError):
                for f in sorted(os.listdir(d)):
                    if f not in (_COMMIT_MARK, _OWNER):
                        with contextlib.suppress(FileNotFoundError):  # another run finished it meanwhile
                            os.replace(os.path.join(d, f), os.path.join(outdir, f))
                for f in _stale_in_mark(os.path.join(d, _COMMIT_MARK)):
                    with contextlib.suppress(FileNotFoundError):
                        os.remove(os.path.join(outdir, f))
        shutil.rmtree(d, ignore_errors=True)
        done.append(d)
    return done


class OutputSet:
    """All output files of one image, replaced together or not at all.

    Use through :func:`output_set`. ``staged`` maps each kind to a path inside a private staging
    directory in the output directory; writers write there (sidecars such as ``.aux.xml`` beside
    them). :meth:`commit` renames every staged file onto its final name once all are complete.
    """

    def __init__(self, paths: dict, staging: str, stale=()):
        self.paths = dict(paths)
        self.staging = staging
        self.staged = {k: os.path.join(staging, os.path.basename(p)) for k, p in self.paths.items()}
        self.stale = sorted(os.path.basename(p) for p in stale)

    def commit(self):
        """Rename the complete staged set into place, then remove the earlier outputs the new set has no
        counterpart for (a commit mark listing both first, so a kill midway is finished later)."""
        outdir = os.path.dirname(os.path.abspath(next(iter(self.paths.values()))))
        files = sorted(f for f in os.listdir(self.staging) if f != _OWNER)
        stale = [f for f in self.stale if f not in files]
        for f in files:
            _fsync_file(os.path.join(self.staging, f))
        with open(os.path.join(self.staging, _COMMIT_MARK), "w") as fh:
            fh.write("".join(f + "\n" for f in files) + "".join(_STALE + f + "\n" for f in stale))
            fh.flush()
            os.fsync(fh.fileno())
        _fsync_dir(self.staging)
        mode = 0o666 & ~_umask()
        for f in files:
            src = os.path.join(self.staging, f)
            os.chmod(src, mode)
            os.replace(src, os.path.join(outdir, f))
        for f in stale:
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(outdir, f))
        _fsync_dir(outdir)


_STALE = "remove "  # commit-mark line prefix: an earlier output the committed set replaces by nothing


def _stale_in_mark(mark) -> list:
    """Names a commit mark lists for removal (none in marks written before this existed)."""
    try:
        with open(mark) as f:
            return [ln[len(_STALE):].strip() for ln in f if ln.startswith(_STALE) and "/" not in ln]
    except OSError:
        return []


def _fsync_file(path):
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


_fsync_dir = _fsync_file  # a directory is opened read-only and fsynced the same way


@contextlib.contextmanager
def output_set(paths: dict, *, overwrite: bool, stem: str, stale=()):
    """Write the outputs of one image all-or-nothing.

    Holds the output directory's lock for ``stem``, finishes or removes leftovers of interrupted runs,
    checks (again, under the lock) that nothing is overwritten without ``overwrite``, and yields an
    :class:`OutputSet` whose ``staged`` paths the writers fill. On leaving the block normally the set
    is committed; on any exception (SIGINT/SIGTERM included) the staging directory is removed and the
    previous outputs stay exactly as they were. An ``OSError`` while writing (full disk, I/O error)
    becomes one :class:`OutputError` naming the directory.

    Parameters
    ----------
    paths : dict of str -> str
        Final path of every output by kind, all in one directory (which must exist).
    stale : sequence of str
        Other outputs an earlier run may have written for this image (e.g. ``_probs.tif`` when this
        run does not write probabilities). With ``overwrite`` those that exist are removed as part of
        the commit, so no file of the old set is left beside the new one; else they are left alone.
    """
    import shutil

    outdir = os.path.dirname(os.path.abspath(next(iter(paths.values()))))
    with output_lock(outdir, stem):
        recover_output_dir(outdir)
        check_not_existing(paths.values(), overwrite=overwrite)
        staging = os.path.join(outdir, f"{STAGING_PREFIX}{stem}-{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        ok = False
        try:
            try:
                _make_staging(staging)
            except OSError as e:
                raise _write_error(outdir, e) from None
            oset = OutputSet(paths, staging, [p for p in stale if overwrite and os.path.lexists(p)])
            try:
                yield oset
                try:
                    with signals_deferred():  # the renames are not interrupted halfway
                        oset.commit()
                except Interrupted as e:  # arrived during the commit: the new set is whole
                    ok = e.committed = True
                    raise
            except OSError as e:
                if isinstance(e, OutputError):
                    raise
                raise _write_error(outdir, e) from None
            except Exception as e:
                if _is_gdal_io_error(e):
                    raise _write_error(outdir, e) from None
                raise
            ok = True
        finally:
            with signals_deferred():  # a second Ctrl-C does not cut the cleanup short
                _remove_tree(staging)


def _make_staging(staging: str):
    """Make the staging folder with its owner file already inside (made under a temporary name, then
    renamed): a run on another machine sharing the output folder never sees it without its owner, which
    it would take for a folder of this machine's, and so, finding no such process, remove."""
    pid, host = _me()
    tmp = os.path.join(os.path.dirname(staging), f"{TEMP_PREFIX}{pid}@{host}+staging")
    os.mkdir(tmp)
    try:
        with open(os.path.join(tmp, _OWNER), "w") as f:
            f.write(f"{pid} {host}\n")
        os.rename(tmp, staging)
    except BaseException:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _is_gdal_io_error(e) -> bool:
    return type(e).__module__.startswith("rasterio") and ("IO" in type(e).__name__ or "Write" in str(e))


def _remove_tree(d):
    import shutil
    import time

    for _ in range(20):  # a writer thread may still be adding a file while we delete
        shutil.rmtree(d, ignore_errors=True)
        if not os.path.exists(d):
            return
        time.sleep(0.05)


def _write_error(outdir, e) -> OutputError:
    import errno

    reason = getattr(e, "strerror", None) or _first_line(e)
    hint = "choose another directory with -o/--output"
    if getattr(e, "errno", None) in (errno.ENOSPC, errno.EDQUOT) or _nearly_full(outdir):
        reason = reason if getattr(e, "errno", None) in (errno.ENOSPC, errno.EDQUOT) else f"{reason}; the disk is full"
        hint = "free some space or choose another directory with -o/--output"
    return OutputError(f"cannot write the outputs in {outdir!r} ({reason}); nothing was changed there: {hint}")


def _nearly_full(outdir) -> bool:
    try:
        st = os.statvfs(outdir)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < 1 << 20


def _first_line(e) -> str:
    s = str(e).strip()
    return s.splitlines()[0] if s else type(e).__name__


# ---------------------------------------------------------------------------- signals
class Interrupted(KeyboardInterrupt):
    """SIGINT, SIGTERM or SIGHUP arrived; ``signum`` says which."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum
        self.committed = False  # True when it came while a complete output set was being put in place


_critical = {"depth": 0, "pending": None}


def _in_import(frame) -> bool:
    """Whether the interrupted code is inside the import machinery (an exception there can deadlock
    the module locks between threads, so the interrupt waits until the import is done)."""
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


def _on_signal(signum, frame):
    if _critical["depth"]:
        _critical["pending"] = signum  # raised when the critical section ends
        return
    if _in_import(frame):
        import signal

        _critical["pending"] = signum
        signal.setitimer(signal.ITIMER_REAL, 0.05)  # look again in 50 ms (see _on_alarm)
        return
    raise Interrupted(signum)


def _on_alarm(signum, frame):
    import signal

    pending = _critical["pending"]
    if pending is None or _critical["depth"]:
        return
    if _in_import(frame):
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        return
    _critical["pending"] = None
    raise Interrupted(pending)


@contextlib.contextmanager
def terminate_as_interrupt(*, after=None):
    """Turn SIGTERM and SIGHUP (a closed terminal) into KeyboardInterrupt, as SIGINT is, while the block runs.

    Cleanup code (``finally`` blocks, context managers) then runs on every polite way of stopping a run.
    Outside the main thread this does nothing.

    Parameters
    ----------
    after : callable, optional
        Signal handler for SIGINT/SIGTERM/SIGHUP once the block has ended, instead of the handlers it
        found (the program itself: a signal while the interpreter shuts down is then answered in one
        line, not by the default handler's silent death).
    """
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    sigs = [signal.SIGINT, signal.SIGTERM] + ([signal.SIGHUP] if hasattr(signal, "SIGHUP") else [])
    old = {}
    for s in sigs:
        with contextlib.suppress(ValueError, OSError):
            old[s] = signal.signal(s, _on_signal)
    if hasattr(signal, "SIGALRM"):
        with contextlib.suppress(ValueError, OSError):
            old[signal.SIGALRM] = signal.signal(signal.SIGALRM, _on_alarm)
    try:
        yield
    finally:
        if hasattr(signal, "setitimer"):
            signal.setitimer(signal.ITIMER_REAL, 0)
        _critical["pending"] = None
        for s, h in old.items():
            with contextlib.suppress(ValueError, OSError):
                signal.signal(s, h if after is None or s not in sigs else after)


def signal_pending() -> bool:
    """Whether a stop signal arrived inside :func:`signals_deferred` and waits for the block to end."""
    return _critical["pending"] is not None


@contextlib.contextmanager
def signals_deferred():
    """Hold SIGINT/SIGTERM/SIGHUP (as installed by :func:`terminate_as_interrupt`) until the block ends."""
    _critical["depth"] += 1
    try:
        yield
    finally:
        _critical["depth"] -= 1
        if not _critical["depth"] and _critical["pending"] is not None:
            signum, _critical["pending"] = _critical["pending"], None
            raise Interrupted(signum)
