"""Bound parameters of duckdb.query(query, params) and duckdb.query_json(query, params).

params is a jsonb value: an array binds $1, $2, ... (or ?), an object binds
$name. Each value becomes a typed DuckDB value, never SQL text:

    JSON string           VARCHAR
    JSON integer          BIGINT, HUGEINT beyond 64 bits
    other JSON number     DOUBLE
    true / false          BOOLEAN
    null                  NULL
    array or object       JSON

An exact decimal is written as a string and cast in the query
($1::DECIMAL(12,2)). The backend checks the shape (checked()); the worker makes
the DuckDB values (values()) and turns DuckDB's complaints about missing or
extra parameters into PostgreSQL errors (refusal()).
"""

import json
import re

from .errors import (
    DUPLICATE_OBJECT,
    INVALID_PARAMETER_VALUE,
    NUMERIC_VALUE_OUT_OF_RANGE,
    STATEMENT_TOO_COMPLEX,
    PgError,
)

UNDEFINED_PARAMETER = "42P02"

_HUGE = 1 << 127
_LONG = 1 << 63

_MISSING = re.compile(r"Values were not provided for the following prepared statement parameters: (.+)")
_EXCESS = re.compile(r"identifiers of the excess parameters: (.+)")


class _Long(str):
    """A JSON integer of more digits than any DuckDB integer holds, kept as its
    digits (Python refuses to read one of thousands of digits as an int)."""


def _integer(digits):
    return int(digits) if len(digits.lstrip("-")) <= 40 else _Long(digits)


def _unique_options(pairs):
    """An options object whose keys differ in more than case (jsonb keeps the
    last of two equal keys; option names are case-insensitive)."""
    seen = {}
    for key, _ in pairs:
        low = str(key).lower()
        if low in seen:
            raise PgError(DUPLICATE_OBJECT, f'option "{low}" is given twice',
                          detail=f'As "{seen[low]}" and as "{key}": option names are case-insensitive.')
        seen[low] = key
    return dict(pairs)


def load_json(text, what, options=False):
    """json.loads of a jsonb argument's text, with a PostgreSQL error for what
    Python's parser refuses and jsonb accepts (nesting deeper than Python's
    recursion allows, integers of thousands of digits: those become _Long).
    options: an object of option names, none given twice in any case."""
    try:
        return json.loads(text, parse_int=_integer, object_pairs_hook=_unique_options if options else None)
    except RecursionError:
        raise PgError(STATEMENT_TOO_COMPLEX, f"{what} nest too deeply",
                      detail="JSON arrays and objects here may nest at most a few hundred levels.") from None
    except ValueError:
        raise PgError(INVALID_PARAMETER_VALUE, f"{what} could not be read as JSON") from None


def checked(text):
    """The parameters of a call as JSON (a list or a dict), from the jsonb
    argument's text; None when the argument is SQL NULL."""
    if text is None:
        return None
    value = load_json(text, "the parameters")
    if not isinstance(value, (list, dict)):
        raise PgError(INVALID_PARAMETER_VALUE, "the parameters must be a JSON array or object",
                      detail=f"A JSON {_kind(value)} was given.",
                      hint="Give '[value, ...]' to bind $1, $2, ... or '{\"name\": value}' to bind $name.")
    named = isinstance(value, dict)
    for key, v in (value.items() if named else enumerate(value, 1)):
        if isinstance(v, _Long) or (isinstance(v, int) and not isinstance(v, bool) and not -_HUGE <= v < _HUGE):
            label = f"${key}"
            raise PgError(NUMERIC_VALUE_OUT_OF_RANGE, f"parameter {label} is out of range for a DuckDB integer",
                          detail="A JSON integer binds as BIGINT, or HUGEINT up to 128 bits; jsonb keeps a "
                                 "number such as 1e300 as an integer of that many digits.",
                          hint=f"Pass it as a string and cast it in the query: {label}::DECIMAL(38,0) or "
                               f"{label}::DOUBLE.")
    return value


def _kind(v):
    """The JSON kind of a value, for messages."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, (int, float)):
        return "number"
    return "string"


def strings(text):
    """Every string (values and keys) in a jsonb argument's text; None if it
    cannot be read."""
    try:
        value = load_json(text, "the parameters")
    except PgError:
        return None
    out, todo = set(), [value]
    while todo:
        v = todo.pop()
        if isinstance(v, dict):
            out.update(str(k) for k in v)
            todo.extend(v.values())
        elif isinstance(v, list):
            todo.extend(v)
        elif isinstance(v, str):
            out.add(v)
    return out


def values(duckdb, params):
    """DuckDB values for checked() parameters, as con.sql(params=) takes them."""
    from duckdb.value import constant as c
    json_type = duckdb.sqltype("JSON")

    def value(v):
        if v is None:
            return c.NullValue()
        if isinstance(v, bool):
            return c.BooleanValue(v)
        if isinstance(v, int):
            return c.LongValue(v) if -_LONG <= v < _LONG else c.HugeIntegerValue(v)
        if isinstance(v, float):
            return c.DoubleValue(v)
        if isinstance(v, str):
            return c.StringValue(v)
        return c.Value(json.dumps(v, separators=(",", ":"), ensure_ascii=False), json_type)

    if isinstance(params, dict):
        return {str(k): value(v) for k, v in params.items()}
    return [value(v) for v in params]


def refusal(message):
    """(sqlstate, message, detail, hint) for DuckDB's error about parameters
    given or not given; None for any other error."""
    m = _MISSING.search(message)
    if m:
        names = _names(m.group(1))
        return (UNDEFINED_PARAMETER, f"no value given for parameter {names}",
                None, "Pass one value per parameter: the array's first element binds $1, an object's key "
                      "\"name\" binds $name.")
    m = _EXCESS.search(message)
    if m:
        names = _names(m.group(1))
        return (INVALID_PARAMETER_VALUE, f"the query has no parameter {names}",
                "Every value given must bind a parameter of the query.", None)
    return None


def _names(text):
    return ", ".join("$" + n.strip() for n in text.split(",") if n.strip())
