"""Export: keep the engine's secrets in line with the catalog, for the current role.

Before each engine use a fingerprint is read: one prepared query for the
extension's generation row, which every DDL on duckdb servers, mappings and
grants bumps inside its own transaction (so a rollback restores it, and its
xmin tells transactions apart), plus the current role, its superuser and file
privileges, role memberships and the engine settings; and, when a secret table
is configured and readable, a digest of its rows (a second query, which reads
the whole table: storage.probe). A different fingerprint means: re-read the
secrets this role may use, and create, replace or drop only the ones that
changed.
"""

import datetime
import os
import re

from . import aws, catalog, crypto, egress, extensions, interrupts, storage, validation
from .engine import Engine, Profile, parse_engine_settings, quote_ident, secret_sql
from .errors import INSUFFICIENT_PRIVILEGE, NO_SCRUB, MissingMapping, PgError, Scrubber, from_duckdb

FINGERPRINT_SQL = """
SELECT g.n, g.xmin::text AS gx, r.oid AS role, pg_catalog.statement_timestamp()::text AS st,
       pg_catalog.date_part('epoch', pg_catalog.statement_timestamp()) AS st_epoch,
       pg_catalog.current_setting('statement_timeout') AS stmt_timeout,
       r.rolname::text AS rolname, r.rolsuper,
       pg_catalog.pg_has_role(r.oid, 'pg_read_server_files', 'USAGE') AS rd,
       pg_catalog.pg_has_role(r.oid, 'pg_write_server_files', 'USAGE') AS wr,
       pg_catalog.current_setting('duckdb.memory_limit', true) AS mem,
       pg_catalog.current_setting('duckdb.threads', true) AS thr,
       pg_catalog.current_setting('duckdb.secret_storage_table', true) AS tbl,
       pg_catalog.current_setting('duckdb.attach_lock_timeout', true) AS alt,
       t.oid AS tbl_oid, t.qualified AS tbl_name, t.distrust AS tbl_distrust, t.readable AS tbl_read,
       (SELECT pg_catalog.md5(coalesce(pg_catalog.string_agg(m.roleid::text || ':' || m.member::text,
                                                             ',' ORDER BY m.roleid, m.member), ''))
          FROM pg_catalog.pg_auth_members m) AS am,
       -- who is a superuser decides whose servers count as an administrator's
       -- (a change of owner bumps the generation: ALTER SERVER ... OWNER TO)
       (SELECT pg_catalog.string_agg(a.oid::text, ',' ORDER BY a.oid) FROM pg_catalog.pg_roles a
         WHERE a.rolsuper) AS owners,
       pg_catalog.has_function_privilege('duckdb.query(text)', 'EXECUTE') AS can_query,
       pg_catalog.has_function_privilege('duckdb.raw_query(text)', 'EXECUTE') AS can_raw,
       concat_ws(';', pg_catalog.current_setting('duckdb.allowed_url_prefixes', true),
                 pg_catalog.current_setting('duckdb.engine_settings', true),
                 pg_catalog.current_setting('duckdb.trusted_server_owners', true),
                 pg_catalog.current_setting('duckdb.max_memory_limit', true),
                 pg_catalog.current_setting('duckdb.max_threads', true),
                 pg_catalog.current_setting('duckdb.max_temp_directory_size', true),
                 pg_catalog.current_setting('duckdb.aws_config_file', true),
                 pg_catalog.current_setting('duckdb.aws_shared_credentials_file', true),
                 pg_catalog.current_setting('duckdb.aws_assume_role_duration', true),
                 pg_catalog.current_setting('duckdb.aws_refresh_margin', true),
                 pg_catalog.current_setting('duckdb.rds_token_max_age', true),
                 pg_catalog.current_setting('duckdb.encryption_key_file', true)) AS conf
  FROM duckdb._generation g
  JOIN pg_catalog.pg_roles r ON r.rolname = pg_catalog.current_user()
  -- the relation at the place the administrator named ($1 schema, $2 name)
  LEFT JOIN LATERAL (
       SELECT c.oid, c.oid::regclass::text AS qualified,
              pg_catalog.has_table_privilege(c.oid, 'SELECT') AS readable,
              """ + storage.DISTRUST_SQL_EXPR.format(role="r.oid") + """ AS distrust
         FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relname = $2 AND n.nspname = ANY ($1)) t ON true
"""

_backend = None


def caller():
    """(current role's oid, the current statement's start): who is calling, in
    which statement. A pending result belongs to both. Read from the backend
    itself (GetUserId, GetCurrentStatementStartTimestamp), without a query."""
    global _backend
    if _backend is None:
        import ctypes
        lib = ctypes.CDLL(None)
        lib.GetUserId.restype = ctypes.c_uint32
        lib.GetCurrentStatementStartTimestamp.restype = ctypes.c_int64
        _backend = (lib.GetUserId, lib.GetCurrentStatementStartTimestamp)
    return (int(_backend[0]()), int(_backend[1]()))


# Runs as the extension owner (duckdb._role_secrets is SECURITY DEFINER): only
# there are PUBLIC user mappings readable for roles that merely have USAGE.
ROLE_SECRETS_SQL = """
SELECT s.oid, s.srvname::text AS srvname, s.srvtype, s.srvoptions,
       CASE WHEN um.oid IS NOT NULL THEN um.umoptions ELSE pm.umoptions END AS umoptions,
       -- whose mapping it is: encrypted values are bound to it
       CASE WHEN um.oid IS NOT NULL THEN (SELECT a.rolname::text FROM pg_catalog.pg_authid a WHERE a.oid = $1)
            WHEN pm.oid IS NOT NULL THEN 'public' END AS umrole,
       um.oid IS NULL AND pm.oid IS NULL
         AND EXISTS (SELECT 1 FROM pg_catalog.pg_user_mapping x WHERE x.umserver = s.oid) AS others_only
  FROM pg_catalog.pg_foreign_server s
  JOIN pg_catalog.pg_foreign_data_wrapper w ON w.oid = s.srvfdw AND w.fdwname = 'duckdb'
  LEFT JOIN pg_catalog.pg_user_mapping um ON um.umserver = s.oid AND um.umuser = $1
  LEFT JOIN pg_catalog.pg_user_mapping pm ON pm.umserver = s.oid AND pm.umuser = 0
 WHERE (SELECT a.rolsuper FROM pg_catalog.pg_authid a WHERE a.oid = $1)
    OR pg_catalog.has_server_privilege($1, s.oid, 'USAGE')
 ORDER BY s.srvname
"""

CONF_SETTINGS = ["duckdb.allowed_url_prefixes", "duckdb.engine_settings", "duckdb.trusted_server_owners",
                 "duckdb.max_memory_limit", "duckdb.max_threads", "duckdb.max_temp_directory_size",
                 "duckdb.aws_config_file", "duckdb.aws_shared_credentials_file", "duckdb.aws_assume_role_duration",
                 "duckdb.aws_refresh_margin", "duckdb.rds_token_max_age", crypto.SETTING]
# Only what an administrator wrote in the configuration files counts (see
# duckdb._admin_settings): a file path a role could SET would let it run a
# credential_process as the server.
CONF_SQL = "SELECT name, setting FROM duckdb._admin_settings() WHERE name = ANY($1)"

CALLER_KEY = "duckdb_secrets.caller"

# Whose servers count as an administrator's: owned by a superuser, or by a role
# the configuration files list in duckdb.trusted_server_owners. Public catalog
# data; runs as the current role.
TRUST_SQL = """
SELECT s.oid, (a.rolsuper OR a.rolname::text = ANY ($1)) AS trusted
  FROM pg_catalog.pg_foreign_server s JOIN pg_catalog.pg_roles a ON a.oid = s.srvowner
  JOIN pg_catalog.pg_foreign_data_wrapper w ON w.oid = s.srvfdw AND w.fdwname = 'duckdb'
"""


def trusted_owners(conf):
    return [n.strip() for n in (conf.get("duckdb.trusted_server_owners") or "").split(",") if n.strip()]


class Session:
    """Per-backend state, kept in GD."""

    def __init__(self):
        self.engine = None
        self.fingerprint = None
        self.loaded = {}          # engine secret name -> (digest, server name, spec)
        self.scrub = NO_SCRUB
        self.cell_scrub = None    # for result cells (values DuckDB itself shows)
        self.scratch = None
        self.plans = {}
        self.pending = None       # result of the running duckdb.query
        self.caller = None        # (role oid, statement timestamp) of the current engine use
        self.deadline = None      # the current statement's statement_timeout, as time.time()
        self.resolved = {}        # server -> (spec digest, aws.Resolved)
        self.tokens = {}          # postgres server -> (rds spec digest, token, generated at)
        self.not_in_engine = {}   # managed secrets DuckDB does not hold (rds): name -> (server, spec)
        self.refresh_at = None    # when credentials or tokens need renewing
        self.token_due = {}       # engine secret name -> when its OAuth2 token must be fetched anew
        self.specs = {}           # (server, type, options, mapping) -> validated spec
        self.digests = {}         # id(spec) -> (spec, digest), from the last sync
        self.origins = {}         # engine secret name -> 'server', a table's name, or 'default'
        self.skipped = {}         # engine secret name -> (server, type, why): not exported, listed by secrets()
        # (duckdb.secret_storage_table as last seen, [schema] or None, table name or None)
        self.table_args = (None, [storage.DEFAULT_SCHEMA], storage.DEFAULT_TABLE)

    def plan(self, plpy, key, sql, types=()):
        p = self.plans.get(key)
        if p is None:
            p = self.plans[key] = plpy.prepare(sql, list(types))
        return p

    def recycle(self):
        self.pending = None
        if self.engine is not None:
            self.engine.close()
        self.engine = None
        self.fingerprint = None
        self.loaded = {}
        self.scrub = NO_SCRUB
        self.cell_scrub = None
        self.resolved = {}
        self.tokens = {}
        self.not_in_engine = {}
        self.refresh_at = None
        self.token_due = {}
        self.origins = {}
        self.skipped = {}


def session(GD):
    s = GD.get("duckdb_secrets.session")
    if s is None:
        s = GD["duckdb_secrets.session"] = Session()
    return s


def _digest(spec):
    """Identifies a secret's content within this backend (never stored or shown)."""
    return hash(repr((spec["type"], spec["provider"], spec["scope"], sorted(spec["params"].items()))))


class _Digests:
    """_digest() remembered per spec object: validated specs are memoised and
    never modified, so one sync can reuse the previous sync's digests."""

    def __init__(self, previous=None):
        self.previous = previous or {}
        self.current = {}

    def __call__(self, spec):
        hit = self.previous.get(id(spec))
        if hit is None or hit[0] is not spec:
            hit = (spec, _digest(spec))
        self.current[id(spec)] = hit
        return hit[1]


def role_secrets(plpy, GD, nonce):
    """Body of the SECURITY DEFINER duckdb._role_secrets(nonce).

    Only answers a call made by this package's own code in this backend: the
    caller's role comes from a one-time token that code left in GD, never
    from an argument a user could choose.
    """
    token = GD.pop(CALLER_KEY, None)
    if token is None or nonce is None or token[0] != nonce:
        raise PgError(INSUFFICIENT_PRIVILEGE, "duckdb._role_secrets is internal to duckdb_secrets",
                      hint="Use duckdb.secrets() to see the secrets of the current role.")
    plan = session(GD).plan(plpy, "role_secrets", ROLE_SECRETS_SQL, ["oid"])
    rows = [(r["oid"], r["srvname"], r["srvtype"], r["srvoptions"], r["umoptions"], r["umrole"], r["others_only"])
            for r in plpy.execute(plan, [token[1]])]
    if GD.get("duckdb_secrets.version") in ("0.1.0", "0.2.0", "0.3.0"):
        rows = [r[:5] for r in rows]        # before 0.4.0 the function has no umrole, others_only columns
    return rows


def _fetch_role_secrets(plpy, GD, sess, role):
    nonce = os.urandom(16).hex()
    GD[CALLER_KEY] = (nonce, role)
    try:
        plan = sess.plan(plpy, "call_role_secrets",
                         "SELECT * FROM duckdb._role_secrets($1)", ["text"])
        return list(plpy.execute(plan, [nonce]))
    finally:
        GD.pop(CALLER_KEY, None)


def _credentials(sess, srvname, spec, settings, now):
    """Resolved AWS credentials for a credential_chain spec, cached until due."""
    key = _digest(spec)
    cached = sess.resolved.get(srvname)
    if cached is not None and cached[0] == key:
        due = settings.due(cached[1])
        if due is None or now < due:
            return cached[1]
    creds = aws.resolve(spec["params"], srvname, settings)
    sess.resolved[srvname] = (key, creds)
    return creds


DEFAULT_LOCK_TIMEOUT = "5s"
_TIMEOUT = re.compile(r"^\s*(\d{1,9})\s*(ms|s|min)?\s*$")


def lock_timeout(value):
    """duckdb.attach_lock_timeout -> a PostgreSQL lock_timeout value ('0' turns it off)."""
    m = _TIMEOUT.match(DEFAULT_LOCK_TIMEOUT if value is None or not value.strip() else value)
    if not m:
        raise PgError("22023", 'invalid value for parameter "duckdb.attach_lock_timeout"',
                      hint="Use a duration such as 5s, 500ms or 1min; 0 turns the limit off.")
    return m.group(1) + (m.group(2) or "ms")


def with_lock_timeout(params, timeout):
    """A postgres secret's params with lock_timeout added to the connection's options.

    DuckDB's connection is another session: if this backend holds a lock the
    query needs (or has uncommitted rows it would update), it would wait
    forever. An explicit lock_timeout already in options is kept."""
    if int(re.match(r"\d+", timeout).group()) == 0:
        return params
    setting = f"-c lock_timeout={timeout}"
    params = dict(params)
    if "uri" in params:
        uri = params["uri"]
        if "lock_timeout" not in uri and "options=" not in uri:
            encoded = setting.replace(" ", "%20").replace("=", "%3D")
            params["uri"] = uri + ("&" if "?" in uri else "?") + "options=" + encoded
        return params
    existing = params.get("options") or ""
    if "lock_timeout" not in existing:
        params["options"] = (existing + " " + setting).strip()
    return params


def _exported(sess, srvname, spec, desired, settings, now):
    """(the spec DuckDB gets or None, when it must be renewed or None)."""
    t, p = spec["type"], spec["provider"]
    if t == "rds":
        return None, None           # a token source for postgres servers; DuckDB needs no copy
    if p == "credential_chain" and t in catalog.AWS_FAMILY:
        creds = _credentials(sess, srvname, spec, settings, now)
        config = catalog.TYPES[t].providers["config"].options
        params = {k: v for k, v in spec["params"].items() if k in config}
        if creds is not None:
            params.update(creds.params())
        return {"type": t, "provider": "config", "scope": spec["scope"], "params": params}, settings.due(creds)
    if t == "postgres" and "aws_rds_secret" in spec["params"]:
        rds_name = validation.engine_name(spec["params"]["aws_rds_secret"])
        if rds_name not in desired or desired[rds_name][1]["type"] != "rds":
            raise PgError("HV024", f'server "{validation.shown(spec["params"]["aws_rds_secret"])}" named by '
                                   "aws_rds_secret is not an rds secret this role may use")
        rds_server, rds_spec = desired[rds_name]
        key = _digest(rds_spec)
        cached = sess.tokens.get(srvname)
        if cached is not None and cached[0] == key and now < cached[2] + settings.rds_token_max_age:
            token, generated = cached[1], cached[2]
        else:
            creds = _credentials(sess, rds_server, rds_spec, settings, now)
            token, generated = aws.rds_token(rds_spec["params"], creds, rds_server), now
            sess.tokens[srvname] = (key, token, generated)
        params = {k: v for k, v in spec["params"].items() if k != "aws_rds_secret"}
        params["password"] = token
        params = with_lock_timeout(params, settings.lock_timeout)
        return {**spec, "params": params}, generated + settings.rds_token_max_age
    if t == "postgres":
        return {**spec, "params": with_lock_timeout(spec["params"], settings.lock_timeout)}, None
    return spec, None


# Engine settings of the administrator's that name a host requests go to.
_ENDPOINT_SETTINGS = {"s3_endpoint": "s3_use_ssl"}


def reach_of(specs, prefixes, conf):
    """What a non-superuser's engine may contact: its secrets' endpoints (or
    their types' standard hosts; only the latter for secrets an administrator
    did not define), the hosts of duckdb.allowed_url_prefixes, and endpoints
    the administrator set in duckdb.engine_settings. specs: [(spec, trusted)]."""
    rules = [rule for spec, trusted in specs for rule in catalog.reach(spec, trusted)]
    for prefix in prefixes:
        hp = egress.url_hostport(prefix)
        if hp is not None:
            rules += [(hp[0], p) for p in hp[1]]
    settings = dict(parse_engine_settings(conf.get("duckdb.engine_settings")))
    for name, ssl_setting in _ENDPOINT_SETTINGS.items():
        if settings.get(name):
            plain = settings.get(ssl_setting, "true").strip().lower() in ("false", "0", "off", "no")
            rules += catalog.endpoint_rules(settings[name], (80,) if plain else (443,))
    return rules


def _apply(sess, exported, origins, guard):
    """Create, replace or drop the engine's secrets so that they are `exported`;
    returns the warnings to give (this runs on the guard's thread: no plpy)."""
    import duckdb
    con = sess.engine.con
    warnings = []
    for name in [n for n in sess.loaded if n not in exported]:
        con.execute(f"DROP TEMPORARY SECRET IF EXISTS {quote_ident(name)}")
        del sess.loaded[name]
    now = aws.now()
    for name in [n for n in sess.token_due if n not in exported]:
        del sess.token_due[name]
    for name, (digest, srvname, spec, out) in exported.items():
        if guard.fired:
            return warnings     # stopped: the next engine use carries on
        due = sess.token_due.get(name)
        if name in sess.loaded and sess.loaded[name][0] == digest and (due is None or now < due):
            continue
        sql, params = secret_sql(name, sess.engine.adapt(out))
        try:
            con.execute(sql, params)
        except duckdb.Error as e:   # the message is scrubbed below
            sess.loaded.pop(name, None)
            con.execute(f"DROP TEMPORARY SECRET IF EXISTS {quote_ident(name)}")
            if guard.fired:
                return warnings
            err = from_duckdb(e)
            warnings.append(f"skipping DuckDB secret {_label(srvname, origins[name])}: "
                            f"{sess.scrub(err.message)}")
            continue
        sess.loaded[name] = (digest, srvname, spec)
        if _fetches_token(out):
            sess.token_due[name] = _token_due(con, name, now)
    return warnings


# An iceberg secret with OAuth2 client credentials gets its token when DuckDB
# creates it; the secret is created anew (a new token) when 80% of the token's
# lifetime has passed, so a catalog never sees an expired one.
_EXPIRES_IN = re.compile(r"(?:^|;)expires_in=(\d+)")
DEFAULT_TOKEN_LIFETIME = 3600


def _fetches_token(spec):
    return spec["type"] == "iceberg" and "token" not in spec["params"] and "client_secret" in spec["params"]


def _token_due(con, name, now):
    row = con.execute("SELECT secret_string FROM duckdb_secrets() WHERE name = ?", [name]).fetchone()
    m = _EXPIRES_IN.search(row[0] if row else "")
    lifetime = int(m.group(1)) if m else DEFAULT_TOKEN_LIFETIME
    return now + datetime.timedelta(seconds=max(1.0, lifetime * 0.8))


def _label(name, origin):
    if origin == "server":
        return f'for server "{validation.shown(name)}"'
    return f'"{validation.shown(name)}" from {origin}'


def ensure(plpy, GD, require=None):
    """The engine for the current role, with its secrets in line. Returns the Session.

    require: 'query' or 'raw_query': refuse first unless the role may EXECUTE
    that function (its _impl helpers are reachable by PUBLIC).
    """
    sess = session(GD)
    plan = sess.plan(plpy, "fingerprint", FINGERPRINT_SQL, ["text[]", "text"])
    rows = plpy.execute(plan, list(sess.table_args[1:]))
    if rows and rows[0]["tbl"] != sess.table_args[0]:
        # duckdb.secret_storage_table may have changed: the configuration files'
        # value names the table (a role's own SET does not count).
        args = storage.lookup_args(storage.admin_setting(plpy, sess))
        sess.table_args = (rows[0]["tbl"],) + (args if args is not None else (None, None))
        rows = plpy.execute(plan, list(sess.table_args[1:]))
    if not rows:
        raise PgError("55000", "duckdb_secrets is not set up in this database",
                      hint="CREATE EXTENSION duckdb_secrets CASCADE;")
    r = rows[0]
    sess.caller = caller()
    sess.deadline = interrupts.deadline(r["st_epoch"], r["stmt_timeout"])
    if sess.pending is not None and sess.pending.owner != sess.caller:
        sess.pending = None     # left by another statement (an error) or another role: gone
    may_run = {"query": r["can_query"], "raw_query": r["can_raw"]}
    if require is not None and not may_run[require]:
        raise PgError(INSUFFICIENT_PRIVILEGE, f"permission denied for function {require}",
                      hint=f"An administrator can GRANT EXECUTE ON FUNCTION duckdb.{require}(text) TO the role.")
    table = storage.probe(plpy, sess, r["tbl_oid"] if sess.table_args[2] else None, r["tbl_read"],
                          r["tbl_distrust"], r["tbl_name"])
    fp = (r["n"], r["gx"], r["role"], r["rolsuper"], r["rd"], r["wr"], r["mem"], r["thr"], r["am"], r["conf"],
          r["alt"], r["owners"], table.key())
    now = aws.now()
    if (sess.engine is not None and fp == sess.fingerprint and sess.engine.usable()
            and (sess.refresh_at is None or now < sess.refresh_at)):
        return sess

    conf = {row["name"]: row["setting"] for row in plpy.execute(
        sess.plan(plpy, "conf", CONF_SQL, ["text[]"]), [CONF_SETTINGS])}
    settings = aws.Settings.from_conf(conf)
    settings.lock_timeout = lock_timeout(r["alt"])
    desired, specs, origins, trusted, skipped = {}, {}, {}, {}, {}
    trust = {t["oid"]: t["trusted"] for t in plpy.execute(
        sess.plan(plpy, "trust", TRUST_SQL, ["text[]"]), [trusted_owners(conf)])}
    keys = crypto.Keyring(conf)
    for row in _fetch_role_secrets(plpy, GD, sess, r["role"]):
        def skip(why, row=row):
            skipped[validation.engine_name(row["srvname"])] = (row["srvname"], row["srvtype"], why)
        if r["rolsuper"] and not trust.get(row["oid"]):
            # A less privileged owner must not steer a superuser's engine (the
            # longest scope wins): superusers take administrators' servers only.
            skip("owned by a role that is not an administrator (duckdb.trusted_server_owners): "
                 "a superuser's engine takes administrators' servers only")
            continue
        if row.get("others_only"):
            # Its mappings are other roles': not this role's secret, even if the
            # server alone would make one (say, an anonymous one that shadows
            # this role's own for the same scope). Listed, with why.
            skip("no user mapping for this role or PUBLIC")
            continue
        key = (row["srvname"], row["srvtype"], tuple(row["srvoptions"] or ()), tuple(row["umoptions"] or ()))
        try:
            spec = sess.specs.get(key)          # validated before, unchanged since
            if spec is None:
                umoptions = keys.open(row["umoptions"], row["srvname"], row.get("umrole"))
                spec = validation.secret_spec(row["srvname"], row["srvtype"],
                                              row["srvoptions"], umoptions)
            specs[key] = spec
        except MissingMapping as e:
            # This role has no mapping that completes the secret.
            skip(f"no user mapping gives what it needs: {e.message}")
            continue
        except crypto.KeyProblem as e:
            # Never a crash, never a half secret: the others load, this one says why.
            why = f"cannot decrypt: {e}"
            plpy.warning(f'skipping DuckDB secret for server "{validation.shown(row["srvname"])}": {why}')
            skip(why)
            continue
        except PgError as e:
            # Validated at DDL time; can only happen after a catalogue change
            # (an upgrade) or a catalog edit behind our back. Skip it loudly.
            plpy.warning(f'skipping DuckDB secret for server "{validation.shown(row["srvname"])}": '
                         f"{e.message}")
            skip(f"refused by validation: {e.message}")
            continue
        if spec["type"] in catalog.SUPERUSER_ONLY_TYPES and not r["rolsuper"]:
            # database connections from the server: superusers only
            skip(f"needs a superuser: type {spec['type']} connects from the database server")
            continue
        if not trust.get(row["oid"]) and catalog.PROXY_OPTIONS & set(spec["params"]):
            plpy.warning(f'skipping DuckDB secret for server "{validation.shown(row["srvname"])}": its proxy '
                         "options would send requests around the engine's egress proxy, and its owner is "
                         "not an administrator (docs/security.md)")
            skip("its proxy options would send requests around the egress proxy, and its owner is not an "
                 "administrator")
            continue
        desired[validation.engine_name(row["srvname"])] = (row["srvname"], spec)
        origins[validation.engine_name(row["srvname"])] = "server"
        trusted[validation.engine_name(row["srvname"])] = bool(trust.get(row["oid"]))
    sess.specs = specs

    if table.ignored is not None:
        plpy.warning(f"ignoring {table.qualified} for DuckDB secrets: {table.ignored}")
    if table.problem == "shape":
        plpy.warning(f"ignoring table {table.qualified} for DuckDB secrets: it does not have the layout "
                     "of a DuckDB secret table (secret_name, secret_type, serialized_secret bytea)")
    elif table.problem is not None:
        plpy.warning(f"could not read DuckDB secrets from table {table.qualified}: {table.problem}")
    servers = dict(desired)
    scopes = storage.server_scopes(servers)
    for name, spec, problem in storage.read(plpy, table):
        label = f'secret "{validation.shown(name)}" from table {table.qualified}'
        if problem is None and name in servers:
            problem = "a server of the same name takes precedence"
        if problem is None:
            # Whoever can write a row must not act as the server, nor override
            # what an administrator defined.
            problem = validation.needs_server_environment(spec)
            if problem is not None:
                problem += "; only servers may"
        if problem is None and catalog.PROXY_OPTIONS & set(spec["params"]):
            problem = "its proxy options would send requests around the engine's egress proxy; only servers may"
        if problem is None:
            covering = storage.covering_server(spec, scopes)
            if covering is not None:
                problem = (f'server "{validation.shown(covering)}" covers its scope '
                           "(a table secret never overrides a server's)")
        if problem is not None:
            plpy.warning(f"skipping DuckDB {label}: {problem}")
            continue
        desired[name] = (name, spec)
        origins[name] = table.qualified
        trusted[name] = table.superuser_owned     # its endpoints count only in a superuser's table
    if (r["rolsuper"] and "__default_postgres" not in desired
            and any(spec["type"] == "postgres" for _, spec in desired.values())):
        # ATTACHes without SECRET get the lock timeout too (options only; the
        # ATTACH string supplies the rest).
        desired["__default_postgres"] = ("__default_postgres",
                                         {"type": "postgres", "provider": "config", "scope": None,
                                          "params": with_lock_timeout({}, settings.lock_timeout)})
        origins["__default_postgres"] = "default"

    exported, refresh_at, not_in_engine = {}, None, {}
    digests = _Digests(sess.digests)
    for name, (srvname, spec) in desired.items():
        try:
            out, due = _exported(sess, srvname, spec, desired, settings, now)
        except PgError as e:
            plpy.warning(f'skipping DuckDB secret {_label(srvname, origins[name])}: {e.message}')
            continue
        if due is not None:
            refresh_at = due if refresh_at is None else min(refresh_at, due)
        if out is None:
            not_in_engine[name] = (srvname, spec)
        else:
            # A spec exported as is keeps its digest from the last sync; a
            # derived one (resolved keys, a token, a lock timeout) is new each time.
            exported[name] = (digests(out) if out is spec else _digest(out), srvname, spec, out)
    sess.digests = digests.current

    prefixes = [p.strip() for p in (conf.get("duckdb.allowed_url_prefixes") or "").split(",") if p.strip()]
    # Only administrators' servers open http(s) prefixes: never table rows,
    # never servers of other owners (that would get around the configuration files).
    prefixes += [p for name, (_, _, spec, _) in exported.items() if spec["type"] == "http"
                 and origins.get(name) == "server" and trusted.get(name)
                 for p in spec["scope"] or () if p.startswith(("http://", "https://"))]
    profile = Profile(r["role"], r["rolsuper"], r["rd"], r["wr"], r["mem"], r["thr"], prefixes,
                      conf.get("duckdb.engine_settings"),
                      reach_of([(out, trusted.get(name, False)) for name, (_, _, _, out) in exported.items()],
                               prefixes, conf), conf)
    needed = set(catalog.extensions_for(out for _, _, _, out in exported.values()))
    if (sess.engine is None or sess.engine.profile.key() != profile.key()
            or not needed <= sess.engine.extensions or not sess.engine.usable()):
        sess.recycle()
        if profile.superuser:       # and what duckdb.autoload_extension() asks for
            needed |= extensions.autoloaded(plpy, GD)
        sess.engine = Engine(profile, needed, sess.deadline)

    values = [v for _, _, _, out in exported.values() for v in validation.sensitive_values(out)]
    if not profile.local_files and sess.engine.spill:
        values.append(sess.engine.spill)    # its name keeps it out of the role's reach (engine.py)
    scrub = Scrubber(values)
    if scrub.values != sess.scrub.values:       # keep the built pattern when nothing changed
        sess.scrub = scrub
    shown_by_duckdb = [v for _, _, _, out in exported.values() for k, v in out["params"].items()
                       if k in catalog.DUCKDB_SHOWS]
    sess.cell_scrub = Scrubber(shown_by_duckdb) if shown_by_duckdb and not profile.superuser else None
    guard = sess.engine.guard(sess.deadline)
    warnings = guard.run(_apply, sess, exported, origins, guard)
    for text in warnings:
        plpy.warning(text)
    if guard.fired:
        raise interrupts.raise_pending(plpy, guard.fired)
    sess.not_in_engine = not_in_engine
    sess.origins = origins
    sess.skipped = skipped
    if sess.token_due:
        due = min(sess.token_due.values())
        refresh_at = due if refresh_at is None else min(refresh_at, due)
    sess.refresh_at = refresh_at
    sess.fingerprint = fp
    return sess
