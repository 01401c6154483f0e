"""The DuckDB extension binaries duckdb_secrets ships (one pinned wheel each),
and whether make install has verified them.

DuckDB checks an extension's signature on every LOAD: an RSA signature over a
20-50 MB file, 40-100 ms each time, which was a third of a backend's first
query. make install runs that very check once (`python3 -m
duckdb_secrets.shipped DEPS`: every shipped extension LOADed by DuckDB with
signature checks on) and records each verified file's size, inode and change
times. An engine skips the check (allow_unsigned_extensions) only while every
shipped file is still the one verified, and the record and its directory are
out of the server's OS user's reach; otherwise DuckDB checks as usual. A
non-superuser's engine cannot LOAD anything either way (enable_external_access
is off); a superuser's engine could load any file, as a superuser can already
run any code in the server.
"""

import importlib.util
import json
import os
import sys

from .errors import OBJECT_NOT_IN_PREREQUISITE_STATE, PgError

# DuckDB extension name -> Python package (wheel) that carries its binary.
EXTENSION_PACKAGES = {
    "httpfs": "duckdb_extension_httpfs",
    "aws": "duckdb_extension_aws",
    "azure": "duckdb_extension_azure",
    "postgres_scanner": "duckdb_extension_postgres_scanner",
    "mysql_scanner": "duckdb_extension_mysql_scanner",
    "avro": "duckdb_extension_avro",
    "iceberg": "duckdb_extension_iceberg",
    "ducklake": "duckdb_extension_ducklake",
    "quack": "duckdb_extension_quack",
    "unity_catalog": "duckdb_extension_unity_catalog",
}
# The order they load in: an extension after those it needs (iceberg: avro, httpfs).
LOAD_ORDER = ("httpfs", "avro", *sorted(set(EXTENSION_PACKAGES) - {"httpfs", "avro"}))

RECORD = ".verified-extensions.json"


def _duckdb_version():
    import duckdb
    return duckdb.__version__


def extension_path(name):
    """Absolute path of a shipped extension binary for the running DuckDB."""
    pkg = EXTENSION_PACKAGES[name]
    spec = importlib.util.find_spec(pkg)
    if spec is None or not spec.submodule_search_locations:
        raise PgError(OBJECT_NOT_IN_PREREQUISITE_STATE,
                      f'DuckDB extension "{name}" is not installed',
                      hint=f"Reinstall duckdb_secrets (make install); it ships the {pkg} wheel.")
    version = _duckdb_version()
    path = os.path.join(list(spec.submodule_search_locations)[0], "extensions",
                        f"v{version}", f"{name}.duckdb_extension")
    if not os.path.isfile(path):
        raise PgError(OBJECT_NOT_IN_PREREQUISITE_STATE,
                      f'DuckDB extension "{name}" for DuckDB {version} is missing',
                      detail=f"Expected file: {path}",
                      hint="Reinstall duckdb_secrets (make install).")
    return path


def _identity(path):
    st = os.stat(path)
    return [st.st_size, st.st_ino, st.st_dev, st.st_mtime_ns, st.st_ctime_ns]


def _out_of_reach(path):
    """Neither owned by this process's OS user nor writable by group or others."""
    st = os.stat(path)
    return st.st_uid != os.geteuid() and not st.st_mode & 0o022


def _record_path():
    return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(_duckdb_package_file()))), RECORD)


def _duckdb_package_file():
    spec = importlib.util.find_spec("duckdb")
    return spec.origin if spec is not None and spec.origin else os.devnull


def all_verified():
    """True when every shipped extension file is the one make install verified
    and nobody but its owner could have rewritten the record."""
    record = _record_path()
    try:
        if not (_out_of_reach(record) and _out_of_reach(os.path.dirname(record))):
            return False
        with open(record) as f:
            data = json.load(f)
        files = data.get("files", {})
        if data.get("duckdb") != _duckdb_version():
            return False
        for name in EXTENSION_PACKAGES:
            path = extension_path(name)
            entry = files.get(name)
            if not entry or entry[0] != path or entry[1:] != _identity(path):
                return False
    except (OSError, ValueError, TypeError, AttributeError, PgError):
        return False
    return True


def verify(deps):
    """make install: LOAD every shipped extension with DuckDB's signature check
    on, and record the files that passed (written where the server's OS user
    cannot write). Returns the names that did not pass."""
    import duckdb
    con = duckdb.connect(":memory:", config={"autoinstall_known_extensions": False,
                                             "autoload_known_extensions": False,
                                             "allow_unsigned_extensions": False, "threads": 1})
    files, failed = {}, []
    for name in LOAD_ORDER:
        try:
            path = extension_path(name)
            before = _identity(path)
            con.execute(f"LOAD '{path}'")
        except (duckdb.Error, PgError, OSError):
            failed.append(name)
            continue
        if _identity(path) == before:
            files[name] = [path, *before]
    con.close()
    target = os.path.join(deps, RECORD)
    with open(target + ".new", "w") as f:
        json.dump({"duckdb": duckdb.__version__, "files": files}, f, indent=1)
    os.chmod(target + ".new", 0o644)
    os.replace(target + ".new", target)
    return failed


if __name__ == "__main__":
    missing = verify(sys.argv[1])
    if missing:
        print("duckdb_secrets: these DuckDB extensions did not pass DuckDB's signature check and are loaded "
              "with it every time: " + ", ".join(missing), file=sys.stderr)
