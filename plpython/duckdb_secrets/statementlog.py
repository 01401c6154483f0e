"""Keeping the text of a statement that may carry secret values out of the server log.

PostgreSQL writes a failing statement's text next to its error
(log_min_error_statement, on by default) -- a FATAL from pg_terminate_backend
included, wherever it strikes. When a call judges that the statement it runs
in may carry a credential (api._judge, a helper's refusal), it marks *that
statement*: every message PostgreSQL then writes to the server log for it is
written without the statement's text and without CONTEXT (ErrorData's
hide_stmt and hide_ctx, set by a hook on PostgreSQL's log output,
emit_log_hook, installed through ctypes once per backend).

The mark is the statement's start timestamp, not a setting: the next
statement is logged as usual, and nothing a role calls can keep its later
statements out of the log. A mark may be provisional (the engine starting,
before DuckDB can judge the call) and settled by the judgement.

The hook is kept in the sys module, so that a reloaded package never leaves
PostgreSQL pointing at a freed callback.
"""

import ctypes
import sys

_STATE = "_duckdb_secrets_statement_log"
# ErrorData (utils/elog.h, PostgreSQL 9.6 and later): int elevel; bool
# output_to_server, output_to_client, hide_stmt, hide_ctx; ...
_HIDE_STMT = ctypes.sizeof(ctypes.c_int) + 2
_HOOK_TYPE = ctypes.CFUNCTYPE(None, ctypes.c_void_p)


def _state():
    """The backend's hook and mark, installed on first use; None outside a backend."""
    state = getattr(sys, _STATE, None)
    if state is not None:
        return state or None
    try:
        lib = ctypes.CDLL(None)
        slot = ctypes.c_void_p.in_dll(lib, "emit_log_hook")
        now = lib.GetCurrentStatementStartTimestamp
        now.restype = ctypes.c_int64
        now.argtypes = []
    except (AttributeError, OSError, ValueError):
        setattr(sys, _STATE, {})            # not in a backend (unit tests): nothing to hide
        return None
    try:
        query = ctypes.c_char_p.in_dll(lib, "debug_query_string")
    except ValueError:
        query = None
    state = {"now": now, "query": query, "quiet_at": None, "provisional": False, "previous": None}
    previous = slot.value
    state["previous"] = _HOOK_TYPE(previous) if previous else None

    def hook(edata):
        try:
            if state["quiet_at"] is not None and state["quiet_at"] == now():
                ctypes.memmove(edata + _HIDE_STMT, b"\x01\x01", 2)
        except BaseException:       # noqa: BLE001 - nothing may escape into PostgreSQL's error reporting
            pass
        if state["previous"] is not None:
            state["previous"](edata)

    state["hook"] = _HOOK_TYPE(hook)
    slot.value = ctypes.cast(state["hook"], ctypes.c_void_p).value
    setattr(sys, _STATE, state)
    return state


def quiet():
    """The current statement's messages are logged without its text from now on."""
    state = _state()
    if state is not None:
        state["quiet_at"], state["provisional"] = state["now"](), False


def provisional():
    """Quiet until settle(): the statement is not judged yet (a mark it has is kept)."""
    state = _state()
    if state is not None and state["quiet_at"] != state["now"]():
        state["quiet_at"], state["provisional"] = state["now"](), True


def settle(judged_quiet):
    """The judgement is in: a provisional mark stays only if the call may carry a credential."""
    state = _state()
    if state is None:
        return
    if judged_quiet:
        quiet()
    elif state["provisional"]:
        state["quiet_at"], state["provisional"] = None, False


def is_quiet():
    """Whether the current statement is marked."""
    state = _state()
    return state is not None and state["quiet_at"] is not None and state["quiet_at"] == state["now"]()


def text():
    """The text PostgreSQL logs with this statement's errors (debug_query_string:
    the client's whole query string); None if not known."""
    state = _state()
    if state is None or state["query"] is None:
        return None
    raw = state["query"].value
    return None if raw is None else raw.decode("utf-8", "replace")
