"""The role's DuckDB engine, as a backend sees it: a worker process.

One engine per backend and current role: a role switch (SET ROLE, SECURITY
DEFINER, a pooler reusing the backend) gets a fresh engine, so nothing one role
created in DuckDB (secrets, attached databases, tables) is usable by the next.

DuckDB never runs in the backend. Each engine is a process of its own
(worker.py, started and waited for by process.py): this module says what it
is started with -- DuckDB's configuration, the extensions it loads, the
settings it locks, its memory limit and kernel sandbox -- and what callers
ask of it. A crash, a runaway allocation or a call that never checks DuckDB's
interrupt flag costs that statement an error and the session a new engine.

The engine is offline: extensions come only from the read-only extension
directory of its policy class (shipped.py). Secrets are kept in memory only,
and the configuration is locked after set-up. Roles without file access get no
local file system, in DuckDB's settings and (sandbox.py) in the kernel.
"""

import os
import re

from . import catalog, shipped, wire
from .engine_sql import quote_ident, secret_sql  # noqa: F401 - re-exported for sync.py, ddl.py
from .errors import INSUFFICIENT_PRIVILEGE, QUERY_CANCELED, SYSTEM_ERROR, PgError, caught, from_duckdb
from .policy import parse_engine_settings, parse_size
from .process import (  # noqa: F401 - RemoteError, _status_bytes: also the engine's face to callers
    PYTHON_DIR,
    Dead,
    Process,
    Remote,
    RemoteError,
    Stopped,
    _close_at_exit,
    _deps_dir,
    _open_engines,
    _status_bytes,
    pending_error,
)

# DuckDB's postgres extension refuses to ATTACH a database that has a
# duckdb_secrets table unless persistent secrets are allowed. Superusers'
# engines (the only ones that may ATTACH postgres) allow them, with a secret
# directory that does not exist and that the server cannot create (inside the
# root-owned install directory): nothing is read from or written to disk.
NO_SECRET_DIRECTORY = os.path.join(os.path.dirname(PYTHON_DIR), "no-persistent-secrets")

# Settings DuckDB fills from the server's environment when httpfs loads
# (AWS_ACCESS_KEY_ID, ...): the server's own identity, which no engine may use
# or show. The worker's environment holds none of it; cleared all the same.
ENVIRONMENT_CREDENTIALS = ("s3_access_key_id", "s3_secret_access_key", "s3_session_token")

# What a worker may use beyond duckdb.max_memory_limit (its hard limit, RLIMIT_DATA):
# the interpreter, DuckDB's and its extensions' own data, thread stacks (256 MiB
# reserved for the thread that runs DuckDB calls), the allocator's slack.
MEMORY_ALLOWANCE = 768 << 20
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

    def query(self, plpy, sql, fetch=True, params=None):
        """Check and run a user's statement, with its bound parameters (params.checked):
        (request id, [names, types] or None, what came ahead: {"first": a first
        run follows, "more": runs after it})."""
        rid = self._send(plpy, {"op": "query", "sql": sql, "fetch": fetch, "params": params})
        reply = self._reply(plpy, rid)
        return rid, reply.get("desc"), {"first": bool(reply.get("first")), "more": bool(reply.get("more"))}

    def runs(self, plpy, rid, ahead):
        """The formatted runs of result rid (Runs)."""
        return Runs(self, plpy, rid, ahead)

    def raw(self, plpy, sql):
        return self.request(plpy, {"op": "raw", "sql": sql})["text"]

    def literals(self, plpy, sql, statement=None):
        """(the string literals of sql by DuckDB's tokenizer, those of them that
        name a file or URL, whether sql may carry a credential:
        statements.typed_paths, whether statement may (None if not given));
        None: unknown."""
        return self.literals_reply(plpy, self.literals_ask(sql, statement), statement is not None)

    def literals_ask(self, sql, statement=None):
        """Ask for literals() without waiting (the worker answers requests in
        order: ahead of a query sent next, at the cost of tokenizing); the
        request id, or None."""
        if self.proc is None or not self.proc.alive():
            return None
        try:
            return self.proc.send({"op": "literals", "sql": sql or "", "statement": statement})
        except Dead:
            return None

    def literals_reply(self, plpy, rid, with_statement=False):
        """literals() for a request literals_ask() made."""
        if rid is None:
            return None
        try:
            reply = self._reply(plpy, rid)
        except PgError as e:
            if e.sqlstate == QUERY_CANCELED:
                raise           # a cancel taken while waiting: the caller's to raise
            return None
        if reply.get("literals") is None:
            return None
        return (set(reply["literals"]), set(reply.get("paths") or ()), reply.get("carries") is not False,
                reply.get("statement_carries") is not False if with_statement else None)

    def set_attachables(self, plpy, catalogs):
        """The catalogs this engine attaches on first use ({name: {server, sql,
        params, key}}); one it attached whose key changed or that is gone is
        detached now."""
        self.request(plpy, {"op": "attachables", "catalogs": catalogs})

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


class Runs:
    """The formatted runs of a result: (text, None) or (None, [rows]). The
    first came with the query's answer (ahead); each next run is asked for
    before this one is handed over, so the worker prepares it while
    PostgreSQL parses this one. close() (or the end) leaves nothing behind:
    no frame waiting in the backend, no result open in the worker."""

    def __init__(self, engine, plpy, rid, ahead):
        self.engine, self.plpy, self.rid = engine, plpy, rid
        self.proc = engine.proc
        self.ask = rid if ahead["first"] else None       # a request that still owes one frame
        self.more = ahead["more"]                        # the worker holds more of it

    def __iter__(self):
        return self

    def __next__(self):
        engine, proc = self.engine, self.proc
        if self.ask is None and self.more:
            self.ask = engine._send(self.plpy, {"op": "next", "of": self.rid})
        if self.ask is None:
            raise StopIteration
        try:
            kind, value = proc.wait(self.ask)
        except Stopped:
            self.close()
            raise pending_error(self.plpy) from None
        except Dead as d:
            self.ask, self.more = None, False
            raise d.error from None
        self.ask = None
        if kind == wire.JSON:
            self.more = False
            engine._raise_error(value)
            raise StopIteration
        if self.more:
            self.ask = engine._send(self.plpy, {"op": "next", "of": self.rid})
        return (value, None) if kind == wire.TEXT else (None, [str(r) for r in value])

    def close(self):
        proc, ask, more = self.proc, self.ask, self.more
        self.ask, self.more = None, False
        if proc.dead is not None or self.engine.proc is not proc:
            return
        if ask is not None:
            proc.abandon(ask)
        if more:
            caught(proc.send, {"op": "close", "of": self.rid})


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
