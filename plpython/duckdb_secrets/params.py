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

from .errors import INVALID_PARAMETER_VALUE, NUMERIC_VALUE_OUT_OF_RANGE, PgError

UNDEFINED_PARAMETER = "42P02"

_HUGE = 1 << 127
_LONG = 1 << 63

_MISSING = re.compile(r"Values were not provided for the following prepared statement parameters: (.+)")
_EXCESS = re.compile(r"identifiers of the excess parameters: (.+)")


def checked(text):
    """The parameters of a call as JSON (a list or a dict), from the jsonb
    argument's text; None when the argument is SQL NULL."""
    if text is None:
        return None
    value = json.loads(text)
    if not isinstance(value, (list, dict)):
        raise PgError(INVALID_PARAMETER_VALUE, "the parameters must be a JSON array or object",
                      detail=f"A JSON {_kind(value)} was given.",
                      hint="Give '[value, ...]' to bind $1, $2, ... or '{\"name\": value}' to bind $name.")
    named = isinstance(value, dict)
    for key, v in (value.items() if named else enumerate(value, 1)):
        if isinstance(v, int) and not isinstance(v, bool) and not -_HUGE <= v < _HUGE:
            label = f"${key}"
            raise PgError(NUMERIC_VALUE_OUT_OF_RANGE, f"parameter {label} is out of range for a DuckDB integer",
                          detail="A JSON integer binds as BIGINT, or HUGEINT up to 128 bits.",
                          hint=f"Pass it as a string and cast it in the query: {label}::DECIMAL(38,0) or "
                               f"{label}::DOUBLE.")
    return value


def _kind(v):
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, (int, float)):
        return "number"
    return "string"


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
