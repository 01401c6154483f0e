"""The SQL that creates a secret in an engine (both sides: the backend builds it
for an engine, the scratch worker for a dry run). Names are quoted; values are
bound parameters, never SQL text."""

from . import catalog
from .errors import INTERNAL_ERROR, PgError


def secret_sql(name, spec):
    """CREATE SECRET text and its bound parameters. Names are quoted, values bound."""
    parts = [f"TYPE {spec['type']}", f"PROVIDER {spec['provider']}"]
    params = []
    if spec.get("scope"):
        parts.append("SCOPE ?")
        params.append(spec["scope"] if len(spec["scope"]) > 1 else spec["scope"][0])
    for key, value in spec["params"].items():
        # Keys come from the catalogue (checked here, not by an assert that
        # python -O would drop); values (str, bool, int, list, dict) are bound.
        if key not in catalog.ALL_OPTIONS:
            raise PgError(INTERNAL_ERROR, f'option "{key[:63]}" is not in the catalogue')
        parts.append(f"{key} ?")
        params.append(value)
    return f"CREATE OR REPLACE TEMPORARY SECRET {quote_ident(name)} ({', '.join(parts)})", params


def quote_ident(name):
    return '"' + name.replace('"', '""') + '"'



def literal(text):
    """A DuckDB string literal (standard strings: no backslash escapes)."""
    return "'" + str(text).replace("'", "''") + "'"


def attach_sql(secret_name, spec):
    """ATTACH text and its bound parameters for a spec with an "attach" part
    (validation.attach_spec), the way its type's catalogue entry says
    (catalog.Attach). The catalog's name is quoted; the path, which DuckDB
    takes only as a literal, is one built here from validated pieces; the
    SECRET and every option value are bound parameters."""
    how = catalog.TYPES[spec["type"]].attach
    attach = spec["attach"]
    options = dict(attach["options"])
    if how.path_option is not None:
        path = options.pop(how.path_option)
    elif how.path is catalog.Attach.SCOPE_PATH:
        path = spec["scope"][0]
    else:
        path = how.path.format(secret=secret_name)
    parts, params = [], []
    if how.db_type is not None:
        parts.append(f"TYPE {how.db_type}")
    if how.secret:
        parts.append("SECRET ?")
        params.append(secret_name)
    for key, value in sorted(options.items()):
        if key not in how.options:
            raise PgError(INTERNAL_ERROR, f'attach option "{key[:63]}" is not in the catalogue')
        parts.append(f"{key} ?")
        params.append(value)
    sql = f"ATTACH IF NOT EXISTS {literal(path)} AS {quote_ident(attach['name'])}"
    return sql + (f" ({', '.join(parts)})" if parts else ""), params
