"""PostgreSQL-style errors, and keeping secret values out of them.

PL/Python turns any exception into ``ERROR: plpy.Error: ...`` with a Python
traceback as CONTEXT.  So the Python side never raises to PostgreSQL: entry
points return an error array ``[sqlstate, message, detail, hint]`` and a thin
PL/pgSQL wrapper raises it (duckdb._raise), which gives a native error.
"""

import re

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


class PgError(Exception):
    """An error meant for the user, raised by the PL/pgSQL wrapper."""

    def __init__(self, sqlstate, message, detail=None, hint=None):
        super().__init__(message)
        self.sqlstate = sqlstate
        self.message = message
        self.detail = detail
        self.hint = hint

    def as_array(self, scrub=None):
        f = scrub or (lambda s: s)
        return [self.sqlstate, f(self.message),
                f(self.detail) if self.detail else None,
                f(self.hint) if self.hint else None]


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


# DuckDB's postgres and mysql extensions print the whole connection string
# when a connection fails, including a password given in ATTACH itself.
_CONNINFO_SECRET = re.compile(
    r"\b(password|sslpassword|oauth_client_secret|scram_client_key|scram_server_key)(\s*=\s*)"
    r"('(?:[^'\\]|\\.)*'|[^\s\"]*)", re.IGNORECASE)
_URI_PASSWORD = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^:/@\s\"]*:)([^@\s\"]*)(@)", re.IGNORECASE)


def scrub_conninfo(text):
    """Masks passwords in libpq-style connection strings and URIs inside text."""
    if not text:
        return text
    text = _CONNINFO_SECRET.sub(lambda m: m.group(1) + m.group(2) + MASK, text)
    return _URI_PASSWORD.sub(lambda m: m.group(1) + MASK + m.group(3), text)


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
    sqlstate = DUCKDB_SQLSTATE.get(type(exc).__name__, FDW_ERROR)
    hint = None
    if "due to lock timeout" in text:
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
    message = f"{prefix}: {first}" if prefix else first
    return PgError(sqlstate, message, detail=rest.strip() or None, hint=hint)


_MIN_SCRUB_LEN = 3
MASK = "********"


class Scrubber:
    """Replaces known secret values (and their URL-encoded forms) in text.

    The pattern is built on first use: most engine syncs never produce a
    message to scrub, and with thousands of secrets building it costs tens of
    milliseconds."""

    def __init__(self, values=()):
        self.values = tuple(sorted({str(v) for v in values
                                    if v is not None and len(str(v)) >= _MIN_SCRUB_LEN}))
        self._pattern = None
        self._forms = ()
        self._built = not self.values

    def _build(self):
        import urllib.parse  # only when there is something to mask
        forms = set()
        for v in self.values:
            forms.update({v, urllib.parse.quote(v, safe=""), urllib.parse.quote_plus(v)})
            forms.update(p for p in v.splitlines() if len(p) >= _MIN_SCRUB_LEN)
        # Longest first, so a value that contains another is masked whole.
        self._forms = sorted(forms, key=len, reverse=True)
        self._pattern = re.compile("|".join(re.escape(f) for f in self._forms))
        self._built = True

    def __call__(self, text):
        if text is None:
            return text
        if not self._built:
            self._build()
        if self._pattern is None:
            return text
        text = str(text)
        # A long text (a chunk of result rows) is searched for each form first:
        # str's search is many times faster than the alternation's.
        if len(text) > 4096 and not any(f in text for f in self._forms):
            return text
        return self._pattern.sub(MASK, text)


NO_SCRUB = Scrubber()
