"""Collecting the secrets the role may use: its servers, and a secret table's rows.

Servers come from the SECURITY DEFINER duckdb._role_secrets() (only there are
PUBLIC user mappings readable for roles that merely have USAGE), which answers
only this package's own one-time token. Their values are decrypted in memory
(crypto), validated (validation.secret_spec, memoised in Session.specs) and
judged by the role's policy (policy.RolePolicy); a server that gives nothing
is listed with why (ServerSecret.why). A secret table's rows (storage) are
added where the policy lets them act for the role.
"""

from . import catalog, crypto, storage, tokens, validation
from .errors import INSUFFICIENT_PRIVILEGE, MissingMapping, PgError
from .session import session

# Runs as the extension owner (duckdb._role_secrets is SECURITY DEFINER).
# $1 the role, $2 only these servers (NULL: all).
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

# Whose servers count as an administrator's: owned by a superuser, or by a role
# the configuration files list in duckdb.trusted_server_owners. Public catalog
# data; runs as the current role.
TRUST_SQL = """
SELECT s.oid, (a.rolsuper OR a.rolname::text = ANY ($1)) AS trusted
  FROM pg_catalog.pg_foreign_server s JOIN pg_catalog.pg_roles a ON a.oid = s.srvowner
  JOIN pg_catalog.pg_foreign_data_wrapper w ON w.oid = s.srvfdw AND w.fdwname = 'duckdb'
 WHERE $2::oid[] IS NULL OR s.oid = ANY ($2)
"""


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
    return [(r["oid"], r["srvname"], r["srvtype"], r["srvoptions"], r["umoptions"], r["umrole"], r["others_only"])
            for r in plpy.execute(plan, [role, servers])]


def _server_option(row, wanted):
    for option in row["srvoptions"] or ():
        name, _, value = str(option).partition("=")
        if name.strip().lower() == wanted:
            return value
    return None


def scopes_of(row):
    """The URL prefixes a server's secret covers: its scope option, else its type's default."""
    value = _server_option(row, "scope")
    if value is not None:
        return tuple(v.strip() for v in value.split(",") if v.strip())
    stype = catalog.TYPES.get((row["srvtype"] or "").strip().lower())
    return tuple(p for p in stype.default_scope if "://" in p) if stype is not None else ()


def catalog_of(row):
    """The catalog name a server's secret would be attached under (attach_as), or None."""
    value = _server_option(row, "attach_as")
    return value.strip().lower() if value else None


class ServerSecret:
    """What one server gives the role: a spec, or why it gives nothing (why)."""
    __slots__ = ("oid", "srvname", "srvtype", "spec", "trusted", "why", "key", "scopes", "catalog")

    def __init__(self, row, spec=None, trusted=False, why=None, key=None):
        self.oid, self.srvname, self.srvtype = row["oid"], row["srvname"], row["srvtype"]
        self.spec, self.trusted, self.why = spec, trusted, why
        self.key = key          # its key in Session.specs (the validated spec's memo), if any
        self.scopes = scopes_of(row) if why is not None else None    # what a skipped one would cover
        self.catalog = catalog_of(row) if why is not None else None  # and the catalog it would attach


    @property
    def name(self):
        return validation.engine_name(self.srvname)


def servers(plpy, GD, sess, role, oids):
    """ServerSecrets of the servers the role may use (only `oids`, if given),
    under the policy and with the keys of the last full sync (sess.context)."""
    ctx = sess.context
    trust = {t["oid"]: t["trusted"] for t in plpy.execute(
        sess.plan(plpy, "trust", TRUST_SQL, ["text[]", "oid[]"]), [list(ctx.policy.trusted_owners), oids])}
    with tokens.issued(GD, tokens.CALLER, role, oids) as nonce:
        plan = sess.plan(plpy, "call_role_secrets", "SELECT * FROM duckdb._role_secrets($1)", ["text"])
        rows = list(plpy.execute(plan, [nonce]))
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
    ctx.keys.new_sync()         # a key file's own problem: one WARNING per sync
    out = [_server_secret(plpy, sess, ctx.policy, row, bool(trust.get(row["oid"])), ctx.keys, specs)
           for row in rows]
    sess.specs = specs
    return out


def _server_secret(plpy, sess, policy, row, trusted, keys, specs):
    """What one row of _role_secrets gives the role (a ServerSecret)."""
    def skip(why, warning=None):
        if warning is not None:
            plpy.warning(warning)
        return ServerSecret(row, why=why)

    def skipping(why):
        return f'skipping DuckDB secret for server "{validation.shown(row["srvname"])}": {why}'
    why = policy.server_refusal(row, trusted)
    if why is not None:
        return skip(why)
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
        # Never a crash, never a half secret: the others load, this one says why
        # (a problem of the key file itself is warned about once, not per server).
        return skip(f"cannot decrypt: {e}", keys.warning(e, skipping(f"cannot decrypt: {e}")))
    except PgError as e:
        # Validated at DDL time; can only happen after a catalogue change
        # (an upgrade) or a catalog edit behind our back. Skip it loudly.
        return skip(f"refused by validation: {e.message}", skipping(e.message))
    trusted = policy.routes_trusted(row, trusted)
    refusal = policy.secret_refusal(row["srvname"], spec, trusted)
    if refusal is not None:
        return skip(*refusal)
    return ServerSecret(row, spec, trusted, key=key)


def table_secrets(plpy, policy, table, state):
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
            problem = policy.table_problem(name, spec, servers, scopes)
        if problem is not None:
            plpy.warning(f'skipping DuckDB secret "{validation.shown(name)}" from table {table.qualified}: '
                         f"{problem}")
            continue
        state.desired[name] = (name, spec)
        state.origins[name] = table.qualified
        state.trusted[name] = table.superuser_owned     # its endpoints count only in a superuser's table
        state.from_table = True
