"""Secrets kept in a PostgreSQL table in DuckDB's own format.

DuckDB's postgres extension can store secrets as rows of a table
(``duckdb_secrets``: secret_name, secret_type, serialized_secret bytea).

Inward: the rows the current role can SELECT (so table privileges and
Row-Level Security decide) are read at each engine sync and created in the
engine as TEMPORARY secrets. Outward: store_table_secret() writes a duckdb
server's secret as such a row, for DuckDB clients that attach this database.

Reading a table runs its owner's code in the reader's session (Row-Level
Security policies and the functions they call; a view's functions; on writes,
defaults and triggers). So the table is found only where an administrator
named it -- duckdb.secret_storage_table as written in the configuration files
(default public.duckdb_secrets, DuckDB's own place; an unqualified name means
schema public; '' turns table secrets off), never through a role's schema or
search_path or a role's own SET -- and is used only if it is a plain (or
partitioned) table owned by the current role or by a superuser.
"""

import re

from . import catalog, serialized, validation
from .errors import DATATYPE_MISMATCH, INSUFFICIENT_PRIVILEGE, INVALID_PARAMETER_VALUE, INVALID_SCHEMA_NAME, PgError

SETTING = "duckdb.secret_storage_table"
DEFAULT_SCHEMA = "public"
DEFAULT_TABLE = "duckdb_secrets"
TABLE_KINDS = ("r", "p")

_IDENT = re.compile(r'\s*(?:"((?:[^"]|"")+)"|([A-Za-z_][A-Za-z0-9_$]*))\s*')


def parse_table_name(text):
    """'name', 'schema.name' or quoted forms -> (schema or None, name); PgError if malformed."""
    parts, pos = [], 0
    while True:
        m = _IDENT.match(text, pos)
        if not m:
            break
        parts.append(m.group(1).replace('""', '"') if m.group(1) is not None else m.group(2).lower())
        pos = m.end()
        if pos < len(text) and text[pos] == ".":
            pos += 1
            continue
        break
    if pos != len(text) or not 1 <= len(parts) <= 2:
        raise PgError(INVALID_PARAMETER_VALUE, f'invalid value for parameter "{SETTING}"',
                      detail="It must be a table name, optionally schema-qualified.",
                      hint="Use for example duckdb_secrets or myschema.duckdb_secrets; '' turns table secrets off.")
    return (parts[0], parts[1]) if len(parts) == 2 else (None, parts[0])


def lookup_args(setting):
    """([schema], table name) for the setting's value (None: the default), or None when off."""
    value = DEFAULT_TABLE if setting is None else setting
    if not value.strip():
        return None
    schema, name = parse_table_name(value)
    return [schema or DEFAULT_SCHEMA], name


# The setting as the configuration files have it (a role's SET does not count).
ADMIN_SETTING_SQL = f"SELECT setting FROM duckdb._admin_settings() WHERE name = '{SETTING}'"


def admin_setting(plpy, sess):
    rows = plpy.execute(sess.plan(plpy, "table_setting", ADMIN_SETTING_SQL))
    return rows[0]["setting"] if rows else None


# Why a relation c found at the named place is not used, or NULL (catalog
# reads only: no code of the relation's owner runs). {role}: the current role's oid.
DISTRUST_SQL_EXPR = """
CASE WHEN c.relkind NOT IN ('r', 'p') THEN 'it is not a table'
     WHEN c.relowner <> {role} AND NOT (SELECT a.rolsuper FROM pg_catalog.pg_roles a WHERE a.oid = c.relowner)
     THEN 'it is owned by role ' || pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(c.relowner))
          || ', which is neither the current role nor a superuser'
END"""

# Finds the table and checks its shape; runs as the current role.
LOOKUP_SQL = """
SELECT c.oid::regclass::text AS qualified, c.oid,
       """ + DISTRUST_SQL_EXPR.format(
    role="(SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname = current_user)") + """ AS distrust,
       pg_catalog.has_table_privilege(c.oid, 'SELECT') AS can_read,
       (SELECT pg_catalog.count(*) FROM pg_catalog.pg_attribute a
         WHERE a.attrelid = c.oid AND NOT a.attisdropped AND a.attnum > 0
           AND (a.attname, a.atttypid) IN (('secret_name', 'pg_catalog.varchar'::pg_catalog.regtype),
                                           ('secret_name', 'pg_catalog.text'::pg_catalog.regtype),
                                           ('secret_type', 'pg_catalog.varchar'::pg_catalog.regtype),
                                           ('secret_type', 'pg_catalog.text'::pg_catalog.regtype),
                                           ('serialized_secret', 'pg_catalog.bytea'::pg_catalog.regtype))) = 3
         AS shaped
  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = ANY($1) AND c.relname = $2 AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
 ORDER BY pg_catalog.array_position($1, n.nspname::text)
 LIMIT 1
"""


class TableState:
    """The table as found for this sync: its name and a digest of the visible rows.
    ignored: why a relation at the named place is not used; superuser_owned:
    whether its rows may name endpoints the engine may reach."""

    __slots__ = ("qualified", "digest", "problem", "ignored", "superuser_owned")

    def __init__(self, qualified=None, digest=None, problem=None, ignored=None, superuser_owned=False):
        self.qualified = qualified
        self.digest = digest
        self.problem = problem
        self.ignored = ignored
        self.superuser_owned = superuser_owned

    def key(self):
        return (self.qualified, self.digest, self.problem, self.ignored, self.superuser_owned)


SHAPE_SQL = """
SELECT c.oid::regclass::text AS qualified,
       (SELECT a.rolsuper FROM pg_catalog.pg_roles a WHERE a.oid = c.relowner) AS superuser_owned,
       (SELECT pg_catalog.count(*) FROM pg_catalog.pg_attribute a
         WHERE a.attrelid = c.oid AND NOT a.attisdropped AND a.attnum > 0
           AND (a.attname, a.atttypid) IN (('secret_name', 'pg_catalog.varchar'::pg_catalog.regtype),
                                           ('secret_name', 'pg_catalog.text'::pg_catalog.regtype),
                                           ('secret_type', 'pg_catalog.varchar'::pg_catalog.regtype),
                                           ('secret_type', 'pg_catalog.text'::pg_catalog.regtype),
                                           ('serialized_secret', 'pg_catalog.bytea'::pg_catalog.regtype))) = 3
         AS shaped
  FROM pg_catalog.pg_class c WHERE c.oid = $1
"""


def probe(plpy, sess, oid, can_read, distrust=None, qualified=None):
    """Where table secrets come from for this role now; a cheap digest of the rows it can see.

    oid / can_read / distrust: the relation the fingerprint query found at the
    named place, whether the role may SELECT it, and why it may not be used
    (None: no such relation, or table secrets are off)."""
    if oid is None:
        return TableState()
    if distrust is not None:
        return TableState(qualified, ignored=distrust)      # never selected from: no owner's code runs
    if not can_read:
        return TableState()     # like any table this role may not read: nothing from it
    key = ("table", oid)
    cached = sess.plans.get(key)
    if cached is None:
        r = plpy.execute(sess.plan(plpy, "table_shape", SHAPE_SQL, ["oid"]), [oid])
        if not r:
            return TableState()
        if not r[0]["shaped"]:
            return TableState(r[0]["qualified"], problem="shape")
        # The qualified name comes from regclass output (quoted where needed).
        plan = plpy.prepare(
            "SELECT pg_catalog.count(*) AS n, pg_catalog.md5(pg_catalog.string_agg("
            "secret_name || ':' || pg_catalog.md5(serialized_secret), ',' ORDER BY secret_name)) AS digest "
            f"FROM {r[0]['qualified']}")
        cached = sess.plans[key] = (r[0]["qualified"], plan, bool(r[0]["superuser_owned"]))
    qualified, plan, superuser_owned = cached
    try:
        d = plpy.execute(plan)[0]
    except plpy.SPIError as e:          # e.g. row_security = off under a policy, or the table changed
        sess.plans.pop(key, None)
        return TableState(qualified, problem=str(e.args[0]) if e.args else "unreadable")
    return TableState(qualified, digest=(d["n"], d["digest"]), superuser_owned=superuser_owned)


def read(plpy, state):
    """[(engine name, spec or None, problem or None)] for the visible rows of the table."""
    if state.qualified is None or state.problem is not None or not state.digest or not state.digest[0]:
        return []
    rows = plpy.execute(f"SELECT secret_name::text AS n, secret_type::text AS t, serialized_secret AS b "
                        f"FROM {state.qualified} ORDER BY secret_name")
    out = []
    for row in rows:
        name = row["n"] or ""
        try:
            secret = serialized.decode(row["b"] or b"")
        except serialized.Unreadable as e:
            out.append((name.lower(), None, f"unreadable serialized_secret ({e})"))
            continue
        if secret.name.lower() != name.lower():
            out.append((name.lower(), None, "serialized_secret holds a secret of another name"))
            continue
        if (row["t"] or "").lower() != secret.type.lower():
            out.append((name.lower(), None, "secret_type does not match serialized_secret"))
            continue
        try:
            spec = validation.table_spec(secret)
        except PgError as e:
            out.append((name.lower(), None, e.message))
            continue
        out.append((name.lower(), spec, None))
    return out


def _scopes(spec):
    """A secret's scope prefixes; no scope at all matches every path (the empty prefix)."""
    return list(spec["scope"] or catalog.TYPES[spec["type"]].default_scope) or [""]


def server_scopes(servers):
    """{type: {scope prefix: server name}} of the role's servers, for covering_server()."""
    out = {}
    for _, (srvname, sspec) in sorted(servers.items(), reverse=True):
        for prefix in _scopes(sspec):
            out.setdefault(sspec["type"], {})[prefix] = srvname
    return out


def covering_server(spec, scopes):
    """The server whose secret of the same type covers a prefix of this table
    secret's scope (so the row would win DuckDB's longest-prefix match there), or None.
    scopes: server_scopes() of the role's servers."""
    of_type = scopes.get(spec["type"])
    if not of_type:
        return None
    for r in _scopes(spec):
        for end in range(len(r), -1, -1):   # every prefix of the row's scope, longest first, "" last
            hit = of_type.get(r[:end])
            if hit is not None:
                return hit
    return None


# --- outward -----------------------------------------------------------------

CREATE_SQL = ("CREATE TABLE {table} (secret_name varchar PRIMARY KEY, secret_type varchar NOT NULL, "
              "serialized_secret bytea NOT NULL)")

# The user mapping whose options the caller may read, as PostgreSQL's own
# pg_user_mappings view decides (runs as the caller).
VISIBLE_MAPPING_SQL = """
SELECT um.umoptions IS NOT NULL AS visible
  FROM pg_catalog.pg_user_mappings um
 WHERE um.srvname = $1 AND um.umuser IN (0, (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = current_user))
 ORDER BY um.umuser DESC LIMIT 1
"""


def _target_table(plpy, sess, table_name):
    """(qualified name, created?) of the table to write to; created in DuckDB's layout if missing."""
    if table_name is None:
        args = lookup_args(admin_setting(plpy, sess))
        if args is None:
            raise PgError(INVALID_PARAMETER_VALUE, "table secrets are turned off",
                          hint=f"Name a table, or set {SETTING} in postgresql.conf.")
    else:
        args = lookup_args(table_name)
        if args is None:
            raise PgError(INVALID_PARAMETER_VALUE, "the table name must not be empty")
    schemas, name = args
    rows = plpy.execute(sess.plan(plpy, "table_lookup", LOOKUP_SQL, ["text[]", "text"]), [schemas, name])
    if rows:
        if rows[0]["distrust"] is not None:
            # Writing would run its defaults and triggers, which its owner wrote, as the caller.
            raise PgError(INSUFFICIENT_PRIVILEGE,
                          f'permission denied to write DuckDB secrets into {rows[0]["qualified"]}: '
                          f'{rows[0]["distrust"]}',
                          hint="Secret tables must be tables owned by the current role or by a superuser.")
        if not rows[0]["shaped"]:
            raise PgError(DATATYPE_MISMATCH,
                          f'table {rows[0]["qualified"]} does not have the layout of a DuckDB secret table',
                          detail="It needs secret_name varchar, secret_type varchar and serialized_secret bytea.")
        return rows[0]["qualified"], False
    # Create it at the named place (its schema must exist).
    have = plpy.execute(plpy.prepare(
        "SELECT n.nspname::text AS s FROM pg_catalog.pg_namespace n WHERE n.nspname = ANY($1) "
        "ORDER BY pg_catalog.array_position($1, n.nspname::text) LIMIT 1", ["text[]"]), [schemas])
    if not have:
        raise PgError(INVALID_SCHEMA_NAME, f'schema "{validation.shown(schemas[0])}" does not exist')
    qualified = plpy.execute(plpy.prepare("SELECT pg_catalog.quote_ident($1) || '.' || pg_catalog.quote_ident($2) AS q",
                                          ["text", "text"]), [have[0]["s"], name])[0]["q"]
    plpy.execute(CREATE_SQL.format(table=qualified))
    return qualified, True


def store(plpy, sess, server_name, table_name, include_sensitive, spec):
    """Write the server's secret (spec, as the current role would use it) into the table."""
    sensitive = sorted(k for k in spec["params"] if k in catalog.SENSITIVE)
    if sensitive and not include_sensitive:
        raise PgError(INSUFFICIENT_PRIVILEGE,
                      f'secret "{validation.shown(server_name)}" has sensitive parts ("{sensitive[0]}")',
                      detail="A DuckDB secret table stores secrets unencrypted; every role that can "
                             "read the row can read them.",
                      hint="Pass include_sensitive => true to store them anyway, or store a secret "
                           "without them (for example a credential_chain secret).")
    if sensitive:
        visible = plpy.execute(sess.plan(plpy, "visible_mapping", VISIBLE_MAPPING_SQL, ["name"]), [server_name])
        if not visible or not visible[0]["visible"]:
            raise PgError(INSUFFICIENT_PRIVILEGE,
                          "permission denied to copy the sensitive options of server "
                          f'"{validation.shown(server_name)}"',
                          detail="The user mapping that holds them is not readable by the current role.",
                          hint="Only the roles that may read a user mapping's options (see pg_user_mappings) "
                               "may store them in a table.")
    qualified, _ = _target_table(plpy, sess, table_name)
    stype = catalog.TYPES[spec["type"]]
    params = {k: (str(v) if isinstance(v, int) and not isinstance(v, bool) else v)
              for k, v in spec["params"].items()}
    redact = sorted(k for k in catalog.options_for(spec["type"], spec["provider"]) if k in catalog.SENSITIVE)
    name = validation.engine_name(server_name)
    blob = serialized.encode(serialized.Secret(spec["type"], spec["provider"], name,
                                               list(spec["scope"] or stype.default_scope), params, redact))
    plan = plpy.prepare(
        f"INSERT INTO {qualified} (secret_name, secret_type, serialized_secret) VALUES ($1, $2, $3) "
        "ON CONFLICT (secret_name) DO UPDATE SET secret_type = EXCLUDED.secret_type, "
        "serialized_secret = EXCLUDED.serialized_secret", ["text", "text", "bytea"])
    plpy.execute(plan, [name, spec["type"], blob])
    return qualified
