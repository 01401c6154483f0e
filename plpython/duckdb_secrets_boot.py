"""Loaded by duckdb._boot(): puts the pinned dependencies on sys.path and
checks that the Python package matches the installed SQL objects."""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DEPS = os.path.join(os.path.dirname(HERE), "deps")


def boot(GD, sql_version):
    """Return None, or [sqlstate, message, detail, hint]."""
    api = GD.get("duckdb_secrets.api")
    if api is not None:
        if GD.get("duckdb_secrets.version") != sql_version:
            return ["55000", "duckdb_secrets was updated while this session was using it",
                    f"This session loaded version {GD.get('duckdb_secrets.version')} of the Python code; "
                    f"the database now has version {sql_version}.",
                    "Reconnect to use the new version."]
        return None
    # Pinned dependencies first, so they win over anything on the system path.
    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
    for p in (DEPS, HERE):
        if p not in sys.path:
            sys.path.insert(0, p)
    try:
        import duckdb_secrets
        import duckdb_secrets.api as api
    except Exception as e:  # noqa: BLE001 - a broken install may fail in any way; reported, not raised
        return ["58000", "could not load the duckdb_secrets Python package",
                f"{type(e).__name__}: {e}", "Reinstall the extension (make install)."]
    served = api.SQL_VERSIONS
    if sql_version not in served:
        return ["55000", "duckdb_secrets Python package and SQL objects do not match",
                f"Python package {duckdb_secrets.__version__} serves SQL objects of "
                f"{'versions' if len(served) > 1 else 'version'} {', '.join(served)}; "
                f"this database has {sql_version}.",
                "Run ALTER EXTENSION duckdb_secrets UPDATE, or reinstall the extension."]
    GD["duckdb_secrets.version"] = sql_version
    GD["duckdb_secrets.api"] = api
    # A session's first call may be stopped while the package and the engine
    # start, before it can be judged: its statement's errors are logged
    # without its text until it is (duckdb_secrets.statementlog).
    from duckdb_secrets import statementlog
    statementlog.provisional()
    statementlog.quiet_unraisable()
    return None
