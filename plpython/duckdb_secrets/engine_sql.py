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

