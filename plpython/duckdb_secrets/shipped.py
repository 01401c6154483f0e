"""The DuckDB extension binaries duckdb_secrets ships (one pinned wheel each),
the extension directory engines load them from, and whether make install has
verified them.

make install lays the wheels' binaries out in DuckDB's own layout
(<root>/extensions/<class>/v1.5.5/linux_amd64/<name>.duckdb_extension, hard
links to the files in the wheels), one directory per policy class: `superuser`
holds every shipped extension and is where superusers' engines autoload from;
`role` holds only those a non-superuser's secrets can need, and is all such an
engine can load from. The directories belong to root and are read-only for the
server: no engine installs anything, and DuckDB never downloads.

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

import functools
import json
import os
import sys

from .errors import OBJECT_NOT_IN_PREREQUISITE_STATE, PgError

# DuckDB extension name -> Python package (wheel) that carries its binary:
# every core extension of DuckDB 1.5.5 that works offline. Not shipped:
# motherduck and ui (they need the network at run time), autocomplete (the
# CLI's), odbc_scanner (needs unixODBC), arrow and substrait (no 1.5.5 wheel).
EXTENSIONS = ("avro", "aws", "azure", "delta", "ducklake", "encodings", "excel", "fts", "httpfs", "iceberg",
              "inet", "lance", "mysql_scanner", "postgres_scanner", "quack", "spatial", "sqlite_scanner", "tpcds",
              "tpch", "unity_catalog", "vortex", "vss")
EXTENSION_PACKAGES = {name: f"duckdb_extension_{name}" for name in EXTENSIONS}
# The order make install loads them in: an extension after those it needs (iceberg: avro, httpfs).
LOAD_ORDER = ("httpfs", "avro", *sorted(set(EXTENSION_PACKAGES) - {"httpfs", "avro"}))

# Policy classes: the directory an engine loads from decides what it can load.
SUPERUSER = "superuser"
ROLE = "role"

RECORD = ".verified-extensions.json"


@functools.cache
def role_extensions():
    """What a non-superuser's engine may hold: httpfs, and the extensions of
    every secret type its engine may be given (catalog.py decides which)."""
    from . import catalog
    out = {"httpfs"}
    for t in catalog.TYPES.values():
        if not t.superuser_only:
            for provider in t.providers:
                out |= t.extensions_for(provider)
    return frozenset(x for x in out if x in EXTENSION_PACKAGES)


def class_extensions(klass):
    return frozenset(EXTENSIONS) if klass == SUPERUSER else role_extensions()


def _duckdb_version():
    """The pinned DuckDB's version, from its installed metadata (never by
    importing duckdb: a backend does not load it)."""
    import importlib.util
    spec = importlib.util.find_spec("duckdb")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("duckdb", name="duckdb")
    site = os.path.dirname(list(spec.submodule_search_locations)[0])
    for entry in sorted(os.listdir(site)):
        if entry.startswith("duckdb-") and entry.endswith(".dist-info"):
            return entry[len("duckdb-"):-len(".dist-info")]
    import duckdb
    return duckdb.__version__


# The install directory: python/ (this package), deps/ (the pinned
# dependencies, the verification record) and extensions/ (the class directories).
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def extension_directory(klass):
    """The extension directory (DuckDB's extension_directory) of a policy class."""
    return os.path.join(ROOT, "extensions", klass)


_platform = []


def _platform_dir(klass):
    version_dir = os.path.join(extension_directory(klass), f"v{_duckdb_version()}")
    if not _platform:
        try:
            found = [d for d in os.listdir(version_dir) if os.path.isdir(os.path.join(version_dir, d))]
        except OSError:
            found = []
        if len(found) != 1:
            return None
        _platform.append(found[0])
    return os.path.join(version_dir, _platform[0])


def extension_path(name, klass=SUPERUSER):
    """Absolute path of a shipped extension binary for the running DuckDB, in
    a class's extension directory."""
    if name not in class_extensions(klass):
        raise PgError(OBJECT_NOT_IN_PREREQUISITE_STATE, f'DuckDB extension "{name}" is not available to this engine')
    where = _platform_dir(klass)
    path = os.path.join(where, f"{name}.duckdb_extension") if where else None
    if path is None or not os.path.isfile(path):
        raise PgError(OBJECT_NOT_IN_PREREQUISITE_STATE,
                      f'DuckDB extension "{name}" for DuckDB {_duckdb_version()} is missing',
                      hint="Reinstall duckdb_secrets (make install).")
    return path


def _wheel_file(deps, name):
    return os.path.join(deps, EXTENSION_PACKAGES[name], "extensions", f"v{_duckdb_version()}",
                        f"{name}.duckdb_extension")


def layout(deps, platform):
    """make install: the extension directories, in DuckDB's layout, as hard
    links to the wheels' files (copies where a link cannot be made). Returns
    the names whose wheel carries no binary."""
    import shutil
    root = os.path.join(os.path.dirname(os.path.abspath(deps)), "extensions")
    fresh = root + ".new"
    shutil.rmtree(fresh, ignore_errors=True)
    missing = []
    for klass in (SUPERUSER, ROLE):
        target = os.path.join(fresh, klass, f"v{_duckdb_version()}", platform)
        os.makedirs(target, mode=0o755)
        for name in sorted(class_extensions(klass)):
            source = _wheel_file(deps, name)
            if not os.path.isfile(source):
                missing.append(name)
                continue
            try:
                os.link(source, os.path.join(target, f"{name}.duckdb_extension"))
            except OSError:
                shutil.copy2(source, os.path.join(target, f"{name}.duckdb_extension"))
    shutil.rmtree(root, ignore_errors=True)
    os.replace(fresh, root)
    return sorted(set(missing))


def _identity(path):
    st = os.stat(path)
    return [st.st_size, st.st_ino, st.st_dev, st.st_mtime_ns, st.st_ctime_ns]


def _out_of_reach(path):
    """Neither owned by this process's OS user nor writable by group or others."""
    st = os.stat(path)
    return st.st_uid != os.geteuid() and not st.st_mode & 0o022


def _record_path():
    return os.path.join(ROOT, "deps", RECORD)


def _key(klass, name):
    return f"{klass}/{name}"


def all_verified(klass=SUPERUSER):
    """True when every extension file of the class is the one make install
    verified and nobody but its owner could have rewritten the record."""
    record = _record_path()
    try:
        if not (_out_of_reach(record) and _out_of_reach(os.path.dirname(record))):
            return False
        with open(record) as f:
            data = json.load(f)
        files = data.get("files", {})
        if data.get("duckdb") != _duckdb_version():
            return False
        for name in class_extensions(klass):
            path = extension_path(name, klass)
            entry = files.get(_key(klass, name))
            if not entry or entry[0] != path or entry[1:] != _identity(path):
                return False
    except (OSError, ValueError, TypeError, AttributeError, PgError):
        return False
    return True


def verify(deps):
    """make install: LOAD every shipped extension with DuckDB's signature check
    on, and record the files that passed, under each class directory's name
    (written where the server's OS user cannot write). Returns the names that
    did not pass."""
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
        if _identity(path) != before:
            continue
        for klass in (SUPERUSER, ROLE):
            if name in class_extensions(klass):
                other = extension_path(name, klass)
                if _identity(other) == before:          # the same file (a hard link), or an equal copy
                    files[_key(klass, name)] = [other, *before]
                elif _same_bytes(path, other):
                    files[_key(klass, name)] = [other, *_identity(other)]
    con.close()
    target = os.path.join(deps, RECORD)
    with open(target + ".new", "w") as f:
        json.dump({"duckdb": duckdb.__version__, "files": files}, f, indent=1)
    os.chmod(target + ".new", 0o644)
    os.replace(target + ".new", target)
    return failed


def _same_bytes(a, b):
    import filecmp
    return filecmp.cmp(a, b, shallow=False)


def main(deps):
    import duckdb
    platform = duckdb.execute("PRAGMA platform").fetchone()[0]
    missing = layout(deps, platform)
    if missing:
        print("duckdb_secrets: these DuckDB extension wheels carry no binary for DuckDB "
              f"{duckdb.__version__}: " + ", ".join(missing), file=sys.stderr)
    failed = verify(deps)
    if failed:
        print("duckdb_secrets: these DuckDB extensions did not pass DuckDB's signature check and are loaded "
              "with it every time: " + ", ".join(failed), file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1])
