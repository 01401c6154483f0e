"""The extension's version, read from the source tree (duckdb_secrets.control);
used by `make install` to write _version.py, and by a package imported from
the source tree (unit tests)."""

import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def version(root=ROOT):
    """The control file's default_version: the version of the SQL objects
    `CREATE EXTENSION` makes and the package's own."""
    with open(os.path.join(root, "duckdb_secrets.control")) as f:
        return re.search(r"^default_version = '([^']+)'", f.read(), re.M).group(1)


if __name__ == "__main__":
    print(f"__version__ = {version(sys.argv[1] if len(sys.argv) > 1 else ROOT)!r}")
