"""The role's DuckDB engine, as a backend sees it: a worker process.

One engine per backend and current role: a role switch (SET ROLE, SECURITY
DEFINER, a pooler reusing the backend) gets a fresh engine, so nothing one role
created in DuckDB (secrets, attached databases, tables) is usable by the next.

DuckDB never runs in the backend. Each engine is a process of its own
(worker.py), started here from the backend's thread (fork+exec of the
server's Python, a new session, only a socketpair inherited, a clean
environment), which dies with its backend (PR_SET_PDEATHSIG, EOF). A crash,
a runaway allocation or a call that never checks DuckDB's interrupt flag
costs that statement an error and the session a new engine; the backend, the
other sessions and the postmaster never notice.

While it waits for the worker, the backend sleeps in PostgreSQL's own wait
(WaitLatchOrSocket, wait event Extension): a cancel, statement_timeout or
terminate sets its latch; the worker is asked to interrupt DuckDB and, if it
has not answered within STOP_GRACE, is killed. Postmaster death ends the
backend as in any other wait (WL_EXIT_ON_PM_DEATH), and the worker with it.

The engine is offline: extensions come only from the read-only extension
directory of its policy class (shipped.py). Secrets are kept in memory only,
and the configuration is locked after set-up. Roles without file access get no
local file system, in DuckDB's settings and (sandbox.py) in the kernel.
"""

import collections
import os
import re
import signal
import sys
import time

from . import catalog, shipped, wire
from .engine_sql import quote_ident, secret_sql  # noqa: F401 - re-exported for sync.py, ddl.py
from .errors import (
    INSUFFICIENT_PRIVILEGE,
    OUT_OF_MEMORY,
    QUERY_CANCELED,
    SYSTEM_ERROR,
    PgError,
    caught,
    from_duckdb,
)
from .policy import parse_engine_settings, parse_size

# DuckDB's postgres extension refuses to ATTACH a database that has a
# duckdb_secrets table unless persistent secrets are allowed. Superusers'
# engines (the only ones that may ATTACH postgres) allow them, with a secret
# directory that does not exist and that the server cannot create (inside the
# root-owned install directory): nothing is read from or written to disk.
PYTHON_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NO_SECRET_DIRECTORY = os.path.join(os.path.dirname(PYTHON_DIR), "no-persistent-secrets")

def _deps_dir():
    return os.path.join(shipped.ROOT, "deps")


# Settings DuckDB fills from the server's environment when httpfs loads
# (AWS_ACCESS_KEY_ID, ...): the server's own identity, which no engine may use
# or show. The worker's environment holds none of it; cleared all the same.
ENVIRONMENT_CREDENTIALS = ("s3_access_key_id", "s3_secret_access_key", "s3_session_token")

# What a worker may use beyond duckdb.max_memory_limit (its hard limit, RLIMIT_DATA):
# the interpreter, DuckDB's and its extensions' own data, thread stacks (256 MiB
# reserved for the thread that runs DuckDB calls), the allocator's slack.
MEMORY_ALLOWANCE = 768 << 20
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

# Spill files live where PostgreSQL keeps its own temporary files (base backups
# skip pgsql_tmp; PostgreSQL removes pgsql_tmp* entries when it restarts), one
# directory per backend (its one engine at a time), removed with the engine
# and when the backend exits.
SPILL_PARENT = os.path.join("base", "pgsql_tmp")
_SPILL_NAME = re.compile(r"^pgsql_tmp(\d+)\.duckdb$")


def spill_directory():
    """The spill directory for this backend's engine (absolute; the backend
    runs in the data directory), after removing those of backends that are gone."""
    parent = os.path.abspath(SPILL_PARENT)
    os.makedirs(parent, mode=0o700, exist_ok=True)
    for name in os.listdir(parent):
        m = _SPILL_NAME.match(name)
        if m and int(m.group(1)) != os.getpid() and not _alive(int(m.group(1))):
            _rmtree(os.path.join(parent, name))
    path = os.path.join(parent, f"pgsql_tmp{os.getpid()}.duckdb")
    os.makedirs(path, mode=0o700, exist_ok=True)
    return path


def _rmtree(path):
    import shutil  # spill directories only
    shutil.rmtree(path, ignore_errors=True)


def _alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


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
    return PgError(SYSTEM_ERROR, "the DuckDB engine's process ended unexpectedly",
                   detail=f"It ended with {how} while running the statement; the statement was lost. "
                          "Deeply nested data and damaged files can do this to DuckDB.",
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
                if kind == wire.JSON:
                    self.abandoned.discard(rid)     # a result's last answer: nothing more comes
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
            raise _pending(plpy) from None
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


def _pending(plpy):
    """PostgreSQL's own error for the interrupt that stopped a call (a FATAL on
    terminate does not return)."""
    try:
        plpy.execute("SELECT pg_catalog.pg_sleep(0)")
    except plpy.SPIError as e:
        return PgError(getattr(e, "sqlstate", None) or QUERY_CANCELED,
                       str(e.args[0]) if e.args else "canceling statement due to user request")
    return PgError(QUERY_CANCELED, "canceling statement due to user request")


class Engine(Remote):
    """A DuckDB engine started as the role's policy (policy.RolePolicy) says."""

    def __init__(self, policy, extensions=(), name=None):
        self.policy = policy
        self.name = policy.role if name is None else name
        # The policy class whose extension directory this engine loads from.
        self.klass = shipped.SUPERUSER if policy.superuser else shipped.ROLE
        self.extensions = set()
        self.proxy = None
        self.proc = None
        self.spill = None
        self.sandbox = {}
        self.data_limit = None
        _close_at_exit()
        _open_engines.append(self)
        try:
            self._start(policy, extensions)
        except BaseException:
            self.close()
            raise

    def _start(self, policy, extensions):
        if not policy.superuser:
            # Every request leaves through the egress proxy (see egress.py).
            from . import egress
            self.proxy = egress.Proxy(egress.Policy(policy.reach))
        self.spill = spill_directory()
        start = self.start_request(policy, extensions)
        self.proc = Process(start, start["title"])
        reply = self._reply(None, self.proc.start_id)
        self.extensions = set(reply.get("extensions") or ())
        self.sandbox = reply.get("sandbox") or {}
        self.data_limit = start["data_limit"]

    def start_request(self, policy, extensions):
        """The worker's start request: DuckDB's configuration, the extensions to
        load, the settings to make, the memory limit and the kernel sandbox."""
        wanted = sorted({"httpfs", *extensions}, key=_load_rank)
        config = {
            "autoinstall_known_extensions": False,
            # A superuser's engine loads what a query needs (ATTACH 'postgres:...',
            # ST_Point, az://...) from its directory, as DuckDB does.
            "autoload_known_extensions": policy.superuser,
            "allow_community_extensions": False,
            "allow_persistent_secrets": policy.superuser,
            "memory_limit": policy.memory_limit,
            "threads": policy.threads,
            # make install ran DuckDB's signature check on the shipped files (shipped.py)
            "allow_unsigned_extensions": shipped.all_verified(self.klass),
            "secret_directory": NO_SECRET_DIRECTORY,
            # The one place extensions come from (never DuckDB's default,
            # ~/.duckdb/extensions): a superuser's engine autoloads from it; a
            # non-superuser's loads what its secrets need at start, from a
            # directory that holds nothing else, and no more later.
            "extension_directory": shipped.extension_directory(self.klass),
            # The Python client resolves unknown table names to variables of the
            # calling Python frame: never from SQL (a global setting: cursors too).
            "python_enable_replacements": False,
        }
        after = [f"SET {name} = ''" for name in ENVIRONMENT_CREDENTIALS]
        # DuckDB sleeps between HTTP retries and no interrupt shortens a
        # sleep: shorter first waits (50, 200, 800 ms) let a cancel of work
        # blocked on a stalled server take effect sooner.
        after.append("SET http_retry_wait_ms = 50")
        admin = [f"SET {name} = {_literal(value)}" for name, value in parse_engine_settings(policy.engine_settings)]
        # Spill files go to this engine's directory under pgsql_tmp, named
        # relative to the data directory (whose path PostgreSQL shows to
        # privileged roles only).
        spill = [f"SET temp_directory = {_literal(os.path.relpath(self.spill))}",
                 f"SET max_temp_directory_size = {_literal(policy.max_spill)}"]
        if not policy.local_files:
            # DuckDB lets SQL read its temp directory even with external
            # access off: what it finds there is this engine's own spill,
            # encrypted with a key that lives in its process only.
            spill.append("SET temp_file_encryption = true")
        final = []
        if self.proxy is not None:
            final.append(f"SET http_proxy = {_literal(self.proxy.address)}")
            final.append(f"-- if loaded azure\nSET azure_http_proxy = {_literal(self.proxy.address)}")
            # Its extension directory is readable (duckdb_extensions() lists
            # it); it holds only the extensions of its class, owned by root.
            readable = [*policy.allowed(set(wanted)), shipped.extension_directory(self.klass) + "/"]
            final.append("SET allowed_directories = [" + ", ".join(_literal(p) for p in readable) + "]")
            final.append("SET enable_external_access = false")
        final.append("SET lock_configuration = true")
        start = {
            "op": "start",
            "title": f"postgres: duckdb engine {_title_role(self.name)} for backend {os.getpid()}",
            "superuser": policy.superuser,
            "copy_prefixes": policy.copy_prefixes(set(wanted)) if not policy.superuser else None,
            "config": config,
            "before_load": ["SET enable_progress_bar = false"],
            "load": wanted,
            "after_load": after + [("-- admin\n" + s) for s in admin] + spill + final,
            "extension_paths": {name: shipped.extension_path(name, self.klass)
                                for name in shipped.class_extensions(self.klass)},
            "shippable": sorted(shipped.EXTENSION_PACKAGES),
            "data_limit": parse_size(policy.memory_limit, "duckdb.memory_limit") + MEMORY_ALLOWANCE,
            "sandbox": self._sandbox(policy),
        }
        return start

    def _sandbox(self, policy):
        """What the kernel is asked to enforce for this engine (sandbox.restrict)."""
        if policy.local_files:
            # Superusers and members of both file roles: no file-system rules
            # (they read and write server files anyway); non-superusers among
            # them still reach the network only through the proxy.
            return {"read_only": None, "read_write": None,
                    "tcp_ports": None if self.proxy is None else [self.proxy.port],
                    "deny_other_sockets": self.proxy is not None}
        # read_only: what sandbox.worker_read_paths names, worked out in the worker
        return {"read_only": [], "system_paths": [[PYTHON_DIR], _deps_dir(), shipped.extension_directory(self.klass)],
                "read_write": [self.spill],
                "tcp_ports": [self.proxy.port], "deny_other_sockets": True}

    def _reply(self, plpy, rid, remote_errors=False):
        if plpy is None:            # the start: no interrupt handling yet
            try:
                kind, value = self.proc.wait(rid)
            except Stopped:
                raise PgError(QUERY_CANCELED, "canceling statement due to user request") from None
            except Dead as d:
                raise d.error from None
            self._raise_error(value)
            return value
        return super()._reply(plpy, rid, remote_errors)

    # --- what callers ask ----------------------------------------------------------

    def execute(self, plpy, sql, params=None):
        """Rows of an internal statement (never a user's: no statement check)."""
        return self.request(plpy, {"op": "exec", "sql": sql, "params": params})["rows"]

    def batch(self, plpy, stmts):
        """[(sql, params), ...] run in order: each one's {'rows'} or {'error'}."""
        return self.request(plpy, {"op": "batch", "stmts": [[s, p] for s, p in stmts]})["results"]

    def query(self, plpy, sql, fetch=True):
        """Check and run a user's statement: (request id, [names, types]) or (rid, None)."""
        rid = self._send(plpy, {"op": "query", "sql": sql, "fetch": fetch})
        reply = self._reply(plpy, rid)
        return rid, reply.get("desc")

    def runs(self, plpy, rid):
        """The formatted runs of result rid: (text, None) or (None, [rows]).
        The next run is asked for before this one is handed over, so the worker
        prepares it while PostgreSQL parses this one."""
        proc = self.proc
        ask = self._send(plpy, {"op": "next", "of": rid})
        done = False
        try:
            while True:
                try:
                    kind, value = proc.wait(ask)
                except Stopped:
                    raise _pending(plpy) from None
                except Dead as d:
                    raise d.error from None
                if kind == wire.JSON:
                    done = True
                    self._raise_error(value)
                    return
                ask = self._send(plpy, {"op": "next", "of": rid})
                yield (value, None) if kind == wire.TEXT else (None, [str(r) for r in value])
        finally:
            if not done and proc.dead is None and self.proc is proc:
                proc.abandoned.add(ask)
                caught(proc.send, {"op": "close", "of": rid})

    def raw(self, plpy, sql):
        return self.request(plpy, {"op": "raw", "sql": sql})["text"]

    def literals(self, plpy, sql):
        """The string literals of sql by DuckDB's tokenizer (None: unknown)."""
        if self.proc is None or not self.proc.alive():
            return None
        try:
            return set(self.request(plpy, {"op": "literals", "sql": sql})["literals"] or ())
        except PgError:
            return None

    def load(self, plpy, ext):
        self.extensions = set(self.request(plpy, {"op": "load", "ext": ext})["extensions"])

    def error(self, exc, context=None):
        """A DuckDB error as a PgError: a request the egress proxy refused is a
        42501 naming the host, whatever DuckDB made of the refusal."""
        refused = self.proxy.refused() if self.proxy is not None else []
        if refused:
            return PgError(INSUFFICIENT_PRIVILEGE,
                           f'permission denied to reach "{refused[0]}" from the DuckDB engine',
                           detail="A role that is not a superuser reaches only the endpoints of its secrets, "
                                  "the scopes of its http secrets and duckdb.allowed_url_prefixes.",
                           hint="An administrator can define a secret for that endpoint, or list the URL "
                                "in duckdb.allowed_url_prefixes in postgresql.conf.")
        return from_duckdb(exc, context)

    def adapt(self, spec):
        """The spec as this engine creates it: for types whose extension ignores
        http_proxy, the egress proxy in the secret itself (unless the
        administrator named a proxy of their own)."""
        option = catalog.TYPES[spec["type"]].proxy_option
        if self.proxy is None or option is None or spec["params"].get(option):
            return spec
        return {**spec, "params": {**spec["params"], option: self.proxy.address}}

    def forget_refusals(self):
        if self.proxy is not None:
            self.proxy.refused()

    def usable(self):
        return (self.proc is not None and self.proc.alive()
                and (self.proxy is None or self.proxy.alive()))

    @property
    def pid(self):
        return None if self.proc is None else self.proc.pid

    def wanted(self):
        """(file rules wanted, TCP rules wanted) of this engine's sandbox."""
        return not self.policy.local_files, self.proxy is not None

    def not_enforced(self):
        """What the kernel was asked to enforce and does not (an older kernel)."""
        from . import sandbox
        files, tcp = self.wanted()
        return sandbox.describe_missing(self.sandbox, files, tcp)

    def status(self):
        names = {"files": "file-system rules (Landlock)", "tcp": "TCP connect rules (Landlock)",
                 "scope": "signal and abstract-socket scoping (Landlock)",
                 "ptrace": "no ptrace or /proc access to other processes (Landlock)",
                 "sockets": "no sockets but TCP (seccomp)"}
        files, tcp = self.wanted()
        relevant = [k for k in names if (k != "files" or files) and (k not in ("tcp", "sockets") or tcp)]
        enforced = [names[k] for k in relevant if self.sandbox.get(k)]
        missing = self.not_enforced()
        level = "full" if not missing else ("partial" if enforced else "none")
        peak = _status_bytes(self.pid, "VmHWM") if self.pid else None
        return {"sandbox": level, "enforced": enforced, "not_enforced": missing,
                "memory_limit": self.data_limit, "peak_memory": peak}

    def close(self):
        Remote.close(self)
        proxy, self.proxy = getattr(self, "proxy", None), None
        if proxy is not None:
            proxy.close()
        spill, self.spill = getattr(self, "spill", None), None
        if spill is not None:
            _rmtree(spill)
        if self in _open_engines:
            _open_engines.remove(self)


def _load_rank(name):
    return shipped.LOAD_ORDER.index(name) if name in shipped.LOAD_ORDER else len(shipped.LOAD_ORDER)


def _literal(value):
    return "'" + str(value).replace("'", "''") + "'"


def _title_role(role):
    """The role's name as ps shows it (printable, bounded)."""
    text = "".join(c if c.isprintable() else "?" for c in str(role))
    return text[:63]


class Scratch(Remote):
    """A private DuckDB process used to dry-run secrets during DDL; never runs user SQL."""

    def __init__(self):
        config = {
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": False,
            "allow_persistent_secrets": False,
            "memory_limit": "64MB",
            "threads": 1,
            "allow_unsigned_extensions": shipped.all_verified(),
            "extension_directory": shipped.extension_directory(shipped.SUPERUSER),
            "python_enable_replacements": False,
        }
        start = {
            "op": "start", "title": f"postgres: duckdb scratch engine for backend {os.getpid()}",
            "superuser": True, "config": config, "before_load": ["SET enable_progress_bar = false"],
            "load": [], "after_load": [],
            "extension_paths": {name: shipped.extension_path(name) for name in shipped.EXTENSIONS},
            "shippable": [], "data_limit": (64 << 20) + MEMORY_ALLOWANCE,
            "sandbox": {"read_only": [], "read_write": [], "tcp_ports": [], "deny_other_sockets": True,
                        "system_paths": [[PYTHON_DIR], _deps_dir(), shipped.extension_directory(shipped.SUPERUSER)]},
        }
        _close_at_exit()
        _open_engines.append(self)
        self.proc = Process(start, start["title"])
        try:
            kind, value = self.proc.wait(self.proc.start_id)
        except (Stopped, Dead):
            self.close()
            raise PgError(SYSTEM_ERROR, "could not start the DuckDB scratch engine") from None
        try:
            self._raise_error(value)
        except PgError:
            self.close()
            raise

    def dry_run(self, plpy, name, spec):
        stype = catalog.TYPES[spec["type"]]
        params = {**spec["params"], **stype.provider(spec["provider"]).dry_run}
        params = {k: v for k, v in params.items() if v is not None}
        self.request(plpy, {"op": "dry_run", "name": name, "spec": {**spec, "params": params},
                            "extensions": sorted(stype.extensions_for(spec["provider"]))}, remote_errors=True)

    def usable(self):
        return self.proc is not None and self.proc.alive()

    def close(self):
        Remote.close(self)
        if self in _open_engines:
            _open_engines.remove(self)
