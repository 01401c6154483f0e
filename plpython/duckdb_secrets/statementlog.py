"""Keeping the text of a statement that may carry secret values out of the server log.

PostgreSQL writes a failing statement's text next to its error
(log_min_error_statement, on by default) -- a FATAL from pg_terminate_backend
included, wherever it strikes. When a call judges that the statement it runs
in may carry a credential (api._judge, a helper's call, a user mapping's
DDL), it marks *that statement's text*: every message PostgreSQL then writes
to the server log while that text is the one it would quote
(debug_query_string: the client's whole query string, also for a portal an
Execute resumes later) is written without it and without CONTEXT
(ErrorData's hide_stmt and hide_ctx, set by a hook on PostgreSQL's log
output, emit_log_hook, installed through ctypes once per backend).

The mark is the text, not a setting: a later statement with another text is
logged as usual, so nothing a role calls can keep its other statements out of
the log (one with the very same text is quiet again, as it carries the same
values). A mark may be provisional (the engine starting, before DuckDB can
judge the call) and settled by the judgement. The last MARKS texts are kept.

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
MARKS = 64


def _state():
    """The backend's hook and marks, installed on first use; None outside a backend."""
    state = getattr(sys, _STATE, None)
    if state is not None:
        return state or None
    try:
        lib = ctypes.CDLL(None)
        slot = ctypes.c_void_p.in_dll(lib, "emit_log_hook")
        query = ctypes.c_char_p.in_dll(lib, "debug_query_string")
    except (AttributeError, OSError, ValueError):
        setattr(sys, _STATE, {})            # not in a backend (unit tests): nothing to hide
        return None
    # marks: {text: True (judged) or False (provisional)}, oldest first
    state = {"query": query, "marks": {}, "previous": None}
    previous = slot.value
    state["previous"] = _HOOK_TYPE(previous) if previous else None

    def hook(edata):
        try:
            if state["marks"] and state["query"].value in state["marks"]:
                ctypes.memmove(edata + _HIDE_STMT, b"\x01\x01", 2)
        except BaseException:       # noqa: BLE001 - nothing may escape into PostgreSQL's error reporting
            pass
        if state["previous"] is not None:
            state["previous"](edata)

    state["hook"] = _HOOK_TYPE(hook)
    slot.value = ctypes.cast(state["hook"], ctypes.c_void_p).value
    setattr(sys, _STATE, state)
    return state


def _current(state):
    return state["query"].value


def _mark(state, text, judged):
    marks = state["marks"]
    marks.pop(text, None)
    marks[text] = judged
    while len(marks) > MARKS:
        del marks[next(iter(marks))]


def quiet():
    """The current statement's messages are logged without its text from now on."""
    state = _state()
    if state is not None and _current(state) is not None:
        _mark(state, _current(state), True)


def provisional():
    """Quiet until settle(): the statement is not judged yet (a mark it has is kept)."""
    state = _state()
    if state is not None and _current(state) is not None and _current(state) not in state["marks"]:
        _mark(state, _current(state), False)


def settle(judged_quiet):
    """The judgement is in: a provisional mark stays only if the call may carry a credential."""
    state = _state()
    if state is None or _current(state) is None:
        return
    if judged_quiet:
        quiet()
    elif state["marks"].get(_current(state)) is False:
        del state["marks"][_current(state)]


def is_quiet():
    """Whether the current statement's text is marked."""
    state = _state()
    return state is not None and _current(state) in state["marks"]


def text():
    """The text PostgreSQL logs with this statement's errors (debug_query_string:
    the client's whole query string); None if not known."""
    state = _state()
    if state is None:
        return None
    raw = _current(state)
    return None if raw is None else raw.decode("utf-8", "replace")


def quiet_unraisable():
    """Python reports an exception it cannot raise -- a generator of the
    package's that PostgreSQL abandons when a cancel or terminate ends its
    call -- with a traceback on stderr, which is the server log: for the
    package's own code, not at all (other code's reports go on as before)."""
    previous = sys.unraisablehook
    if getattr(previous, "duckdb_secrets", False):
        return

    def hook(unraisable):
        tb = unraisable.exc_traceback
        while tb is not None:
            if "duckdb_secrets" in tb.tb_frame.f_code.co_filename:
                return
            tb = tb.tb_next
        code = getattr(unraisable.object, "gi_code", None)
        if code is not None and "duckdb_secrets" in code.co_filename:
            return
        previous(unraisable)

    hook.duckdb_secrets = True
    sys.unraisablehook = hook
