"""The project's layout: the version is written once (the control file) and
everything that carries it agrees; the regression and install-script lists
are found, not typed."""

import json
import os
import re
import subprocess

from duckdb_secrets import _tree

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_every_version_agrees_with_the_control_file():
    current = _tree.version(ROOT)
    with open(os.path.join(ROOT, "META.json")) as f:
        meta = json.load(f)
    assert meta["version"] == current == meta["provides"]["duckdb_secrets"]["version"], \
        "META.json is stale: make META.json"
    make = subprocess.run(["make", "-s", "-C", ROOT, "--no-print-directory", "print-EXTVERSION"],
                          capture_output=True, text=True, check=True).stdout.strip()
    assert make == current
    with open(os.path.join(ROOT, "CHANGELOG.md")) as f:
        assert f"## {current}" in f.read()


def test_regression_scripts_and_install_scripts_are_found_by_wildcard():
    regress = subprocess.run(["make", "-s", "-C", ROOT, "--no-print-directory", "print-REGRESS"],
                             capture_output=True, text=True, check=True).stdout.split()
    scripts = sorted(f[:-4] for f in os.listdir(os.path.join(ROOT, "sql")) if f.endswith(".sql"))
    assert regress == scripts and regress
    for name in regress:
        assert os.path.exists(os.path.join(ROOT, "expected", name + ".out")), name
    data = subprocess.run(["make", "-s", "-C", ROOT, "--no-print-directory", "print-DATA_built"],
                          capture_output=True, text=True, check=True).stdout.split()
    sources = [f for f in os.listdir(os.path.join(ROOT, "sql", "install"))
               if re.match(r"duckdb_secrets--.*\.sql\.in$", f)]
    assert len(data) == len(sources) + 1          # + the current version's install script


def test_one_boot_body():
    """duckdb._boot() is written once (sql/install/boot.sql.in); every script includes it."""
    install = os.path.join(ROOT, "sql", "install")
    for f in os.listdir(install):
        if f.startswith("duckdb_secrets"):
            with open(os.path.join(install, f)) as fh:
                text = fh.read()
            assert "FUNCTION duckdb._boot()" not in text, f
            assert "@BOOT@" in text, f


def test_no_function_in_the_package_is_longer_than_80_lines():
    """A newcomer reads each function whole (issue: the sync as a pipeline)."""
    import ast
    long = []
    for base, _, files in os.walk(os.path.join(ROOT, "plpython")):
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(base, f)
                with open(path) as fh:
                    tree = ast.parse(fh.read())
                long += [(os.path.relpath(path, ROOT), node.name, node.end_lineno - node.lineno + 1)
                         for node in ast.walk(tree)
                         if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                         and node.end_lineno - node.lineno + 1 > 80]
    assert long == []
