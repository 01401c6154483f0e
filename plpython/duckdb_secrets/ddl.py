"""Stage 2 of validation (the ddl_command_end event trigger) and the helpers
that create servers and user mappings for the user.
"""

from . import catalog, validation
from .engine import Scratch
from .errors import (PgError, Scrubber, from_duckdb, FDW_ERROR, NULL_VALUE_NOT_ALLOWED,
                     INVALID_PARAMETER_VALUE, INSUFFICIENT_PRIVILEGE, UNDEFINED_OBJECT)
from .sync import session, CALLER_KEY

SERVER_CLASS = 1417     # pg_foreign_server
MAPPING_CLASS = 1418    # pg_user_mapping

# Runs as the DDL's invoker: pg_user_mappings shows the options to the server
# owner, to the mapping's own user, and to superusers: exactly those who can
# create or alter them.
SERVER_SQL = """
SELECT s.oid, s.srvname::text AS srvname, s.srvtype, s.srvoptions, w.fdwname::text AS fdw
  FROM pg_catalog.pg_foreign_server s
  JOIN pg_catalog.pg_foreign_data_wrapper w ON w.oid = s.srvfdw
 WHERE s.oid = $1
"""
MAPPINGS_SQL = """
SELECT m.umid, m.usename::text AS usename, m.umoptions
  FROM pg_catalog.pg_user_mappings m WHERE m.srvid = $1 AND ($2 IS NULL OR m.umid = $2)
"""
MAPPING_SERVER_SQL = "SELECT m.umserver FROM pg_catalog.pg_user_mapping m WHERE m.oid = $1"
DUCKDB_SERVER_NAMES_SQL = """
SELECT s.srvname::text AS srvname FROM pg_catalog.pg_foreign_server s
  JOIN pg_catalog.pg_foreign_data_wrapper w ON w.oid = s.srvfdw AND w.fdwname = 'duckdb'
"""


def _dry_run(sess, name, spec, scrub):
    if sess.scratch is None:
        sess.scratch = Scratch()
    try:
        sess.scratch.dry_run(name, spec)
    except PgError:
        raise
    except Exception as e:   # duckdb.Error
        err = from_duckdb(e)
        raise PgError(FDW_ERROR, f'DuckDB does not accept the secret for server "{validation.shown(name)}"',
                      detail=scrub(err.message), hint="Check the option values against docs/secret-types.md.")


def check_object(plpy, GD, classid, objid):
    """Validate the server or user mapping a DDL command just created/altered."""
    sess = session(GD)
    umid = None
    if classid == MAPPING_CLASS:
        umid = objid
        rows = plpy.execute(sess.plan(plpy, "mapping_server", MAPPING_SERVER_SQL, ["oid"]), [objid])
        if not rows:
            return
        srvid = rows[0]["umserver"]
    elif classid == SERVER_CLASS:
        srvid = objid
    else:
        return
    rows = plpy.execute(sess.plan(plpy, "server", SERVER_SQL, ["oid"]), [srvid])
    if not rows or rows[0]["fdw"] != "duckdb":
        return
    srv = rows[0]
    check_server(plpy, sess, srv, umid)


def check_server(plpy, sess, srv, umid=None):
    """Check a server alone and with each user mapping the invoker can see
    (umid given: only with that mapping)."""
    name = srv["srvname"]
    combos = []
    if umid is None:
        names = [r["srvname"] for r in plpy.execute(
            sess.plan(plpy, "duckdb_names", DUCKDB_SERVER_NAMES_SQL))]
        validation.check_name_collision(name, names)
        combos.append(None)
    mappings = plpy.execute(sess.plan(plpy, "mappings", MAPPINGS_SQL, ["oid", "oid"]), [srv["oid"], umid])
    combos += [m["umoptions"] for m in mappings if m["umoptions"] is not None]
    for umoptions in combos:
        pairs = validation.parse_options(umoptions) + validation.parse_options(srv["srvoptions"])
        # Our own messages never carry values; DuckDB's may carry any of them.
        scrub_secrets = Scrubber(v for k, v in pairs if k.lower() in catalog.SENSITIVE)
        scrub_all = Scrubber(v for _, v in pairs)
        try:
            spec = validation.secret_spec(name, srv["srvtype"], srv["srvoptions"], umoptions)
            _dry_run(sess, validation.engine_name(name), spec, scrub_all)
        except PgError as e:
            e.message, e.detail, e.hint = (scrub_secrets(e.message), scrub_secrets(e.detail),
                                           scrub_secrets(e.hint))
            raise


SIMPLE_SERVER_OPTIONS = ("provider", "region", "url_style", "endpoint", "scope", "validation", "use_ssl")
SIMPLE_MAPPING_OPTIONS = ("key_id", "secret", "session_token")


def create_simple_secret(plpy, GD, args):
    """duckdb.create_simple_secret(): a SERVER + USER MAPPING FOR CURRENT_USER.

    The sensitive values never appear in SQL text: the mapping is created
    empty and its options are stored with bound parameters by the SECURITY
    DEFINER duckdb._store_mapping_options().
    """
    for k, v in args.items():
        if v is None:
            raise PgError(NULL_VALUE_NOT_ALLOWED,
                          f'argument "{k}" of duckdb.create_simple_secret must not be null',
                          hint="Pass '' for an option you do not want to set.")
    raw_type = args["type"].strip().lower()
    if raw_type not in catalog.SIMPLE_TYPES:
        what = f' "{raw_type}"' if validation._SIMPLE_WORD.match(raw_type) else ""
        raise PgError(INVALID_PARAMETER_VALUE, f"unsupported secret type{what} for a simple secret",
                      hint="duckdb.create_simple_secret() takes S3, GCS or R2; for other types use "
                           "CREATE SERVER ... TYPE '...' FOREIGN DATA WRAPPER duckdb.")
    server_opts = [f"{k}={args[k]}" for k in SIMPLE_SERVER_OPTIONS if args[k] != ""]
    mapping_opts = [f"{k}={args[k]}" for k in SIMPLE_MAPPING_OPTIONS if args[k] != ""]
    scrub = Scrubber([args[k] for k in SIMPLE_MAPPING_OPTIONS])
    # Validate everything before any DDL, so a bad call changes nothing.
    try:
        validation.secret_spec(f"simple_{raw_type}_secret", raw_type, server_opts, mapping_opts)
    except PgError as e:
        e.message, e.detail, e.hint = (scrub(e.message), scrub(e.detail), scrub(e.hint))
        raise

    existing = {r["srvname"] for r in plpy.execute(
        "SELECT srvname::text AS srvname FROM pg_catalog.pg_foreign_server")}
    base = f"simple_{raw_type}_secret"
    name, i = base, 0
    while name in existing:
        i += 1
        name = f"{base}_{i}"

    opts = ", ".join(f"{k} {plpy.quote_literal(args[k])}" for k in SIMPLE_SERVER_OPTIONS if args[k] != "")
    plpy.execute(f"CREATE SERVER {plpy.quote_ident(name)} TYPE {plpy.quote_literal(raw_type)} "
                 f"FOREIGN DATA WRAPPER duckdb" + (f" OPTIONS ({opts})" if opts else ""))
    plpy.execute(f"CREATE USER MAPPING FOR CURRENT_USER SERVER {plpy.quote_ident(name)}")
    if mapping_opts:
        _store_as_caller(plpy, GD, name, mapping_opts)
    return name


def _store_as_caller(plpy, GD, server_name, options):
    import secrets as _random
    nonce = _random.token_hex(16)
    role = plpy.execute("SELECT oid FROM pg_catalog.pg_roles WHERE rolname = current_user")[0]["oid"]
    GD[CALLER_KEY] = (nonce, role)
    try:
        plan = session(GD).plan(plpy, "store_mapping",
                                "SELECT duckdb._store_mapping_options($1, $2, $3)",
                                ["text", "text", "text[]"])
        plpy.execute(plan, [nonce, server_name, options])
    finally:
        GD.pop(CALLER_KEY, None)


STORE_SQL = """
UPDATE pg_catalog.pg_user_mapping m SET umoptions = $3
  FROM pg_catalog.pg_foreign_server s
 WHERE s.oid = m.umserver AND s.srvname = $2 AND m.umuser = $1
RETURNING m.oid
"""


def store_mapping_options(plpy, GD, nonce, server_name, options):
    """Body of SECURITY DEFINER duckdb._store_mapping_options(): only for this
    package's own code, for the caller's own mapping (token in GD)."""
    token = GD.pop(CALLER_KEY, None)
    if token is None or nonce is None or token[0] != nonce:
        raise PgError(INSUFFICIENT_PRIVILEGE, "duckdb._store_mapping_options is internal to duckdb_secrets",
                      hint="Use ALTER USER MAPPING, or duckdb.create_simple_secret().")
    validation.validate_options(options, validation.MAPPING_CATALOG)
    sess = session(GD)
    rows = plpy.execute(sess.plan(plpy, "store", STORE_SQL, ["oid", "name", "text[]"]),
                        [token[1], server_name, options])
    if not rows:
        raise PgError(UNDEFINED_OBJECT, f'user mapping for server "{validation.shown(server_name)}" does not exist')
    srv = plpy.execute(sess.plan(plpy, "server_by_name",
                                 SERVER_SQL.replace("s.oid = $1", "s.srvname = $1"), ["name"]),
                       [server_name])[0]
    check_server(plpy, sess, srv, rows[0]["oid"])
    plpy.execute("SELECT duckdb._bump()")
