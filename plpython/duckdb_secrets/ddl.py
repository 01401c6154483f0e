"""Stage 2 of validation (the ddl_command_end event trigger) and the helpers
that create servers and user mappings for the user.
"""


from . import aws, catalog, crypto, statementlog, tokens, validation
from .engine import RemoteError, Scratch
from .errors import (
    DUPLICATE_OBJECT,
    FDW_ERROR,
    FDW_INVALID_ATTRIBUTE_VALUE,
    INSUFFICIENT_PRIVILEGE,
    INVALID_PARAMETER_VALUE,
    NULL_VALUE_NOT_ALLOWED,
    OBJECT_NOT_IN_PREREQUISITE_STATE,
    UNDEFINED_OBJECT,
    WRONG_OBJECT_TYPE,
    MissingMapping,
    PgError,
    from_duckdb,
)
from .masking import Scrubber
from .session import session

SERVER_CLASS = validation.SERVER_CATALOG      # pg_foreign_server
MAPPING_CLASS = validation.MAPPING_CATALOG    # pg_user_mapping

# Runs as the DDL's invoker: pg_user_mappings shows the options to the server
# owner, to the mapping's own user, and to superusers: exactly those who can
# create or alter them.
SERVER_SQL = """
SELECT s.oid, s.srvname::text AS srvname, s.srvtype, s.srvoptions, w.fdwname::text AS fdw,
       a.rolname::text AS owner, a.rolsuper AS owner_super
  FROM pg_catalog.pg_foreign_server s
  JOIN pg_catalog.pg_foreign_data_wrapper w ON w.oid = s.srvfdw
  JOIN pg_catalog.pg_roles a ON a.oid = s.srvowner
 WHERE s.oid = $1
"""
MAPPINGS_SQL = """
SELECT m.umid, m.umuser, m.usename::text AS usename, m.umoptions
  FROM pg_catalog.pg_user_mappings m WHERE m.srvid = $1 AND ($2 IS NULL OR m.umid = $2)
"""
MAPPING_SERVER_SQL = """
SELECT m.umserver, m.umoptions, coalesce(a.rolname::text, 'public') AS umrole
  FROM pg_catalog.pg_user_mapping m LEFT JOIN pg_catalog.pg_authid a ON a.oid = m.umuser
 WHERE m.oid = $1
"""
# Every mapping of a server with its role's name (runs as the extension owner).
SERVER_MAPPINGS_SQL = """
SELECT m.oid, m.umoptions, coalesce(a.rolname::text, 'public') AS umrole
  FROM pg_catalog.pg_user_mapping m LEFT JOIN pg_catalog.pg_authid a ON a.oid = m.umuser
 WHERE m.umserver = $1
"""
UPDATE_MAPPING_SQL = "UPDATE pg_catalog.pg_user_mapping SET umoptions = $2 WHERE oid = $1"
# The names the duckdb servers had when this ALTER SERVER started (duckdb._ddl_log_start).
NAMES_BEFORE_SQL = "SELECT pg_catalog.current_setting('duckdb.server_names_before', true) AS v"
DUCKDB_SERVER_NAMES_SQL = """
SELECT s.srvname::text AS srvname FROM pg_catalog.pg_foreign_server s
  JOIN pg_catalog.pg_foreign_data_wrapper w ON w.oid = s.srvfdw AND w.fdwname = 'duckdb'
"""



def _dry_run(plpy, sess, name, spec, scrub):
    if sess.scratch is None or not sess.scratch.usable():
        if sess.scratch is not None:
            sess.scratch.close()
        sess.scratch = Scratch()
    try:
        sess.scratch.dry_run(plpy, name, spec)
    except RemoteError as e:    # DuckDB refused it: a scrubbed PgError
        err = from_duckdb(e)
        raise PgError(FDW_ERROR, f'DuckDB does not accept the secret for server "{validation.shown(name)}"',
                      detail=scrub(err.message), hint="Check the option values against docs/secret-types.md.") from None


def keyring(plpy, sess):
    return crypto.Keyring(sess.admin_conf(plpy))


def check_object(plpy, GD, classid, objid):
    """Validate the server or user mapping a DDL command just created/altered,
    then encrypt what it left in clear (a key file configured).

    Runs inside the SECURITY DEFINER event trigger, as the extension's owner."""
    sess = session(GD)
    umid = mapping = None
    if classid == MAPPING_CLASS:
        umid = objid
        rows = plpy.execute(sess.plan(plpy, "mapping_server", MAPPING_SERVER_SQL, ["oid"]), [objid])
        if not rows:
            return
        mapping = rows[0]
        srvid = mapping["umserver"]
    elif classid == SERVER_CLASS:
        srvid = objid
    else:
        return
    rows = plpy.execute(sess.plan(plpy, "server", SERVER_SQL, ["oid"]), [srvid])
    if not rows or rows[0]["fdw"] != "duckdb":
        return
    srv = rows[0]
    keys = keyring(plpy, sess)
    if classid == SERVER_CLASS:
        _rebind_renamed(plpy, sess, keys, srv)
    check_server(plpy, sess, srv, umid, keys)
    if mapping is not None and keys.configured:
        sealing = keys.sealing()
        options, n = crypto.seal_options(sealing, mapping["umoptions"], srv["srvname"], mapping["umrole"],
                                         catalog.SEALED)
        if n:
            plpy.execute(sess.plan(plpy, "update_mapping", UPDATE_MAPPING_SQL, ["oid", "text[]"]),
                         [umid, options])


def _rebind_renamed(plpy, sess, keys, srv):
    """ALTER SERVER ... RENAME TO: encrypted values are bound to the server's
    name; move them to the new one. The old name comes from the catalog as the
    statement started, never from the values themselves."""
    before = plpy.execute(sess.plan(plpy, "names_before", NAMES_BEFORE_SQL))[0]["v"] or ""
    old = None
    for line in before.split("\n"):
        oid, _, name = line.partition("=")
        if oid == str(srv["oid"]):
            old = name
    if old is None or old == srv["srvname"]:
        return
    for m in plpy.execute(sess.plan(plpy, "server_mappings", SERVER_MAPPINGS_SQL, ["oid"]), [srv["oid"]]):
        if not any(crypto.is_sealed(i.partition("=")[2]) for i in m["umoptions"] or ()):
            continue
        try:
            plain = keys.open(m["umoptions"], old, m["umrole"])
            sealed, _ = crypto.seal_options(keys.sealing(), plain, srv["srvname"], m["umrole"], catalog.SEALED)
        except crypto.KeyProblem as e:
            plpy.warning(f'the encrypted values of the user mapping for {validation.shown(m["umrole"])} stay bound '
                         f'to the old server name "{validation.shown(old)}": {e}',
                         hint="With the key file in place, rename the server back and again, or set the values "
                              "anew (duckdb.set_user_mapping).")
            continue
        plpy.execute(sess.plan(plpy, "update_mapping", UPDATE_MAPPING_SQL, ["oid", "text[]"]), [m["oid"], sealed])


def check_server(plpy, sess, srv, umid=None, keys=None):
    """Check a server alone and with each user mapping the invoker can see
    (umid given: only with that mapping)."""
    if keys is None:
        keys = keyring(plpy, sess)
    name = srv["srvname"]
    combos = []
    if umid is None:
        names = [r["srvname"] for r in plpy.execute(
            sess.plan(plpy, "duckdb_names", DUCKDB_SERVER_NAMES_SQL))]
        validation.check_name_collision(name, names)
        _check_attach_unique(plpy, sess, srv)
        combos.append((None, None, None))
    mappings = plpy.execute(sess.plan(plpy, "mappings", MAPPINGS_SQL, ["oid", "oid"]), [srv["oid"], umid])
    for m in mappings:
        if m["umoptions"] is None:
            continue
        try:
            combos.append((keys.open(m["umoptions"], name, m["usename"]), m["umuser"], m["usename"]))
        except crypto.KeyProblem as e:
            if e.foreign and umid is not None:
                # A value encrypted for another place, given in this very DDL.
                raise PgError(FDW_INVALID_ATTRIBUTE_VALUE, f"{e}", hint="Give the value itself; it is encrypted "
                              "when stored (duckdb.set_user_mapping keeps it out of statement text).") from None
            # A server must stay manageable while its values cannot be read
            # (a restore without the key file): not checked, said so.
            plpy.warning(f'user mapping for {validation.shown(m["usename"])} on server "{validation.shown(name)}" '
                         f"not checked: {e}", hint=crypto.HINT)
    source = validation.source_type(name, srv["srvtype"])
    for umoptions, umuser, usename in combos:
        pairs = validation.parse_options(umoptions) + validation.parse_options(srv["srvoptions"])
        # Our own messages never carry values; DuckDB's may carry any of them.
        scrub_secrets = Scrubber(v for k, v in pairs if k.lower() in catalog.SENSITIVE)
        scrub_all = Scrubber(v for _, v in pairs)
        try:
            if source is not None:
                _check_source_server(plpy, sess, srv, source, umoptions, usename)
                continue
            ref, own = validation.reference(umoptions)
            if ref is not None and not _restoring(plpy):
                try:
                    _check_reference(plpy, sess, srv, ref, umuser, usename)
                except PgError as e:
                    if umid is not None:
                        raise
                    # A change of the server itself: its other mappings' references
                    # stay manageable; each sync checks them again and skips what fails.
                    plpy.warning(f'the user mapping for {validation.shown(usename)} on server '
                                 f'"{validation.shown(name)}" will be skipped: {e.message}', hint=e.hint)
            try:
                spec = validation.secret_spec(name, srv["srvtype"], srv["srvoptions"], own)
            except MissingMapping:
                if umoptions is None or ref is not None:
                    continue        # the server alone, or a mapping whose source brings the rest
                raise
            if ref is not None:
                _check_source_option(spec, ref)
            else:
                _dry_run(plpy, sess, validation.engine_name(name), spec, scrub_all)
            _check_aws(plpy, sess, name, spec)
        except PgError as e:
            raise e.masked(scrub_secrets) from None


# The source server a user mapping names (by name), whether the mapping's role
# may use it, and who owns it. Runs as the extension owner.
SOURCE_SERVER_SQL = """
SELECT s.oid, s.srvname::text AS srvname, s.srvtype, s.srvoptions, w.fdwname::text AS fdw,
       a.rolname::text AS owner, a.rolsuper AS owner_super,
       $2 = 0 OR pg_catalog.has_server_privilege($2, s.oid, 'USAGE') AS usage
  FROM pg_catalog.pg_foreign_server s
  JOIN pg_catalog.pg_foreign_data_wrapper w ON w.oid = s.srvfdw
  JOIN pg_catalog.pg_roles a ON a.oid = s.srvowner
 WHERE s.srvname = $1
"""


def _restoring(plpy):
    """check_function_bodies off: how pg_dump's scripts restore (a mapping may come
    before the source it names). Checks that depend on other objects wait for the
    sync, which makes them anyway."""
    return plpy.execute("SELECT pg_catalog.current_setting('check_function_bodies') AS v")[0]["v"] == "off"


def _source_owner_refusal(plpy, sess, source, srv):
    """Why a source server's owner does not count (None: it does)."""
    if source.superuser_only and not srv["owner_super"]:
        return f"a server of TYPE '{source.name}' reads the server's own files: only a superuser may own one"
    trusted = [t.strip() for t in (sess.admin_conf(plpy).get("duckdb.trusted_server_owners") or "").split(",")]
    if not srv["owner_super"] and srv["owner"] not in trusted:
        return ("a source server fetches values for other roles' secrets: it must be owned by a superuser or a "
                "role in duckdb.trusted_server_owners")
    return None


def _check_source_server(plpy, sess, srv, source, umoptions, usename):
    """A source server (catalog.SOURCES): its owner, and its options with each user mapping."""
    why = _source_owner_refusal(plpy, sess, source, srv)
    if why is not None:
        raise PgError(INSUFFICIENT_PRIVILEGE, f'server "{validation.shown(srv["srvname"])}" cannot be a source: '
                                              f'owner "{validation.shown(srv["owner"])}" is not an administrator',
                      detail=why, hint="A superuser creates the source server, or ALTER SERVER ... OWNER TO one.")
    spec = validation.source_spec(srv["srvname"], srv["srvtype"], srv["srvoptions"], umoptions,
                                  usename or "public", need_credentials=umoptions is not None)
    if _restoring(plpy):
        return
    if umoptions is None:
        _references_outside(plpy, sess, srv, spec)
    elif spec["provider"] == "credential_chain" and source.service is not None:
        params = {k: spec["params"][k] for k in ("chain", "profile", "region") if spec["params"].get(k)}
        try:
            found = aws.resolve(params, srv["srvname"], aws.Settings.from_conf(sess.admin_conf(plpy)))
        except PgError:
            found = None
        if found is None:
            plpy.warning(f'no AWS credentials found for source server "{validation.shown(srv["srvname"])}": its '
                         "references will be skipped until the server process has some",
                         hint="Give the server process an AWS identity (docs/aws.md), or put key_id and secret "
                              "in this user mapping instead of provider 'credential_chain'.")


# The user mappings that name a source (runs as the extension owner): $1 the source's name.
REFERENCES_SQL = """
SELECT s.srvname::text AS srvname, coalesce(a.rolname::text, 'public') AS umrole, m.umoptions
  FROM pg_catalog.pg_user_mapping m
  JOIN pg_catalog.pg_foreign_server s ON s.oid = m.umserver
  JOIN pg_catalog.pg_foreign_data_wrapper w ON w.oid = s.srvfdw AND w.fdwname = 'duckdb'
  LEFT JOIN pg_catalog.pg_authid a ON a.oid = m.umuser
 WHERE ('source=' || $1) = ANY (m.umoptions)
"""


def _references_outside(plpy, sess, srv, spec):
    """A source's allowed_ids changed: say which user mappings it no longer serves."""
    for r in plpy.execute(sess.plan(plpy, "references", REFERENCES_SQL, ["text"]), [srv["srvname"]]):
        try:
            ref, _ = validation.reference(r["umoptions"])
        except PgError:
            continue
        if ref is not None and not validation.id_allowed(spec, ref["id"]):
            plpy.warning(f'the user mapping for {validation.shown(r["umrole"])} on server '
                         f'"{validation.shown(r["srvname"])}" names a source_id outside the allowed_ids of source '
                         f'server "{validation.shown(srv["srvname"])}": it will be skipped')


def _check_reference(plpy, sess, srv, ref, umuser, usename):
    """A user mapping that names a source: the source is an administrator's,
    the mapping's role has USAGE on it (PUBLIC's: checked for each role at
    sync), and the id is allowed. Nothing is fetched here."""
    rows = plpy.execute(sess.plan(plpy, "source_server", SOURCE_SERVER_SQL, ["name", "oid"]),
                        [ref["source"], umuser or 0])
    shown = validation.shown(ref["source"])
    if not rows or rows[0]["fdw"] != "duckdb":
        raise PgError(UNDEFINED_OBJECT, f'source server "{shown}" does not exist',
                      hint="CREATE SERVER ... TYPE 'aws_secrets_manager' (or 'aws_ssm_parameter', 'file_directory') "
                           "FOREIGN DATA WRAPPER duckdb OPTIONS (..., allowed_ids '...') first.")
    source_row = rows[0]
    source = validation.source_type(source_row["srvname"], source_row["srvtype"])
    if source is None:
        raise PgError(WRONG_OBJECT_TYPE, f'server "{shown}" is not a source',
                      hint="Valid source types are: " + ", ".join(sorted(catalog.SOURCES)) + ".")
    why = _source_owner_refusal(plpy, sess, source, source_row)
    if why is not None:
        raise PgError(INSUFFICIENT_PRIVILEGE, f'source server "{shown}" is not an administrator\'s', detail=why)
    if not source_row["usage"]:
        raise PgError(INSUFFICIENT_PRIVILEGE, f'role "{validation.shown(usename)}" has no USAGE on source server '
                                              f'"{shown}"',
                      hint=f"GRANT USAGE ON FOREIGN SERVER {plpy.quote_ident(source_row['srvname'])} TO "
                           f"{plpy.quote_ident(usename)};")
    problem = validation.file_id_problem(ref["id"]) if source.name == "file_directory" else None
    if problem is not None:
        raise PgError(FDW_INVALID_ATTRIBUTE_VALUE, problem)
    allowed = {"params": {"allowed_ids": _listed_option(source_row["srvoptions"], "allowed_ids")}}
    if not validation.id_allowed(allowed, ref["id"]):
        raise PgError(INSUFFICIENT_PRIVILEGE, f'source_id is not among the allowed_ids of source server "{shown}"',
                      hint="An administrator widens allowed_ids: ALTER SERVER "
                           f"{plpy.quote_ident(source_row['srvname'])} OPTIONS (SET allowed_ids '...').")


def _listed_option(options, wanted):
    for item in options or ():
        name, _, value = item.partition("=")
        if name.strip().lower() == wanted:
            return [v.strip() for v in value.split(",") if v.strip()]
    return []


def _check_source_option(spec, ref):
    """The one option a plain value fills must be a user-mapping option of the server's type."""
    if ref["option"] is None:
        return
    valid = catalog.options_for(spec["type"], spec["provider"])
    if ref["option"] not in valid or ref["option"] in catalog.SERVER_ONLY:
        raise PgError(FDW_INVALID_ATTRIBUTE_VALUE,
                      f'source_option "{validation.shown(ref["option"])}" is not an option of a server of TYPE '
                      f"'{spec['type']}'")


def _check_attach_unique(plpy, sess, srv):
    """Two servers cannot attach under one name (a catalog name is one per engine)."""
    mine = _attach_as(srv["srvoptions"])
    if mine is None:
        return
    for r in plpy.execute(sess.plan(plpy, "other_duckdb_servers", OTHER_DUCKDB_SERVERS_SQL)):
        if r["srvname"] != srv["srvname"] and _attach_as(r["srvoptions"], strict=False) == mine:
            raise PgError(DUPLICATE_OBJECT,
                          f'attach_as "{mine}" of server "{validation.shown(srv["srvname"])}" is already the '
                          f'attach_as of server "{validation.shown(r["srvname"])}"',
                          detail="Each engine has one catalog of a name.",
                          hint="Choose another attach_as, or change the other server first.")


def _attach_as(srvoptions, strict=True):
    """A server's attach_as as the engine uses it, or None (strict False: None
    for a value that is not valid, too)."""
    for item in srvoptions or ():
        key, _, value = item.partition("=")
        if key.lower() == catalog.ATTACH_AS:
            try:
                return validation.attach_name(value)
            except PgError:
                if strict:
                    raise
                return None
    return None


RDS_SERVER_SQL = """
SELECT s.srvname::text AS srvname, s.srvtype FROM pg_catalog.pg_foreign_server s
  JOIN pg_catalog.pg_foreign_data_wrapper w ON w.oid = s.srvfdw AND w.fdwname = 'duckdb'
 WHERE lower(s.srvname) = lower($1)
"""


def _check_aws(plpy, sess, name, spec):
    """A credential chain must find credentials unless validation is 'none'
    (as DuckDB's 'exists'); an aws_rds_secret must name an rds server.

    Both depend on the environment or on other objects, so like function bodies
    they are not checked while check_function_bodies is off -- which is how
    pg_dump's scripts restore (on a host without those credentials, and with
    servers created in name order)."""
    if _restoring(plpy):
        return
    params = spec["params"]
    stype = catalog.TYPES[spec["type"]]
    if (spec["provider"] == "credential_chain" and stype.aws_credentials
            and params.get("validation", "exists") != "none"):
        if aws.resolve(params, name, aws.Settings.from_conf(sess.admin_conf(plpy))) is None:
            raise PgError(aws.NO_CREDENTIALS, f'no AWS credentials found for server "{validation.shown(name)}"',
                          detail="Chain tried: " + ";".join(aws._chain(params)) + ".",
                          hint="Give the server process credentials (docs/aws.md), or set validation 'none' "
                               "to accept the server anyway.")
    if stype.rds_token_option is not None and stype.rds_token_option in params:
        rows = plpy.execute(sess.plan(plpy, "rds_server", RDS_SERVER_SQL, ["text"]), [params[stype.rds_token_option]])
        if not rows or (rows[0]["srvtype"] or "").strip().lower() != "rds":
            raise PgError(FDW_INVALID_ATTRIBUTE_VALUE,
                          f'aws_rds_secret of server "{validation.shown(name)}" must name a duckdb server of TYPE '
                          "'rds'",
                          detail=None if rows else "There is no such server.",
                          hint="CREATE SERVER ... TYPE 'rds' FOREIGN DATA WRAPPER duckdb OPTIONS (chain ..., "
                               "region ..., rds_user ..., rds_host ..., rds_port ...) first.")


SIMPLE_SERVER_OPTIONS = ("provider", "region", "url_style", "endpoint", "scope", "validation", "use_ssl")
SIMPLE_MAPPING_OPTIONS = ("key_id", "secret", "session_token")
HELPER_SENSITIVE_ARGS = SIMPLE_MAPPING_OPTIONS + ("connection_string",)

OTHER_DUCKDB_SERVERS_SQL = """
SELECT s.srvname::text AS srvname, s.srvtype, s.srvoptions FROM pg_catalog.pg_foreign_server s
  JOIN pg_catalog.pg_foreign_data_wrapper w ON w.oid = s.srvfdw AND w.fdwname = 'duckdb'
"""


def _no_nulls(fn, args):
    for k, v in args.items():
        if v is None:
            raise PgError(NULL_VALUE_NOT_ALLOWED, f'argument "{k}" of duckdb.{fn} must not be null',
                          hint="Pass '' for an option you do not want to set.")


def create_simple_secret(plpy, GD, args):
    """duckdb.create_simple_secret(): an S3, GCS or R2 secret for the current user."""
    _no_nulls("create_simple_secret", args)
    type_name = args["type"].strip().lower()
    if type_name not in catalog.SIMPLE_TYPES:
        what = validation.simple_word(type_name)
        raise PgError(INVALID_PARAMETER_VALUE, f"unsupported secret type{what} for a simple secret",
                      hint="duckdb.create_simple_secret() takes S3, GCS or R2; for other types use "
                           "CREATE SERVER ... TYPE '...' FOREIGN DATA WRAPPER duckdb.")
    return _create_helper_secret(plpy, GD, type_name,
                                 {k: args[k] for k in SIMPLE_SERVER_OPTIONS},
                                 {k: args[k] for k in SIMPLE_MAPPING_OPTIONS})


def create_azure_secret(plpy, GD, args):
    """duckdb.create_azure_secret(connection_string, scope)."""
    _no_nulls("create_azure_secret", args)
    return _create_helper_secret(plpy, GD, "azure", {"scope": args["scope"]},
                                 {"connection_string": args["connection_string"]})


def _effective_scope(type_name, spec_scope):
    return set(spec_scope or catalog.TYPES[type_name].default_scope)


def _create_helper_secret(plpy, GD, type_name, server_args, mapping_args):
    """A SERVER simple_<type>_secret[_N] + USER MAPPING FOR CURRENT_USER.

    Everything is validated before any DDL, so a bad call changes nothing.
    The sensitive values never appear in SQL text: the mapping is created
    empty and its options are stored with bound parameters by the SECURITY
    DEFINER duckdb._store_mapping_options(). A second secret of the same type
    for the same scope is refused: DuckDB would pick between the two by name.
    """
    server_opts = [f"{k}={v}" for k, v in server_args.items() if v != ""]
    mapping_opts = [f"{k}={v}" for k, v in mapping_args.items() if v != ""]
    # pg_duckdb's names: azure_secret, simple_s3_secret, ... (then _1, _2)
    base = catalog.TYPES[type_name].helper_name
    spec = validation.secret_spec(base, type_name, server_opts, mapping_opts)

    scope = _effective_scope(type_name, spec["scope"])
    existing = set()
    for r in plpy.execute(OTHER_DUCKDB_SERVERS_SQL):
        existing.add(r["srvname"])
        if (r["srvtype"] or "").strip().lower() != type_name:
            continue
        opts = validation.normalise(validation.parse_options(r["srvoptions"]), "")
        theirs = set(v.strip() for v in opts.get(catalog.SCOPE, "").split(",") if v.strip())
        common = scope & (theirs or set(catalog.TYPES[type_name].default_scope))
        if common:
            raise PgError(DUPLICATE_OBJECT,
                          f"a secret of TYPE '{type_name}' for scope "
                          f'"{sorted(common)[0]}" already exists: server "{r["srvname"]}"',
                          detail="Two secrets for one scope would leave DuckDB to choose between them by name.",
                          hint=f"To rotate its key: ALTER USER MAPPING FOR CURRENT_USER SERVER {r['srvname']} "
                               f"OPTIONS (SET ...). To replace it: SELECT duckdb.drop_secret('{r['srvname']}') "
                               "first. Or pass a different scope.")
    existing |= {r["srvname"] for r in plpy.execute(
        "SELECT srvname::text AS srvname FROM pg_catalog.pg_foreign_server")}
    name, i = base, 0
    while name in existing:
        i += 1
        name = f"{base}_{i}"

    opts = ", ".join(f"{k} {plpy.quote_literal(v)}" for k, v in server_args.items() if v != "")
    _valueless_ddl(plpy, f"CREATE SERVER {plpy.quote_ident(name)} TYPE {plpy.quote_literal(type_name)} "
                         f"FOREIGN DATA WRAPPER duckdb" + (f" OPTIONS ({opts})" if opts else ""),
                   f"CREATE USER MAPPING FOR CURRENT_USER SERVER {plpy.quote_ident(name)}")
    if mapping_opts:
        _store_as_caller(plpy, GD, name, mapping_opts)
    return name


def _valueless_ddl(plpy, *statements):
    """DDL the helpers run, which carries no secret value: the warning that
    statement logging may capture values (duckdb._ddl_log_start) is not for it."""
    plpy.execute("SELECT pg_catalog.set_config('duckdb.valueless_ddl', 'on', true)")
    try:
        for sql in statements:
            plpy.execute(sql)
    finally:
        plpy.execute("SELECT pg_catalog.set_config('duckdb.valueless_ddl', 'off', true)")


def _store_as_caller(plpy, GD, server_name, options):
    role = plpy.execute("SELECT oid FROM pg_catalog.pg_roles WHERE rolname = current_user")[0]["oid"]
    _store(plpy, GD, server_name, role, options)


STORE_SQL = """
UPDATE pg_catalog.pg_user_mapping m SET umoptions = $3
  FROM pg_catalog.pg_foreign_server s
 WHERE s.oid = m.umserver AND s.srvname = $2 AND m.umuser = $1
RETURNING m.oid
"""


def _role_label(plpy, role_oid):
    """The name encrypted values of role_oid's mapping are bound to ('public': PUBLIC)."""
    if role_oid == 0:
        return "public"
    return plpy.execute(plpy.prepare("SELECT rolname::text AS n FROM pg_catalog.pg_roles WHERE oid = $1", ["oid"]),
                        [role_oid])[0]["n"]


def store_mapping_options(plpy, GD, nonce, server_name, options):
    """Body of SECURITY DEFINER duckdb._store_mapping_options(): only for this
    package's own code, for the caller's own mapping (token in GD)."""
    token = tokens.redeem(GD, tokens.CALLER, nonce)
    if token is None:
        statementlog.quiet()            # a direct call's arguments may be secret values
        raise PgError(INSUFFICIENT_PRIVILEGE, "duckdb._store_mapping_options is internal to duckdb_secrets",
                      hint="Use ALTER USER MAPPING, or duckdb.create_simple_secret().")
    validation.validate_options(options, validation.MAPPING_CATALOG)
    sess = session(GD)
    sealing = keyring(plpy, sess).sealing()
    if sealing is not None:        # _store sealed them; anything left is sealed here
        options, _ = crypto.seal_options(sealing, options, server_name, _role_label(plpy, token[0]),
                                         catalog.SEALED)
    rows = plpy.execute(sess.plan(plpy, "store", STORE_SQL, ["oid", "name", "text[]"]),
                        [token[0], server_name, options])
    if not rows:
        raise PgError(UNDEFINED_OBJECT, f'user mapping for server "{validation.shown(server_name)}" does not exist')
    srv = plpy.execute(sess.plan(plpy, "server_by_name",
                                 SERVER_SQL.replace("s.oid = $1", "s.srvname = $1"), ["name"]),
                       [server_name])[0]
    check_server(plpy, sess, srv, rows[0]["oid"])
    bump(plpy, GD, srv["oid"])


def bump(plpy, GD, server=None):
    """A new generation (engines re-read), naming the server it is about if known."""
    if server is None:
        plpy.execute("SELECT duckdb._bump()")
    else:
        plpy.execute(plpy.prepare("SELECT duckdb._bump($1)", ["oid[]"]), [[server]])


# --- duckdb.set_user_mapping -------------------------------------------------

# The server, whether the caller may change the target's mapping (PostgreSQL's
# own rule: a server's owner may change anyone's and PUBLIC's; others only their
# own, with USAGE on the server), and the mapping's options as the caller sees
# them. $1 server name, $2 target role oid (0: PUBLIC). Runs as the caller.
SET_MAPPING_SQL = """
SELECT s.srvname::text AS srvname, w.fdwname::text AS fdwname,
       pg_catalog.pg_has_role(s.srvowner, 'USAGE') AS owner,
       pg_catalog.has_server_privilege(s.oid, 'USAGE') AS usage,
       me.oid AS me,
       um.umid IS NOT NULL AS exists, um.umoptions
  FROM pg_catalog.pg_foreign_server s
  JOIN pg_catalog.pg_foreign_data_wrapper w ON w.oid = s.srvfdw
  JOIN pg_catalog.pg_roles me ON me.rolname = current_user
  LEFT JOIN pg_catalog.pg_user_mappings um ON um.srvid = s.oid AND um.umuser = $2
 WHERE s.srvname = $1
"""


def _target_role(plpy, role_name):
    """(oid, SQL for CREATE USER MAPPING FOR ...): 0 for PUBLIC."""
    if role_name.strip().upper() == "PUBLIC":
        return 0, "PUBLIC"
    if role_name.strip().upper() == "CURRENT_USER":
        r = plpy.execute("SELECT oid, rolname::text AS n FROM pg_catalog.pg_roles WHERE rolname = current_user")
    else:
        r = plpy.execute(plpy.prepare("SELECT oid, rolname::text AS n FROM pg_catalog.pg_roles WHERE rolname = $1",
                                      ["name"]), [role_name])
    if not r:
        raise PgError(UNDEFINED_OBJECT, f'role "{validation.shown(role_name)}" does not exist')
    return r[0]["oid"], plpy.quote_ident(r[0]["n"])


def _merged_options(current, changes):
    """The mapping's options after the JSON changes (null removes an option)."""
    if not isinstance(changes, dict):
        raise PgError(INVALID_PARAMETER_VALUE, "options must be a JSON object",
                      hint='For example {"key_id": "...", "secret": "..."}; null removes an option.')
    options = validation.normalise(validation.parse_options(current), "")
    for name, value in changes.items():
        key = str(name).lower()
        if value is None:
            options.pop(key, None)
        elif isinstance(value, bool):
            options[key] = "true" if value else "false"
        elif isinstance(value, (str, int, float)):
            options[key] = str(value)
        else:
            raise PgError(INVALID_PARAMETER_VALUE, f'the value of option "{validation.shown(key)}" must be a '
                                                  "string, a number, a boolean or null")
    return [f"{k}={v}" for k, v in options.items()]


def set_user_mapping(plpy, GD, server_name, role_name, options_json):
    """duckdb.set_user_mapping(): create or change a user mapping, values bound, never in SQL text."""
    from . import params
    for what, v in (("server_name", server_name), ("role_name", role_name), ("options", options_json)):
        if v is None:
            raise PgError(NULL_VALUE_NOT_ALLOWED, f"{what} must not be null")
    changes = params.load_json(options_json, "the options", options=True)
    role_oid, role_sql = _target_role(plpy, role_name)
    sess = session(GD)
    rows = plpy.execute(sess.plan(plpy, "set_mapping", SET_MAPPING_SQL, ["name", "oid"]), [server_name, role_oid])
    if not rows:
        raise PgError(UNDEFINED_OBJECT, f'server "{validation.shown(server_name)}" does not exist')
    r = rows[0]
    if r["fdwname"] != "duckdb":
        raise PgError(WRONG_OBJECT_TYPE, f'server "{validation.shown(server_name)}" is not a duckdb secret',
                      detail=f'It belongs to foreign-data wrapper "{validation.shown(r["fdwname"])}".')
    if not (r["owner"] or (role_oid == r["me"] and r["usage"])):
        whose = "PUBLIC" if role_oid == 0 else "role " + role_sql
        raise PgError(INSUFFICIENT_PRIVILEGE,
                      f"permission denied to change the user mapping of {whose} "
                      f'for server "{validation.shown(server_name)}"',
                      hint="A server's owner may change any user mapping of it; other roles only their own, "
                           "with USAGE on the server (as for CREATE/ALTER USER MAPPING).")
    options = _merged_options(r["umoptions"] if r["exists"] else [], changes)
    validation.validate_options(options, validation.MAPPING_CATALOG)
    if not r["exists"]:
        _valueless_ddl(plpy, f"CREATE USER MAPPING FOR {role_sql} SERVER {plpy.quote_ident(r['srvname'])}")
    _store(plpy, GD, r["srvname"], role_oid, options)
    return None


def _store(plpy, GD, server_name, role_oid, options):
    """Options of role_oid's mapping stored by SECURITY DEFINER
    duckdb._store_mapping_options() with bound parameters (one-time token);
    sensitive values already encrypted when a key file is configured, so that
    not even that call's parameters carry them in clear."""
    sealing = keyring(plpy, session(GD)).sealing()
    if sealing is not None:
        options, _ = crypto.seal_options(sealing, options, server_name, _role_label(plpy, role_oid),
                                         catalog.SEALED)
    with tokens.issued(GD, tokens.CALLER, role_oid) as nonce:
        plan = session(GD).plan(plpy, "store_mapping", "SELECT duckdb._store_mapping_options($1, $2, $3)",
                                ["text", "text", "text[]"])
        plpy.execute(plan, [nonce, server_name, options])


# --- duckdb.reencrypt_secrets ------------------------------------------------

ALL_DUCKDB_MAPPINGS_SQL = """
SELECT m.oid, s.srvname::text AS srvname, m.umoptions, coalesce(a.rolname::text, 'public') AS umrole
  FROM pg_catalog.pg_user_mapping m
  JOIN pg_catalog.pg_foreign_server s ON s.oid = m.umserver
  JOIN pg_catalog.pg_foreign_data_wrapper w ON w.oid = s.srvfdw AND w.fdwname = 'duckdb'
  LEFT JOIN pg_catalog.pg_authid a ON a.oid = m.umuser
 ORDER BY s.srvname, m.oid
"""


def reencrypt_secrets(plpy, GD):
    """duckdb.reencrypt_secrets(): every sensitive value encrypted with the key
    file's current key; returns how many values were rewritten."""
    if not plpy.execute("SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user")[0]["rolsuper"]:
        raise PgError(INSUFFICIENT_PRIVILEGE, "permission denied for function reencrypt_secrets",
                      hint="Only superusers may re-encrypt every role's secret values.")
    sess = session(GD)
    keys = keyring(plpy, sess)
    if not keys.configured:
        raise PgError(OBJECT_NOT_IN_PREREQUISITE_STATE, f"{crypto.SETTING} is not set",
                      hint="Set it in postgresql.conf (or ALTER SYSTEM) and reload; " + crypto.HINT)
    sealing = keys.sealing()
    rewritten = 0
    for m in plpy.execute(ALL_DUCKDB_MAPPINGS_SQL):
        out, changed = [], 0
        for item in m["umoptions"] or ():
            name, _, value = item.partition("=")
            if name.lower() in catalog.SEALED or crypto.is_sealed(value):
                if crypto.is_sealed(value) and value.split(":", 2)[1] == sealing.current_id:
                    pass                # already under the current key
                else:
                    try:
                        plain = sealing.open(value, m["srvname"], m["umrole"], name) if crypto.is_sealed(value) \
                            else value
                    except crypto.KeyProblem as e:
                        plpy.warning(f'option "{validation.shown(name)}" of the user mapping for '
                                     f'{validation.shown(m["umrole"])} on server "{validation.shown(m["srvname"])}" '
                                     f"left as it is: {e}")
                        out.append(item)
                        continue
                    value = sealing.seal(plain, m["srvname"], m["umrole"], name)
                    changed += 1
            out.append(f"{name}={value}")
        if changed:
            plpy.execute(sess.plan(plpy, "update_mapping", UPDATE_MAPPING_SQL, ["oid", "text[]"]), [m["oid"], out])
            rewritten += changed
    if rewritten:
        bump(plpy, GD)
    return rewritten
