"""Engine work obeys PostgreSQL: cancel, statement_timeout and terminate stop it.

A DuckDB call does not return to PostgreSQL until DuckDB is done, so
PostgreSQL's interrupt checks cannot run meanwhile. Each DuckDB call therefore
runs inside a Guard:

- The backend's thread blocks the signals PostgreSQL acts on (SIGINT cancel,
  SIGTERM terminate, SIGQUIT, SIGALRM timeouts, SIGUSR1 procsignals). Threads
  DuckDB starts during the call inherit that mask, so PostgreSQL's signal
  handlers only ever run on the backend's own thread: when the call ends and
  the mask is restored, pending signals are delivered there as usual.
- The call itself runs on a thread with a large stack (joined before
  returning); meanwhile the backend's thread polls for a pending
  SIGINT/SIGTERM/SIGQUIT and for the statement_timeout deadline, then
  interrupts the DuckDB connection and shuts down the sockets the engine
  opened, so that work blocked on a stalled server ends too.
- After an interrupted call, raise_pending() lets PostgreSQL process the
  interrupt (one pg_sleep(0)): its own error (57014, "canceling statement due
  to user request" / "... statement timeout") or, on terminate, its FATAL.
"""

import os
import signal
import threading
import time

from .errors import QUERY_CANCELED, PgError

BLOCKED = {signal.SIGINT, signal.SIGTERM, signal.SIGQUIT, signal.SIGALRM, signal.SIGUSR1}
STOPPING = {signal.SIGINT, signal.SIGTERM, signal.SIGQUIT}
POLL = 0.005
# Act a little after PostgreSQL's own statement_timeout timer, so that its
# SIGALRM is pending when the call returns and PostgreSQL raises its own error.
DEADLINE_SLACK = 0.001

TIMEOUT_MESSAGE = "canceling statement due to statement timeout"


def _socket_inodes():
    """{fd: inode} of this process's sockets."""
    out = {}
    try:
        fds = os.listdir("/proc/self/fd")
    except OSError:
        return out
    for name in fds:
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue
        if target.startswith("socket:["):
            out[int(name)] = target[8:-1]
    return out


class Sockets:
    """The sockets an engine may cut: every socket of the process but those
    that existed when the engine started (the client's connection among them).
    Cutting needs no bookkeeping per call; a connection another extension opens
    later in the session (postgres_fdw, dblink) is cut too, and reconnects."""

    def __init__(self):
        self.foreign = set(_socket_inodes().values())

    def cut(self):
        import socket  # on a stop request only
        for fd, inode in _socket_inodes().items():
            if inode in self.foreign:
                continue
            try:
                s = socket.socket(fileno=fd)
            except OSError:
                continue
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            finally:
                s.detach()      # the descriptor stays its owner's to close


# DuckDB recurses on nested data (JSON structure detection, json_structure,
# json_contains, ...) with no depth limit, about 130 bytes of stack a level: on
# the backend's own 8 MB stack a 60,000-deep JSON value would crash the backend
# and with it every session. Calls run on a thread with a large stack instead
# (reserved, touched only as deep as the data goes).
STACK_SIZE = 1 << 30
_default_stack_set = False


def large_thread_stacks():
    """Threads DuckDB itself starts (workers, when duckdb.threads > 1) get the
    large stack too: the process's default for new threads."""
    global _default_stack_set
    if _default_stack_set:
        return
    import ctypes
    libc = ctypes.CDLL(None)
    attr = ctypes.create_string_buffer(128)         # pthread_attr_t is 56 bytes on x86-64
    try:
        if libc.pthread_attr_init(attr) == 0:
            libc.pthread_attr_setstacksize(attr, ctypes.c_size_t(STACK_SIZE))
            libc.pthread_setattr_default_np(attr)
            libc.pthread_attr_destroy(attr)
    except AttributeError:
        pass
    _default_stack_set = True


def release_free_memory():
    """Give the C heap's free pages back to the system (glibc's malloc_trim):
    once an engine has started and synced, what PostgreSQL's first catalog
    queries and DuckDB's start-up freed stays in the backend's RSS otherwise
    (~2 MiB; the call takes under a millisecond)."""
    import ctypes
    try:
        ctypes.CDLL(None).malloc_trim(ctypes.c_size_t(0))
    except AttributeError:      # not glibc
        pass


class Worker:
    """A thread with a large stack that runs an engine's DuckDB calls, one at a
    time. Started with PostgreSQL's signals blocked (so it, and the threads
    DuckDB starts from it, never take them); joined when the engine closes."""

    def __init__(self):
        self._cond = threading.Condition()
        self._job = None
        self._closed = False
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, BLOCKED)
        try:
            previous = threading.stack_size(STACK_SIZE)
            try:
                self._thread = threading.Thread(target=self._loop, name="duckdb_secrets-engine", daemon=True)
                self._thread.start()
            finally:
                threading.stack_size(previous)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)

    def _loop(self):
        while True:
            with self._cond:
                while self._job is None and not self._closed:
                    self._cond.wait()
                if self._job is None:
                    return
                job = self._job
            try:
                job.value = job.fn(*job.args)
            except BaseException as e:      # noqa: BLE001 - handed to the backend's thread
                job.error = e
            with self._cond:
                self._job = None
            job.done.set()

    def submit(self, fn, args):
        job = _Job(fn, args)
        with self._cond:
            if self._closed:
                raise RuntimeError("the engine's worker is closed")
            self._job = job
            self._cond.notify()
        return job

    def close(self):
        with self._cond:
            self._closed = True
            self._cond.notify()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()


class _Job:
    __slots__ = ("fn", "args", "value", "error", "done")

    def __init__(self, fn, args):
        self.fn, self.args = fn, args
        self.value = self.error = None
        self.done = threading.Event()


class Guard:
    """Guard(con, deadline, sockets, worker).run(fn, *args): one DuckDB call that
    PostgreSQL can stop, on a thread with a large stack (the engine's worker, or
    a thread of its own); the backend's thread waits for it and watches for its
    interrupts meanwhile. fn must not call into PostgreSQL (plpy): it runs on
    another thread.

    deadline: time.time() value of the statement_timeout, or None."""

    def __init__(self, con, deadline=None, sockets=None, worker=None):
        self.con = con
        self.deadline = deadline
        self.sockets = sockets
        self.worker = worker
        self.fired = None           # 'signal' or 'timeout' once the call was interrupted

    def run(self, fn, *args):
        own = self.worker is None
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, BLOCKED)
        try:
            worker = Worker() if own else self.worker
            try:
                job = worker.submit(fn, args)
                while not job.done.wait(POLL):
                    if self.fired is None:
                        self._check()
                    if self.fired is not None and self.sockets is not None:
                        # DuckDB retries a request whose connection died: cut until it gives up.
                        self.sockets.cut()
            finally:
                if own:
                    worker.close()
        finally:
            # Pending signals are delivered here, to the backend's own thread.
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        if job.error is not None:
            raise job.error
        return job.value

    def _check(self):
        if signal.sigpending() & STOPPING:
            self.fired = "signal"
        elif self.deadline is not None and time.time() >= self.deadline + DEADLINE_SLACK:
            self.fired = "timeout"
        if self.fired is not None and self.con is not None:
            import duckdb
            try:
                self.con.interrupt()
            except duckdb.Error:    # a closed connection has nothing to stop
                pass


def raise_pending(plpy, fired):
    """The error for an interrupted call: PostgreSQL's own, if it has one pending
    (a FATAL on terminate does not return), else a statement timeout's."""
    try:
        plpy.execute("SELECT pg_catalog.pg_sleep(0)")
    except plpy.SPIError as e:
        return PgError(getattr(e, "sqlstate", None) or QUERY_CANCELED, str(e.args[0]) if e.args else TIMEOUT_MESSAGE)
    if fired == "timeout":
        return PgError(QUERY_CANCELED, TIMEOUT_MESSAGE)
    return PgError(QUERY_CANCELED, "canceling statement due to user request")


_UNITS = {"us": 0.001, "ms": 1, "s": 1000, "min": 60000, "h": 3600000, "d": 86400000}


def timeout_ms(text):
    """statement_timeout as current_setting() shows it ('0', '1500ms', '2s', '1min') -> ms."""
    text = (text or "0").strip()
    num = text.rstrip("abcdefghijklmnopqrstuvwxyz")
    unit = text[len(num):] or "ms"
    try:
        return float(num) * _UNITS[unit]
    except (ValueError, KeyError):
        return 0.0


def deadline(statement_start_epoch, statement_timeout):
    ms = timeout_ms(statement_timeout)
    return None if not ms or statement_start_epoch is None else float(statement_start_epoch) + ms / 1000.0
