"""The extension's versions, read from the source tree (duckdb_secrets.control
and the script names in sql/install/); used by `make install` to write
_version.py, and by a package imported from the source tree (unit tests)."""

import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _key(v):
    return tuple(int(x) for x in v.split("."))


def versions(root=ROOT):
    """(current version, every version the SQL objects may be at, oldest first)."""
    with open(os.path.join(root, "duckdb_secrets.control")) as f:
        current = re.search(r"^default_version = '([^']+)'", f.read(), re.M).group(1)
    found = {current}
    for name in os.listdir(os.path.join(root, "sql", "install")):
        m = re.match(r"^duckdb_secrets--([0-9.]+)(?:--([0-9.]+))?\.sql\.in$", name)
        if m:
            found.update(v for v in m.groups() if v)
    return current, tuple(sorted(found, key=_key))


if __name__ == "__main__":
    current, all_versions = versions(sys.argv[1] if len(sys.argv) > 1 else ROOT)
    print(f"__version__ = {current!r}\nSQL_VERSIONS = {all_versions!r}")
