"""Errors of the query functions that say why.

A DuckDB error about reaching a URL or a file can have a cause DuckDB cannot
know: a secret the role was meant to have was skipped (no user mapping, an
owner that is not an administrator, a type only superusers' engines take), or
the engine refused the path or URL by configuration. Here such an error is
told in PostgreSQL's terms. The URLs and paths are the string literals of the
caller's own SQL (DuckDB's tokenizer, in the worker), never a pattern over it;
what a role may see is unchanged: the servers named are those duckdb.secrets()
lists for it, and paths of the server stay masked (masking.py).
"""

import re

from .errors import INSUFFICIENT_PRIVILEGE, INVALID_PARAMETER_VALUE, UNDEFINED_OBJECT, PgError

# SQLSTATEs of errors that may come from a missing secret: a refused host, an
# HTTP or I/O error, a failed connection or authentication.
REACH = ("42501", "58030", "HV000", "08001", "28000")
_SCHEME = "://"


def urls(literals):
    """The URLs among the string literals (or parameter values) of a statement."""
    return sorted({v for v in literals or () if _SCHEME in v[:24]})


def covering(skipped, urls):
    """(server, why, url) of the skipped secret whose scope covers one of urls
    best (the longest scope, as DuckDB picks secrets); None if none does.
    skipped: Session.skipped, engine name -> (server, type, why, scopes)."""
    best = None
    for server, _typ, why, scopes, _catalog in skipped.values():
        for url in urls:
            for scope in scopes or ():
                if url.lower().startswith(scope.lower()) and (best is None or len(scope) > best[0]):
                    best = (len(scope), server, why, url)
    return None if best is None else best[1:]


def skipped_secret(err, skipped, literals, role):
    """err, or an error naming the skipped server that would cover a URL of the
    statement and why it is not used."""
    if err.sqlstate not in REACH or not skipped:
        return err
    found = covering(skipped, urls(literals))
    if found is None:
        return err
    server, why, url = found
    state, hint = _why(server, why, role)
    new = PgError(state, f'the secret of server "{server}" is not available to role "{role}"',
                  detail=f'It would cover "{url}" and is not used: {why}.', hint=hint)
    new.mask = err.mask
    return new


# The duckdb servers the current role has no USAGE on (the catalog is everyone's to read).
NO_USAGE_SQL = """
SELECT s.srvname::text AS srvname, s.srvtype, s.srvoptions
  FROM pg_catalog.pg_foreign_server s
  JOIN pg_catalog.pg_foreign_data_wrapper w ON w.oid = s.srvfdw AND w.fdwname = 'duckdb'
 WHERE NOT pg_catalog.has_server_privilege(s.oid, 'USAGE')
"""


def no_usage(err, rows, literals, role, held=()):
    """err, or an error naming a server the role has no USAGE on whose secret
    would cover a URL of the statement; else, for an object-store URL no
    secret covers (held: the scopes of the secrets the engine holds), err with
    a HINT that says so."""
    from .collect import scopes_of
    servers = {r["srvname"]: (r["srvname"], r["srvtype"], "no USAGE", scopes_of(r), None) for r in rows}
    found = covering(servers, urls(literals))
    if found is None:
        stores = [u for u in urls(literals) if u.split("://", 1)[0].lower() in _OBJECT_STORES
                  and not any(u.lower().startswith(scope.lower()) for scope in held)]
        if stores and err.hint is None:
            err.hint = (f'No secret of role "{role}" covers "{stores[0]}": duckdb.secrets() lists the role\'s '
                        "secrets and their scopes.")
        return err
    server, _why, url = found
    new = PgError(INSUFFICIENT_PRIVILEGE, f'permission denied for foreign server "{server}"',
                  detail=f'Its secret would cover "{url}"; role "{role}" has no USAGE on it.',
                  hint=f'An administrator can GRANT USAGE ON FOREIGN SERVER "{server}" TO "{role}".')
    new.mask = err.mask
    return new


_OBJECT_STORES = frozenset({"s3", "s3a", "s3n", "r2", "gs", "gcs", "az", "azure", "abfss", "hf"})


def no_usage_catalog(err, rows, role):
    """err, or an error naming the server the role has no USAGE on whose
    attach_as is the catalog DuckDB does not know."""
    from .collect import catalog_of
    m = _NO_CATALOG.search(err.message)
    name = (m.group(1) or m.group(2) or "").strip().lower() if m else None
    for r in rows if name else ():
        if catalog_of(r) == name:
            new = PgError(INSUFFICIENT_PRIVILEGE, f'permission denied for foreign server "{r["srvname"]}"',
                          detail=f'Its catalog is "{name}"; role "{role}" has no USAGE on it.',
                          hint=f'An administrator can GRANT USAGE ON FOREIGN SERVER "{r["srvname"]}" TO "{role}".')
            new.mask = err.mask
            return new
    return err


# DuckDB's error for a catalog it does not know (Binder or Catalog Error).
CATALOG = ("3D000",)
_NO_CATALOG = re.compile(r'Catalog "([^"]+)" does not exist|Catalog with name ([^ ]+) does not exist')


def skipped_catalog(err, skipped, role):
    """err, or an error naming the skipped server whose attach_as is the
    catalog DuckDB does not know, and why its secret is not used."""
    m = _NO_CATALOG.search(err.message)
    if m is None:
        return err
    name = (m.group(1) or m.group(2) or "").strip().lower()
    for server, _typ, why, _scopes, catalog in skipped.values():
        if catalog is not None and catalog == name:
            state, hint = _why(server, why, role)
            new = PgError(state, f'the catalog "{name}" of server "{server}" is not available to role "{role}"',
                          detail=f"Its secret is not used: {why}.", hint=hint)
            new.mask = err.mask
            return new
    return err


def _why(server, why, role):
    """(SQLSTATE, HINT) for a skipped secret's reason."""
    if why.startswith("no user mapping"):
        state, hint = UNDEFINED_OBJECT, (f"An administrator can give the role its values: SELECT "
                                         f"duckdb.set_user_mapping('{server}', '{role}', $1::jsonb) (or 'PUBLIC').")
    elif why.startswith("needs a superuser"):
        state, hint = INSUFFICIENT_PRIVILEGE, "Only superusers' engines take secrets of this type."
    elif why.startswith(("could not fetch", "the value from", "the value of")):
        # a source that failed: no permission problem (unable to connect, or the source's own refusal)
        state = "08001" if "cannot reach" in why else "HV000"
        hint = ("Its values come from a source (docs/sources.md): SELECT duckdb.refresh_secrets() fetches them "
                "again; SELECT * FROM duckdb.secrets() shows why in secret_string.")
    elif "not an administrator" in why:
        state, hint = INSUFFICIENT_PRIVILEGE, (f'An administrator can ALTER SERVER "{server}" OWNER TO an '
                                               "administrator, or list its owner in duckdb.trusted_server_owners.")
    else:
        state, hint = INSUFFICIENT_PRIVILEGE, "SELECT * FROM duckdb.secrets() lists the role's secrets and why."
    return state, hint


_DISABLED = "file system operations are disabled by configuration"


def without_excerpt(detail):
    """detail without DuckDB's excerpt of the statement ("LINE 1: ..." and the
    caret under it): DuckDB cuts it where it likes, so a literal in it may
    have lost its opening quote and no longer be recognised to be masked."""
    if not detail:
        return detail
    out, caret = [], False
    for line in detail.split("\n"):
        if line.startswith("LINE ") and ":" in line[:16]:
            caret = True
            continue
        if caret and line.strip() == "^":
            caret = False
            continue
        caret = False
        out.append(line)
    return "\n".join(out).strip() or None


def refused_path(err):
    """DuckDB's 'Cannot access file "x" - file system operations are disabled
    by configuration' as a PostgreSQL permission error: for a URL, that the
    engine does not reach it; for a path, that the role reads no server files."""
    if err.sqlstate != "42501" or _DISABLED not in err.message:
        return err
    start = err.message.find('"')
    end = err.message.rfind('" - ')
    target = err.message[start + 1:end] if 0 <= start < end else None
    if target is None:
        return err
    if target.startswith(("[", "{")):
        # a JSON array or object parameter, used where a file is named: one JSON value, not a list
        new = PgError(INVALID_PARAMETER_VALUE, f'a JSON value is not a file name: "{target}"',
                      detail="A JSON array or object parameter binds as one value of type JSON.",
                      hint="Cast it to a list where a reader takes several files: read_parquet($1::VARCHAR[]).")
    elif _SCHEME in target[:24]:
        new = PgError(INSUFFICIENT_PRIVILEGE, f'permission denied to reach "{target}" from the DuckDB engine',
                      detail="A role that is not a superuser reaches only the URLs its secrets' scopes and "
                             "duckdb.allowed_url_prefixes open.",
                      hint="An administrator can define a secret whose scope covers the URL, or list its prefix "
                           "in duckdb.allowed_url_prefixes in postgresql.conf.")
    else:
        new = PgError(INSUFFICIENT_PRIVILEGE, f'permission denied to read "{target}" in the DuckDB engine',
                      detail="A role that is not a superuser reads and writes the server's files only as a member "
                             "of both pg_read_server_files and pg_write_server_files.")
    new.mask = err.mask
    return new
