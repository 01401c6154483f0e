"""pg_duckdb's extension functions (install_extension, load_extension,
autoload_extension and the duckdb.extensions table), mapped onto the DuckDB
extensions duckdb_secrets ships as wheels. Nothing is ever downloaded:
"installing" records the extension in duckdb.extensions, whose autoload rows a
superuser's engine loads when it starts; a non-superuser's engine loads only
what its secrets need, as before."""

from .errors import (
    FEATURE_NOT_SUPPORTED,
    INSUFFICIENT_PRIVILEGE,
    INVALID_PARAMETER_VALUE,
    NULL_VALUE_NOT_ALLOWED,
    PgError,
)
from .shipped import EXTENSION_PACKAGES, extension_path

# Compiled into DuckDB itself: nothing to install or load.
BUILT_IN = ("core_functions", "icu", "json", "parquet")
# The names DuckDB also accepts for shipped extensions.
ALIASES = {"postgres": "postgres_scanner", "mysql": "mysql_scanner", "uc_catalog": "unity_catalog"}
# Extensions that need another loaded first.
NEEDS = {"iceberg": ("avro",)}


def shipped():
    return sorted(set(EXTENSION_PACKAGES) | set(BUILT_IN))


def canonical(name):
    """The shipped extension a name means, or a 22023 error listing what is shipped."""
    if name is None or not str(name).strip():
        raise PgError(NULL_VALUE_NOT_ALLOWED, "the extension name must not be null or empty")
    key = str(name).strip().lower()
    key = ALIASES.get(key, key)
    if key not in EXTENSION_PACKAGES and key not in BUILT_IN:
        raise PgError(INVALID_PARAMETER_VALUE,
                      f'DuckDB extension "{str(name)[:64]}" is not shipped with duckdb_secrets',
                      detail="Shipped: " + ", ".join(shipped()) + ".",
                      hint="duckdb_secrets never downloads an extension; these come with it as Python wheels.")
    return key


def check_source(source):
    if source is not None and str(source).strip().lower() not in ("core", ""):
        raise PgError(FEATURE_NOT_SUPPORTED, "duckdb_secrets installs extensions only from the wheels it ships",
                      detail=f'Repository "{str(source)[:64]}" was given; nothing is ever downloaded.',
                      hint="Leave the source out, or give 'core'.")


def autoloaded(plpy, GD):
    """Shipped extensions duckdb.extensions marks for loading at engine start."""
    rows = plpy.execute("SELECT name FROM duckdb.extensions WHERE autoload")
    names = {r["name"] for r in rows if r["name"] in EXTENSION_PACKAGES}
    return names | {n for name in names for n in NEEDS.get(name, ())}


def load(plpy, engine, name):
    """LOAD a shipped extension into a superuser's engine (a no-op if loaded)."""
    if name in BUILT_IN or name in engine.extensions:
        return
    if not engine.policy.superuser:
        raise PgError(INSUFFICIENT_PRIVILEGE, f'permission denied to load DuckDB extension "{name}"',
                      detail="A non-superuser's engine has the extensions its secrets need, and no other.",
                      hint="A superuser can load it into their own engine, or give the role a secret of a type "
                           "that needs it.")
    for ext in (*NEEDS.get(name, ()), name):
        if ext not in engine.extensions:
            extension_path(ext)         # a clear error if the wheel is missing
            engine.load(plpy, ext)
