"""Entry points called by the SQL functions (each body is one line).

Every entry point takes plpy and GD, never raises to PostgreSQL, and reports
errors as ``[sqlstate, message, detail, hint]`` for duckdb._raise(); a value
result comes back as ``['00000', NULL, NULL, NULL, value]``. Messages are
scrubbed of every secret value the session knows before they leave.
"""

import functools
import json
import re

from . import (
    __version__,
    catalog,
    collect,
    explain,
    extensions,
    fingerprint,
    masking,
    params,
    query,
    statementlog,
    storage,
    sync,
    validation,
)
from .errors import (
    FEATURE_NOT_SUPPORTED,
    INSUFFICIENT_PRIVILEGE,
    NULL_VALUE_NOT_ALLOWED,
    UNDEFINED_OBJECT,
    WRONG_OBJECT_TYPE,
    PgError,
    caught,
    pg_error,
)
from .masking import Scrubber
from .session import caller, session

OK = "00000"

# The versions of the SQL objects this package serves (duckdb_secrets_boot
# refuses others with 55000): the current one and, once a release is out, the
# previous release's too, so that `make install` before `ALTER EXTENSION ...
# UPDATE` keeps working. A SQL object that changes between them calls a new
# entry point here (as postgres_fdw does with its C symbols); the old entry
# point stays until the previous release's objects are no longer served.
SQL_VERSIONS = (__version__,)


def _ddl():
    """DDL-time work (validation, dry runs, helpers): not imported by queries."""
    from . import ddl
    return ddl


def _called(plpy, GD, fn, args):
    """(fn's value, None) or (None, its error as an array, masked by the session
    and by the error itself): the one place the entry points catch everything."""
    value, error = caught(fn, plpy, GD, *args)
    if error is None:
        return value, None
    return None, pg_error(plpy, error).as_array(session(GD).scrub)


def entry(fn):
    @functools.wraps(fn)
    def wrapper(plpy, GD, *args):
        value, error = _called(plpy, GD, fn, args)
        return value if error is None else error
    return wrapper


def _value(v):
    return [OK, None, None, None, v]


# --- validation --------------------------------------------------------------

@entry
def fdw_validator(plpy, GD, options, catalog_oid):
    statementlog.quiet()        # the options may be secret values: the statement's text stays out of the log
    validation.validate_options(options, catalog_oid)
    return None


@entry
def check_ddl(plpy, GD, classid, objid):
    # a server's or user mapping's DDL may carry values: its text stays out of
    # the log for whatever else the statement does (statementlog)
    statementlog.quiet()
    _ddl().check_object(plpy, GD, classid, objid)
    return None


@entry
def reencrypt_secrets(plpy, GD):
    return _value(str(_ddl().reencrypt_secrets(plpy, GD)))


# --- helpers -----------------------------------------------------------------

def _helper(fn, plpy, GD, args):
    statementlog.quiet()        # its arguments are secret values: a literal's text stays out of the log
    value, error = caught(fn, plpy, GD, args)
    if error is None:
        return _value(value)
    err = pg_error(plpy, error).masked(Scrubber([args.get(k) for k in _ddl().HELPER_SENSITIVE_ARGS]))
    statementlog.quiet()
    raise err


@entry
def create_simple_secret(plpy, GD, args):
    return _helper(_ddl().create_simple_secret, plpy, GD, args)


@entry
def create_azure_secret(plpy, GD, args):
    return _helper(_ddl().create_azure_secret, plpy, GD, args)


@entry
def set_user_mapping(plpy, GD, server_name, role_name, options):
    statementlog.quiet()        # options are secret values: a literal's text stays out of the log
    value, error = caught(_ddl().set_user_mapping, plpy, GD, server_name, role_name, options)
    if error is None:
        return _value(value)
    try:
        given = params.load_json(options or "{}", "the options")
        # every value but a reference's (a source's name and an id are no secrets)
        values = ([str(v) for k, v in given.items() if v is not None and str(k).lower() not in catalog.REFERENCE]
                  if isinstance(given, dict) else [])
    except PgError:
        values = None       # not read: every word of the options is masked
    if values is None:
        values = [w for w in re.split(r'[\s"\[\]{}:,]+', options or "") if len(w) >= 4]
    err = pg_error(plpy, error).masked(Scrubber(values))
    statementlog.quiet()
    raise err


def rows_entry(width):
    """For set-returning entry points: rows whose first column is NULL, or one
    row carrying the error. width: the number of columns."""
    def wrap(fn):
        @functools.wraps(fn)
        def wrapper(plpy, GD, *args):
            rows, error = _called(plpy, GD, fn, args)
            return rows if error is None else [(error,) + (None,) * (width - 1)]
        return wrapper
    return wrap


@rows_entry(8)
def role_secrets(plpy, GD, nonce):
    """Rows for the SECURITY DEFINER duckdb._role_secrets(); first column: error."""
    return [(None,) + r for r in collect.role_secrets(plpy, GD, nonce)]


@entry
def store_mapping_options(plpy, GD, nonce, server_name, options):
    _ddl().store_mapping_options(plpy, GD, nonce, server_name, options)
    return None


# --- the engine --------------------------------------------------------------

def _engine_for(plpy, GD, fn, sql):
    # Until the call is judged (_judge: the engine may have to start first),
    # the statement's errors are logged without its text.
    statementlog.provisional()
    session(GD).judged = None
    if sql is None:
        raise PgError(NULL_VALUE_NOT_ALLOWED, f"the query passed to duckdb.{fn} must not be null")
    # A superuser's engine autoloads what the query needs (engine.py).
    return _ensure(plpy, GD, fn)


def _ensure(plpy, GD, fn=None):
    """sync.ensure(), after refusing a role that may not EXECUTE duckdb.<fn>(text)
    (the _impl functions behind it are reachable by PUBLIC), as the statement's
    fingerprint row says."""
    row = fingerprint.read(plpy, session(GD))
    if fn is not None and not row["can_query" if fn == "query" else "can_raw"]:
        raise PgError(INSUFFICIENT_PRIVILEGE, f"permission denied for function {fn}",
                      hint="An administrator can GRANT duckdb_query TO the role (every query function).")
    return sync.ensure(plpy, GD, row)


def _literals(plpy, GD, sql, statement=None):
    """statements.typed_paths of sql, by the engine's tokenizer (None: unknown);
    with statement, a fourth item: whether that text may carry a credential."""
    engine = session(GD).engine
    return engine.literals(plpy, sql, statement) if engine is not None else None


def _may_carry_credentials(sql, bound, found, given, scrub):
    """Whether a call's DuckDB SQL or bound parameters may carry a credential:
    DuckDB's tokens of the SQL say so (statements.carries_credentials; not
    known: yes), a parameter's name or value does (masking.value_carries), or
    either holds a value the session's mask hides."""
    if sql and (found is None or found[2] or scrub(sql) != sql):
        return True
    if bound is None:
        return False
    return given is None or scrub(bound) != bound or any(masking.value_carries(v) for v in given)


class Judged:
    """What a call's DuckDB SQL and parameters hold (api._judge)."""
    __slots__ = ("sql", "bound", "found", "given", "carries", "quiet")

    def __init__(self, sql, bound, found, given, carries, quiet):
        self.sql, self.bound, self.found, self.given = sql, bound, found, given
        self.carries = carries      # the SQL or parameters may carry a credential: errors masked
        self.quiet = quiet          # ... or the statement's text may: logged without it (statementlog)


_CURRENT_QUERY = "SELECT pg_catalog.current_query() AS q"


class _Asked:
    """A judgement asked of the engine (api._ask), its answer not read yet."""
    __slots__ = ("sql", "bound", "engine", "rid", "text")

    def __init__(self, sql, bound, engine, rid, text):
        self.sql, self.bound, self.engine, self.rid, self.text = sql, bound, engine, rid, text


def _ask(plpy, GD, sql, bound=None):
    """Ask the engine to judge a call as it starts, without waiting: the worker
    answers in order, so the answer is there when the call's own is (_judge).
    Until then the statement is quiet (statementlog.provisional)."""
    sess = session(GD)
    text = statementlog.text()
    if text is None:
        text = plpy.execute(sess.plan(plpy, "current_query", _CURRENT_QUERY))[0]["q"] or ""
    known = sess.statement_judged is not None and sess.statement_judged[0] == text
    rid = sess.engine.literals_ask(sql, None if known else text) if sess.engine is not None else None
    sess.asked, sess.judged = _Asked(sql, bound, sess.engine, rid, text), None


def _judge(plpy, GD, sql, bound=None):
    """An engine call's Judged (asked by _ask, else now): whether its SQL or
    parameters may carry a credential, and whether the text PostgreSQL logs
    with an error of this statement does -- the client's whole query string,
    which may hold other calls' SQL too -- both by DuckDB's tokens (its
    tokenizer reads PostgreSQL's '...', $$...$$, "..." and comments as well;
    the statement's judgement is kept per text). Settles the statement's
    provisional quiet."""
    sess = session(GD)
    asked = sess.asked
    if asked is None or asked.sql != sql or asked.bound != bound:
        _ask(plpy, GD, sql, bound)
        asked = sess.asked
    sess.asked = None
    known = sess.statement_judged if sess.statement_judged and sess.statement_judged[0] == asked.text else None
    found = asked.engine.literals_reply(plpy, asked.rid, known is None) if asked.engine is not None else None
    if known is None:
        statement = found is None or found[3] is not False or sess.scrub(asked.text) != asked.text
        sess.statement_judged = (asked.text, statement)
    else:
        statement = known[1]
    given = params.strings(bound) if bound is not None else set()
    carries = _may_carry_credentials(sql, bound, found, given, sess.scrub)
    sess.judged = Judged(sql, bound, found, given, carries, carries or statement)
    statementlog.settle(sess.judged.quiet)
    return sess.judged


def _judgement(plpy, GD, sql, bound, found=None):
    """The call's Judged: _judge's, else judged now (an error before the call
    was judged: the engine starting, say)."""
    judged = session(GD).judged
    if judged is not None and judged.sql == sql and judged.bound == bound:
        return judged
    return _judge(plpy, GD, sql, bound) if session(GD).engine is not None else \
        Judged(sql, bound, None, None, True, True)


def _statement_mask(judged):
    """A Scrubber of what may be credentials in a call's SQL and parameters:
    every literal and parameter value -- but a path or URL the caller typed
    where a file is named, or gave as a parameter, of which only the
    credential-looking pieces are; every word if they could not be read."""
    sql, bound, found, given = judged.sql, judged.bound, judged.found, judged.given
    if (sql and found is None) or given is None:
        return Scrubber(masking.every_word(f"{sql or ''} {bound or ''}"))
    values, paths = set(), set()
    if found is not None:
        values, paths = found[0] - found[1], set(found[1])
    for v in given:
        (paths if masking.path_like(v) else values).add(v)
    return Scrubber(masking.credentials_in(values, paths))


def _quiet_if_credentials(plpy, GD, sql, err, bound=None, judged=None):
    """A failing duckdb.query/raw_query is logged with its statement
    (log_min_error_statement). If the call's SQL or parameters may carry a
    credential, the error (which DuckDB may have built from either) is masked
    with _statement_mask and DuckDB's excerpt of the SQL (LINE 1: ...) left
    out; if they or the statement's text may, the statement is logged
    without its text (statementlog)."""
    judged = judged or _judgement(plpy, GD, sql, bound)
    if judged.carries:
        err.masked(_statement_mask(judged))
        err.detail = explain.without_excerpt(err.detail)
    if judged.quiet:
        statementlog.quiet()
    return err


# DuckDB's errors when a credential is refused (S3 and the like, PostgreSQL, HTTP).
_AUTH_FAILED = re.compile(r"HTTP (401|403)\b|InvalidAccessKeyId|SignatureDoesNotMatch|ExpiredToken|AccessDenied"
                          r"|password authentication failed|Unauthorized|Forbidden")


def _held_scopes(sess):
    """The URL prefixes the secrets the engine holds cover (a secret without a scope: its type's)."""
    out = []
    for loaded in sess.loaded.values():
        spec = loaded.spec
        stype = catalog.TYPES.get(spec.get("type"))
        out += list(spec.get("scope") or (stype.default_scope if stype else ()))
    return out


def _explained(plpy, GD, sql, err, bound=None):
    """err told in PostgreSQL's terms (explain.py), masked as _quiet_if_credentials does:
    a path or URL refused by configuration; a URL whose secret the role does not
    get (skipped, or a server it has no USAGE on: pg_foreign_server is
    everyone's to read); a catalog whose server's secret it does not get."""
    err = explain.refused_path(err)
    sess = session(GD)
    if sess.source_cache and _AUTH_FAILED.search(err.message or ""):
        from . import sources
        sources.invalidate(sess)    # a rotated credential: the next query fetches the source's value again
        if err.hint is None:
            err.hint = ("If the credential was rotated in its source (docs/sources.md), the next query fetches "
                        "the current value.")
    found = None
    if err.sqlstate in explain.REACH:
        found = _judgement(plpy, GD, sql, bound).found
        urls = None if found is None else set(found[0]) | set((params.strings(bound) if bound else None) or ())
        if urls:
            role = plpy.execute("SELECT current_user AS r")[0]["r"]
            new = explain.skipped_secret(err, sess.skipped, urls, role)
            if new is err and sess.engine is not None and not sess.engine.policy.superuser:
                rows = plpy.execute(sess.plan(plpy, "no_usage", explain.NO_USAGE_SQL))
                new = explain.no_usage(err, rows, urls, role, _held_scopes(sess))
            err = new
    elif err.sqlstate in explain.CATALOG:
        role = plpy.execute("SELECT current_user AS r")[0]["r"]
        new = explain.skipped_catalog(err, sess.skipped, role) if sess.skipped else err
        if new is err:
            new = explain.no_usage_catalog(err, plpy.execute(sess.plan(plpy, "no_usage", explain.NO_USAGE_SQL)),
                                           role)
        err = new
    return _quiet_if_credentials(plpy, GD, sql, err, bound)


def _quiet_on_error(fn):
    @functools.wraps(fn)
    def wrapper(plpy, GD, sql, *args):
        value, error = caught(fn, plpy, GD, sql, *args)
        if error is None:
            error = _interrupted(plpy, GD, sql)
        if error is not None:
            raise _explained(plpy, GD, sql, pg_error(plpy, error), args[0] if args else None)
        return value
    return wrapper


def _interrupted(plpy, GD, sql):
    """A cancel, statement_timeout or terminate that came while the call
    worked and that nothing of ours took yet: taken now, as the call's own
    error (judged, masked and quiet like any other), rather than by the next
    check PostgreSQL makes on the way out, which logs the statement whole.
    Drops the result the call made. None if there is none."""
    from . import process
    pg = process.backend()
    if pg is None or not pg.stopping():
        return None
    sess = session(GD)
    if sess.pending is not None and sess.pending.sql == sql:
        pending = sess.pending
        sess.pop_pending()
        pending.release()
    return process.pending_error(plpy)


@entry
@_quiet_on_error
def query_start(plpy, GD, sql, bound=None):
    """[.., DuckDB's column list, the fetch SELECT]; bound: the jsonb text of
    the parameters (duckdb.query(query, params)) or None."""
    sess = _engine_for(plpy, GD, "query", sql)
    _ask(plpy, GD, sql, bound)
    pending = query.start(plpy, sess.engine, sql, sess.cell_scrub, sess.caller, params=params.checked(bound))
    judged = _judge(plpy, GD, sql, bound)
    if pending is None:
        return _value(None)
    pending.sql, pending.bound, pending.judged = sql, bound, judged      # for the error at the end, if any
    sess.push_pending(pending)
    # The column list goes into a HINT: DuckDB's column names may hold anything
    # (a credential-looking SQL's literals are names of unnamed columns).
    # e[7], e[8]: query_json's SELECT and its keys (masked like the HINT), a parameter of it
    mask = _hint_mask(sess, pending)
    return _value(mask(pending.coldef(named=True))) + [
        pending.fetch_sql(), pending.json_sql(), json.dumps([mask(n) for n in pending.names])]


def _hint_mask(sess, pending):
    """For text of the current call shown in a HINT (column names): the
    session's mask, passwords in connection strings and URLs, column names
    that may carry a credential (_names_mask), and, when the call's SQL may,
    its literals (_statement_mask)."""
    masks = [sess.scrub, _names_mask(pending), masking.scrub_conninfo]
    if sess.judged is not None and sess.judged.carries:
        masks.append(_statement_mask(sess.judged))
    return lambda text: functools.reduce(lambda t, m: m(t), masks, text)


@entry
@_quiet_on_error
def query_columns(plpy, GD, sql):
    """The column list of sql's result, with DuckDB's names; the query is not run."""
    sess = _engine_for(plpy, GD, "query", sql)
    _ask(plpy, GD, sql)
    pending = query.start(plpy, sess.engine, sql, owner=sess.caller, fetch=False)
    _judge(plpy, GD, sql)
    if pending is None:
        raise PgError(WRONG_OBJECT_TYPE, "the DuckDB statement returns no rows",
                      hint="Give a query: SELECT, FROM, VALUES, SHOW, DESCRIBE, ...")
    return _value(_hint_mask(sess, pending)(pending.coldef(named=True)))


def _names_mask(pending):
    """A Scrubber of the column names of a result that may carry a credential
    (masking.value_carries) and are no plain word (session_id stays): DuckDB
    names a column after its expression, a literal's text included (as
    written, and as a quoted identifier)."""
    return Scrubber([v for n in pending.names if n and not n.replace("_", "").isalnum() and masking.value_carries(n)
                     for v in (n, n.replace('"', '""'))])


def _own_pending(plpy, GD):
    """The pending result, if the caller is the role and statement that made it
    (duckdb._query_chunks is reachable by PUBLIC: anything else, another role
    after SET ROLE or a later statement, gets nothing)."""
    sess = session(GD)
    pending = sess.pending
    if pending is None:
        return None
    if pending.owner != caller():
        return None
    return pending


def query_chunks(plpy, GD):
    pending = _own_pending(plpy, GD)
    return [] if pending is None else _chunks(session(GD), pending)


def _chunks(sess, pending):
    yield from pending.chunks()
    if pending.error is not None and sess.pending is not pending:
        # closed under it (a role switch inside the fetch recycled the engine):
        # its _query_end must still raise the error
        sess.orphans.append(pending)


_TEMPLATES = {}


def query_retype(plpy, GD, detail):
    """The fetch SELECT with the column PostgreSQL's mismatch detail names read
    as the declared type; None: keep the error (wrong number of columns)."""
    pending = _own_pending(plpy, GD)
    if pending is None:
        return None
    lang = plpy.execute("SELECT pg_catalog.current_setting('lc_messages') AS l")[0]["l"]
    if lang not in _TEMPLATES:
        sample = plpy.execute("SELECT duckdb._mismatch_sample() AS d")[0]["d"]
        _TEMPLATES[lang] = query.mismatch_template(sample)
    template = _TEMPLATES[lang]
    return None if template is None else pending.retype(detail, template)


def query_failed(plpy, GD, message):
    """[message, DETAIL naming the column] for a value PostgreSQL could not read
    as its declared type, the role's secret values masked (the message quotes
    the value); drops the result."""
    sess = session(GD)
    pending = _own_pending(plpy, GD)
    sess.pop_pending()
    if pending is None:
        return [sess.scrub(message or ""), None]
    pending.release()
    # The failing statement holds the DuckDB SQL and its parameters: kept out of
    # the log, and masked in the message (which quotes the value), like a
    # failure inside DuckDB.
    err = PgError("22000", masking.scrub_conninfo(message or ""), pending.failed(message or ""))
    err.masked(_names_mask(pending))
    _quiet_if_credentials(plpy, GD, pending.sql, err, pending.bound, pending.judged)
    masked = err.as_array(sess.scrub)
    return [masked[1], masked[2]]


@entry
def query_end(plpy, GD):
    sess = session(GD)
    pending = _own_pending(plpy, GD)
    if pending is not None:
        sess.pop_pending()
        pending.release()       # read to its end, or PostgreSQL stopped early (LIMIT)
    elif sess.orphans:
        pending = sess.orphans.pop()
    if pending is not None and pending.error is not None:
        sess.judged = pending.judged
        raise _explained(plpy, GD, pending.sql, pending.error, pending.bound)
    return None


@entry
@_quiet_on_error
def raw_query(plpy, GD, sql):
    sess = _engine_for(plpy, GD, "raw_query", sql)
    _ask(plpy, GD, sql)
    sess.engine.forget_refusals()
    text = sess.engine.raw(plpy, sql)
    _judge(plpy, GD, sql)
    plpy.notice("\n" + sess.scrub(text))
    return None


@entry
def recycle(plpy, GD):
    session(GD).recycle()
    return None


@entry
def refresh_secrets(plpy, GD):
    """duckdb.refresh_secrets(): every value the role's user mappings take from
    sources fetched now, and the engine in line; how many were fetched."""
    from . import aws, sources
    sess = session(GD)
    now = aws.now()
    # fetching anew at most every sources.AGAIN: a loop of calls does not hammer the source
    sess.sources_force = now - sess.sources_invalidated >= sources.AGAIN
    if sess.sources_force:
        sess.sources_invalidated = now
    sess.sources_fetched = 0
    sess.refresh_at = now           # a full sync, whatever the fingerprint says
    sync.ensure(plpy, GD)
    return _value(str(sess.sources_fetched))


# Roles that are not superusers and can read server files (COPY ... FROM, or a
# program's output): they can read duckdb.encryption_key_file.
FILE_READERS_SQL = """
SELECT pg_catalog.string_agg(pg_catalog.quote_ident(r.rolname), ', ' ORDER BY r.rolname) AS names
  FROM pg_catalog.pg_roles r
 WHERE NOT r.rolsuper AND r.rolname !~ '^pg_'
   AND (pg_catalog.pg_has_role(r.oid, 'pg_read_server_files', 'MEMBER')
        OR pg_catalog.pg_has_role(r.oid, 'pg_write_server_files', 'MEMBER')
        OR pg_catalog.pg_has_role(r.oid, 'pg_execute_server_program', 'MEMBER'))
"""


def _key_readers_warning(plpy, sess):
    """For a superuser, while a key file is set: one WARNING naming the roles
    that are not superusers and can read it anyway (docs/security.md)."""
    policy = sess.engine.policy if sess.engine is not None else None
    if policy is None or not policy.superuser or sess.context is None or not sess.context.keys.configured:
        return
    names = plpy.execute(sess.plan(plpy, "file_readers", FILE_READERS_SQL))[0]["names"]
    if names:
        plpy.warning(f"roles that are not superusers can read duckdb.encryption_key_file: {names}",
                     detail="Members of pg_read_server_files, pg_write_server_files and pg_execute_server_program "
                            "can read any file the server can, the key file included (COPY ... FROM): with a dump "
                            "or a backup they decrypt every stored value.",
                     hint="Revoke those roles from them, or use a kms: line in the key file (docs/security.md).")


@rows_entry(10)
def secrets(plpy, GD):
    """Rows of duckdb.secrets(); the first column carries an error, if any."""
    sess = sync.ensure(plpy, GD)
    _key_readers_warning(plpy, sess)
    rows = sess.engine.execute(
        plpy, "SELECT name, type, provider, scope, storage, secret_string FROM duckdb_secrets() ORDER BY name")
    out = []
    for name, typ, provider, scope, kept_in, secret_string in rows:
        managed = sess.loaded.get(name) if kept_in == "memory" else None
        attach_as = None
        if managed is not None:
            # As the server or table row defines it (a credential chain reaches
            # DuckDB as resolved keys).
            origin = sess.origins.get(name, "server")
            server = managed.server if origin == "server" else None
            shown = masking.redacted(managed.spec)
            typ, provider = managed.spec["type"], managed.spec["provider"]
            # the catalog its engine attaches on first use (a server's attach_as)
            attach_as = (managed.spec.get("attach") or {}).get("name")
        else:
            # Created inside the engine (superusers), or DuckDB's own view of
            # a database a superuser attached.
            server, shown = None, masking.redact_listed(secret_string)
            origin = "duckdb"
        out.append((None, name, server, typ, provider, [x for x in scope or [] if x], kept_in,
                    sess.scrub(shown), origin, attach_as))
    # Token sources (rds) that DuckDB holds no copy of.
    for name, (server, spec) in sorted(sess.not_in_engine.items()):
        out.append((None, name, server, spec["type"], spec["provider"], list(spec["scope"] or []), "none",
                    masking.redacted(spec), sess.origins.get(name, "server"), None))
    # Servers the engine could not be given, and why (e.g. no key to decrypt them).
    for name, (server, typ, why, _scopes, _catalog) in sorted(sess.skipped.items()):
        out.append((None, name, server, (typ or "").strip().lower(), None, [], "skipped", why, "server", None))
    return out


@rows_entry(9)
def engine_status(plpy, GD):
    """The row of duckdb.engine(): the current role's engine process."""
    sess = sync.ensure(plpy, GD)
    _key_readers_warning(plpy, sess)
    e = sess.engine
    status = e.status()
    return [(None, e.pid, str(e.name), status["sandbox"], status["enforced"], status["not_enforced"],
             e.policy.memory_limit, status["memory_limit"], status["peak_memory"])]


@entry
def store_table_secret(plpy, GD, server_name, table_name, include_sensitive):
    """duckdb.store_table_secret(): a server's secret, as the current role uses it, into a table."""
    if server_name is None:
        raise PgError(NULL_VALUE_NOT_ALLOWED, "the server name must not be null")
    sess = sync.ensure(plpy, GD)
    found = [(n, v) for n, v in [*sess.loaded.items(), *sess.not_in_engine.items()]
             if sess.origins.get(n) == "server" and v.server == server_name]
    if not found:
        raise PgError(UNDEFINED_OBJECT, f'no DuckDB secret for server "{validation.shown(server_name)}"',
                      hint="duckdb.secrets() lists the secrets the current role can use; the server needs "
                           "a user mapping for this role (or PUBLIC) if it has sensitive options.")
    if any(srv.srvname == server_name and srv.key and srv.key[-1] is not None
           for srv in (sess.state.servers.values() if sess.state else ())):
        raise PgError(FEATURE_NOT_SUPPORTED, f'the secret of server "{validation.shown(server_name)}" takes its '
                                             "values from a source: they are not written to a table",
                      detail="Values from a source are kept in the backend's memory and the engine only.",
                      hint="Store a secret whose values are in its user mapping, or let DuckDB clients read "
                           "the source themselves.")
    spec = found[0][1].spec
    return _value(storage.store(plpy, sess, server_name, table_name, bool(include_sensitive), spec))


@rows_entry(4)
def which_secret(plpy, GD, path, typ):
    if path is None or typ is None:
        return []
    if masking.value_carries(path):
        statementlog.quiet()        # a signed or user:password@ URL: the statement's text stays out of the log
    sess = sync.ensure(plpy, GD)
    rows = sess.engine.execute(plpy, "SELECT name, persistent, storage FROM which_secret(?, ?)", [path, typ])
    return [(None, n, p, s) for n, p, s in rows]


# --- pg_duckdb's extension functions ----------------------------------------------

@entry
def extension_name(plpy, GD, name, source):
    """The shipped extension a name means (install_extension, autoload_extension)."""
    extensions.check_source(source)
    return _value(extensions.canonical(name))


@entry
def load_extension(plpy, GD, name):
    key = extensions.canonical(name)
    sess = _ensure(plpy, GD, "query")
    extensions.load(plpy, sess.engine, key)
    return None
