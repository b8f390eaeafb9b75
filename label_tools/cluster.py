"""Run a batch of labelling jobs on a Dask cluster (``--scheduler ADDRESS`` or ``--workers N``).

Each image is a task that runs :func:`label_tools.job.run_job` on a worker: the worker reads the image
and the model file and writes that image's outputs itself (as one output set: all files or none), so
an image's outputs land as soon as it is done and only a :class:`~label_tools.job.Job` (paths and
settings) and an :class:`~label_tools.job.Outcome` travel. A large raster is cut into window tasks
instead (:mod:`label_tools.blocks`) and its outputs are written by this process. Paths are made
absolute first: inputs, the model and ``-o DIR`` must be on a filesystem every worker sees.

Faults: a worker lost mid-run (killed, machine gone) only loses the tasks it was running; Dask runs
them again on another worker (a task is idempotent: it recomputes the same result and replaces
outputs atomically). A run stopped midway keeps its finished images, and the same command resumes
(images whose outputs exist are skipped). A cluster label_tools did not start is never shut down.
"""
from __future__ import annotations

import logging
import os
import queue
import socket
import sys
import threading
import time
import uuid
import weakref
from contextlib import contextmanager
from dataclasses import replace

from .errors import OptionError

log = logging.getLogger("label_tools")

#: Seconds to wait for a scheduler before giving up with a one-line error.
CONNECT_TIMEOUT = float(os.environ.get("LABEL_TOOLS_CONNECT_TIMEOUT", "3"))

_PATH_FIELDS = ("image", "outdir", "model", "scribbles", "labels", "colors", "save_model")


#: Address schemes of Dask's communication backends that a scheduler outside this process can listen on.
SCHEMES = ("tcp", "tls", "ws", "wss", "ucx")


def _bad_address(address: str, why: str = "") -> OptionError:
    return OptionError(f"--scheduler: expected the scheduler's address such as tcp://10.0.0.5:8786 (the one "
                       f"`dask scheduler` prints), got {address!r}{why}")


def parse_address(address: str):
    """(scheme, host, port) of a scheduler address (``tcp://HOST:PORT``, ``HOST:PORT``, ``tls://[::1]:8786``; port
    8786 when left out), or OptionError in one line saying what was expected, before anything connects.

    Dask's own messages for these were off the mark: ``http://...`` (a dashboard's address) 'no Dask scheduler
    answers ... within 3 s (unknown address scheme ...)', ``inproc://x`` 'not enough values to unpack', ``ucx://``
    without its package 'Can't instantiate abstract class UCXConnector', an empty host or a port above 65535
    'Name or service not known' / 'Connection refused'.
    """
    scheme, sep, rest = address.rpartition("://")
    scheme = scheme if sep else "tcp"
    if scheme not in SCHEMES:
        hint = (": an http:// address is a dashboard's, not the scheduler's" if scheme in ("http", "https") else
                ": inproc:// addresses exist inside one process only" if scheme == "inproc" else
                f": unknown scheme {scheme + '://'!r} (Dask knows {', '.join(s + '://' for s in SCHEMES)})")
        raise _bad_address(address, hint)
    if scheme == "ucx":
        import importlib.util

        if importlib.util.find_spec("distributed_ucxx") is None:
            raise OptionError(f"--scheduler: {address!r}: ucx:// needs Dask's UCX support (distributed-ucxx), which "
                              "is not installed here; install it or give the scheduler's tcp:// address")
    if rest.startswith("["):  # IPv6: [addr]:port or [addr]
        host, _, tail = rest[1:].partition("]")
        port = tail[1:] if tail.startswith(":") else None if not tail else "?"
    else:
        host, colon, port = rest.rpartition(":")
        if not colon:
            host, port = rest, None
        elif ":" in host:  # an IPv6 address without brackets
            raise _bad_address(address, ": an IPv6 address goes in brackets, as tcp://[::1]:8786")
    if not host or any(c.isspace() or c in "/?#@" for c in host):
        raise _bad_address(address)
    if port is None:
        return scheme, host, 8786
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise _bad_address(address, f": the port must be a number 1-65535, got {port!r}")
    return scheme, host, int(port)


def check_reachable(address: str, timeout: float = CONNECT_TIMEOUT):
    """Raise OptionError unless a Dask scheduler answers at ``address``: its form (:func:`parse_address`), a TCP
    connect, then the scheduler's identity (:func:`_identify`).

    A wrong form, host or port is caught in well under a second, before any model or image is read and before
    any output folder is made; a silent host or another server within :data:`CONNECT_TIMEOUT` s. A UCX address
    (``ucx://``) skips the TCP connect.
    """
    scheme, host, port = parse_address(address)
    if scheme != "ucx":  # tcp, tls and websockets: over TCP
        try:
            socket.create_connection((host, port), timeout=timeout).close()
        except OSError as e:
            why = e.strerror or type(e).__name__
            raise OptionError(f"--scheduler: no Dask scheduler reachable at {address!r} ({why}); start one with "
                              "`dask scheduler` or check the address") from None
    _dask()
    _identify(address)


def _dask():
    try:
        import distributed
    except ImportError as e:  # an install without the dependency
        raise OptionError(f"--scheduler/--workers need dask.distributed ({e}); install it with "
                          "`pip install dask distributed`") from None
    return distributed


#: Worker settings of a local cluster (``--workers N``). Dask's nanny sets ``MALLOC_TRIM_THRESHOLD_``
#: in each worker; setting it switches off glibc's adaptive mmap threshold, so every large numpy
#: temporary (a 4 MP image's features and probabilities are many) is a fresh zero-filled mapping:
#: unset here (``None`` removes it). The statistical profiler (a sample every 10 ms) is off too: it
#: only feeds the dashboard's profile page. Measured in benchmarks/cluster.py (docs/benchmarks.md).
LOCAL_WORKER_CONFIG = {
    "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None,
    "distributed.worker.profile.enabled": False,
}


def quiet_logs():
    """Dask's own log lines at ERROR and above only, in this process.

    Dask's configuration gives some of its loggers levels of their own (``distributed.client`` at
    WARNING), so quieting the parent ``distributed`` logger left them talking: a worker lost
    during a run printed "Couldn't gather N keys, rescheduling ..." to the user beside this
    package's own line about it. Every such logger is set, not only the parents.
    """
    roots = ("distributed", "tornado", "bokeh")
    names = list(roots) + [n for n in list(logging.root.manager.loggerDict) if n.split(".")[0] in roots]
    for name in names:
        logger = logging.getLogger(name)
        if logger.level < logging.ERROR:
            logger.setLevel(logging.ERROR)


@contextmanager
def connect(*, scheduler: str | None = None, workers: int | None = None):
    """A ``distributed.Client``: to the scheduler at ``scheduler``, or to a new local cluster of ``workers`` processes.

    A local cluster is shut down on exit; a cluster reached through ``scheduler`` is only disconnected from.

    Raises
    ------
    OptionError
        The scheduler cannot be reached within :data:`CONNECT_TIMEOUT` seconds, or ``workers`` < 1.
    """
    distributed = _dask()
    quiet_logs()
    if scheduler is not None:
        # a refused connection first, in a millisecond: Dask's own connect retries a refused port until its
        # timeout, then says "Timed out trying to connect ... after 3 s" (3 s, and not what happened)
        check_reachable(scheduler)
        try:
            client = distributed.Client(scheduler, timeout=CONNECT_TIMEOUT, set_as_default=False)
        except Exception as e:
            raise _unreachable(scheduler, e) from None
        _option_of[client] = ("--scheduler", scheduler)
        try:
            yield client
        finally:
            with _silenced():
                client.close()  # disconnect only: the cluster is someone else's
        return
    if workers is None or workers < 1:
        raise OptionError(f"--workers: expected a number of worker processes >= 1, got {workers}")
    import dask

    with dask.config.set(LOCAL_WORKER_CONFIG):  # ":0": the scheduler's HTTP server on a free port, never 8787's owner
        cluster = distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                           dashboard_address=":0", silence_logs=logging.ERROR)
    try:
        client = distributed.Client(cluster, set_as_default=False)
        _option_of[client] = ("--workers", None)
        try:
            yield client
        finally:
            with _silenced():
                client.close()
    finally:
        cluster.close()


#: The option (and address as given) each client of :func:`connect` was made for, for its error lines.
_option_of: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


@contextmanager
def _silenced():
    """Dask's own loggers silent (closing a client whose scheduler went away logs a traceback of its cancelled
    reconnection at ERROR, an empty line and 30 more on the user's terminal after label_tools' own one line)."""
    names = [n for n in ["distributed", "tornado"] + list(logging.root.manager.loggerDict)
             if n.split(".")[0] in ("distributed", "tornado")]
    saved = {n: logging.getLogger(n).level for n in names}
    for n in names:
        logging.getLogger(n).setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        for n, level in saved.items():
            logging.getLogger(n).setLevel(level)


class SchedulerLost(Exception):
    """The client lost its connection to the scheduler mid-run: every task of the run is cancelled (Dask's
    ``FutureCancelledError``, reason ``scheduler-connection-lost``), none will finish. Raised by
    :func:`first_results`; :func:`run_jobs` turns it into one :class:`OptionError` line."""


def _connection_lost(client, error) -> bool:
    """Whether a task's ``error`` is the client losing its scheduler (not the task's own failure)."""
    if getattr(error, "reason", None) == "scheduler-connection-lost":
        return True
    return "Cancelled" in type(error).__name__ and getattr(client, "status", "running") != "running"


#: Seconds :func:`prepare_workers` waits for the workers' answer before the run goes on without it.
PREPARE_TIMEOUT = 30.0

_prepared: "weakref.WeakSet" = weakref.WeakSet()


def prepare_workers(client, timeout: float = PREPARE_TIMEOUT):
    """Register :class:`label_tools.worker_setup.Preload` on the cluster: every worker, present or joining
    later, imports what the tasks need before it runs one (see that module for why).

    Called before the tasks of :func:`run_jobs` and :func:`label_tools.blocks.predict_on_cluster` are
    submitted, once per client. The scheduler waits for every worker's answer; a frozen worker never
    gives one, so the answer is waited for ``timeout`` s at most (the plugin is registered with the
    scheduler either way, and the stall watchdog of :func:`first_results` deals with the frozen worker).
    """
    if client in _prepared:
        return
    _prepared.add(client)
    from .worker_setup import Preload

    register = getattr(client, "register_plugin", None) or client.register_worker_plugin  # before 2023.9.2

    def run():
        try:
            register(Preload(), name=Preload.name)
        except Exception as e:  # a worker without label_tools: its tasks say so, one image at a time
            log.debug("could not prepare the workers: %s: %s", type(e).__name__, e)

    t = threading.Thread(target=run, name="label_tools-prepare-workers", daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        log.warning("cluster: not every worker answered within %.0f s (frozen or overloaded?); going on", timeout)


def _unreachable(address, e):
    why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    if isinstance(e, MemoryError):  # a length read from a reply in another protocol
        why = "the server there does not speak Dask's protocol"
    return OptionError(f"--scheduler: no Dask scheduler answers at {address!r} within {CONNECT_TIMEOUT:g} s "
                       f"({why[:160]}); start one with `dask scheduler` or check the address")


def _identify(address: str):
    """Ask the server at ``address`` who it is (one short connection); OptionError unless a Dask scheduler."""
    import asyncio

    from distributed.core import rpc

    async def ask():
        async with rpc(address, timeout=CONNECT_TIMEOUT) as r:
            return await asyncio.wait_for(r.identity(), CONNECT_TIMEOUT)

    try:
        info = asyncio.run(ask())
    except Exception as e:  # refused, timed out, or not speaking Dask's protocol
        raise _unreachable(address, e) from None
    if not isinstance(info, dict) or info.get("type") != "Scheduler":
        kind = info.get("type") if isinstance(info, dict) else type(info).__name__
        raise OptionError(f"--scheduler: {address!r} is a Dask {kind}, not a scheduler; give the scheduler's "
                          "address (the one `dask worker` connects to)")


def dashboard_link(client) -> str | None:
    """The scheduler's dashboard URL, or None when it runs none (it needs bokeh)."""
    import importlib.util

    if importlib.util.find_spec("bokeh") is None:  # the HTTP server runs, but serves no dashboard pages
        return None
    try:
        info = client.scheduler_info()
        port = info.get("services", {}).get("dashboard")
        if not port:
            return None
        host = client.scheduler.address.split("://", 1)[-1].rsplit(":", 1)[0]
        return f"http://{host}:{port}/status"
    except Exception:
        return None


def absolute(job):
    """``job`` with every path made absolute (workers may run in another directory)."""
    return replace(job, **{f: os.path.abspath(getattr(job, f)) for f in _PATH_FIELDS
                           if getattr(job, f, None) is not None})


def where() -> dict:
    """Where this code runs: host, process id and Dask worker address (None outside a worker)."""
    try:
        from distributed import get_worker

        addr = get_worker().address
    except (ImportError, ValueError):
        addr = None
    return {"host": socket.gethostname(), "pid": os.getpid(), "worker": addr}


#: Seconds without any task finishing after which stalled tasks are started again under new keys
#: (see :func:`first_results`): at least this long, and at least four times the longest wait between
#: two finished tasks so far.
STALL_SECONDS = 300.0

#: When any task of this process last finished (time.monotonic()): the small images of a batch and
#: the windows of its large raster share one clock, so windows waiting behind photos are not stalled.
_last_progress = [time.monotonic()]


def stall_seconds() -> float:
    """:data:`STALL_SECONDS`, or ``$LABEL_TOOLS_STALL_SECONDS`` when that is a positive number."""
    try:
        v = float(os.environ.get("LABEL_TOOLS_STALL_SECONDS", STALL_SECONDS))
    except ValueError:
        return STALL_SECONDS
    return v if v > 0 else STALL_SECONDS


def first_results(client, submit, n: int, *, what: str, first=None, stall: float | None = None):
    """Run ``n`` tasks on the cluster; yield each one's result once, in the order they finish.

    Dask runs a task again when its worker dies or stops answering. A run can still wait for ever: on
    a worker frozen inside a task while its heartbeats go on (a hung network file system), or on a result
    lost with its worker that never comes back to the client. So when no task has finished for a while
    (:func:`stall_seconds`, or four times the longest wait between two finished tasks so far, whichever
    is longer), the tasks that cannot be progressing get one more attempt under a new key: those running
    on a worker, or on a worker silent for a while, or in a state that moves no further on its own. Tasks
    waiting their turn (in the scheduler's queue, or behind a running task on a worker) are left alone.
    The first attempt of a task to finish is the one used, and the scheduler's view of the stalled tasks
    is logged. Tasks must be idempotent (label_tools' are: same inputs, same outputs, written atomically).

    Parameters
    ----------
    client : distributed.Client
    submit : callable(i, attempt) -> distributed.Future
        Submits task ``i`` (``attempt`` 0, 1, ...; each under its own key).
    n : int
    what : str
        What a task is, for the log (``"image"``, ``"window"``).
    first : sequence of distributed.Future, optional
        Attempt 0 of every task, already submitted (else ``submit(i, 0)`` is called for each).
    stall : float, optional
        Default :func:`stall_seconds`.

    Yields
    ------
    (i, value, future)
        ``value`` is the task's result, or the exception it raised (``KilledWorker`` included) once no
        other attempt of it is running. ``future`` is the attempt that finished; the others are released.
    """
    stall = stall_seconds() if stall is None else stall
    done: queue.Queue = queue.Queue()
    task_of = {}  # future -> task index, for every attempt not yet finished
    tries = [0] * n
    left = set(range(n))

    limit_now = [stall]

    def fetch(fut):
        """Bring the finished task's result here (or its exception) and queue it. A result held by a frozen
        worker never comes: each is waited for in a thread of its own, side by side, so the loop below goes on
        and such results are retried by the stall path (waited for one after another in the loop, N of them
        held up the run N x the stall time before anything was started again)."""
        i = task_of.get(fut)
        if i is None or i not in left:  # a slower attempt of a task already done: its result is not needed
            done.put((fut, None, None))
            return
        try:
            done.put((fut, fut.result(timeout=limit_now[0]), None))
        except Exception as e:
            done.put((fut, None, e))

    def add(i, fut):
        task_of[fut] = i
        # called in Dask's callback thread, which must not wait
        fut.add_done_callback(lambda f: threading.Thread(target=fetch, args=(f,), daemon=True,
                                                         name="label_tools-fetch").start())

    for i in range(n):
        add(i, first[i] if first is not None else submit(i, 0))
    longest, last = 0.0, time.monotonic()
    while left:
        limit = limit_now[0] = max(stall, 4 * longest)
        try:
            fut, value, error = done.get(timeout=max(0.05, max(last, _last_progress[0]) + limit - time.monotonic()))
        except queue.Empty:
            if time.monotonic() - _last_progress[0] < limit:  # another part of the run made progress
                continue
            waiting = {f.key: i for f, i in task_of.items() if i in left}
            states = _scheduler_states(client, list(waiting), silent=min(limit, 30.0))
            again = sorted({i for k, i in waiting.items() if _stuck(states, k)})
            log.warning("cluster: no %s task finished in %.0f s (%s); starting %d again under new keys",
                        what, limit, _describe(states), len(again))
            for i in again:
                tries[i] += 1
                add(i, submit(i, tries[i]))
            last = _last_progress[0] = time.monotonic()
            continue
        i = task_of.pop(fut, None)
        if i is None or i not in left:  # a slower attempt of a task already done
            fut.release()
            continue
        if error is not None:
            if _connection_lost(client, error):  # every task is cancelled: say so once, not once per task
                raise SchedulerLost(str(error).splitlines()[0])
            if isinstance(error, TimeoutError) and fut.status not in ("error", "cancelled"):
                task_of[fut] = i  # finished, then its worker died or froze with the result: the stall path retries it
                continue
            if any(j == i for j in task_of.values()):
                continue  # it raised, or took down every worker that tried it; another attempt still runs
            value = error
        now = time.monotonic()
        longest, last = max(longest, now - last), now
        _last_progress[0] = now
        left.discard(i)
        for f in [f for f, j in task_of.items() if j == i]:
            # released, not cancelled: cancelling a grid attempt would cancel the window tasks built on it
            del task_of[f]
            f.release()
        yield i, value, fut


def _stuck(states, key) -> bool:
    """Whether the task ``key`` cannot be progressing, from :func:`_scheduler_states` (None: no answer)."""
    if states is None or key not in states:  # no scheduler, or it forgot the task: nothing will come
        return True
    state, _, doing = states[key]
    if state in ("queued", "waiting", "no-worker"):  # waits for a free worker or for its inputs
        return doing == "inputs stalled"
    if state == "processing":
        return doing in ("running", "silent worker")  # else: behind a running task on its worker
    return True  # in memory, released or erred, yet never reported to this client


def _scheduler_states(client, keys, silent: float = 30.0):
    """The scheduler's ``{key: (state, worker address or "", "running" | "silent worker" | "inputs stalled" |
    "")}`` for ``keys``, or None if it does not answer. "silent worker": no heartbeat for ``silent`` s;
    "inputs stalled": waiting for a task running or on a silent worker."""
    def view(dask_scheduler, keys, silent):  # runs on the scheduler
        from distributed.metrics import time as now

        def doing(ts):
            ws = ts.processing_on
            if ws is None:
                return ""
            return "silent worker" if now() - ws.last_seen > silent else "running" if ts in ws.executing else ""

        out = {}
        for k in keys:
            ts = dask_scheduler.tasks.get(k)
            if ts is None:
                continue
            if ts.processing_on is not None:
                out[k] = (ts.state, ts.processing_on.address, doing(ts))
            elif ts.state == "waiting" and any(doing(d) for d in ts.dependencies):
                out[k] = (ts.state, "", "inputs stalled")
            else:
                out[k] = (ts.state, "", "")
        return out

    try:
        return client.run_on_scheduler(view, keys=keys, silent=silent, callback_timeout=30)
    except Exception:  # the scheduler gone too, or too busy to say: every unfinished task is started again
        return None


def _describe(states) -> str:
    """A log line's summary of :func:`_scheduler_states`: how many tasks are in each state, on which worker."""
    if states is None:
        return "the scheduler did not answer"
    counts = {}
    for state, where, doing in states.values():
        label = state + (f" on {where}" if where else "") + (f" ({doing})" if doing else "")
        counts[label] = counts.get(label, 0) + 1
    return "scheduler: " + (", ".join(f"{n} {label}" for label, n in sorted(counts.items())) or "none of them known")


def image_task(job):
    """One image on a worker: :func:`label_tools.job.run_job` and where it ran.

    Returns
    -------
    (Outcome, dict)
    """
    from .job import FAILED, Outcome, run_job
    from .threads import match_dask_worker

    match_dask_worker()
    try:
        o = run_job(job)
    except (KeyboardInterrupt, MemoryError):
        raise
    except Exception as e:  # one image's surprise must not fail the batch
        o = Outcome(job.image, FAILED, message=f"{type(e).__name__}: {e}".splitlines()[0], error=type(e).__name__)
    return o, where()


def _is_large(path: str, plane: str | None = None) -> bool:
    """Whether the raster ``path`` (its page ``plane`` chooses, ``--plane``: the pages of a plain multi-page TIFF
    may differ in size; a stack's planes do not) is cut into window tasks."""
    from .blocks import WINDOWED_PIXELS
    from .io import RASTER_EXT, image_plane, open_raster

    if not path.lower().endswith(RASTER_EXT) or not os.path.isfile(path):
        return False
    try:
        page = image_plane(path, plane)["page"] if plane is not None else None
        name = f"GTIFF_DIR:{page}:{os.path.abspath(path)}" if page and page > 1 else path
        with open_raster(name) as ds:
            return ds.height * ds.width >= WINDOWED_PIXELS
    except Exception:  # the job reports a bad file or a plane it lacks
        return False


def _tty() -> bool:
    """Whether stderr is a terminal (where a progress bar can be redrawn in place)."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def run_jobs(jobs, client, *, on_outcome=None, quiet: bool = False) -> list:
    """Run jobs on the cluster behind ``client``; a failing image does not stop the others.

    Parameters
    ----------
    jobs : sequence of label_tools.job.Job
    client : distributed.Client
    on_outcome : callable(Outcome), optional
        Called in this process as each image ends (in the order they end).
    quiet : bool
        No progress bar.

    Returns
    -------
    list of Outcome, in job order
    """
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    from .job import FAILED, Outcome

    jobs = [absolute(j) for j in jobs]
    started = time.time() - 1  # (file times of coarse filesystems)
    prepare_workers(client)
    n_workers = len(client.scheduler_info().get("workers", {}))
    link = dashboard_link(client)
    log.info("cluster: %s, %d worker%s%s", client.scheduler.address, n_workers, "s" if n_workers != 1 else "",
             f", dashboard {link}" if link else "")
    if n_workers == 0:
        log.warning("the scheduler has no workers yet: tasks wait until a `dask worker` joins")
    large = [i for i, j in enumerate(jobs) if _is_large(j.image, j.plane)]
    small = [i for i in range(len(jobs)) if i not in set(large)]
    run_id = uuid.uuid4().hex[:8]
    outcomes = [None] * len(jobs)
    lock = threading.Lock()
    # redrawn in place on a terminal only: into a log file its carriage returns would pile up (the
    # summary line and each image's 'done' line say the same there)
    bar = tqdm(total=len(jobs), unit="image", desc="images", disable=quiet or not _tty(), dynamic_ncols=True,
               leave=True)

    def finish(i, o, info=None):
        with lock:
            outcomes[i] = o
            if info is not None:
                log.debug("%s ran on worker %s (host %s, pid %s)", os.path.basename(o.image), info["worker"],
                          info["host"], info["pid"])
            if on_outcome is not None:
                on_outcome(o)
            bar.update(1)

    with logging_redirect_tqdm(loggers=[logging.root]):
        def submit(k, attempt):
            i = small[k]
            return client.submit(image_task, jobs[i], key=f"label_image-{run_id}-{i}" + (f"-{attempt}" if attempt else ""),
                                 pure=False)

        first = [submit(k, 0) for k in range(len(small))]
        errors: queue.Queue = queue.Queue()
        thread = None
        if large:
            thread = threading.Thread(target=_run_large, args=(client, jobs, large, finish, errors, quiet), daemon=True)
            thread.start()
        try:
            for k, value, fut in first_results(client, submit, len(small), what="image", first=first):
                i = small[k]
                if isinstance(value, BaseException):  # KilledWorker: the image took down every worker that tried it
                    o, info = Outcome(jobs[i].image, FAILED, message=f"{type(value).__name__}: {value}".splitlines()[0],
                                      error=type(value).__name__), None
                else:
                    o, info = value
                fut.release()
                finish(i, o, info)
            del first
            if thread is not None:
                thread.join()
                if not errors.empty():
                    raise errors.get()
        except SchedulerLost:
            if thread is not None:  # its tasks are cancelled too; a raster it is writing is written (all or nothing)
                thread.join()
            bar.close()
            raise _lost_line(client, jobs, outcomes, started) from None
    bar.close()
    return outcomes


def _lost_line(client, jobs, outcomes, started: float) -> OptionError:
    """The one line of a run whose scheduler went away: which, how many images are labelled (their outputs are
    kept, those whose worker wrote them after the connection was lost included) and how to go on."""
    from .job import _all_exist

    option, address = _option_of.get(client, ("--scheduler", None))
    done = 0
    for j, o in zip(jobs, outcomes):
        if o is not None:
            done += o.status in ("done", "skipped")
            continue
        try:  # its outputs landed, its outcome did not come back (with --overwrite: outputs of this run only)
            paths = _all_exist(j)
            done += paths is not None and (not j.overwrite or min(os.path.getmtime(p) for p in paths.values())
                                           >= started)
        except Exception:  # noqa: BLE001 - an unreadable image is simply not counted as labelled
            pass
    whom = f"the Dask scheduler at {address!r}" if address else "the local cluster's scheduler"
    if not all(j.skip_existing for j in jobs):
        again = ("label the others once it is back (the labelled ones' outputs exist: the same command refuses "
                 "them without --overwrite)")
    elif any(j.overwrite for j in jobs):
        again = "run it again once it is back (without --overwrite, labelled images are skipped)"
    else:
        again = "run the same command again once it is back: labelled images are skipped"
    n = len(jobs)
    kept = ", their outputs kept" if done else ""
    return OptionError(f"{option}: lost the connection to {whom} mid-run (it stopped, or the network failed); "
                       f"{done} of {n} image{'s' if n != 1 else ''} labelled so far{kept} (a worker still on an image "
                       f"may yet write its outputs); {again}")


def _run_large(client, jobs, indices, finish, errors, quiet):
    """Large rasters, one after another, each spread over the cluster as window tasks."""
    from tqdm import tqdm

    from .blocks import predict_on_cluster
    from .job import FAILED, Outcome, run_job

    try:
        for i in indices:
            bar = tqdm(unit="window", desc=os.path.basename(jobs[i].image), disable=quiet or not _tty(), position=1,
                       leave=False)

            def progress(stage, done, total, bar=bar):
                if stage == "windows":
                    bar.total = total
                    bar.n = done
                    bar.refresh()

            def predict(model, src, *, settings=None, progress=None, bar_progress=progress, **probs):
                # probs: on_grid, on_window. run_job passes its own progress (None here): the window bar is fed
                # all the same (a `progress=progress` default was replaced by that None, and the bar stood at 0)
                def both(stage, done, total):
                    bar_progress(stage, done, total)
                    if progress is not None:
                        progress(stage, done, total)

                return predict_on_cluster(client, model, src, settings=settings, progress=both, **probs)

            t0 = time.perf_counter()
            try:
                o = run_job(jobs[i], predict=predict)
            except (KeyboardInterrupt, MemoryError, SchedulerLost):
                raise
            except Exception as e:  # a window lost for good (KilledWorker) fails this image only
                o = Outcome(jobs[i].image, FAILED, message=f"{type(e).__name__}: {e}".splitlines()[0],
                            error=type(e).__name__)
            bar.close()
            log.debug("%s: grid stage and %s on the cluster in %.1f s", os.path.basename(jobs[i].image),
                      "windows", time.perf_counter() - t0)
            finish(i, o)
    except BaseException as e:  # noqa: BLE001 - handed to the main thread
        errors.put(e)
