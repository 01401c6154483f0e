"""A worker process, as the backend starts it, talks to it and waits for it.

The backend starts a worker from its own thread: fork+exec of the server's
Python (subprocess: close_fds, a new session so that PostgreSQL's signals to
the backend's process group never reach it), only one end of a socketpair
inherited, a clean environment. The worker hardens itself (sandbox.harden:
it dies with its backend, PR_SET_PDEATHSIG) and serves requests (worker.py;
frames: wire.py).

While it waits for an answer, the backend sleeps in PostgreSQL's own wait
(WaitLatchOrSocket, wait event Extension): a cancel, statement_timeout or
terminate sets its latch; the worker is asked to interrupt DuckDB and, if it
has not answered within STOP_GRACE, is killed. Postmaster death ends the
backend as in any other wait (WL_EXIT_ON_PM_DEATH), and the worker with it.
A worker that dies is an error for the request it served (58000, or 53200
when memory was the cause), never the backend's.
"""

import collections
import os
import signal
import sys
import time

from . import shipped, wire
from .errors import OUT_OF_MEMORY, QUERY_CANCELED, SYSTEM_ERROR, PgError, caught, from_duckdb

# The directory holding the package (the worker puts it on its path), and the pinned dependencies.
PYTHON_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _deps_dir():
    return os.path.join(shipped.ROOT, "deps")


# How long a worker asked to interrupt DuckDB may take before it is killed.
STOP_GRACE = 0.2

# Only these reach a worker's environment (never AWS_* credentials, PG*, HOME).
_PASSED_ENV = ("TZ", "LANG", "LC_ALL", "LC_CTYPE", "SSL_CERT_FILE", "SSL_CERT_DIR", "CURL_CA_BUNDLE",
               "DUCKDB_SECRETS_LANDLOCK_ABI_MAX")

# Azure credential chains are resolved by DuckDB's azure extension from these
# (env, workload and managed identity): passed to engines that load azure only.
_AZURE_ENV = ("AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_CLIENT_SECRET", "AZURE_CLIENT_CERTIFICATE_PATH",
              "AZURE_FEDERATED_TOKEN_FILE", "AZURE_AUTHORITY_HOST", "AZURE_USERNAME", "AZURE_PASSWORD",
              "IDENTITY_ENDPOINT", "IDENTITY_HEADER", "MSI_ENDPOINT", "MSI_SECRET")

_BOOT = ("import sys; sys.path[:0] = [sys.argv[3], sys.argv[4]]; "
         "from duckdb_secrets import worker; worker.main(int(sys.argv[1]), int(sys.argv[2]))")


def _server_python():
    """The interpreter PL/Python runs (Debian's /usr/bin/python3.x)."""
    exe = sys.executable or ""
    if os.path.basename(exe).startswith("python") and os.access(exe, os.X_OK):
        return exe
    return os.path.join(sys.base_exec_prefix, "bin", f"python{sys.version_info[0]}.{sys.version_info[1]}")


# --- PostgreSQL's wait and interrupt flags ------------------------------------------

WL_LATCH_SET, WL_SOCKET_READABLE, WL_TIMEOUT, WL_EXIT_ON_PM_DEATH = 1, 2, 8, 32
PG_WAIT_EXTENSION = 0x07000000


class _Backend:
    """The backend's own wait and interrupt flags (ctypes into the server)."""

    def __init__(self):
        import ctypes
        lib = ctypes.CDLL(None)
        self.wait_fn = lib.WaitLatchOrSocket
        self.wait_fn.restype = ctypes.c_int
        self.wait_fn.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_uint32]
        self.reset = lib.ResetLatch
        self.reset.argtypes = [ctypes.c_void_p]
        self.latch = ctypes.c_void_p.in_dll(lib, "MyLatch")
        self.interrupt = ctypes.c_int.in_dll(lib, "InterruptPending")
        self.cancel = ctypes.c_int.in_dll(lib, "QueryCancelPending")
        self.die = ctypes.c_int.in_dll(lib, "ProcDiePending")

    def wait(self, fd, timeout_ms):
        rc = self.wait_fn(self.latch, WL_LATCH_SET | WL_SOCKET_READABLE | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
                          fd, int(timeout_ms), PG_WAIT_EXTENSION)
        if rc & WL_LATCH_SET:
            self.reset(self.latch)
        return rc

    def stopping(self):
        """A cancel, statement timeout or terminate is pending."""
        return bool(self.interrupt.value and (self.cancel.value or self.die.value))


_pg = []


def backend():
    if not _pg:
        try:
            _pg.append(_Backend())
        except (AttributeError, OSError, ValueError):
            _pg.append(None)        # not in a backend (unit tests): a plain wait
    return _pg[0]


# --- errors ------------------------------------------------------------------------

class RemoteError(Exception):
    """A DuckDB error the worker reported: its class name and message."""

    def __init__(self, kind, message):
        super().__init__(message)
        self.kind = kind


_SIGNALS = {signal.SIGSEGV: "segmentation fault", signal.SIGABRT: "aborted", signal.SIGBUS: "bus error",
            signal.SIGKILL: "killed", signal.SIGILL: "illegal instruction", signal.SIGFPE: "arithmetic fault"}


def _death_error(code, memory, limit, oom_killed):
    """The error for a worker that ended while it served a request."""
    if code is not None and code < 0:
        sig = -code
        how = f"signal {sig}: {_SIGNALS.get(sig, 'signal')}"
    else:
        sig, how = None, f"exit code {code}"
    near_limit = limit and memory and memory >= 0.85 * limit
    if oom_killed or near_limit:
        return PgError(OUT_OF_MEMORY, "the DuckDB engine ran out of memory",
                       detail=f"Its process ended ({how}) at its memory limit; the statement was lost.",
                       hint="The limit is duckdb.memory_limit (at most duckdb.max_memory_limit) plus an allowance "
                            "for the engine's process; a smaller query or a higher limit helps. The next call "
                            "starts a new engine.")
    why = (" Something outside it killed it." if sig == signal.SIGKILL else
           " Deeply nested data and damaged files can do this to DuckDB." if sig is not None else "")
    return PgError(SYSTEM_ERROR, "the DuckDB engine's process ended unexpectedly",
                   detail=f"It ended with {how} while running the statement; the statement was lost.{why}",
                   hint="The session goes on: the next call starts a new engine with the role's secrets.")


def _oom_kills():
    """The kernel's count of OOM kills in this process's cgroup (None: unknown)."""
    try:
        with open("/proc/self/cgroup") as f:
            path = f.read().strip().split("::", 1)[-1]
        with open(f"/sys/fs/cgroup{path}/memory.events") as f:
            for line in f:
                if line.startswith("oom_kill "):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def _status_bytes(pid, field):
    """A size from /proc/<pid>/status (readable even for a non-dumpable process)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return None


def _data_size(pid):
    return _status_bytes(pid, "VmData")


class Dead(Exception):
    """The worker is gone: carries the error to raise."""

    def __init__(self, error):
        super().__init__(error.message)
        self.error = error


# --- the worker process --------------------------------------------------------------

class Process:
    """A worker process and the backend's end of its socket."""

    def __init__(self, start, title):
        import socket
        import subprocess
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        passed = _PASSED_ENV + (_AZURE_ENV if "azure" in start.get("load", ()) else ())
        env = {k: os.environ[k] for k in passed if k in os.environ}
        env.update({"AWS_EC2_METADATA_DISABLED": "true", "MALLOC_ARENA_MAX": "2", "PATH": "/usr/bin:/bin",
                    "HOME": "/nonexistent", "PYTHONDONTWRITEBYTECODE": "1"})
        try:
            self.proc = subprocess.Popen(
                [_server_python(), "-I", "-S", "-c", _BOOT, str(theirs.fileno()), str(os.getpid()),
                 PYTHON_DIR, _deps_dir()],
                pass_fds=[theirs.fileno()], close_fds=True, start_new_session=True, env=env,
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        except OSError as e:
            ours.close()
            raise PgError(SYSTEM_ERROR, "could not start the DuckDB engine's process", str(e)) from None
        finally:
            theirs.close()
        self.sock = ours
        self.reader = wire.Reader(ours)
        self.inbox = collections.defaultdict(collections.deque)
        self.abandoned = set()
        self.next_id = 1
        self.dead = None
        self.killed = False
        self.limit = start.get("data_limit")
        self.memory = None
        self.oom_before = _oom_kills()
        self.start_id = self.send(start)

    @property
    def pid(self):
        return self.proc.pid

    def send(self, request):
        """Send a request; its id."""
        if self.dead is not None:
            raise Dead(self.dead)
        rid = self.next_id
        self.next_id += 1
        try:
            self.sock.sendall(wire.message(rid, request))
        except OSError:
            self._died()
            raise Dead(self.dead) from None
        return rid

    def abandon(self, rid):
        """Nobody waits for request rid's one outstanding frame any more."""
        if not self.inbox.pop(rid, None):
            self.abandoned.add(rid)

    def interrupt(self):
        try:
            self.sock.sendall(wire.message(0, {"op": "interrupt"}))
        except OSError:
            pass

    def _read(self):
        """Take in what the socket holds; False if the worker is gone."""
        alive = self.reader.feed()
        try:
            frames = self.reader.frames()
        except wire.Broken:
            alive = False
            frames = []
        for rid, kind, value in frames:
            if rid in self.abandoned:
                self.abandoned.discard(rid)     # the one frame it still owed: dropped
                continue
            self.inbox[rid].append((kind, value))
        return alive

    def wait(self, rid, stop_deadline=None):
        """The next frame answering request rid: (kind, value). Watches for
        PostgreSQL's interrupts meanwhile (stop())."""
        pg = backend()
        while True:
            box = self.inbox.get(rid)
            if box:
                return box.popleft()
            if self.dead is not None:
                raise Dead(self.dead)
            if not self._read():
                self._died()
                continue
            if self.inbox.get(rid):
                continue
            if pg is not None:
                timed_out = pg.wait(self.sock.fileno(), 50) & WL_TIMEOUT
                if pg.stopping() and stop_deadline is None:
                    self.stop(rid)
                    raise Stopped()
            else:
                import select
                timed_out = not select.select([self.sock], [], [], 0.05)[0]
            if stop_deadline is not None and time.monotonic() > stop_deadline:
                raise TimeoutError()
            if timed_out:
                self._sample()      # its memory, for the error if it dies

    def _sample(self):
        size = _data_size(self.proc.pid)
        if size is not None:
            self.memory = size

    def stop(self, rid):
        """Stop the request running: DuckDB's interrupt, then the process if it
        has not answered within STOP_GRACE."""
        self.interrupt()
        try:
            while True:
                kind, value = self.wait(rid, time.monotonic() + STOP_GRACE)
                if kind == wire.JSON:
                    return
        except (TimeoutError, Dead):
            pass
        self.kill()

    def kill(self):
        if self.dead is None:
            self.killed = True
            self.dead = PgError(QUERY_CANCELED, "canceling statement due to user request")
        try:
            self.proc.kill()
        except OSError:
            pass
        self._reap(1.0)

    def _reap(self, timeout):
        try:
            self.proc.wait(timeout)
        except Exception:       # noqa: BLE001 - a process that does not die from SIGKILL: nothing more to do
            pass

    def _died(self):
        if self.dead is not None:
            return
        try:
            self.proc.wait(2.0)
        except Exception:       # noqa: BLE001 - the socket closed but the process lives on: kill it
            self.proc.kill()
            self._reap(1.0)
        oom = _oom_kills()
        oom_killed = oom is not None and self.oom_before is not None and oom > self.oom_before
        self.dead = _death_error(self.proc.returncode, self.memory, self.limit, oom_killed)

    def alive(self):
        return self.dead is None and self.proc.poll() is None

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.kill()
            except OSError:
                pass
        self._reap(2.0)
        try:
            self.sock.close()
        except OSError:
            pass
        if self.dead is None:
            self.dead = PgError(SYSTEM_ERROR, "the DuckDB engine was closed")


class Stopped(Exception):
    """PostgreSQL asked to stop the statement (cancel, timeout, terminate)."""


_open_engines = []
_exit_hook = []


def _close_at_exit():
    """PostgreSQL's on_proc_exit, registered once: engines' processes are ended
    and their spill directories removed when the backend exits (the processes
    would end by themselves: this reaps them and removes the files)."""
    if _exit_hook:
        return
    import ctypes

    def close_all(code, arg):
        for engine in list(_open_engines):
            caught(engine.close)        # never raise into PostgreSQL's exit path
    hook = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_size_t)(close_all)
    try:
        ctypes.CDLL(None).on_proc_exit(hook, ctypes.c_size_t(0))
    except (AttributeError, OSError):
        return
    _exit_hook.append(hook)         # kept alive for the backend's lifetime


class Remote:
    """Requests to a worker, as PgErrors when they fail."""

    proc = None
    proxy = None

    def request(self, plpy, msg, remote_errors=False):
        """Send msg; its reply (a dict). Errors are raised as PgErrors (DuckDB's
        as RemoteErrors if remote_errors)."""
        rid = self._send(plpy, msg)
        return self._reply(plpy, rid, remote_errors)

    def _send(self, plpy, msg):
        try:
            return self.proc.send(msg)
        except Dead as d:
            raise d.error from None

    def _reply(self, plpy, rid, remote_errors=False):
        try:
            kind, value = self.proc.wait(rid)
        except Stopped:
            raise pending_error(plpy) from None
        except Dead as d:
            raise d.error from None
        if kind != wire.JSON or not isinstance(value, dict):
            raise PgError(SYSTEM_ERROR, "the DuckDB engine's process answered out of turn")
        self._raise_error(value, remote_errors)
        return value

    def _raise_error(self, value, remote_errors=False):
        if "pgerror" in value:
            f = list(value["pgerror"]) + [None] * 4
            raise PgError(*[None if x is None else str(x) for x in f[:4]])
        if "error" in value:
            e = value["error"] if isinstance(value["error"], dict) else {}
            exc = RemoteError(str(e.get("kind")), str(e.get("message")))
            raise exc if remote_errors else self.error(exc)

    def error(self, exc, context=None):
        return from_duckdb(exc, context)

    def close(self):
        proc, self.proc = self.proc, None
        if proc is not None:
            proc.close()


def pending_error(plpy):
    """PostgreSQL's own error for the interrupt that stopped a call (a FATAL on
    terminate does not return)."""
    try:
        plpy.execute("SELECT pg_catalog.pg_sleep(0)")
    except plpy.SPIError as e:
        return PgError(getattr(e, "sqlstate", None) or QUERY_CANCELED,
                       str(e.args[0]) if e.args else "canceling statement due to user request")
    return PgError(QUERY_CANCELED, "canceling statement due to user request")
