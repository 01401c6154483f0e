"""PostgreSQL-style errors, each carrying what to mask.

PL/Python turns any exception into ``ERROR: plpy.Error: ...`` with a Python
traceback as CONTEXT.  So the Python side never raises to PostgreSQL: entry
points return an error array ``[sqlstate, message, detail, hint]`` and a thin
PL/pgSQL wrapper raises it (duckdb._raise), which gives a native error. Every
exception becomes a PgError first (pg_error); caught() is the one place that
catches everything, at the boundaries to PostgreSQL.
"""

import os
import re

from .masking import scrub_conninfo, then

# SQLSTATEs used by the extension.
FDW_ERROR = "HV000"
FDW_INVALID_OPTION_NAME = "HV00D"
FDW_INVALID_ATTRIBUTE_VALUE = "HV024"
INVALID_PARAMETER_VALUE = "22023"
NULL_VALUE_NOT_ALLOWED = "22004"
FEATURE_NOT_SUPPORTED = "0A000"
INSUFFICIENT_PRIVILEGE = "42501"
SYNTAX_ERROR = "42601"
DUPLICATE_OBJECT = "42710"
UNDEFINED_OBJECT = "42704"
INTERNAL_ERROR = "XX000"
OBJECT_NOT_IN_PREREQUISITE_STATE = "55000"
WRONG_OBJECT_TYPE = "42809"
CONFIG_FILE_ERROR = "F0000"
DATATYPE_MISMATCH = "42804"
INVALID_SCHEMA_NAME = "3F000"
CHARACTER_NOT_IN_REPERTOIRE = "22021"
UNABLE_TO_CONNECT = "08001"
INVALID_AUTHORIZATION = "28000"        # invalid_authorization_specification
QUERY_CANCELED = "57014"
LOCK_NOT_AVAILABLE = "55P03"
DISK_FULL = "53100"
SYSTEM_ERROR = "58000"
OUT_OF_MEMORY = "53200"
NUMERIC_VALUE_OUT_OF_RANGE = "22003"
STATEMENT_TOO_COMPLEX = "54001"
INVALID_CATALOG_NAME = "3D000"


class PgError(Exception):
    """An error meant for the user, raised by the PL/pgSQL wrapper. mask: what
    to hide in it besides what the session hides (masking; None: nothing)."""

    def __init__(self, sqlstate, message, detail=None, hint=None):
        super().__init__(message)
        self.sqlstate = sqlstate
        self.message = message
        self.detail = detail
        self.hint = hint
        self.mask = None

    def masked(self, mask):
        """This error, with mask applied after the ones it has."""
        self.mask = then(self.mask, mask)
        return self

    def as_array(self, scrub=None):
        """[sqlstate, message, detail, hint]: scrub (the session's mask) and then
        the error's own masks applied."""
        f = then(scrub, self.mask) or (lambda s: s)
        # bounded after masking: a cut must never leave part of a secret unmasked
        return [self.sqlstate, _bounded(f(self.message)),
                _bounded(f(self.detail)) if self.detail else None,
                _bounded(f(self.hint)) if self.hint else None]


class MissingMapping(PgError):
    """A required sensitive option is absent: it belongs in a user mapping the
    role does not have. Not an error for the server itself."""


# DuckDB exception class name -> SQLSTATE, so callers can handle DuckDB errors
# the way they handle PostgreSQL's own.
DUCKDB_SQLSTATE = {
    "ParserException": "42601",            # syntax_error
    "SyntaxException": "42601",
    "CatalogException": "42P01",           # undefined_table (or object)
    "BinderException": "42703",            # undefined_column
    "PermissionException": "42501",        # insufficient_privilege
    "ConversionException": "22000",        # data_exception
    "InvalidInputException": "22023",      # invalid_parameter_value
    "OutOfRangeException": "22003",        # numeric_value_out_of_range
    "ConstraintException": "23000",        # integrity_constraint_violation
    "NotImplementedException": "0A000",    # feature_not_supported
    "OutOfMemoryException": "53200",       # out_of_memory
    "InterruptException": "57014",         # query_canceled
    "IOException": "58030",                # io_error
    "HTTPException": "58030",
    "TransactionException": "25000",       # invalid_transaction_state
    "SequenceException": "22000",
    "TypeMismatchException": "42804",      # datatype_mismatch
    "DependencyException": "2BP01",        # dependent_objects_still_exist
}


_NO_CATALOG = re.compile(r'Catalog "[^"]+" does not exist|Catalog with name \S+ does not exist')
_IN_EXTENSION = re.compile(r"but it exists in the ([A-Za-z0-9_]+) extension")
_NOT_SHIPPED = re.compile(r'Extension "(?:[^"]*/)?([A-Za-z0-9_]+)\.duckdb_extension" not found')


# A DuckDB error can be as long as a value a query builds (error(repeat(...))):
# what reaches the client and the server log is bounded.
MAX_MESSAGE = 8192


def _bounded(text):
    if len(text) <= MAX_MESSAGE:
        return text
    return text[:MAX_MESSAGE] + f" ... ({len(text) - MAX_MESSAGE} more characters)"


def from_duckdb(exc, prefix=None):
    """PgError for a DuckDB exception: first line is the message, the rest detail."""
    text = scrub_conninfo(str(exc).strip())
    first, _, rest = text.partition("\n")
    # DuckDB sometimes repeats a paragraph of advice; keep each once.
    paragraphs = []
    for p in rest.strip().split("\n\n"):
        if p.strip() and p not in paragraphs:
            paragraphs.append(p)
    rest = "\n\n".join(paragraphs)
    # a DuckDB exception, or the worker's report of one (engine.RemoteError: its class name)
    sqlstate = DUCKDB_SQLSTATE.get(getattr(exc, "kind", None) or type(exc).__name__, FDW_ERROR)
    hint = None
    missing = _NOT_SHIPPED.search(text)
    if missing:
        # Autoloading an extension that is not shipped: its name, not the
        # path of the engine's extension directory.
        sqlstate = FEATURE_NOT_SUPPORTED
        first, rest = f'DuckDB extension "{missing.group(1)}" is not shipped with duckdb_secrets', ""
        hint = ("duckdb_secrets ships every core DuckDB extension that works offline (docs/reference.md, "
                "\"Extensions\"); nothing is ever downloaded.")
    elif _IN_EXTENSION.search(first):
        # DuckDB's advice (INSTALL, LOAD, SET autoinstall_...) is not the role's to follow.
        rest = ""
        hint = (f"The {_IN_EXTENSION.search(first).group(1)} extension is not loaded in this engine: the engine "
                "of a role that is not a superuser loads only what its secrets need (docs/reference.md, "
                "\"Extensions\").")
    elif "due to lock timeout" in text:
        # A postgres ATTACH is its own session: it waits for this backend's locks.
        sqlstate = LOCK_NOT_AVAILABLE
        first = "DuckDB's connection to PostgreSQL could not get a lock: " + first
        hint = ("DuckDB's connection to PostgreSQL is a separate session: it waits for locks this "
                "transaction holds and does not see its uncommitted rows. duckdb.attach_lock_timeout "
                "bounds the wait.")
    elif "failed to offload" in text or "max_temp_directory_size" in text:
        # The spill area is full: PostgreSQL's class for it (disk_full), not out of memory.
        sqlstate = DISK_FULL
        hint = ("The statement needed more than duckdb.max_temp_directory_size of spill space; an "
                "administrator can raise it, or the query can use less memory.")
    elif _NO_CATALOG.search(first):
        # DuckDB says Binder or Catalog Error; PostgreSQL's class for it is invalid_catalog_name.
        sqlstate = INVALID_CATALOG_NAME
    elif sqlstate == "53200":
        # DuckDB's list of SETs to try is not the role's to follow: the HINT says what is.
        rest = "\n\n".join(p for p in rest.split("\n\n") if not p.lstrip().startswith("Possible solutions"))
        # DuckDB's advice (SET memory_limit, threads) is not the role's to follow.
        hint = ("The engine's memory is duckdb.memory_limit (a role may lower it; an administrator sets its "
                "cap, duckdb.max_memory_limit); a query that needs less memory, or spills to disk, helps.")
    message = f"{prefix}: {first}" if prefix else first
    return PgError(sqlstate, message, detail=rest.strip() or None, hint=hint)


def pg_error(plpy, exc):
    """Any exception as a PgError (a PgError as it is)."""
    if isinstance(exc, PgError):
        return exc
    if isinstance(exc, plpy.Error) and getattr(exc, "sqlstate", None):
        # PostgreSQL's own error raised inside a plpy call (a cancel or a
        # statement_timeout seen while a WARNING was sent): its SQLSTATE kept.
        return PgError(exc.sqlstate, str(exc.args[0]) if exc.args else str(exc),
                       getattr(exc, "detail", None), getattr(exc, "hint", None))
    if isinstance(exc, plpy.SPIError):
        # An error from SQL we ran (e.g. the event trigger refusing DDL):
        # passed on with its own SQLSTATE, message, detail and hint.
        return PgError(getattr(exc, "sqlstate", None) or INTERNAL_ERROR,
                       str(exc.args[0]) if exc.args else str(exc),
                       getattr(exc, "detail", None), getattr(exc, "hint", None))
    if isinstance(exc, ImportError):
        # The pinned dependencies (duckdb, boto3, ...) missing or unreadable.
        deps = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "deps")
        return PgError(SYSTEM_ERROR, "could not load a Python dependency of duckdb_secrets",
                       f'{type(exc).__name__}: module "{exc.name or "?"}"',
                       f"The server's operating-system user must be able to read {deps}; "
                       "reinstall the extension (make install) if files are missing.")
    return PgError(INTERNAL_ERROR, f"internal error in duckdb_secrets: {type(exc).__name__}", str(exc) or None,
                   "Please report this with the statement that caused it.")


def caught(fn, *args):
    """(fn(*args), None), or (None, the exception it raised): the one place that
    catches every exception, for the boundaries to PostgreSQL -- an entry point
    (which returns the error as an array), a result's chunks (the error is
    raised at the end of the result), the backend's exit."""
    try:
        return fn(*args), None
    except Exception as e:   # noqa: BLE001 - nothing may escape into PostgreSQL as a traceback
        return None, e
