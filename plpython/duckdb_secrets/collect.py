"""Collecting the secrets the role may use: its servers, and a secret table's rows.

Servers come from the SECURITY DEFINER duckdb._role_secrets() (only there are
PUBLIC user mappings readable for roles that merely have USAGE), which answers
only this package's own one-time token. Their values are decrypted in memory
(crypto), validated (validation.secret_spec, memoised in Session.specs) and
judged by the role's policy (policy.RolePolicy); a server that gives nothing
is listed with why (ServerSecret.why). A secret table's rows (storage) are
added where the policy lets them act for the role.
"""

from . import aws, catalog, crypto, storage, tokens, validation
from .errors import DUPLICATE_OBJECT, INSUFFICIENT_PRIVILEGE, MissingMapping, PgError
from .session import session

# Runs as the extension owner (duckdb._role_secrets is SECURITY DEFINER).
# $1 the role, $2 only these servers (NULL: all), and sources ($3 their types) always.
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
   AND ($2::oid[] IS NULL OR s.oid = ANY ($2) OR lower(btrim(s.srvtype)) = ANY ($3))
 ORDER BY s.srvname
"""

# Whose servers count as an administrator's: owned by a superuser, or by a role
# the configuration files list in duckdb.trusted_server_owners. Public catalog
# data; runs as the current role.
TRUST_SQL = """
SELECT s.oid, (a.rolsuper OR a.rolname::text = ANY ($1)) AS trusted, a.rolsuper
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
    plan = session(GD).plan(plpy, "role_secrets", ROLE_SECRETS_SQL, ["oid", "oid[]", "text[]"])
    role, servers = (*token, None)[:2]      # servers: only these (a patch), or None: all
    return [(r["oid"], r["srvname"], r["srvtype"], r["srvoptions"], r["umoptions"], r["umrole"], r["others_only"])
            for r in plpy.execute(plan, [role, servers, sorted(catalog.SOURCES)])]


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
    """What one server gives the role: a spec, or why it gives nothing (why).
    A source server (source True) gives no secret of its own."""
    __slots__ = ("oid", "srvname", "srvtype", "spec", "trusted", "why", "key", "scopes", "catalog", "source")

    def __init__(self, row, spec=None, trusted=False, why=None, key=None, source=False):
        self.oid, self.srvname, self.srvtype = row["oid"], row["srvname"], row["srvtype"]
        self.spec, self.trusted, self.why = spec, trusted, why
        self.key = key          # its key in Session.specs (the validated spec's memo), if any
        self.scopes = scopes_of(row) if why is not None else None    # what a skipped one would cover
        self.catalog = catalog_of(row) if why is not None else None  # and the catalog it would attach
        self.source = source


    @property
    def name(self):
        return validation.engine_name(self.srvname)


def servers(plpy, GD, sess, role, oids):
    """ServerSecrets of the servers the role may use (only `oids`, if given),
    under the policy and with the keys of the last full sync (sess.context).
    Values user mappings take from sources are fetched here (resolve_sources);
    sess.sources_due says when they must be fetched again."""
    ctx = sess.context
    ctx.keys.new_sync()         # a key file's own problem: one WARNING per sync
    with tokens.issued(GD, tokens.CALLER, role, oids) as nonce:
        plan = sess.plan(plpy, "call_role_secrets", "SELECT * FROM duckdb._role_secrets($1)", ["text"])
        rows = list(plpy.execute(plan, [nonce]))
    trust = {t["oid"]: t for t in plpy.execute(
        sess.plan(plpy, "trust", TRUST_SQL, ["text[]", "oid[]"]),
        [list(ctx.policy.trusted_owners), None if oids is None else [r["oid"] for r in rows]])}
    is_source = {r["oid"]: validation.source_type(r["srvname"], r["srvtype"]) is not None for r in rows}
    fetched = resolve_sources(plpy, sess, ctx, [r for r in rows if is_source[r["oid"]]],
                              [r for r in rows if not is_source[r["oid"]]], trust)
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
    out = [ServerSecret(row, source=True) if is_source[row["oid"]] else
           _server_secret(plpy, sess, ctx.policy, row, bool(trust.get(row["oid"], {}).get("trusted")), ctx.keys,
                          specs, fetched.get(row["oid"]))
           for row in rows if oids is None or row["oid"] in oids]
    sess.specs = specs
    return out


def resolve_sources(plpy, sess, ctx, source_rows, rows, trust):
    """{server oid: (options its mapping takes from a source, their digest) or
    a reason it gets none} for the rows whose user mapping names a source:
    each reference checked for the role (sources.check), then fetched."""
    refs = {}
    for row in rows:
        try:
            ref, _ = validation.reference(row["umoptions"])
        except PgError as e:
            refs[row["oid"]] = e.message
            continue
        if ref is not None:
            refs[row["oid"]] = ref
    sess.sources_due = None
    if not refs:
        return {}
    from . import sources
    by_name, out = {}, {}
    for srow in source_rows:
        try:
            creds = ctx.keys.open(srow["umoptions"], srow["srvname"], srow.get("umrole"))
            spec = validation.source_spec(srow["srvname"], srow["srvtype"], srow["srvoptions"], creds,
                                          srow.get("umrole") or "public")
            by_name[srow["srvname"]] = (sources.Source(srow["oid"], srow["srvname"], spec), srow, None)
        except (PgError, crypto.KeyProblem) as e:
            by_name[srow["srvname"]] = (None, srow, getattr(e, "message", None) or str(e))
    wanted, checked = {}, {}
    for oid, ref in refs.items():
        if isinstance(ref, str):
            out[oid] = ref
            continue
        source, srow, problem = by_name.get(ref["source"], (None, None, None))
        t = trust.get(srow["oid"], {}) if srow is not None else {}
        why = (f'source server "{validation.shown(ref["source"])}" cannot be used: {problem}' if problem else
               sources.check(ref, source, t.get("trusted"), t.get("rolsuper"), ctx.policy.superuser))
        if why is not None:
            out[oid] = why
            continue
        wanted.setdefault(source.key, (source, set()))[1].add(ref["id"])
        checked[oid] = (source, ref)
    force, sess.sources_force = sess.sources_force, False
    values, sess.sources_due = sources.fetch(sess, wanted, aws.now(), ctx.settings, force)
    for oid, (source, ref) in checked.items():
        value, why, _stale = values[(source.key, ref["id"])]
        where = f'source server "{validation.shown(source.name)}" (source_id "{validation.shown(ref["id"])}")'
        if value is None:
            out[oid] = f"could not fetch its value from {where}: {why}"
            continue
        try:
            given = validation.source_values(ref, value, where)
        except PgError as e:
            out[oid] = e.message
            continue
        import hashlib
        out[oid] = (given, hashlib.sha256("\0".join(given).encode()).hexdigest(), where)
    return out


def _server_secret(plpy, sess, policy, row, trusted, keys, specs, fetched=None):
    """What one row of _role_secrets gives the role (a ServerSecret).
    fetched: what its user mapping takes from a source (resolve_sources), if it names one."""
    def skip(why, warning=None):
        if warning is not None:
            plpy.warning(warning)
        return ServerSecret(row, why=why)

    def skipping(why):
        return f'skipping DuckDB secret for server "{validation.shown(row["srvname"])}": {why}'
    why = policy.server_refusal(row, trusted)
    if why is not None:
        return skip(why)
    if isinstance(fetched, str):
        return skip(fetched, _warn_source(sess, row, skipping(fetched)))
    if fetched is not None:
        sess.sources_warned.pop(row["oid"], None)     # it works again: a new failure is said again
    key = (row["srvname"], row["srvtype"], tuple(row["srvoptions"] or ()), tuple(row["umoptions"] or ()),
           fetched[1] if fetched else None)
    try:
        spec = sess.specs.get(key)          # validated before, unchanged since
        if spec is None:
            umoptions = keys.open(row["umoptions"], row["srvname"], row.get("umrole"))
            if fetched is not None:
                umoptions = _with_source_values(validation.reference(umoptions)[1], fetched[0])
            spec = validation.secret_spec(row["srvname"], row["srvtype"], row["srvoptions"], umoptions)
        specs[key] = spec
    except MissingMapping as e:
        return skip(f"no user mapping gives what it needs: {e.message}")
    except crypto.KeyProblem as e:
        # Never a crash, never a half secret: the others load, this one says why
        # (a problem of the key file itself is warned about once, not per server).
        return skip(f"cannot decrypt: {e}", keys.warning(e, skipping(f"cannot decrypt: {e}")))
    except PgError as e:
        if fetched is not None:
            # a value from a source: said once, naming the source and the id, never the value
            why = f"the value from {fetched[2]} does not validate: {e.message}" + (f" ({e.hint})" if e.hint else "")
            return skip(why, _warn_source(sess, row, skipping(why)))
        # Validated at DDL time; can only happen after a catalogue change
        # (an upgrade) or a catalog edit behind our back. Skip it loudly.
        return skip(f"refused by validation: {e.message}", skipping(e.message))
    trusted = policy.routes_trusted(row, trusted)
    refusal = policy.secret_refusal(row["srvname"], spec, trusted)
    if refusal is not None:
        return skip(*refusal)
    return ServerSecret(row, spec, trusted, key=key)


def _with_source_values(own, given):
    """A mapping's own options and those its source gives; the same option in both is refused."""
    names = {str(o).partition("=")[0].strip().lower() for o in own}
    for item in given:
        name = item.partition("=")[0]
        if name in names:
            raise PgError(DUPLICATE_OBJECT, f'option "{validation.shown(name)}" is set both in the user mapping '
                                            "and by its source")
    return list(own) + list(given)


def _warn_source(sess, row, text):
    """A skip for a source's sake warns once, until it works again (None: said before)."""
    if sess.sources_warned.get(row["oid"]) == text:
        return None
    sess.sources_warned[row["oid"]] = text
    return text


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
