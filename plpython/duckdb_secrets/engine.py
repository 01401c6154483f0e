"""The DuckDB engine embedded in a backend.

One engine per backend and current role: a role switch (SET ROLE, SECURITY
DEFINER, a pooler reusing the backend) gets a fresh engine, so nothing one role
created in DuckDB (secrets, attached databases, tables) is usable by the next.

The engine is offline: extensions come only from the read-only extension
directory of its policy class (shipped.py), never installed or downloaded. A
superuser's engine autoloads from its directory whatever a query needs, as
DuckDB does; a non-superuser's loads at start the extensions its secrets need,
from a directory that holds nothing else, and no other. Secrets are kept in
memory only, and the configuration is locked after set-up. Roles without file
access get no local file system at all.
"""

import os
import re

from . import catalog, interrupts, shipped
from .errors import INSUFFICIENT_PRIVILEGE, INTERNAL_ERROR, PgError, caught, from_duckdb
from .policy import parse_engine_settings

# DuckDB's postgres extension refuses to ATTACH a database that has a
# duckdb_secrets table unless persistent secrets are allowed. Superusers'
# engines (the only ones that may ATTACH postgres) allow them, with a secret
# directory that does not exist and that the server cannot create (inside the
# root-owned install directory): nothing is read from or written to disk.
NO_SECRET_DIRECTORY = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                                   "no-persistent-secrets")

_quiet = False


def _egress():
    """The egress proxy's module: non-superusers' engines only."""
    from . import egress
    return egress


def _duckdb():
    global _quiet
    if not _quiet:
        duckdb = _import_duckdb()
        _quiet = True
        _quiet_default_connection(duckdb)
    import duckdb
    return duckdb


def _import_duckdb():
    """import duckdb, without two costs a backend's first query need not pay:
    binding every symbol of its 60 MB library at load (RTLD_NOW: ~10 ms in a
    backend; functions are bound on first call instead), and importing
    importlib.metadata (email, zipfile, csv, ...: ~18 ms) for the one call
    duckdb/_version.py makes, version("duckdb"), answered here from the
    installed package's dist-info. Anything unexpected: the plain import."""
    import sys
    if "duckdb" in sys.modules:
        return sys.modules["duckdb"]
    flags = sys.getdlopenflags()
    stub = None
    if "importlib.metadata" not in sys.modules:
        import types
        stub = types.ModuleType("importlib.metadata")
        stub.version = _dist_version
        sys.modules["importlib.metadata"] = stub
    try:
        sys.setdlopenflags(os.RTLD_LAZY)
        import duckdb
    finally:
        sys.setdlopenflags(flags)
        if stub is not None and sys.modules.get("importlib.metadata") is stub:
            del sys.modules["importlib.metadata"]
    return duckdb


def _dist_version(name):
    """The installed version of a distribution (importlib.metadata.version's
    answer), read from its *.dist-info next to the package."""
    import importlib.util
    import sys
    try:
        spec = importlib.util.find_spec(name)
        site = os.path.dirname(list(spec.submodule_search_locations)[0])
        prefix = name.replace("-", "_") + "-"
        found = [d for d in os.listdir(site) if d.startswith(prefix) and d.endswith(".dist-info")]
        with open(os.path.join(site, found[0], "METADATA"), encoding="utf-8") as f:
            for line in f:
                if line.startswith("Version:"):
                    return line.split(":", 1)[1].strip()
                if not line.strip():
                    break
    except (AttributeError, IndexError, OSError, TypeError):
        pass
    if getattr(sys.modules.get("importlib.metadata"), "version", None) is _dist_version:
        del sys.modules["importlib.metadata"]       # not found here: ask the real module
    import importlib.metadata
    return importlib.metadata.version(name)


def _quiet_default_connection(duckdb):
    """Importing duckdb opens a default in-memory database whose scheduler
    runs a worker thread (threads = cores). PL/Python never finalizes Python,
    so that thread would still be running when the backend exits and C++
    static destructors run: a crash at exit now and then ("corrupted
    double-linked list", signal 6). Replace it with a single-threaded one,
    which has no worker thread."""
    try:
        duckdb.default_connection().close()
        clean = getattr(duckdb, "_clean_default_connection", None)
        if callable(clean):                     # not in every duckdb version (1.5.5: not callable)
            clean()
    except (AttributeError, TypeError, duckdb.Error):      # an older/newer duckdb: keep going
        pass


# DuckDB's binder error for a name an extension defines: "... is not in the
# catalog, but it exists in the spatial extension."
_NEEDS_EXTENSION = re.compile(r"exists in the ([A-Za-z0-9_]+) extension")


# Settings DuckDB fills from the server's environment when httpfs loads
# (AWS_ACCESS_KEY_ID, ...): the server's own identity, which no engine may use
# or show. Credentials reach an engine only through secrets.
ENVIRONMENT_CREDENTIALS = ("s3_access_key_id", "s3_secret_access_key", "s3_session_token")


# Spill files live where PostgreSQL keeps its own temporary files (base backups
# skip pgsql_tmp; PostgreSQL removes pgsql_tmp* entries when it restarts), one
# directory per backend, removed with the engine and when the backend exits.
SPILL_PARENT = os.path.join("base", "pgsql_tmp")
_SPILL_NAME = re.compile(r"^pgsql_tmp(\d+)\.duckdb$")
_exit_hook = None


def spill_directory():
    """This backend's spill directory (absolute; the backend runs in the data
    directory), after removing those of backends that are gone."""
    parent = os.path.abspath(SPILL_PARENT)
    os.makedirs(parent, mode=0o700, exist_ok=True)
    for name in os.listdir(parent):
        m = _SPILL_NAME.match(name)
        if m and int(m.group(1)) != os.getpid() and not _alive(int(m.group(1))):
            _rmtree(os.path.join(parent, name))
    return os.path.join(parent, f"pgsql_tmp{os.getpid()}.duckdb")


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


_open_engines = []


def _close_at_exit():
    """PostgreSQL's on_proc_exit, registered once: PL/Python never finalizes
    Python, so nothing else runs when the backend exits. Open engines are
    closed (DuckDB's worker threads joined, spill files removed) before the
    process's static destructors run."""
    global _exit_hook
    if _exit_hook is not None:
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
    _exit_hook = hook           # kept alive for the backend's lifetime


def _not_for_this_role(name):
    return PgError(INSUFFICIENT_PRIVILEGE, f'the DuckDB extension "{name}" is not available to this role\'s engine',
                   detail="An engine of a role that is not a superuser has httpfs and the extensions its secrets "
                          "need, and no other (docs/reference.md, \"Extensions\").",
                   hint="Run the query as a superuser, or ask an administrator for a secret of a type that needs "
                        "the extension.")


class Engine:
    """A DuckDB engine started as the role's policy (policy.RolePolicy) says."""

    def __init__(self, policy, extensions=(), deadline=None):
        duckdb = _duckdb()
        self.policy = policy
        # The policy class whose extension directory this engine loads from.
        self.klass = shipped.SUPERUSER if policy.superuser else shipped.ROLE
        self.extensions = set()
        self.proxy = None
        self.con = None
        self.spill = None
        self.worker = None
        self.sockets = interrupts.Sockets()
        interrupts.large_thread_stacks()
        _close_at_exit()
        spill = spill_directory()
        _open_engines.append(self)
        # DuckDB's worker threads start with the connection, from a guarded
        # thread: they never take PostgreSQL's signals either. (Each call gets a
        # thread of its own, joined when it returns: a thread kept between calls
        # was followed by a heap corruption at backend exit once in ~500 tests.)
        try:
            interrupts.Guard(None).run(self._start, duckdb, policy, extensions, spill)
        except BaseException:
            self.close()
            raise

    def _start(self, duckdb, policy, extensions, spill):
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
            # ~/.duckdb/extensions in the server user's home): a superuser's
            # engine autoloads from it; a non-superuser's loads what its secrets
            # need at start, from a directory that holds nothing else, and no
            # more later (LOAD is refused, the configuration locked).
            "extension_directory": shipped.extension_directory(self.klass),
        }
        try:
            self.con = duckdb.connect(":memory:", config=config)
        except duckdb.Error as e:
            raise from_duckdb(e, "could not start the DuckDB engine") from None
        try:
            self.con.execute("SET enable_progress_bar = false")
            # The Python client resolves unknown table names to variables of the
            # calling Python frame (this package's): never from SQL.
            self.con.execute("SET python_enable_replacements = false")
            for ext in sorted({"httpfs", *extensions}):
                self.load(ext)
            for name in ENVIRONMENT_CREDENTIALS:
                self.con.execute(f"SET {name} = ''")
            if "postgres_scanner" in self.extensions:
                # No background thread that would outlive the backend (see above).
                self.con.execute("SET pg_pool_enable_reaper_thread = false")
            # DuckDB sleeps between HTTP retries and no interrupt shortens a
            # sleep: shorter first waits (50, 200, 800 ms) let a cancel of work
            # blocked on a stalled server take effect within half a second.
            self.con.execute("SET http_retry_wait_ms = 50")
            # The administrator's settings (from the configuration files only),
            # e.g. s3_endpoint for reads that no secret covers.
            for name, value in parse_engine_settings(policy.engine_settings):
                try:
                    self.con.execute(f"SET {name} = '{value.replace(chr(39), chr(39) * 2)}'")
                except _duckdb().Error as e:
                    raise from_duckdb(e, "duckdb.engine_settings") from None
            # Every engine spills, into its backend's directory under pgsql_tmp.
            self.spill = spill
            # relative to the backend's working directory (the data directory,
            # whose path PostgreSQL shows to privileged roles only)
            self.con.execute(f"SET temp_directory = '{os.path.relpath(self.spill)}'")
            self.con.execute(f"SET max_temp_directory_size = '{policy.max_spill}'")
            if not policy.local_files:
                # DuckDB lets SQL read its temp directory even with external
                # access off: what it finds there is this engine's own spill,
                # encrypted with a key that lives in this process only. Writes
                # there (COPY TO) are refused by statements.check.
                self.con.execute("SET temp_file_encryption = true")
            if not policy.superuser:
                # Every request leaves through the egress proxy (see egress.py).
                # curl (httpfs's client) skips any proxy for hosts in NO_PROXY.
                for name in ("NO_PROXY", "no_proxy"):
                    os.environ.pop(name, None)
                egress = _egress()
                self.proxy = egress.Proxy(egress.Policy(policy.reach))
                self.con.execute(f"SET http_proxy = '{self.proxy.address}'")
                if "azure" in self.extensions:      # azure has a proxy setting of its own
                    self.con.execute(f"SET azure_http_proxy = '{self.proxy.address}'")
                # Its extension directory is readable (duckdb_extensions() lists
                # it); it holds only the extensions of its class, owned by root.
                readable = [*policy.allowed(self.extensions), shipped.extension_directory(self.klass) + "/"]
                listed = ", ".join("'" + p.replace("'", "''") + "'" for p in readable)
                self.con.execute(f"SET allowed_directories = [{listed}]")
                self.con.execute("SET enable_external_access = false")
            self.con.execute("SET lock_configuration = true")
        except BaseException:
            self._close_connection()        # the rest is closed by __init__, on the backend's thread
            raise

    def load(self, ext):
        try:
            self.con.execute(f"LOAD '{shipped.extension_path(ext, self.klass)}'")
        except _duckdb().Error as e:
            raise from_duckdb(e, f'could not load DuckDB extension "{ext}"') from None
        self.extensions.add(ext)

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

    def guard(self, deadline=None):
        return interrupts.Guard(self.con, deadline, self.sockets, self.worker)

    def call(self, plpy, deadline, fn, *args, load_missing=False):
        """fn(*args) -- a DuckDB call -- stoppable by PostgreSQL; errors as PgErrors.

        load_missing (one user statement): when DuckDB does not bind it because
        a function, type or setting lives in a shipped extension that it does
        not autoload itself (spatial, say), a superuser's engine loads that
        extension and runs the statement again, once per extension (a statement
        that did not bind has not run); another role's gets a 42501 naming the
        extension instead of DuckDB's advice to INSTALL and LOAD it."""
        tried = set()
        while True:
            guard = self.guard(deadline)
            try:
                return guard.run(fn, *args)
            except _duckdb().Error as e:
                if guard.fired:
                    raise interrupts.raise_pending(plpy, guard.fired) from None
                wanted = self._missing_extension(e) if load_missing else None
                if wanted is None or wanted in tried:
                    raise self.error(e) from None
                if not self.policy.superuser:
                    raise _not_for_this_role(wanted) from None
                tried.add(wanted)
            self.call(plpy, deadline, self.load, wanted)

    def _missing_extension(self, exc):
        """The shipped extension DuckDB's binder says a statement needs, if any."""
        if not isinstance(exc, (_duckdb().CatalogException, _duckdb().BinderException)):
            return None
        m = _NEEDS_EXTENSION.search(str(exc))
        name = m.group(1).lower() if m else None
        return name if name in shipped.EXTENSION_PACKAGES and name not in self.extensions else None

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
        return self.con is not None and (self.proxy is None or self.proxy.alive())

    def _close_connection(self):
        con, self.con = getattr(self, "con", None), None
        if con is not None:
            import duckdb
            try:
                con.close()
            except duckdb.Error:    # closing what may be half-open
                pass

    def close(self):
        self._close_connection()
        proxy, self.proxy = getattr(self, "proxy", None), None
        if proxy is not None:
            proxy.close()
        spill, self.spill = getattr(self, "spill", None), None
        if spill is not None:
            _rmtree(spill)
        worker, self.worker = getattr(self, "worker", None), None
        if worker is not None:
            worker.close()
        if self in _open_engines:
            _open_engines.remove(self)


def secret_sql(name, spec):
    """CREATE SECRET text and its bound parameters. Names are quoted, values bound."""
    parts = [f"TYPE {spec['type']}", f"PROVIDER {spec['provider']}"]
    params = []
    if spec.get("scope"):
        parts.append("SCOPE ?")
        params.append(spec["scope"] if len(spec["scope"]) > 1 else spec["scope"][0])
    for key, value in spec["params"].items():
        # Keys come from the catalogue (checked here, not by an assert that
        # python -O would drop); values (str, bool, int, list, dict) are bound.
        if key not in catalog.ALL_OPTIONS:
            raise PgError(INTERNAL_ERROR, f'option "{key[:63]}" is not in the catalogue')
        parts.append(f"{key} ?")
        params.append(value)
    return f"CREATE OR REPLACE TEMPORARY SECRET {quote_ident(name)} ({', '.join(parts)})", params


def quote_ident(name):
    return '"' + name.replace('"', '""') + '"'


class Scratch:
    """A private DuckDB used to dry-run secrets during DDL; never runs user SQL."""

    def __init__(self):
        duckdb = _duckdb()
        self.con = duckdb.connect(":memory:", config={
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": False,
            "allow_persistent_secrets": False,
            "memory_limit": "64MB",
            "threads": 1,
            "allow_unsigned_extensions": shipped.all_verified(),
            "extension_directory": shipped.extension_directory(shipped.SUPERUSER),
        })
        self.con.execute("SET enable_progress_bar = false")
        self.extensions = set()

    def dry_run(self, name, spec):
        stype = catalog.TYPES[spec["type"]]
        for ext in sorted(stype.extensions_for(spec["provider"]) - self.extensions):
            self.con.execute(f"LOAD '{shipped.extension_path(ext)}'")
            self.extensions.add(ext)
        params = {**spec["params"], **stype.provider(spec["provider"]).dry_run}
        params = {k: v for k, v in params.items() if v is not None}
        sql, params = secret_sql(name, {**spec, "params": params})
        self.con.execute(sql, params)
        self.con.execute(f"DROP TEMPORARY SECRET IF EXISTS {quote_ident(name)}")
