"""The engine's worker process: DuckDB runs here, never in a PostgreSQL backend.

A backend starts one worker per engine (engine.py: one per role per backend)
and one scratch worker for DDL dry runs, as `python3 -I -S -c ...` with a
socketpair on descriptor 3. The worker hardens itself before it reads its
first request (sandbox.harden: dies with its backend, no core files, not
dumpable, no new privileges, a hard memory limit), applies the kernel sandbox
its start request asks for (sandbox.restrict: for roles without file access,
Landlock over files and TCP, seccomp over other sockets) before DuckDB is
imported, so that every thread DuckDB starts is bound by it, then serves
requests until its backend closes the socket or ends.

Threads: the main thread reads frames; a request to interrupt is acted on at
once (DuckDB's interrupt of every connection in use), every other request is
run in order on one thread with a large stack. A crash here -- a stack
overflow on deeply nested data, a corrupted file, memory exhausted -- ends
this process only; the backend reports it as an error and starts a new one.
"""

import json
import os
import queue
import re
import sys
import threading

from . import proctitle, wire

STACK_SIZE = 256 << 20

_NEEDS_EXTENSION = re.compile(r"exists in the ([A-Za-z0-9_]+) extension")
# DuckDB's binder and catalog errors for a name it found no catalog for (the
# name it reports): "Catalog "x" does not exist!", "Catalog with name x does not
# exist!", and for x.t / CREATE TABLE x.t / USE x, where x may be a catalog
# (x.t is x.main.t once x is attached), "schema "x" does not exist",
# "Schema with name x does not exist!", "No catalog + schema named "x" found".
_UNKNOWN_CATALOG = re.compile(
    r'Catalog "([A-Za-z_][A-Za-z0-9_]*)" does not exist'
    r'|Catalog with name ([A-Za-z_][A-Za-z0-9_]*) does not exist'
    r'|because schema "([A-Za-z_][A-Za-z0-9_]*)" does not exist'
    r'|Schema with name ([A-Za-z_][A-Za-z0-9_]*) does not exist'
    r'|No catalog \+ schema named "\.?([A-Za-z_][A-Za-z0-9_]*)" found')


def _import_duckdb():
    """import duckdb without binding every symbol of its library at load
    (RTLD_LAZY) and without importlib.metadata for its one version() call."""
    import types
    flags = sys.getdlopenflags()
    stub = None
    if "importlib.metadata" not in sys.modules:
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


class Refused(Exception):
    """A PostgreSQL error decided here (the statement check): sent as such."""

    def __init__(self, sqlstate, message, detail=None, hint=None):
        super().__init__(message)
        self.fields = [sqlstate, message, detail, hint]


class CheckPolicy:
    """What statements.check reads of the role's policy (policy.RolePolicy)."""

    def __init__(self, superuser, copy_prefixes):
        self.superuser = superuser
        self._copy = None if copy_prefixes is None else tuple(copy_prefixes)

    def copy_prefixes(self, extensions):
        return self._copy


class Worker:
    def __init__(self, sock, start):
        self.sock = sock
        self.send_lock = threading.Lock()
        self.start = start
        self.duckdb = None
        self.con = None
        self.extensions = set()
        self.results = {}           # request id -> Result
        self.busy = set()           # connections with an open result
        self.active = set()         # connections running a request now
        self.active_lock = threading.Lock()
        self.jobs = queue.SimpleQueue()
        self.attachable = {}        # catalog name -> {server, sql, params, key}: attached on first use
        self.attached = {}          # catalog name -> the key of what this engine attached under it

    # --- sending ------------------------------------------------------------------

    def send(self, data):
        with self.send_lock:
            self.sock.sendall(data)

    def reply(self, rid, obj):
        self.send(wire.message(rid, obj))

    def error(self, rid, exc):
        if isinstance(exc, Refused):
            self.reply(rid, {"pgerror": exc.fields})
            return
        pg = _pgerror_fields(exc)
        if pg is not None:
            self.reply(rid, {"pgerror": pg})
            return
        duckdb = self.duckdb
        if duckdb is not None and isinstance(exc, duckdb.Error):
            self.reply(rid, {"error": {"kind": type(exc).__name__, "message": str(exc)}})
        elif isinstance(exc, MemoryError):
            self.reply(rid, {"error": {"kind": "OutOfMemoryException", "message": "Out of Memory Error: "
                                       "the engine's process reached its memory limit"}})
        else:
            self.reply(rid, {"error": {"kind": "Internal", "message": f"{type(exc).__name__}: {exc}"}})

    # --- the loop -----------------------------------------------------------------

    def serve(self):
        runner = threading.Thread(target=self._run_jobs, name="duckdb_secrets-engine", daemon=True)
        runner.start()
        while True:
            got = wire.read_frame(self.sock)
            if got is None:
                break
            rid, kind, payload = got
            request = json.loads(payload)
            if request.get("op") == "interrupt":
                self._interrupt()
                continue
            self.jobs.put((rid, request))
        self.jobs.put(None)
        os._exit(0)

    def _interrupt(self):
        with self.active_lock:
            cons = list(self.active)
        for con in cons:
            try:
                con.interrupt()
            except Exception:       # noqa: BLE001 - a closed connection has nothing to stop
                pass

    def _run_jobs(self):
        while True:
            job = self.jobs.get()
            if job is None:
                return
            rid, request = job
            op = getattr(self, "op_" + str(request.get("op")), None)
            try:
                if op is None:
                    raise Refused("XX000", f"unknown request {str(request.get('op'))[:40]!r} to the engine")
                value = op(rid, request)
                if value is not None:
                    self.reply(rid, value)
            except BaseException as e:      # noqa: BLE001 - every failure goes back as an error
                try:
                    self.error(rid, e)
                except OSError:
                    os._exit(0)

    # --- connections ----------------------------------------------------------------

    def _using(self, con):
        return _InUse(self, con)

    def _free_connection(self):
        """The engine's connection, or a cursor of it while a result is open on it."""
        if self.con not in self.busy:
            return self.con
        return self.con.cursor()

    # --- requests -------------------------------------------------------------------

    def op_start(self, rid, request):
        return {"extensions": sorted(self.extensions), "pid": os.getpid()}

    def op_exec(self, rid, request):
        """Internal statements (secrets, listings): run, all rows back."""
        con = self._free_connection()
        with self._using(con):
            rows = con.execute(request["sql"], request.get("params") or []).fetchall() \
                if request.get("params") is not None else con.execute(request["sql"]).fetchall()
        return {"rows": [list(r) for r in rows]}

    def op_batch(self, rid, request):
        """Several internal statements; each one's rows or error."""
        con = self._free_connection()
        out = []
        with self._using(con):
            for sql, params in request["stmts"]:
                try:
                    rows = con.execute(sql, params).fetchall() if params is not None else con.execute(sql).fetchall()
                    out.append({"rows": [list(r) for r in rows]})
                except self.duckdb.Error as e:
                    out.append({"error": {"kind": type(e).__name__, "message": str(e)}})
                    if request.get("stop_on_interrupt") and isinstance(e, self.duckdb.InterruptException):
                        break
        return {"results": out}

    def op_literals(self, rid, request):
        """The literals of a statement and whether it may carry a credential
        (statements.typed_paths); with "statement" (the PostgreSQL statement's
        text), whether that may too."""
        from . import statements
        try:
            found = statements.typed_paths(self.duckdb, request["sql"])
            if found is None:
                return {"literals": None}
            out = {"literals": sorted(found[0]), "paths": sorted(found[1]), "carries": found[2]}
            if request.get("statement") is not None:
                out["statement_carries"] = statements.carries_credentials(self.duckdb, request["statement"])
            return out
        except Exception:       # noqa: BLE001 - could not tokenize: the caller masks every word
            return {"literals": None}

    def op_load(self, rid, request):
        self._load(request["ext"])
        return {"extensions": sorted(self.extensions)}

    def op_close(self, rid, request):
        self._drop(request["of"])
        return None

    def op_status(self, rid, request):
        return {"extensions": sorted(self.extensions), "memory": _memory()}

    def _check(self, sql):
        from . import statements
        return statements.check(self.duckdb, self.con, sql, self.policy, self.extensions)

    def _with_missing(self, fn, load_missing):
        """fn(); if DuckDB does not bind it because it needs a shipped extension not
        loaded, a superuser's engine loads it and runs it again (once per extension);
        if it names a catalog a server's attach_as gives this engine, the catalog
        is attached and fn runs again (once per catalog). load_missing: fn is one
        statement (a statement that did not bind has not run; of several, those
        before it have)."""
        tried = set()
        attached = set()
        while True:
            try:
                return fn()
            except (self.duckdb.CatalogException, self.duckdb.BinderException) as e:
                name = self._attachable_catalog(e)
                if name is not None and name not in attached:
                    attached.add(name)
                    self._attach(name)
                    if load_missing:
                        continue
                    server = self.attachable[name]["server"]
                    raise type(e)(f"{e}\n\nCatalog \"{name}\" (attach_as of server \"{server}\") is attached now"
                                  "; a query string of several statements is not run again, since "
                                  "those before the failing one have run.") from None
                wanted = self._missing_extension(e) if load_missing else None
                if wanted is None or wanted in tried:
                    raise
                if not self.start["superuser"]:
                    raise Refused("42501", f'the DuckDB extension "{wanted}" is not available to this role\'s '
                                  "engine",
                                  "An engine of a role that is not a superuser has httpfs and the extensions its "
                                  "secrets need, and no other (docs/reference.md, \"Extensions\").",
                                  "Run the query as a superuser, or ask an administrator for a secret of a type "
                                  "that needs the extension.") from None
                tried.add(wanted)
                self._load(wanted)

    def _attachable_catalog(self, exc):
        """The catalog DuckDB's error says it did not find, if this engine attaches it on first use."""
        for m in _UNKNOWN_CATALOG.finditer(str(exc)):
            name = next(g for g in m.groups() if g).lower()
            if name in self.attachable:
                return name
        return None

    def _attach(self, name):
        """ATTACH a server's catalog (IF NOT EXISTS: one attached already is left
        as it is, and the statement's own error comes back). A failure names the
        catalog and the server; the backend masks the role's secret values in it."""
        spec = self.attachable[name]
        con = self._free_connection()
        try:
            con.execute(spec["sql"], spec["params"])
        except self.duckdb.Error as e:
            raise type(e)(f'could not attach catalog "{name}" of server "{spec["server"]}": {e}') from None
        self.attached[name] = spec["key"]

    def op_attachables(self, rid, request):
        """The catalogs to attach on first use; one attached whose server changed
        (another key) or is gone is detached now (if it is in use, at the next change)."""
        self.attachable = request["catalogs"]
        con = self._free_connection()
        with self._using(con):
            for name, key in list(self.attached.items()):
                now = self.attachable.get(name)
                if (now is None or now["key"] != key) and self._detach(con, name):
                    del self.attached[name]
        return {}

    def _detach(self, con, name):
        sql = f'DETACH DATABASE IF EXISTS "{name}"'     # a plain identifier (validation.attach_name)
        try:
            con.execute(sql)
            return True
        except self.duckdb.Error as e:
            if "default database" not in str(e):
                return False
        try:       # USE <it> made it the default: back to the engine's own
            con.execute("USE memory")
            con.execute(sql)
            return True
        except self.duckdb.Error:
            return False

    def _missing_extension(self, exc):
        m = _NEEDS_EXTENSION.search(str(exc))
        name = m.group(1).lower() if m else None
        return name if name in self.start["shippable"] and name not in self.extensions else None

    def op_query(self, rid, request):
        """Check and run a user's statement; its description now, its rows by 'next'."""
        from . import query
        sql = request["sql"]
        stmts = self._check(sql)
        duckdb = self.duckdb
        bound = request.get("params")
        if bound is not None:
            from . import params
            bound = params.values(duckdb, bound)
        con = self._free_connection()
        with self._using(con):
            try:
                result = self._with_missing(lambda: query.run_statement(duckdb, con, sql, stmts,
                                                                        request.get("fetch", True), bound),
                                            load_missing=len(stmts) == 1)
            except duckdb.InvalidInputException as e:
                refused = params.refusal(str(e)) if bound is not None else None
                if refused is None:
                    raise
                raise Refused(*refused) from None
        if result is None:
            return {"desc": None}
        desc = [result.names, result.types]
        if not (request.get("fetch", True) and result.has_rows()):
            result.close()
            return {"desc": desc}
        # The first run goes with the answer, and the result's end if it is
        # known by then (a small result: one round trip in all).
        with self._using(con):
            try:
                first = result.next_run()
                second = result.next_run() if first is not None else None
            except BaseException:
                result.close()
                raise
        if second is None:
            result.close()
        else:
            result.push_back(second)
            result.con = con
            self.busy.add(con)
            self.results[rid] = result
        self.reply(rid, {"desc": desc, "first": first is not None, "more": second is not None})
        if first is not None:
            self._send_run(rid, first)
        return None

    def op_next(self, rid, request):
        of = request["of"]
        result = self.results.get(of)
        if result is None:
            return {"end": True}
        with self._using(result.con):
            try:
                run = result.next_run()
            except BaseException:
                self._drop(of)
                raise
        if run is None:
            self._drop(of)
            return {"end": True}
        self._send_run(rid, run)
        return None

    def _send_run(self, rid, run):
        kind, payload = run
        if kind == wire.ROWS:
            payload = json.dumps(payload).encode()
        with self.send_lock:        # header and payload apart: a run is not copied again
            self.sock.sendall(wire.HEADER.pack(len(payload), rid, kind))
            self.sock.sendall(payload)

    def _drop(self, of):
        result = self.results.pop(of, None)
        if result is not None:
            result.close()
            if not any(r.con is result.con for r in self.results.values()):
                self.busy.discard(result.con)

    def op_raw(self, rid, request):
        from . import query
        sql = request["sql"]
        stmts = self._check(sql)
        con = self._free_connection()
        with self._using(con):
            text = self._with_missing(lambda: query.render(con.execute(sql)), load_missing=len(stmts) == 1)
        return {"text": text}

    def op_dry_run(self, rid, request):
        """Create and drop a secret in the scratch engine (DDL validation)."""
        from . import engine_sql
        spec = request["spec"]
        for ext in request["extensions"]:
            if ext not in self.extensions:
                self._load(ext)
        sql, params = engine_sql.secret_sql(request["name"], spec)
        with self._using(self.con):
            self.con.execute(sql, params)
            self.con.execute(f"DROP TEMPORARY SECRET IF EXISTS {engine_sql.quote_ident(request['name'])}")
        return {}

    # --- set-up ---------------------------------------------------------------------

    def _load(self, ext):
        path = self.start["extension_paths"].get(ext)
        if path is None:
            raise Refused("0A000", f'DuckDB extension "{ext}" is not shipped with duckdb_secrets')
        try:
            with self._using(self.con):
                self.con.execute("LOAD '" + path.replace("'", "''") + "'")
        except self.duckdb.Error as e:
            raise Refused("58000", f'could not load DuckDB extension "{ext}"', str(e).split("\n")[0]) from None
        self.extensions.add(ext)

    def connect(self):
        s = self.start
        duckdb = self.duckdb = _import_duckdb()
        try:
            duckdb.default_connection().close()
        except Exception:       # noqa: BLE001 - not in every duckdb version
            pass
        self.policy = CheckPolicy(s["superuser"], s.get("copy_prefixes"))
        self.con = duckdb.connect(":memory:", config=s["config"])
        con = self.con
        for stmt in s.get("before_load", []):
            con.execute(stmt)
        for ext in s.get("load", []):
            self._load(ext)
        for stmt in s.get("after_load", []):
            head, _, body = stmt.partition("\n") if stmt.startswith("-- ") else ("", "", stmt)
            if head.startswith("-- if loaded ") and head[len("-- if loaded "):] not in self.extensions:
                continue
            try:
                con.execute(body)
            except duckdb.Error as e:
                if head == "-- admin":      # the administrator's duckdb.engine_settings
                    raise type(e)(f"duckdb.engine_settings: {e}") from None
                raise


class _InUse:
    """A connection running a request: what an interrupt interrupts."""

    def __init__(self, worker, con):
        self.worker, self.con = worker, con

    def __enter__(self):
        with self.worker.active_lock:
            self.worker.active.add(self.con)
        return self.con

    def __exit__(self, *exc):
        with self.worker.active_lock:
            self.worker.active.discard(self.con)


def _pgerror_fields(exc):
    fields = getattr(exc, "pg_fields", None)
    if fields is not None:
        return fields
    # statements.check raises errors.PgError
    if type(exc).__name__ == "PgError" and hasattr(exc, "sqlstate"):
        return [exc.sqlstate, exc.message, exc.detail, exc.hint]
    return None


def _memory():
    out = {}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(("VmHWM", "VmRSS", "VmData", "VmPeak")):
                    k, v = line.split(":", 1)
                    out[k] = int(v.split()[0]) * 1024
    except OSError:
        pass
    return out


def main(fd, parent):
    import socket
    sock = socket.socket(fileno=fd)
    got = wire.read_frame(sock)
    if got is None:
        os._exit(0)
    rid, _, payload = got
    start = json.loads(payload)
    from . import sandbox
    sandbox.harden(parent, start.get("data_limit"))
    proctitle.set_title(start.get("title") or "duckdb engine", "duckdb engine")
    box = start.get("sandbox") or {}
    read_only = box.get("read_only")
    if read_only is not None and box.get("system_paths"):
        # what the interpreter, DuckDB and the shipped files need, read-only
        read_only = [*read_only, *sandbox.worker_read_paths(*box["system_paths"])]
    enforced = sandbox.restrict(read_only, box.get("read_write"), box.get("tcp_ports"),
                                scope=True, deny_other_sockets=bool(box.get("deny_other_sockets")))
    threading.stack_size(STACK_SIZE)
    worker = Worker(sock, start)
    try:
        worker.connect()
        worker.reply(rid, {"extensions": sorted(worker.extensions), "pid": os.getpid(), "sandbox": enforced})
    except BaseException as e:      # noqa: BLE001 - reported to the backend, then this process ends
        worker.error(rid, e)
        os._exit(0)
    worker.serve()
