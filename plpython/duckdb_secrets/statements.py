"""What a role may run in the engine, checked on DuckDB's own parse.

DuckDB splits the text into statements (``extract_statements``) and tokenizes
each one (``tokenize``, which skips comments and gives *byte* offsets into the
UTF-8 text). The check works on those, never on a regular expression over the
text:

- statement kinds: a non-superuser runs only the kinds in ALLOWED_KINDS; the
  statement inside EXPLAIN [ANALYZE] and PREPARE ... AS is checked as a
  statement of its own (EXECUTE runs only what PREPARE let through);
- function names: every identifier of the statement is compared with the
  functions nobody may call (CRASHERS: the Python client's internal scans take
  raw pointers and crash the backend) and, for non-superusers, with those that
  change the engine's state or show what a role may not see;
- dynamic SQL: ``query(...)`` must be given a string literal, which is checked
  as a statement in turn; ``json_execute_serialized_sql`` is refused;
- secrets: CREATE/DROP SECRET are for superusers only (secrets come from the
  catalog); ATTACH, for non-superusers, only of in-memory databases;
- writes: for a role without file access, COPY ... TO names a URL under one of
  its allowed prefixes, as one string literal (its engine's spill directory is
  the one local place DuckDB would let it write).

What a statement can reach on the network is not decided here (a URL can be
computed): the egress proxy does that.
"""

import re

from . import allowlist
from .errors import INSUFFICIENT_PRIVILEGE, SYNTAX_ERROR, PgError, from_duckdb
from .masking import path_like, value_carries

# Statement kinds a non-superuser may run. Everything else (SET/RESET/USE,
# PRAGMA, CALL, LOAD/INSTALL, EXPORT/IMPORT, VACUUM, COPY FROM DATABASE, ...)
# changes the engine's configuration or reaches the server's file system.
ALLOWED_KINDS = frozenset({
    "SELECT", "INSERT", "UPDATE", "DELETE", "CREATE", "DROP", "ALTER", "EXPLAIN",
    "COPY", "ATTACH", "DETACH", "TRANSACTION", "PREPARE", "EXECUTE", "ANALYZE", "MERGE_INTO",
})

# What a role may call is the table in allowlist.py (every function, view,
# setting and extension of DuckDB 1.5.5 and the shipped extensions, classified);
# the sets below are read from it.


def _named(table, cls=None, tag=None):
    """The names of a table whose rule has this class and condition (None: any)."""
    out = set()
    for name, rule in table.items():
        base, tags = allowlist.parts(rule)
        if (cls is None or base == cls) and (tag is None or tag in tags):
            out.add(name)
    return frozenset(out)


# Nobody: the Python client's internal scans (they take raw pointers: a call
# from SQL crashes the process) and dynamic SQL that cannot be checked.
REFUSED_NAMES = _named(allowlist.FUNCTIONS, allowlist.REFUSED)
# Superusers only, wherever the name appears (table functions and views used
# without parentheses), and superusers only where called.
SUPERUSER_NAMES = (_named(allowlist.FUNCTIONS, allowlist.SUPERUSER, "any-mention")
                   | _named(allowlist.VIEWS, allowlist.SUPERUSER, "any-mention"))
SUPERUSER_CALLS = _named(allowlist.FUNCTIONS, allowlist.SUPERUSER) - SUPERUSER_NAMES
# Logging and profiling that write files: DuckDB applies the setting even when
# the write is refused, and then aborts the process when the engine closes.
FILE_OUTPUT_FUNCTIONS = _named(allowlist.FUNCTIONS, tag="memory-output")
FILE_OUTPUT_PARAMETERS = frozenset({"storage_path", "storage", "storage_config", "save_location",
                                    "profiling_output", "output"})
# Functions that run (or bind and optimize: json_serialize_plan folds
# current_setting() into its output) SQL given as their argument: only a
# string literal, checked like a statement.
DYNAMIC_SQL = _named(allowlist.FUNCTIONS, tag="literal-sql")
# current_setting() and SHOW: for non-superusers only of a setting named by a
# literal that allowlist.SETTINGS lets every role read.
SETTING_FUNCTIONS = _named(allowlist.FUNCTIONS, tag="literal-setting")
# Names that are an aggregate in a select list but a table macro over
# query_table() in FROM: refused to non-superusers in FROM.
TABLE_MACROS = _named(allowlist.FUNCTIONS, tag="not-in-from")
# Functions that read a table or view named by their argument (DuckDB's views
# duckdb_logs and pg_settings wrap refused functions): for non-superusers only
# string literals, each checked as SELECT * FROM <name>.
TABLE_BY_NAME = _named(allowlist.FUNCTIONS, tag="literal-table")
_CLAUSES = frozenset({"select", "from", "join", "where", "group", "having", "order", "qualify", "window", "limit",
                      "on", "using", "returning", "values", "set", "pivot", "unpivot"})

# Whether a name is one of DuckDB's own functions or views in an engine (not a
# role's macro), asked of DuckDB once per name and engine: a name among them
# that the table does not classify is refused.
_OWN = {}
OWN_NAME_SQL = ("SELECT count(*) FROM (SELECT 1 FROM duckdb_functions() WHERE internal AND function_name = $1 "
                "UNION ALL SELECT 1 FROM duckdb_views() WHERE internal AND view_name = $1)")

IDENTIFIER, NUMBER, STRING, OPERATOR, KEYWORD, COMMENT = range(6)

_IDENT = re.compile(rb'"((?:[^"]|"")*)"|[^\s"\'(),;.\[\]{}:=<>!+\-*/%|&^~@#?$]+')
_STRING = re.compile(rb"'((?:[^']|'')*)'|(\$[A-Za-z_0-9]*\$)")
_IN_MEMORY = ("", ":memory:")
MAX_DEPTH = 8


class Token:
    __slots__ = ("kind", "text", "start", "end")

    def __init__(self, kind, text, start, end):
        self.kind = kind
        self.text = text        # identifiers and keywords lowercased and unquoted; strings: content or None
        self.start = start      # byte offsets in the UTF-8 statement
        self.end = end


def tokens(duckdb, text):
    """DuckDB's tokens of text, with their text."""
    raw = text.encode("utf-8")
    found = duckdb.tokenize(text)
    out = []
    for i, (start, kind) in enumerate(found):
        limit = found[i + 1][0] if i + 1 < len(found) else len(raw)
        kind = int(kind)
        value, end = None, limit
        if kind in (IDENTIFIER, KEYWORD):
            m = _IDENT.match(raw, start)
            if m:
                value = (m.group(1).replace(b'""', b'"') if m.group(1) is not None else m.group(0).lower())
                value = value.decode("utf-8", "replace")
                end = m.end()
        elif kind == STRING:
            value, end = _string(raw, start, limit)
        elif kind == OPERATOR:
            value = raw[start:start + 1].decode("ascii", "replace")
            end = start + 1
        out.append(Token(kind, value, start, end))
    return out


# Where a literal names a file or URL to read or write: f('...'), f(x, '...'),
# FROM '...', JOIN '...', COPY ... TO '...'.
_PATH_BEFORE = frozenset({"(", ",", "from", "join", "to"})


def typed_paths(duckdb, text):
    """(text's string literals, those of them that are paths or URLs the caller
    typed where a file is named, whether the text may carry a credential:
    carries_credentials); None if DuckDB cannot tokenize the text or a literal
    cannot be read. A literal after an option name (SECRET '...',
    password := '...') is never a path."""
    try:
        toks = tokens(duckdb, text)
    except duckdb.Error:
        return None
    raw = text.encode("utf-8")
    values, paths = set(), set()
    for i, t in enumerate(toks):
        if t.kind == STRING and t.text is None:
            return None         # a literal not read (E'...', 'a' 'b'): its value is not known
        if t.kind == IDENTIFIER and t.text and _quoted(raw, t):
            # FROM "s3://...": a file DuckDB reads by its name; any other quoted
            # name (a type, an alias) is masked like a literal if need be
            (paths if path_like(t.text) else values).add(t.text)
        if t.kind != STRING or not t.text:
            continue
        values.add(t.text)
        before = toks[i - 1].text if i > 0 else None
        if before in _PATH_BEFORE and path_like(t.text):
            paths.add(t.text)
    return values, paths, _carries(raw, toks)


def carries_credentials(duckdb, text):
    """Whether the text of a statement may hold a credential (and so is kept out
    of the log when it fails), judged on DuckDB's tokens: it cannot be
    tokenized, it has a comment (DuckDB's tokenizer skips comments, so what one
    holds is unknown), an identifier or keyword names a credential
    (PASSWORD, SECRET, key_id, ...), or a string literal or quoted identifier
    may be or hold one (masking.value_carries: a word that names one, a URL's
    user information or query string); or a literal cannot be read."""
    found = typed_paths(duckdb, text)
    return True if found is None else found[2]


def _carries(raw, toks):
    # Outside string literals and quoted identifiers, '--' and '/*' can only
    # open a comment: blank those out and look for either.
    rest, at = [], 0
    for t in toks:
        if t.kind == STRING or (t.kind == IDENTIFIER and _quoted(raw, t)):
            rest.append(raw[at:t.start])
            at = t.end
    rest.append(raw[at:])
    outside = b" ".join(rest)
    if b"--" in outside or b"/*" in outside:
        return True
    for t in toks:
        if t.kind in (IDENTIFIER, KEYWORD, STRING) and t.text is not None and value_carries(t.text):
            return True
    return False


def _quoted(raw, token):
    """Whether an identifier token is a quoted one."""
    return raw[token.start:token.start + 1] == b'"'


def _string(raw, start, limit):
    """(content, end) of a plain '...' or $tag$...$tag$ literal; (None, limit) otherwise."""
    m = _STRING.match(raw, start)
    if not m:
        return None, limit
    if m.group(2) is not None:
        tag = m.group(2)
        close = raw.find(tag, m.end())
        if close < 0:
            return None, limit
        if raw[close + len(tag):limit].strip():
            return None, limit
        return raw[m.end():close].decode("utf-8", "replace"), close + len(tag)
    if raw[m.end():limit].strip():
        # More than one literal in one token: DuckDB joins 'a'<newline>'b'.
        # Not what was matched, so no content at all (a query() refuses it).
        return None, limit
    return m.group(1).replace(b"''", b"'").decode("utf-8", "replace"), m.end()


def _refuse(message, detail=None, hint=None):
    return PgError(INSUFFICIENT_PRIVILEGE, message, detail=detail, hint=hint)


def check(duckdb, con, sql, policy, extensions=()):
    """Refuse what the role may not run under its policy (policy.RolePolicy) in
    an engine with these extensions; returns DuckDB's statements."""
    if sql is None or not sql.strip():
        raise PgError(SYNTAX_ERROR, "no statement to run")
    superuser = policy.superuser
    # for a role without file access, the URL prefixes COPY ... TO may name (None: no such limit)
    copy_prefixes = policy.copy_prefixes(extensions)
    statements = _parse(duckdb, con, sql, superuser)
    for st in statements:
        _check_statement(duckdb, con, st, superuser, 0, copy_prefixes, sql)
    return statements


def _parse(duckdb, con, sql, superuser=True):
    """DuckDB's statements of sql. For a role that is not a superuser, IMPORT
    DATABASE is refused first: DuckDB's parser itself reads the directory's
    schema.sql and load.sql to expand it."""
    if not superuser and _imports(duckdb, sql):
        raise _refuse("permission denied to run IMPORT statements in the DuckDB engine",
                      detail="Only superusers may change the engine's settings, load extensions or run "
                             "PRAGMA, CALL, SET, USE, CHECKPOINT, VACUUM, EXPORT or IMPORT statements.")
    try:
        statements = con.extract_statements(sql)
    except duckdb.Error as e:
        raise from_duckdb(e) from None
    if not statements:
        raise PgError(SYNTAX_ERROR, "no statement to run")
    return statements


def _imports(duckdb, sql):
    """Whether DuckDB's tokens of sql hold IMPORT DATABASE (None-safe: text it
    cannot tokenize is left to its parser, which refuses it)."""
    try:
        toks = tokens(duckdb, sql)
    except duckdb.Error:
        return False
    words = [t.text if t.kind in (IDENTIFIER, KEYWORD) else None for t in toks]
    return any(a == "import" and b == "database" for a, b in zip(words, words[1:], strict=False))


def _kind(st):
    return str(st.type).rsplit(".", 1)[-1]


def _first_keyword(duckdb, query):
    """The statement's first keyword as written (USE, CHECKPOINT: DuckDB's kinds
    are SET and CALL), upper-case; None if it has none."""
    try:
        toks = tokens(duckdb, query)
    except duckdb.Error:
        return None
    words = [t.text.upper() for t in toks[:2] if t.kind in (IDENTIFIER, KEYWORD) and t.text]
    if not words:
        return None
    return " ".join(words[:2]) if words[0] == "FORCE" else words[0]


def _check_statement(duckdb, con, st, superuser, depth, copy_prefixes=None, text=None):
    """text: the SQL st came from. A statement DuckDB generated (a PIVOT whose
    columns come from the data becomes a CREATE TYPE and a SELECT with no text
    of their own) is checked on that whole text."""
    if depth > MAX_DEPTH:
        raise _refuse("permission denied to run statements nested this deeply in the DuckDB engine")
    kind = _kind(st)
    query = st.query if st.query.strip() else (text or "")
    if not superuser and kind not in ALLOWED_KINDS:
        written = _first_keyword(duckdb, query)
        if kind == "VACUUM" and written == "ANALYZE":
            kind = "ANALYZE"        # DuckDB parses ANALYZE as a VACUUM that only gathers statistics
        else:
            raise _refuse(f"permission denied to run {written or kind} statements in the DuckDB engine",
                          detail="Only superusers may change the engine's settings, load extensions or run "
                                 "PRAGMA, CALL, SET, USE, CHECKPOINT, VACUUM, EXPORT or IMPORT statements.")
    if not query.strip():
        if superuser:
            return
        raise _refuse("permission denied to run a statement that could not be checked in the DuckDB engine")
    toks = tokens(duckdb, query)
    words = [t.text if t.kind in (IDENTIFIER, KEYWORD) else None for t in toks]
    _check_functions(duckdb, con, toks, superuser, depth, copy_prefixes)
    if not superuser:
        if kind in ("CREATE", "DROP") and _is_secret_ddl(words):
            raise _refuse("permission denied to create or drop secrets in the DuckDB engine",
                          hint="Secrets come from duckdb foreign servers: ask an administrator for a SERVER "
                               "and USER MAPPING.")
        if kind == "ATTACH":
            _check_attach(toks)
    if not superuser:
        _check_scanned(_replacement_scans(toks))
    if kind == "COPY" and copy_prefixes is not None:
        _check_copy_target(toks, copy_prefixes)
    inner = _inner_statement(query, toks, kind)
    if inner is not None:
        for nested in _parse(duckdb, con, inner, superuser):
            _check_statement(duckdb, con, nested, superuser, depth + 1, copy_prefixes, inner)


# A name where a table goes that DuckDB reads as a file (a replacement scan:
# FROM 'x.parquet', FROM "s3://b/x.duckdb", SUMMARIZE 'y.csv') is read with the
# function its name calls for. A role that is not a superuser may name files of
# the plain readers only (read_parquet, read_csv, read_json, ...); FROM 'x.duckdb'
# would be read_duckdb (a database file's views and macros run SQL nobody checked).
PLAIN_READER_SUFFIXES = (".parquet", ".csv", ".tsv", ".txt", ".json", ".jsonl", ".ndjson")
_COMPRESSED = (".gz", ".zst", ".gzip", ".zstd")
# The words after which a name stands where a table does.
_TABLE_POSITIONS = frozenset({"from", "join", "using", "summarize", "describe", "show", "pivot", "unpivot",
                              "pivot_wider", "pivot_longer", "table"})


def _replacement_scans(toks):
    """The names in table positions that DuckDB would read as files: string
    literals, and identifiers that look like a path or file name (a dot, a slash
    or a colon in one quoted identifier)."""
    out = []
    for i, t in enumerate(toks):
        if i == 0 or t.text is None or t.kind not in (STRING, IDENTIFIER):
            continue
        before = toks[i - 1].text
        if not (before in _TABLE_POSITIONS or (before == "," and _clause_at(toks, i) in ("from", "join"))):
            continue
        parts, j = [t.text], i
        while j + 2 < len(toks) and toks[j + 1].text == "." and toks[j + 2].kind == IDENTIFIER \
                and toks[j + 2].text is not None:
            parts.append(toks[j + 2].text)
            j += 2
        if len(parts) > 1:
            # catalog.schema.table -- unless a part looks like a path: DuckDB
            # joins "s3://b/x"."duckdb" with a dot and reads that file (red team)
            if any(c in p for p in parts for c in "/:"):
                out.append(".".join(parts))
            continue
        if t.kind == IDENTIFIER and not any(c in t.text for c in "./:"):
            continue
        out.append(t.text)
    return out


def _plain_reader(name):
    """Whether DuckDB reads a name where a table goes with a plain reader:
    its path ends in a Parquet, CSV or JSON suffix (compressed or not), and
    so does the whole string, or a query string after it has no '.' -- DuckDB
    picks the reader from the whole string, so 'x.parquet?s3_region=.duckdb'
    would be read_duckdb's (red team)."""
    name = name.strip().lower()
    path, _, query = name.partition("?")
    return _plain_suffix(path) and (_plain_suffix(name) or "." not in query)


def _plain_suffix(name):
    for suffix in _COMPRESSED:
        if name.endswith(suffix):
            name = name[:-len(suffix)]
    return name.endswith(PLAIN_READER_SUFFIXES)


def _check_scanned(scanned):
    for name in scanned:
        if not _plain_reader(name):
            raise _refuse("permission denied to read this file by its name in the DuckDB engine",
                          detail="A file named where a table goes is read with the function its name calls for; "
                                 "a role that is not a superuser may name Parquet, CSV and JSON files only (a "
                                 "DuckDB database file would be read_duckdb: its views and macros run SQL nobody "
                                 "checked).",
                          hint="Call the reader itself: read_parquet('...'), read_csv('...'), read_json('...').")


def _is_setting(con, name):
    """Whether DuckDB has a setting of this name (SHOW x of another name describes table x)."""
    if name.lower() in _SETTINGS:
        return True
    cur = con.cursor()
    try:
        return bool(cur.execute("SELECT count(*) FROM duckdb_settings() WHERE lower(name) = lower($1)",
                                [name]).fetchone()[0])
    finally:
        cur.close()


def _own_name(con, name):
    """Whether DuckDB has a function or view of this name of its own (cached per engine)."""
    found = _OWN.get(id(con))
    if found is None or found[0] is not con:
        found = _OWN[id(con)] = (con, {})
    known = found[1].get(name)
    if known is None:
        cur = con.cursor()
        try:
            known = found[1][name] = bool(cur.execute(OWN_NAME_SQL, [name]).fetchone()[0])
        finally:
            cur.close()
    return known


def _unclassified(con, toks, i):
    """Whether token i names one of DuckDB's own functions (where called) or
    views (in FROM or JOIN) that allowlist.py does not classify."""
    name = toks[i].text
    if name in allowlist.FUNCTIONS or name in allowlist.VIEWS:
        return False
    if not (_called(toks, i) or (toks[i].kind == IDENTIFIER and _clause_at(toks, i) in ("from", "join"))):
        return False
    return _own_name(con, name)


def _check_functions(duckdb, con, toks, superuser, depth, copy_prefixes=None):
    for i, t in enumerate(toks):
        if t.kind not in (IDENTIFIER, KEYWORD) or t.text is None:
            continue
        name = t.text.lower()
        if name in REFUSED_NAMES:
            raise _refuse(f'permission denied to call function "{name}" in the DuckDB engine',
                          detail="It is internal to DuckDB's Python client or runs SQL that cannot be checked.")
        if not superuser and (name in SUPERUSER_NAMES or (name in SUPERUSER_CALLS and _called(toks, i))):
            raise _refuse(f'permission denied to call function "{name}" in the DuckDB engine',
                          detail="It changes the engine's state, shows values a role may not read or opens "
                                 "database connections: only superusers may call it.")
        if not superuser and _unclassified(con, toks, i):
            raise _refuse(f'permission denied to call function "{name}" in the DuckDB engine',
                          detail="It is not in the extension's reviewed table of DuckDB's functions "
                                 "(plpython/duckdb_secrets/allowlist.py): only superusers may call it.")
        if name in FILE_OUTPUT_FUNCTIONS and _called(toks, i) and any(
                u.kind in (IDENTIFIER, KEYWORD) and u.text in FILE_OUTPUT_PARAMETERS for u in toks[i + 1:]):
            raise _refuse(f'permission denied to call "{name}" with a file output in the DuckDB engine',
                          detail="Logging and profiling stay in memory: a refused file output leaves the "
                                 "engine unable to close cleanly.")
        if not superuser and name in SETTING_FUNCTIONS and _called(toks, i):
            setting = _literal_argument(toks, i)
            if setting is None or not _readable_setting(setting):
                raise _refuse_setting(name)
        if not superuser and name == "show" and i == 0 and i + 1 < len(toks):
            shown = (toks[i + 1].text or "").lower()
            after = (toks[i + 2].text or "").lower() if i + 2 < len(toks) else ""
            if shown == "tables" or (shown == "all" and after == "tables"):
                pass                # SHOW [ALL] TABLES: the role's own tables
            elif shown == "all" or (not _readable_setting(shown) and _is_setting(con, shown)):
                raise _refuse_setting("SHOW")
        if not superuser and name in TABLE_MACROS and _called(toks, i) and _clause_at(toks, i) in ("from", "join"):
            raise _refuse(f'permission denied to call table macro "{name}" in the DuckDB engine',
                          detail="It reads a table named by a value through query_table(), which a role that is "
                                 "not a superuser may call only with string literals.",
                          hint=f"Use the aggregate in a select list: SELECT {name}(column) FROM table.")
        if not superuser and name in TABLE_BY_NAME and _called(toks, i):
            names = _literal_names(toks, i)
            if names is None:
                raise _refuse(f'permission denied to call "{name}" with names that are not string literals',
                              hint=f"Name the table as a literal: {name}('my_table').")
            for table in names:
                for nested in _table_statements(duckdb, con, table):
                    _check_statement(duckdb, con, nested, superuser, depth + 1, copy_prefixes)
        if name in DYNAMIC_SQL and _called(toks, i):
            text = _literal_argument(toks, i)
            if text is None:
                raise _refuse(f'permission denied to call "{name}" with SQL that is not a string literal',
                              hint=f"Write the statement as one literal: {name}('SELECT ...').")
            for nested in _parse(duckdb, con, text, superuser):
                _check_statement(duckdb, con, nested, superuser, depth + 1, copy_prefixes, text)


def _table_statements(duckdb, con, table):
    """What query_table(name) reads, as SELECT * FROM name: a (qualified) table
    name, else a path (a quoted identifier, which DuckDB reads as a file)."""
    try:
        return _parse(duckdb, con, f"SELECT * FROM {table}", False)
    except PgError:
        return _parse(duckdb, con, 'SELECT * FROM "' + table.replace('"', '""') + '"')


_SETTINGS = {name.lower(): rule for name, rule in allowlist.SETTINGS.items()}


def _readable_setting(name):
    """Whether every role may read the setting (allowlist.SETTINGS, in any case; unknown: no)."""
    return _SETTINGS.get(name.strip().lower()) == allowlist.ALL


def _refuse_setting(name):
    return _refuse(f'permission denied to read that setting with "{name}" in the DuckDB engine',
                   detail="Only superusers may read settings that hold paths of the server (the spill directory, "
                          "allowed directories) or credentials, settings DuckDB added after the extension's "
                          "table was reviewed, or settings named by anything but a string literal.")


def _clause_at(toks, i):
    """The clause keyword (select, from, join, ...) token i sits in, at its own
    parenthesis depth; None if there is none."""
    clauses, depth = {0: None}, 0
    for t in toks[:i]:
        if t.text == "(":
            depth += 1
            clauses[depth] = None
        elif t.text == ")":
            depth -= 1
        elif t.kind == KEYWORD and t.text in _CLAUSES:
            clauses[depth] = t.text
    return clauses.get(depth)


def _literal_names(toks, i):
    """The names of f('a'), f(['a', 'b']) or f([...], true); None when an
    argument is anything but string literals."""
    names, depth = [], 0
    for t in toks[i + 1:]:
        if t.text in ("(", "["):
            depth += 1
        elif t.text in (")", "]"):
            depth -= 1
            if depth == 0:
                return names
        elif t.kind == STRING and t.text is not None:
            names.append(t.text)
        elif not (t.text == "," or (t.kind == KEYWORD and t.text in ("true", "false"))):
            return None
    return None


def _called(toks, i):
    return i + 1 < len(toks) and toks[i + 1].text == "("


def _literal_argument(toks, i):
    """The SQL of f('...') or f('...', ...); None when it is anything else."""
    if i > 0 and toks[i - 1].text == ".":
        return None     # 'SELECT ...'.query(): a method call on a computed value
    if i + 3 > len(toks):
        return None
    arg, after = toks[i + 2], toks[i + 3] if i + 3 < len(toks) else None
    if arg.kind != STRING or arg.text is None or after is None or after.text not in (")", ","):
        return None
    return arg.text


_SECRET_WORDS = {"or", "replace", "temp", "temporary", "persistent"}


def _is_secret_ddl(words):
    rest = [w for w in words[1:] if w is not None]
    for w in rest:
        if w in _SECRET_WORDS:
            continue
        return w == "secret"
    return False


def _check_attach(toks):
    """Non-superusers attach in-memory databases only: a database file (local
    or remote) brings views and macros that run unchecked SQL."""
    for t in toks[1:]:
        if t.kind == STRING:
            if t.text is not None and t.text.strip().lower() in _IN_MEMORY:
                return
            break
        if t.kind not in (IDENTIFIER, KEYWORD) or t.text not in ("database", "if", "not", "exists"):
            break
    raise _refuse("permission denied to attach a database file in the DuckDB engine",
                  detail="A role that is not a superuser may attach only in-memory databases "
                         "(ATTACH ':memory:' AS name).")


def _check_copy_target(toks, prefixes):
    """COPY ... TO of a role without file access: one string literal under an
    allowed URL prefix (never a computed target, a local path or file://)."""
    for i, t in _top_level(toks, 1):
        if t.kind == KEYWORD and t.text in ("to", "from"):
            if t.text == "from":
                return          # a read: DuckDB allows only the allowed prefixes (and its spill directory)
            target = toks[i + 1] if i + 1 < len(toks) else None
            url = target.text if target is not None and target.kind == STRING else None
            if url is not None and any(url.lower().startswith(p.lower()) for p in prefixes if "://" in p):
                return
            break
    raise _refuse("permission denied to COPY to this target in the DuckDB engine",
                  detail="A role without access to the server's files writes only to the URLs its secrets and "
                         "duckdb.allowed_url_prefixes open, given as one string literal.",
                  hint="COPY ... TO 's3://bucket/path/file.parquet'")


def _inner_statement(text, toks, kind):
    """The text of the statement inside EXPLAIN [ANALYZE] (...) and PREPARE name AS."""
    raw = text.encode("utf-8")
    if kind == "EXPLAIN":
        i = 1
        while i < len(toks) and toks[i].text in ("analyze", "analyse"):
            i += 1
        if i < len(toks) and toks[i].text == "(":
            i = _after_parens(toks, i)
        return raw[toks[i].start:].decode("utf-8") if i < len(toks) else None
    if kind == "PREPARE":
        for j, t in _top_level(toks, 2):
            if t.kind == KEYWORD and t.text == "as":
                return raw[toks[j + 1].start:].decode("utf-8") if j + 1 < len(toks) else None
        raise _refuse("permission denied to run a PREPARE statement that could not be checked")
    return None


def _top_level(toks, start):
    """(index, token) of the tokens from start on that are outside parentheses."""
    depth = 0
    for i in range(start, len(toks)):
        t = toks[i]
        if t.text == "(":
            depth += 1
        elif t.text == ")":
            depth -= 1
        elif depth == 0:
            yield i, t


def _after_parens(toks, i):
    depth = 0
    for j in range(i, len(toks)):
        if toks[j].text == "(":
            depth += 1
        elif toks[j].text == ")":
            depth -= 1
            if depth == 0:
                return j + 1
    return len(toks)
