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
from collections import namedtuple

from . import aws, catalog, crypto, extensions, interrupts, storage, tokens, validation
from .engine import Engine, Profile, parse_engine_settings, quote_ident, secret_sql
from .errors import (
    FDW_INVALID_ATTRIBUTE_VALUE,
    INSUFFICIENT_PRIVILEGE,
    INVALID_PARAMETER_VALUE,
    NO_SCRUB,
    OBJECT_NOT_IN_PREREQUISITE_STATE,
    MissingMapping,
    PgError,
    Scrubber,
    from_duckdb,
)

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
       -- memberships, and which roles do not inherit (ALTER ROLE ... NOINHERIT)
       (SELECT pg_catalog.md5(coalesce(pg_catalog.string_agg(m.roleid::text || ':' || m.member::text,
                                                             ',' ORDER BY m.roleid, m.member), '')
                              || coalesce((SELECT pg_catalog.string_agg(n.oid::text, ',' ORDER BY n.oid)
                                             FROM pg_catalog.pg_roles n WHERE NOT n.rolinherit), ''))
          FROM pg_catalog.pg_auth_members m) AS am,
       -- who owns each server: REASSIGN OWNED changes it without an event trigger
       (SELECT pg_catalog.sum(s.oid::int8 * s.srvowner::int8) FROM pg_catalog.pg_foreign_server s)::text AS srvown,
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

# 0.5.0 on: which servers the generations after the last one seen ($3)
# changed (NULL: not known for each of them, so re-read all), and whether this
# transaction has written anything (then what it sees may still roll back).
FINGERPRINT_CHANGES_SQL = FINGERPRINT_SQL.replace("""  FROM duckdb._generation g
""", """       , (SELECT CASE WHEN pg_catalog.count(DISTINCT c.n) = g.n - $3 AND pg_catalog.bool_and(c.server <> 0)
                      THEN pg_catalog.array_agg(DISTINCT c.server) END
            FROM duckdb._changes c WHERE c.n > $3 AND c.n <= g.n) AS changed,
       pg_catalog.pg_current_xact_id_if_assigned() IS NOT NULL AS writing
  FROM duckdb._generation g
""", 1)
# Before 0.5.0 there is no change log: every change re-reads everything.
NO_CHANGE_LOG = ("0.1.0", "0.2.0", "0.3.0", "0.4.0")

# What the engine holds for a secret (Session.loaded), what DuckDB gets for a
# desired one (SyncState.exported), and one DuckDB holds no copy of (rds).
Loaded = namedtuple("Loaded", "digest server spec")
Exported = namedtuple("Exported", "digest source spec out")
Held = namedtuple("Held", "server spec")

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
 WHERE ((SELECT a.rolsuper FROM pg_catalog.pg_authid a WHERE a.oid = $1)
        OR pg_catalog.has_server_privilege($1, s.oid, 'USAGE'))
   AND ($2::oid[] IS NULL OR s.oid = ANY ($2))
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

# Whose servers count as an administrator's: owned by a superuser, or by a role
# the configuration files list in duckdb.trusted_server_owners. Public catalog
# data; runs as the current role.
TRUST_SQL = """
SELECT s.oid, (a.rolsuper OR a.rolname::text = ANY ($1)) AS trusted
  FROM pg_catalog.pg_foreign_server s JOIN pg_catalog.pg_roles a ON a.oid = s.srvowner
  JOIN pg_catalog.pg_foreign_data_wrapper w ON w.oid = s.srvfdw AND w.fdwname = 'duckdb'
 WHERE $2::oid[] IS NULL OR s.oid = ANY ($2)
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
        self.derived = {}         # digest -> _Facts of an exported spec, from the last sync
        self.state = None         # the last sync's SyncState (the next one may patch it)
        self.context = None       # the last sync's Context (settings from the configuration files)
        self.seen = None          # the generation the last sync saw
        self.tentative = False    # the last sync ran in a transaction that had written (may roll back)
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
        self.state = None       # (the Context stays: it is the settings, not the engine's)
        self.seen = None
        self.tentative = False


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


class _Facts:
    """What follows from an exported spec alone: its sensitive values, the
    values DuckDB shows, the extensions it needs, the hosts it reaches."""
    __slots__ = ("sensitive", "shown", "extensions", "reach")

    def __init__(self, spec):
        self.sensitive = validation.sensitive_values(spec)
        self.shown = [v for k, v in spec["params"].items() if k in catalog.DUCKDB_SHOWS]
        self.extensions = frozenset(catalog.extensions_for([spec]))
        self.reach = {}         # trusted -> egress rules

    def reach_rules(self, spec, trusted):
        rules = self.reach.get(trusted)
        if rules is None:
            rules = self.reach[trusted] = catalog.reach(spec, trusted)
        return rules


class _Derived:
    """_Facts by spec digest, remembered from one sync to the next."""

    def __init__(self, previous=None):
        self.previous = previous or {}
        self.current = {}

    def __call__(self, digest, spec):
        facts = self.current.get(digest)
        if facts is None:
            facts = self.current[digest] = self.previous.get(digest) or _Facts(spec)
        return facts


def role_secrets(plpy, GD, nonce):
    """Body of the SECURITY DEFINER duckdb._role_secrets(nonce).

    Only answers a call made by this package's own code in this backend: the
    caller's role comes from a one-time token that code left in GD, never
    from an argument a user could choose.
    """
    token = tokens.redeem(GD, tokens.CALLER, nonce)
    if token is None:
        raise PgError(INSUFFICIENT_PRIVILEGE, "duckdb._role_secrets is internal to duckdb_secrets",
                      hint="Use duckdb.secrets() to see the secrets of the current role.")
    plan = session(GD).plan(plpy, "role_secrets", ROLE_SECRETS_SQL, ["oid", "oid[]"])
    role, servers = (*token, None)[:2]      # servers: only these (a patch), or None: all
    rows = [(r["oid"], r["srvname"], r["srvtype"], r["srvoptions"], r["umoptions"], r["umrole"], r["others_only"])
            for r in plpy.execute(plan, [role, servers])]
    if GD.get("duckdb_secrets.version") in ("0.1.0", "0.2.0", "0.3.0"):
        rows = [r[:5] for r in rows]        # before 0.4.0 the function has no umrole, others_only columns
    return rows


def _fetch_role_secrets(plpy, GD, sess, role, servers=None):
    with tokens.issued(GD, tokens.CALLER, role, servers) as nonce:
        plan = sess.plan(plpy, "call_role_secrets", "SELECT * FROM duckdb._role_secrets($1)", ["text"])
        return list(plpy.execute(plan, [nonce]))


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
        raise PgError(INVALID_PARAMETER_VALUE, 'invalid value for parameter "duckdb.attach_lock_timeout"',
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
    t, p = catalog.TYPES[spec["type"]], spec["provider"]
    if not t.exported:
        return None, None           # a token source for other secrets (rds); DuckDB needs no copy
    if p == "credential_chain" and t.aws_credentials:
        creds = _credentials(sess, srvname, spec, settings, now)
        config = t.providers["config"].options
        params = {k: v for k, v in spec["params"].items() if k in config}
        if creds is not None:
            params.update(creds.params())
        return {"type": t.name, "provider": "config", "scope": spec["scope"], "params": params}, settings.due(creds)
    option = t.rds_token_option
    if option is not None and option in spec["params"]:
        rds_name = validation.engine_name(spec["params"][option])
        # it must name a token source (a type DuckDB gets no copy of: rds)
        if rds_name not in desired or catalog.TYPES[desired[rds_name][1]["type"]].exported:
            raise PgError(FDW_INVALID_ATTRIBUTE_VALUE,
                          f'server "{validation.shown(spec["params"][option])}" named by '
                          f"{option} is not an rds secret this role may use")
        rds_server, rds_spec = desired[rds_name]
        key = _digest(rds_spec)
        cached = sess.tokens.get(srvname)
        if cached is not None and cached[0] == key and now < cached[2] + settings.rds_token_max_age:
            token, generated = cached[1], cached[2]
        else:
            creds = _credentials(sess, rds_server, rds_spec, settings, now)
            token, generated = aws.rds_token(rds_spec["params"], creds, rds_server), now
            sess.tokens[srvname] = (key, token, generated)
        params = {k: v for k, v in spec["params"].items() if k != option}
        params["password"] = token
        params = with_lock_timeout(params, settings.lock_timeout)
        return {**spec, "params": params}, generated + settings.rds_token_max_age
    if t.lock_timeout:
        return {**spec, "params": with_lock_timeout(spec["params"], settings.lock_timeout)}, None
    return spec, None


# Engine settings of the administrator's that name a host requests go to.
_ENDPOINT_SETTINGS = {"s3_endpoint": "s3_use_ssl"}


def reach_of(specs, prefixes, conf):
    """What a non-superuser's engine may contact: its secrets' endpoints (or
    their types' standard hosts; only the latter for secrets an administrator
    did not define), the hosts of duckdb.allowed_url_prefixes, and endpoints
    the administrator set in duckdb.engine_settings.
    specs: [(_Facts, spec, trusted)] (the facts remember a spec's rules)."""
    rules = [rule for facts, spec, trusted in specs for rule in facts.reach_rules(spec, trusted)]
    from . import egress  # non-superusers' engines only
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


def _apply(sess, exported, origins, guard, names=None):
    """Create, replace or drop the engine's secrets so that they are `exported`
    (only the secrets called `names`, when only those can have changed);
    returns the warnings to give (this runs on the guard's thread: no plpy)."""
    import duckdb
    con = sess.engine.con
    warnings = []
    for name in [n for n in (sess.loaded if names is None else names) if n in sess.loaded and n not in exported]:
        con.execute(f"DROP TEMPORARY SECRET IF EXISTS {quote_ident(name)}")
        del sess.loaded[name]
    now = aws.now()
    for name in [n for n in sess.token_due if n not in exported]:
        del sess.token_due[name]
    todo = exported.items() if names is None else [(n, exported[n]) for n in names if n in exported]
    for name, (digest, srvname, spec, out) in todo:
        if guard.fired:
            return warnings     # stopped: the next engine use carries on
        due = sess.token_due.get(name)
        if name in sess.loaded and sess.loaded[name].digest == digest and (due is None or now < due):
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
        sess.loaded[name] = Loaded(digest, srvname, spec)
        if _fetches_token(out):
            sess.token_due[name] = _token_due(con, name, now)
    return warnings


# An iceberg secret with OAuth2 client credentials gets its token when DuckDB
# creates it; the secret is created anew (a new token) when 80% of the token's
# lifetime has passed, so a catalog never sees an expired one.
_EXPIRES_IN = re.compile(r"(?:^|;)expires_in=(\d+)")
DEFAULT_TOKEN_LIFETIME = 3600


def _fetches_token(spec):
    return (catalog.TYPES[spec["type"]].fetches_token and "token" not in spec["params"]
            and "client_secret" in spec["params"])


def _token_due(con, name, now):
    row = con.execute("SELECT secret_string FROM duckdb_secrets() WHERE name = ?", [name]).fetchone()
    m = _EXPIRES_IN.search(row[0] if row else "")
    lifetime = int(m.group(1)) if m else DEFAULT_TOKEN_LIFETIME
    return now + datetime.timedelta(seconds=max(1.0, lifetime * 0.8))


def _label(name, origin):
    if origin == "server":
        return f'for server "{validation.shown(name)}"'
    return f'"{validation.shown(name)}" from {origin}'


# --- the sync, stage by stage ----------------------------------------------------
#
# ensure() runs: observe (the fingerprint: one query), the check whether the
# engine is in line, context (the administrator's settings), which servers to
# re-read (all, or only those the generations since the last sync changed),
# collect server secrets, collect table secrets, derive what DuckDB gets
# (credential chains, tokens, lock timeouts), prepare the engine (profile,
# extensions, scrubbers), apply (create, replace, drop secrets), remember.


class Observed:
    """What the fingerprint query saw for this statement."""
    __slots__ = ("row", "table", "key", "changed", "writing")

    def __init__(self, row, table):
        self.row, self.table = row, table
        self.key = (row["n"], row["gx"], row["role"], row["rolsuper"], row["rd"], row["wr"], row["mem"],
                    row["thr"], row["am"], row["conf"], row["alt"], row["owners"], row["srvown"], table.key())
        self.changed = row.get("changed")       # server oids changed since the last sync, or None
        self.writing = bool(row.get("writing"))


class Context:
    """The administrator's settings (configuration files only) a sync works with."""
    __slots__ = ("conf", "settings", "keys")

    def __init__(self, conf, alt):
        self.conf = conf
        self.settings = aws.Settings.from_conf(conf)
        self.settings.lock_timeout = lock_timeout(alt)
        self.keys = crypto.Keyring(conf)


class ServerSecret:
    """What one server gives the role: a spec, or why it gives nothing (why)."""
    __slots__ = ("oid", "srvname", "srvtype", "spec", "trusted", "why", "key")

    def __init__(self, row, spec=None, trusted=False, why=None, key=None):
        self.oid, self.srvname, self.srvtype = row["oid"], row["srvname"], row["srvtype"]
        self.spec, self.trusted, self.why = spec, trusted, why
        self.key = key          # its key in Session.specs (the validated spec's memo), if any

    @property
    def name(self):
        return validation.engine_name(self.srvname)


class SyncState:
    """What one sync worked out; the next one patches it when only some servers changed.

    servers: server oid -> ServerSecret; desired: engine name -> (source, spec);
    origins, trusted: engine name -> where from / an administrator's; skipped:
    engine name -> (server, type, why); exported: engine name -> (digest, source,
    spec, spec DuckDB gets); not_in_engine: engine name -> (server, spec);
    facts: engine name -> _Facts; refresh_at: when something must be renewed."""
    __slots__ = ("servers", "desired", "origins", "trusted", "skipped", "exported", "not_in_engine", "facts",
                 "refresh_at", "prefixes", "needed", "from_table")

    def __init__(self):
        self.servers, self.desired, self.origins, self.trusted, self.skipped = {}, {}, {}, {}, {}
        self.exported, self.not_in_engine, self.facts, self.refresh_at = {}, {}, {}, None
        self.prefixes, self.needed = None, None     # worked out by _prepare_engine
        self.from_table = False                     # a secret table's row is among them

    def copy(self):
        other = SyncState()
        for slot in self.__slots__:
            value = getattr(self, slot)
            setattr(other, slot, dict(value) if isinstance(value, dict) else value)
        return other

    def add_server(self, srv):
        name = srv.name
        if srv.spec is None:
            self.skipped[name] = (srv.srvname, srv.srvtype, srv.why)
            return
        self.desired[name] = (srv.srvname, srv.spec)
        self.origins[name] = "server"
        self.trusted[name] = srv.trusted

    def forget(self, name):
        for d in (self.desired, self.origins, self.trusted, self.skipped, self.exported, self.not_in_engine,
                  self.facts):
            d.pop(name, None)


def ensure(plpy, GD, require=None):
    """The engine for the current role, with its secrets in line. Returns the Session.

    require: 'query' or 'raw_query': refuse first unless the role may EXECUTE
    that function (its _impl helpers are reachable by PUBLIC).
    """
    sess = session(GD)
    obs = _observe(plpy, GD, sess, require)
    now = aws.now()
    if (sess.engine is not None and obs.key == sess.fingerprint and sess.engine.usable()
            and (sess.refresh_at is None or now < sess.refresh_at)):
        return sess
    only = _changed_servers(sess, obs, now)
    state, touched = (_patch(plpy, GD, sess, obs, only, now) if only is not None else (None, None))
    if state is None:           # everything: the first sync, or a change a patch does not follow
        sess.context = _context(plpy, sess, obs)
        state, touched = _full(plpy, GD, sess, obs, now), None
    engine = sess.engine
    _prepare_engine(plpy, GD, sess, obs, state, sess.state if touched is not None else None, touched)
    if sess.engine is not engine:
        touched = None          # a new engine holds nothing yet: every secret goes in
    guard = sess.engine.guard(sess.deadline)
    warnings = guard.run(_apply, sess, state.exported, state.origins, guard, touched)
    for text in warnings:
        plpy.warning(text)
    if guard.fired:
        raise interrupts.raise_pending(plpy, guard.fired)
    sess.state = state
    sess.not_in_engine, sess.origins, sess.skipped = state.not_in_engine, state.origins, state.skipped
    refresh_at = state.refresh_at
    if sess.token_due:
        due = min(sess.token_due.values())
        refresh_at = due if refresh_at is None else min(refresh_at, due)
    sess.refresh_at = refresh_at
    sess.fingerprint, sess.seen, sess.tentative = obs.key, obs.row["n"], obs.writing
    if sess.engine is not engine:
        interrupts.release_free_memory()
    return sess


def _observe(plpy, GD, sess, require):
    """The fingerprint row; refuses a caller without the right to `require`."""
    if GD.get("duckdb_secrets.version") in NO_CHANGE_LOG:
        plan, extra = sess.plan(plpy, "fingerprint", FINGERPRINT_SQL, ["text[]", "text"]), []
    else:
        plan = sess.plan(plpy, "fingerprint", FINGERPRINT_CHANGES_SQL, ["text[]", "text", "int8"])
        extra = [sess.seen if sess.seen is not None else -1]
    rows = plpy.execute(plan, list(sess.table_args[1:]) + extra)
    if rows and rows[0]["tbl"] != sess.table_args[0]:
        # duckdb.secret_storage_table may have changed: the configuration files'
        # value names the table (a role's own SET does not count).
        args = storage.lookup_args(storage.admin_setting(plpy, sess))
        sess.table_args = (rows[0]["tbl"],) + (args if args is not None else (None, None))
        rows = plpy.execute(plan, list(sess.table_args[1:]) + extra)
    if not rows:
        raise PgError(OBJECT_NOT_IN_PREREQUISITE_STATE, "duckdb_secrets is not set up in this database",
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
    return Observed(r, table)


def _changed_servers(sess, obs, now):
    """The oids of the servers to re-read, when only some changed since the last
    sync; None: re-read everything (a role switch, settings, role memberships,
    a secret table, a rollback this session may have seen, credentials due)."""
    last, state = sess.fingerprint, sess.state
    if (last is None or state is None or sess.context is None or sess.tentative
            or obs.changed is None or sess.engine is None or not sess.engine.usable()
            or obs.key[2:] != last[2:] or obs.row["n"] <= last[0]
            or state.from_table
            or (sess.refresh_at is not None and now >= sess.refresh_at)):
        return None
    return set(obs.changed)


def _context(plpy, sess, obs):
    conf = {row["name"]: row["setting"] for row in plpy.execute(
        sess.plan(plpy, "conf", CONF_SQL, ["text[]"]), [CONF_SETTINGS])}
    return Context(conf, obs.row["alt"])


# Types a change of which may change other servers' secrets (a postgres
# server takes its password from an rds server): a patch re-reads all instead.
_DEPENDENT_TYPES = ("rds", "postgres")


def _full(plpy, GD, sess, obs, now):
    """The SyncState from scratch: every server the role may use, the secret
    table's rows, the default postgres secret, what DuckDB gets for each."""
    state = SyncState()
    for srv in _read_servers(plpy, GD, sess, obs, None):
        state.servers[srv.oid] = srv
        state.add_server(srv)
    _table_secrets(plpy, obs.table, state)
    _default_postgres(obs, sess.context, state)
    sess.digests = _derive(plpy, sess, state, state.desired, now)
    # Remembered for the next sync: the facts of what the engine holds now, no more.
    sess.derived = {state.exported[name].digest: facts for name, facts in state.facts.items()}
    return state


def _patch(plpy, GD, sess, obs, only, now):
    """(the last SyncState with the servers in `only` read again, the engine
    names touched), or (None, None) when a changed server is one others depend on."""
    old = sess.state
    if any(old.servers[o].srvtype in _DEPENDENT_TYPES for o in only if o in old.servers):
        return None, None
    fresh = _read_servers(plpy, GD, sess, obs, sorted(only))
    if any(srv.srvtype in _DEPENDENT_TYPES for srv in fresh):
        return None, None
    state = old.copy()
    touched = {old.servers[o].name for o in only if o in old.servers}
    for o in only:
        state.servers.pop(o, None)
    for name in touched:
        state.forget(name)
    for srv in fresh:
        state.servers[srv.oid] = srv
        state.forget(srv.name)
        state.add_server(srv)
        touched.add(srv.name)
    _derive(plpy, sess, state, {n: state.desired[n] for n in touched if n in state.desired}, now)
    return state, touched


def _read_servers(plpy, GD, sess, obs, oids):
    """ServerSecrets of the servers the role may use (only `oids`, if given)."""
    ctx = sess.context
    trust = {t["oid"]: t["trusted"] for t in plpy.execute(
        sess.plan(plpy, "trust", TRUST_SQL, ["text[]", "oid[]"]), [trusted_owners(ctx.conf), oids])}
    rows = _fetch_role_secrets(plpy, GD, sess, obs.row["role"], oids)
    # Validated specs by (server, type, options, mapping): a full read keeps
    # those still in use; a patch drops the re-read servers' old ones.
    if oids is None:
        specs = {}
    else:
        specs = sess.specs
        for o in oids:
            old = sess.state.servers.get(o)
            if old is not None and old.key is not None:
                specs.pop(old.key, None)
    out = [_server_secret(plpy, sess, row, obs.row["rolsuper"], bool(trust.get(row["oid"])), ctx.keys, specs)
           for row in rows]
    sess.specs = specs
    return out


def _server_secret(plpy, sess, row, superuser, trusted, keys, specs):
    """What one row of _role_secrets gives the role (a ServerSecret)."""
    def skip(why, warn=False):
        if warn:
            plpy.warning(f'skipping DuckDB secret for server "{validation.shown(row["srvname"])}": {why}')
        return ServerSecret(row, why=why)
    if superuser and not trusted:
        # A less privileged owner must not steer a superuser's engine (the
        # longest scope wins): superusers take administrators' servers only.
        return skip("owned by a role that is not an administrator (duckdb.trusted_server_owners): "
                    "a superuser's engine takes administrators' servers only")
    if row.get("others_only"):
        # Its mappings are other roles': not this role's secret, even if the
        # server alone would make one (say, an anonymous one that shadows
        # this role's own for the same scope). Listed, with why.
        return skip("no user mapping for this role or PUBLIC")
    key = (row["srvname"], row["srvtype"], tuple(row["srvoptions"] or ()), tuple(row["umoptions"] or ()))
    try:
        spec = sess.specs.get(key)          # validated before, unchanged since
        if spec is None:
            umoptions = keys.open(row["umoptions"], row["srvname"], row.get("umrole"))
            spec = validation.secret_spec(row["srvname"], row["srvtype"], row["srvoptions"], umoptions)
        specs[key] = spec
    except MissingMapping as e:
        return skip(f"no user mapping gives what it needs: {e.message}")
    except crypto.KeyProblem as e:
        # Never a crash, never a half secret: the others load, this one says why.
        return skip(f"cannot decrypt: {e}", warn=True)
    except PgError as e:
        # Validated at DDL time; can only happen after a catalogue change
        # (an upgrade) or a catalog edit behind our back. Skip it loudly.
        plpy.warning(f'skipping DuckDB secret for server "{validation.shown(row["srvname"])}": {e.message}')
        return skip(f"refused by validation: {e.message}")
    if trusted and not superuser and row.get("umrole") != "public" and _routing_in(row["umoptions"]):
        # A role with USAGE can write its own user mapping: where its requests
        # go is said by the server or a PUBLIC mapping (its owner's), not there.
        trusted = False
    if catalog.TYPES[spec["type"]].superuser_only and not superuser:
        # database connections from the server: superusers only
        return skip(f"needs a superuser: type {spec['type']} connects from the database server")
    if not trusted and catalog.PROXY_OPTIONS & set(spec["params"]):
        plpy.warning(f'skipping DuckDB secret for server "{validation.shown(row["srvname"])}": its proxy '
                     "options would send requests around the engine's egress proxy, and its owner is "
                     "not an administrator (docs/security.md)")
        return skip("its proxy options would send requests around the egress proxy, and its owner is not an "
                    "administrator")
    return ServerSecret(row, spec, trusted, key=key)


def _routing_in(umoptions):
    names = {str(o).split("=", 1)[0].strip().lower() for o in umoptions or ()}
    return bool(names & catalog.ROUTING_OPTIONS)


def _default_postgres(obs, ctx, state):
    """A superuser's ATTACHes without SECRET get the lock timeout too (options
    only; the ATTACH string supplies the rest)."""
    if (obs.row["rolsuper"] and "__default_postgres" not in state.desired
            and any(catalog.TYPES[spec["type"]].lock_timeout for _, spec in state.desired.values())):
        state.desired["__default_postgres"] = ("__default_postgres",
                                               {"type": "postgres", "provider": "config", "scope": None,
                                                "params": with_lock_timeout({}, ctx.settings.lock_timeout)})
        state.origins["__default_postgres"] = "default"


def _table_secrets(plpy, table, state):
    """Adds the secret table's rows that may act for the role (servers win)."""
    if table.ignored is not None:
        plpy.warning(f"ignoring {table.qualified} for DuckDB secrets: {table.ignored}")
    if table.problem == "shape":
        plpy.warning(f"ignoring table {table.qualified} for DuckDB secrets: it does not have the layout "
                     "of a DuckDB secret table (secret_name, secret_type, serialized_secret bytea)")
    elif table.problem is not None:
        plpy.warning(f"could not read DuckDB secrets from table {table.qualified}: {table.problem}")
    rows = storage.read(plpy, table)
    if not rows:
        return
    servers = dict(state.desired)
    scopes = storage.server_scopes(servers)
    for name, spec, problem in rows:
        if problem is None:
            problem = _table_problem(name, spec, servers, scopes)
        if problem is not None:
            plpy.warning(f'skipping DuckDB secret "{validation.shown(name)}" from table {table.qualified}: '
                         f"{problem}")
            continue
        state.desired[name] = (name, spec)
        state.origins[name] = table.qualified
        state.trusted[name] = table.superuser_owned     # its endpoints count only in a superuser's table
        state.from_table = True


def _table_problem(name, spec, servers, scopes):
    """Why a table row may not act for the role, or None."""
    if name in servers:
        return "a server of the same name takes precedence"
    # Whoever can write a row must not act as the server, nor override what
    # an administrator defined.
    problem = validation.needs_server_environment(spec)
    if problem is not None:
        return problem + "; only servers may"
    if catalog.PROXY_OPTIONS & set(spec["params"]):
        return "its proxy options would send requests around the engine's egress proxy; only servers may"
    covering = storage.covering_server(spec, scopes)
    if covering is not None:
        return f'server "{validation.shown(covering)}" covers its scope (a table secret never overrides a server\'s)'
    return None


def _derive(plpy, sess, state, desired, now):
    """What DuckDB gets for each of `desired` (credential chains resolved,
    tokens, lock timeouts) into state.exported / not_in_engine / facts.
    Returns the digests to remember (a full sync keeps only these)."""
    digests = _Digests(sess.digests)
    derived = _Derived(sess.derived)
    for name, (srvname, spec) in desired.items():
        try:
            out, due = _exported(sess, srvname, spec, state.desired, sess.context.settings, now)
        except PgError as e:
            plpy.warning(f'skipping DuckDB secret {_label(srvname, state.origins[name])}: {e.message}')
            continue
        if due is not None:
            state.refresh_at = due if state.refresh_at is None else min(state.refresh_at, due)
        if out is None:
            state.not_in_engine[name] = Held(srvname, spec)
        else:
            # A spec exported as is keeps its digest from the last sync; a
            # derived one (resolved keys, a token, a lock timeout) is new each time.
            digest = digests(out) if out is spec else _digest(out)
            state.exported[name] = Exported(digest, srvname, spec, out)
            state.facts[name] = derived(digest, out)
    sess.derived.update(derived.current)
    sess.digests.update(digests.current)
    return digests.current


def _prepare_engine(plpy, GD, sess, obs, state, old=None, touched=None):
    """An engine whose profile, extensions and scrubbers fit state.exported.
    A patch (old: the previous state, touched: the names read again) works
    out again only what the touched secrets can change."""
    r, conf = obs.row, sess.context.conf
    exported, facts = state.exported, state.facts
    http_touched = old is None or any(
        d.get(n) is not None and catalog.TYPES[d[n][1]["type"]].opens_prefixes
        for n in touched for d in (old.desired, state.desired))
    if http_touched:
        prefixes = [p.strip() for p in (conf.get("duckdb.allowed_url_prefixes") or "").split(",") if p.strip()]
        # Only administrators' servers open http(s) prefixes: never table rows,
        # never servers of other owners (that would get around the configuration files).
        prefixes += [p for name, (_, _, spec, _) in exported.items() if catalog.TYPES[spec["type"]].opens_prefixes
                     and state.origins.get(name) == "server" and state.trusted.get(name)
                     for p in spec["scope"] or () if p.startswith(("http://", "https://"))]
    else:
        prefixes = old.prefixes
    state.prefixes = prefixes
    # A superuser's engine has no egress rules: its reach is not worked out.
    reach = () if r["rolsuper"] else reach_of(
        [(facts[name], out, state.trusted.get(name, False)) for name, (_, _, _, out) in exported.items()],
        prefixes, conf)
    profile = Profile(r["role"], r["rolsuper"], r["rd"], r["wr"], r["mem"], r["thr"], prefixes,
                      conf.get("duckdb.engine_settings"), reach, conf)
    if old is None:
        needed = set().union(*{f.extensions for f in facts.values()})
    else:       # a superset is enough: an extension no longer needed stays loaded
        needed = set(old.needed or ()).union(*{facts[n].extensions for n in touched if n in facts})
    state.needed = needed
    if (sess.engine is None or sess.engine.profile.key() != profile.key()
            or not needed <= sess.engine.extensions or not sess.engine.usable()):
        sess.recycle()
        if profile.superuser:       # and what duckdb.autoload_extension() asks for
            needed |= extensions.autoloaded(plpy, GD)
        sess.engine = Engine(profile, needed, sess.deadline)
        old = None                  # a new engine: its scrubbers are worked out again
    _scrubbers(sess, profile, facts, old, touched)


def _scrubbers(sess, profile, facts, old, touched):
    """The masks for messages (every sensitive value) and for result cells
    (values DuckDB itself shows), unless a patch changed none of them."""
    if old is not None and all(
            (old.facts.get(n) is None and facts.get(n) is None)
            or (old.facts.get(n) is not None and facts.get(n) is not None
                and old.facts[n].sensitive == facts[n].sensitive and old.facts[n].shown == facts[n].shown)
            for n in touched):
        return
    values = [v for f in facts.values() for v in f.sensitive]
    if not profile.superuser:
        # Nor the data directory's path (PostgreSQL shows it to privileged roles only;
        # DuckDB names it in its spill directory and allowed_directories).
        values.append(os.getcwd())
        home = os.path.expanduser("~")      # the server's OS user's home (DuckDB's default directories)
        if home not in ("", "/", "~"):
            values.append(home)
        # and where the package is installed (the engine's extension and secret directories name it)
        values.append(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    scrub = Scrubber(values)
    if scrub.values != sess.scrub.values:       # keep the built pattern when nothing changed
        sess.scrub = scrub
    # A non-superuser's result cells too: whatever its query read (a store that
    # serves its own state, say), the exact values of its secrets do not come out.
    sess.cell_scrub = None if profile.superuser else sess.scrub
