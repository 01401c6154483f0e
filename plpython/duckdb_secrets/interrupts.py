"""Engine work obeys PostgreSQL: cancel, statement_timeout and terminate stop it.

The engine runs in a process of its own (engine.py): while the backend waits
for it, it sleeps in PostgreSQL's WaitLatchOrSocket and reads PostgreSQL's
interrupt flags, asks the worker to interrupt DuckDB and kills it if it does
not stop within process.STOP_GRACE. This module keeps what is left of the
backend's side: the statement's deadline as the fingerprint query reads it,
and giving the C heap's free pages back.
"""

def release_free_memory():
    """Give the C heap's free pages back to the system (glibc's malloc_trim):
    once an engine has started and synced, what PostgreSQL's first catalog
    queries and DuckDB's start-up freed stays in the backend's RSS otherwise
    (~2 MiB; the call takes under a millisecond)."""
    import ctypes
    try:
        ctypes.CDLL(None).malloc_trim(ctypes.c_size_t(0))
    except AttributeError:      # not glibc
        pass


_UNITS = {"us": 0.001, "ms": 1, "s": 1000, "min": 60000, "h": 3600000, "d": 86400000}


def timeout_ms(text):
    """statement_timeout as current_setting() shows it ('0', '1500ms', '2s', '1min') -> ms."""
    text = (text or "0").strip()
    num = text.rstrip("abcdefghijklmnopqrstuvwxyz")
    unit = text[len(num):] or "ms"
    try:
        return float(num) * _UNITS[unit]
    except (ValueError, KeyError):
        return 0.0


def deadline(statement_start_epoch, statement_timeout):
    ms = timeout_ms(statement_timeout)
    return None if not ms or statement_start_epoch is None else float(statement_start_epoch) + ms / 1000.0
