"""The project's layout: the version is written once (the control file) and
everything that carries it agrees; the regression and install-script lists
are found, not typed."""

import json
import os
import re
import subprocess

import pytest

from duckdb_secrets import _tree

pytestmark = pytest.mark.inprocess

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


def test_make_check_is_the_fast_loop_and_make_test_everything():
    """make check runs scripts/check.sh (pytest -m "not slow"), make test
    scripts/test.sh, both after set-up and install; neither trips over PGXS's
    own "check" target, and every marker of a slow suite implies slow."""
    def dry(goal):
        out = subprocess.run(["make", "-n", "-C", ROOT, "--no-print-directory", goal],
                             capture_output=True, text=True, check=True)
        assert "warning" not in out.stderr, out.stderr
        return out.stdout.split("\n")
    check, test = dry("check"), dry("test")
    assert check[0] == test[0] == "scripts/setup.sh"
    assert "scripts/check.sh" in check and "scripts/test.sh" not in check
    assert "scripts/test.sh" in test and "scripts/check.sh" not in test
    with open(os.path.join(ROOT, "scripts", "check.sh")) as f:
        assert 'test.sh" --fast' in f.read()
    with open(os.path.join(ROOT, "scripts", "test.sh")) as f:
        assert 'marks=(-m "not slow")' in f.read()
    import tomllib
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        markers = tomllib.load(f)["tool"]["pytest"]["ini_options"]["markers"]
    slow = [m.split(":")[0] for m in markers if m.endswith("[slow]")]
    assert {"concurrency", "standby", "dump_restore", "faults", "pgaudit", "scram", "stop"} <= set(slow)
