"""Process titles for the processes a backend starts (ps, top): the engine's
worker and the egress proxy name themselves and their backend."""


def set_title(title, name):
    """ps and top show the title: the process name (comm) and the command line
    (the argv area rewritten in place, padded with NULs)."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    try:
        libc.prctl(15, ctypes.c_char_p(name.encode()[:15]), 0, 0, 0)     # PR_SET_NAME
        with open("/proc/self/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        start, end = int(fields[45]), int(fields[46])      # arg_start, arg_end (fields 48, 49)
        data = title.encode()[:end - start - 1]
        ctypes.memmove(start, data + b"\0" * (end - start - len(data)), end - start)
    except (OSError, ValueError, IndexError, AttributeError):
        pass
