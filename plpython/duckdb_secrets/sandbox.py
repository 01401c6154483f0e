"""Self-hardening and sandboxing of the DuckDB worker process.

The worker (``/usr/bin/python3``, started by a PostgreSQL backend) calls this
module on itself, in two steps:

``harden(parent_pid, data_limit)``
    first thing, before importing duckdb: a clean signal state, death with the
    parent (``PR_SET_PDEATHSIG``), first in line for the OOM killer, no core
    dumps, not dumpable (no ``/proc/<pid>/mem``, ``environ`` or ptrace for
    other processes of the same uid), ``no_new_privs`` (required by Landlock
    and seccomp for an unprivileged process), and a hard ``RLIMIT_DATA``
    (DuckDB's ``memory_limit`` does not bound its string heaps; the kernel
    does).

``restrict(read_only, read_write, tcp_ports)``
    once, from the main thread while it is the only thread -- that is before
    ``import duckdb``, which already creates the default connection and its
    pool thread (measured: restricted after the import, that thread still
    read /etc/passwd for ``duckdb.default_connection()``): a Landlock domain (file-system paths, TCP connect ports,
    signal/abstract-socket scoping, as far as the kernel's ABI goes) and a
    seccomp-BPF filter that refuses every socket but a TCP one. Both bind the
    calling thread and the threads it creates afterwards (DuckDB's pool), and
    both survive ``execve`` -- which Landlock refuses anyway.

Name resolution: with the socket filter, glibc's DNS over UDP is refused, so
only /etc/hosts names resolve. With ``RES_OPTIONS=use-vc`` in the worker's
environment glibc asks the name server over TCP instead, which works when 53
is among ``tcp_ports`` (measured: the TCP connect to the name server is what
Landlock then decides).

Everything goes through raw syscalls via ctypes: no compiled code, no
dependency. Features this kernel lacks are reported (``restrict`` returns what
is enforced, ``describe_missing`` phrases the gaps), never raised.
Only x86_64 is supported (syscall numbers, the seccomp architecture check).
"""

import ctypes
import errno
import os
import resource
import signal
import stat
import sysconfig

# --- prctl(2) -----------------------------------------------------------------
PR_SET_PDEATHSIG = 1
PR_GET_DUMPABLE = 3
PR_SET_DUMPABLE = 4
PR_SET_SECCOMP = 22
PR_SET_NO_NEW_PRIVS = 38
PR_GET_NO_NEW_PRIVS = 39

# --- Landlock (include/uapi/linux/landlock.h), x86_64 syscall numbers ---------
SYS_LANDLOCK_CREATE_RULESET = 444
SYS_LANDLOCK_ADD_RULE = 445
SYS_LANDLOCK_RESTRICT_SELF = 446
SYS_IO_URING_SETUP = 425
SYS_SOCKET = 41
SYS_SOCKETPAIR = 53

LANDLOCK_CREATE_RULESET_VERSION = 1
LANDLOCK_RULE_PATH_BENEATH = 1
LANDLOCK_RULE_NET_PORT = 2

FS_EXECUTE = 1 << 0
FS_WRITE_FILE = 1 << 1
FS_READ_FILE = 1 << 2
FS_READ_DIR = 1 << 3
FS_REMOVE_DIR = 1 << 4
FS_REMOVE_FILE = 1 << 5
FS_MAKE_CHAR = 1 << 6
FS_MAKE_DIR = 1 << 7
FS_MAKE_REG = 1 << 8
FS_MAKE_SOCK = 1 << 9
FS_MAKE_FIFO = 1 << 10
FS_MAKE_BLOCK = 1 << 11
FS_MAKE_SYM = 1 << 12
FS_REFER = 1 << 13          # ABI 2
FS_TRUNCATE = 1 << 14       # ABI 3
FS_IOCTL_DEV = 1 << 15      # ABI 5

NET_BIND_TCP = 1 << 0       # ABI 4
NET_CONNECT_TCP = 1 << 1    # ABI 4

SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0   # ABI 6
SCOPE_SIGNAL = 1 << 1                 # ABI 6

# The rights a rule on a non-directory may carry (others: EINVAL).
_FS_FILE_RIGHTS = FS_EXECUTE | FS_WRITE_FILE | FS_READ_FILE | FS_TRUNCATE | FS_IOCTL_DEV

ABI_ENV = "DUCKDB_SECRETS_LANDLOCK_ABI_MAX"

# --- seccomp-BPF (include/uapi/linux/{filter,seccomp,audit}.h) ---------------
SECCOMP_MODE_FILTER = 2
SECCOMP_RET_KILL_PROCESS = 0x80000000
SECCOMP_RET_ERRNO = 0x00050000
SECCOMP_RET_ALLOW = 0x7FFF0000
AUDIT_ARCH_X86_64 = 0xC000003E
X32_SYSCALL_BIT = 0x40000000
BPF_LD_W_ABS = 0x20         # BPF_LD | BPF_W | BPF_ABS
BPF_JEQ_K = 0x15            # BPF_JMP | BPF_JEQ | BPF_K
BPF_JGE_K = 0x35            # BPF_JMP | BPF_JGE | BPF_K
BPF_AND_K = 0x54            # BPF_ALU | BPF_AND | BPF_K
BPF_RET_K = 0x06            # BPF_RET | BPF_K
# struct seccomp_data {int nr; u32 arch; u64 ip; u64 args[6];}: the low 32 bits
# of args[i] (little endian) are at 16 + 8 i; socket() takes ints, so the kernel
# ignores the high halves too.
_OFF_NR, _OFF_ARCH, _OFF_ARG0, _OFF_ARG1, _OFF_ARG2 = 0, 4, 16, 24, 32

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_libc.prctl.restype = ctypes.c_int
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]


def _oserror(what):
    err = ctypes.get_errno()
    return OSError(err, f"sandbox: {what} failed: {os.strerror(err)}")


def _prctl(option, arg2=0, arg3=0, what=None):
    if _libc.prctl(option, arg2, arg3, 0, 0) == -1:
        raise _oserror(what or f"prctl({option})")


# ---------------------------------------------------------------------------
# harden
# ---------------------------------------------------------------------------

# Reset to the default action: a PostgreSQL backend handles these, and handlers
# do not survive exec, but an inherited SIG_IGN would (and an inherited blocked
# mask too). SIGPIPE is the exception: the default action would kill the worker
# whenever a peer (an HTTP server, the backend) closes a connection first;
# ignoring it, as Python itself does, turns that into an EPIPE error.
# Note: PostgreSQL sends SIGINT/SIGTERM/SIGQUIT to a backend's whole process
# group (backends call setsid()), so a worker in the backend's group dies on a
# query cancel unless it is started with start_new_session=True or installs its
# own SIGINT handler after harden().
_DEFAULT_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGQUIT, signal.SIGALRM, signal.SIGUSR1,
                    signal.SIGUSR2, signal.SIGHUP, signal.SIGCHLD)


def harden(parent_pid: int, data_limit: int | None, oom_score_adj: int = 1000) -> None:
    """Hardens the calling process (the worker); see the module docstring.
    Raises OSError if a required step fails."""
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
    for sig in _DEFAULT_SIGNALS:
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)

    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL, what="prctl(PR_SET_PDEATHSIG)")
    # The parent may have died between fork and the prctl: then nobody would
    # ever kill us. After the prctl, a later death is covered.
    if os.getppid() != parent_pid:
        os._exit(70)

    # Before PR_SET_DUMPABLE 0, which makes /proc/self/* owned by root.
    try:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write(str(int(oom_score_adj)))
    except OSError:
        pass        # a nicety: the OOM killer picks the biggest process anyway

    try:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    except (OSError, ValueError) as e:
        raise OSError(errno.EPERM, f"sandbox: setrlimit(RLIMIT_CORE, 0) failed: {e}") from e
    # Not dumpable: no core even with a pipe core_pattern (with fs.suid_dumpable
    # 0), and same-uid processes can no longer ptrace us or read our
    # /proc/<pid>/mem, environ, maps, fd/.
    _prctl(PR_SET_DUMPABLE, 0, what="prctl(PR_SET_DUMPABLE, 0)")
    _prctl(PR_SET_NO_NEW_PRIVS, 1, what="prctl(PR_SET_NO_NEW_PRIVS, 1)")

    if data_limit is not None:
        limit = int(data_limit)
        _, hard = resource.getrlimit(resource.RLIMIT_DATA)
        if hard != resource.RLIM_INFINITY and hard < limit:
            limit = hard        # already stricter: keep it (raising it would need privilege)
        try:
            resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
        except (OSError, ValueError) as e:
            raise OSError(errno.EPERM, f"sandbox: setrlimit(RLIMIT_DATA, {limit}) failed: {e}") from e


# ---------------------------------------------------------------------------
# Landlock
# ---------------------------------------------------------------------------

def landlock_abi() -> int:
    """The Landlock ABI version the kernel offers, 0 if none; capped by the
    environment variable DUCKDB_SECRETS_LANDLOCK_ABI_MAX (tests: older kernels)."""
    abi = _libc.syscall(SYS_LANDLOCK_CREATE_RULESET, None, ctypes.c_size_t(0),
                        ctypes.c_uint32(LANDLOCK_CREATE_RULESET_VERSION))
    if abi < 0:
        err = ctypes.get_errno()
        if err not in (errno.ENOSYS, errno.EOPNOTSUPP):
            raise OSError(err, f"sandbox: landlock_create_ruleset(VERSION) failed: {os.strerror(err)}")
        abi = 0
    cap = os.environ.get(ABI_ENV)
    if cap is not None:
        try:
            abi = max(0, min(abi, int(cap)))
        except ValueError:
            pass
    return int(abi)


def _fs_rights(abi):
    """Every file-system right this ABI knows."""
    if abi < 1:
        return 0
    rights = (1 << 13) - 1          # ABI 1: execute .. make_sym
    if abi >= 2:
        rights |= FS_REFER
    if abi >= 3:
        rights |= FS_TRUNCATE
    if abi >= 5:
        rights |= FS_IOCTL_DEV
    return rights


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


class _NetPortAttr(ctypes.Structure):
    _fields_ = [("allowed_access", ctypes.c_uint64), ("port", ctypes.c_uint64)]


def _open_path(path):
    """An O_PATH descriptor and whether it is a directory; None if the path
    does not exist or cannot be reached (then it stays inaccessible: safe)."""
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return None
    except OSError as e:
        if e.errno == errno.ELOOP:
            return None
        raise
    return fd, stat.S_ISDIR(os.fstat(fd).st_mode)


# O_PATH descriptors of the procfs paths that carry rules, open for the life of
# the process. A Landlock rule binds an inode, and procfs gives a path a fresh
# inode whenever its dentry has been reclaimed (memory pressure, drop_caches):
# measured, a rule on /proc/<pid> stopped matching after `echo 2 >
# /proc/sys/vm/drop_caches` and DuckDB's next connect() aborted. An open
# descriptor pins the dentry, hence the inode.
_PINNED = []


def _on_procfs(fd):
    try:
        return os.fstat(fd).st_dev == os.stat("/proc").st_dev
    except OSError:
        return False


def _add_path_rule(ruleset_fd, path, rights):
    opened = _open_path(path)
    if opened is None:
        return
    fd, is_dir = opened
    if _on_procfs(fd) and os.path.realpath(path) != "/proc":
        _PINNED.append(os.dup(fd))
    try:
        attr = _PathBeneathAttr(rights if is_dir else rights & _FS_FILE_RIGHTS, fd)
        if attr.allowed_access == 0:
            return
        if _libc.syscall(SYS_LANDLOCK_ADD_RULE, ruleset_fd, LANDLOCK_RULE_PATH_BENEATH,
                         ctypes.byref(attr), ctypes.c_uint32(0)) != 0:
            raise _oserror(f"landlock_add_rule({path!r})")
    finally:
        os.close(fd)


def _landlock(abi, read_only, read_write, tcp_ports, scope):
    """Creates and enters the domain; returns (files, tcp, scope) enforced."""
    every = _fs_rights(abi)
    files = read_only is not None
    # Without file rules, make_char/make_block still give the domain a reason
    # to exist on every ABI (nobody legitimate needs them): the domain itself
    # forbids ptrace of, and /proc/<pid>/mem|environ reads from, processes
    # outside it.
    handled_fs = every if files else FS_MAKE_CHAR | FS_MAKE_BLOCK
    tcp = tcp_ports is not None and abi >= 4
    handled_net = NET_BIND_TCP | NET_CONNECT_TCP if tcp else 0      # bind: never allowed
    scoped = SCOPE_SIGNAL | SCOPE_ABSTRACT_UNIX_SOCKET if scope and abi >= 6 else 0

    attr = _RulesetAttr(handled_fs, handled_net, scoped)
    size = 8 if abi <= 3 else 16 if abi <= 5 else 24    # the struct as this ABI knows it
    ruleset_fd = _libc.syscall(SYS_LANDLOCK_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size),
                               ctypes.c_uint32(0))
    if ruleset_fd < 0:
        raise _oserror("landlock_create_ruleset")
    try:
        if files:
            # No execute anywhere: dlopen() and mmap(PROT_EXEC) of libraries
            # and DuckDB extensions need only read_file (Landlock checks
            # execute at execve() only) -- tests/test_sandbox_unit.py checks it.
            for path in read_only:
                _add_path_rule(ruleset_fd, path, FS_READ_FILE | FS_READ_DIR)
            for path in read_write or ():
                _add_path_rule(ruleset_fd, path, every & ~(FS_EXECUTE | FS_MAKE_CHAR | FS_MAKE_BLOCK))
        if tcp:
            for port in tcp_ports:
                port = int(port)
                if not 0 < port < 65536:
                    raise ValueError(f"sandbox: not a TCP port: {port}")
                net = _NetPortAttr(NET_CONNECT_TCP, port)
                if _libc.syscall(SYS_LANDLOCK_ADD_RULE, ruleset_fd, LANDLOCK_RULE_NET_PORT,
                                 ctypes.byref(net), ctypes.c_uint32(0)) != 0:
                    raise _oserror(f"landlock_add_rule(port {port})")
        if _libc.syscall(SYS_LANDLOCK_RESTRICT_SELF, ruleset_fd, ctypes.c_uint32(0)) != 0:
            raise _oserror("landlock_restrict_self")
    finally:
        os.close(ruleset_fd)
    return files, tcp, bool(scoped)


# ---------------------------------------------------------------------------
# seccomp
# ---------------------------------------------------------------------------

class _SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8),
                ("k", ctypes.c_uint32)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter))]


def _assemble(program):
    """program: (code, k, jt, jf) with jt/jf label names (or None: next
    instruction) and ("label", name) markers; returns the sock_filter array."""
    labels, insns = {}, []
    for item in program:
        if item[0] == "label":
            labels[item[1]] = len(insns)
        else:
            insns.append(item)
    out = (_SockFilter * len(insns))()
    for pc, (code, k, jt, jf) in enumerate(insns):
        def offset(target, pc=pc):
            return 0 if target is None else labels[target] - pc - 1   # forward jumps only
        out[pc] = _SockFilter(code, offset(jt), offset(jf), k)
    return out


def _socket_filter():
    eacces = SECCOMP_RET_ERRNO | errno.EACCES
    return _assemble([
        # Another architecture (i386 via int 0x80, where socketcall() would
        # bypass the socket() check) or the x32 ABI: nothing legitimate here.
        (BPF_LD_W_ABS, _OFF_ARCH, None, None),
        (BPF_JEQ_K, AUDIT_ARCH_X86_64, None, "kill"),
        (BPF_LD_W_ABS, _OFF_NR, None, None),
        (BPF_JGE_K, X32_SYSCALL_BIT, "kill", None),
        (BPF_JEQ_K, SYS_SOCKET, "domain", None),
        (BPF_JEQ_K, SYS_SOCKETPAIR, "domain", None),
        # io_uring can create and connect sockets without the socket() syscall.
        (BPF_JEQ_K, SYS_IO_URING_SETUP, "deny", "allow"),
        ("label", "domain"),
        (BPF_LD_W_ABS, _OFF_ARG0, None, None),
        (BPF_JEQ_K, 2, "type", None),               # AF_INET
        (BPF_JEQ_K, 10, "type", "deny"),            # AF_INET6
        ("label", "type"),
        (BPF_LD_W_ABS, _OFF_ARG1, None, None),
        (BPF_AND_K, 0xF, None, None),               # SOCK_NONBLOCK / SOCK_CLOEXEC aside
        (BPF_JEQ_K, 1, None, "deny"),               # SOCK_STREAM
        # TCP only: SCTP or MPTCP stream sockets would escape Landlock's TCP rules.
        (BPF_LD_W_ABS, _OFF_ARG2, None, None),
        (BPF_JEQ_K, 0, "allow", None),
        (BPF_JEQ_K, 6, "allow", "deny"),            # IPPROTO_TCP
        ("label", "allow"),
        (BPF_RET_K, SECCOMP_RET_ALLOW, None, None),
        ("label", "deny"),
        (BPF_RET_K, eacces, None, None),
        ("label", "kill"),
        (BPF_RET_K, SECCOMP_RET_KILL_PROCESS, None, None),
    ])


def _seccomp_sockets():
    """Installs the filter; False if this kernel has no seccomp filters."""
    insns = _socket_filter()
    prog = _SockFprog(len(insns), ctypes.cast(insns, ctypes.POINTER(_SockFilter)))
    if _libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(prog), 0, 0) != 0:
        err = ctypes.get_errno()
        if err == errno.EINVAL:       # CONFIG_SECCOMP_FILTER off
            return False
        raise OSError(err, f"sandbox: prctl(PR_SET_SECCOMP) failed: {os.strerror(err)}")
    return True


# ---------------------------------------------------------------------------
# restrict
# ---------------------------------------------------------------------------

def _thread_count():
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return 1


def restrict(read_only, read_write, tcp_ports, scope=True, deny_other_sockets=True) -> dict:
    """Sandboxes the calling process for good: see the module docstring.

    read_only, read_write: paths (files or directories; missing ones are
    skipped). read_only None: no file-system restriction at all (read_write is
    then moot). tcp_ports: the TCP ports connect() may reach; None: no network
    restriction; []: no TCP connect. scope: no signals to, no abstract unix
    socket connections with, processes outside the domain. deny_other_sockets:
    socket()/socketpair() fail with EACCES unless TCP over IPv4/IPv6.

    Returns what is enforced: {"abi", "files", "tcp", "scope", "ptrace", "sockets"}.
    """
    if _thread_count() != 1:
        # Landlock and the seccomp filter would not bind the other threads.
        raise RuntimeError("sandbox.restrict() must run while the process has a single thread")
    # Both Landlock and seccomp require it of an unprivileged process.
    _prctl(PR_SET_NO_NEW_PRIVS, 1, what="prctl(PR_SET_NO_NEW_PRIVS, 1)")
    abi = landlock_abi()
    enforced = {"abi": abi, "files": False, "tcp": False, "scope": False, "ptrace": False, "sockets": False}
    if abi >= 1:
        files, tcp, scoped = _landlock(abi, read_only, read_write, tcp_ports, scope)
        enforced.update(files=files, tcp=tcp, scope=scoped, ptrace=True)
    if deny_other_sockets:
        enforced["sockets"] = _seccomp_sockets()
    return enforced


def describe_missing(enforced: dict, wanted_files: bool, wanted_tcp: bool) -> list[str]:
    """Short phrases for what was wanted but is not enforced on this kernel."""
    missing = []
    if wanted_files and not enforced.get("files"):
        missing.append("file-system restrictions (Landlock)")
    if wanted_tcp and not enforced.get("tcp"):
        missing.append("TCP connect restrictions (Landlock ABI 4)")
    if not enforced.get("scope"):
        missing.append("signal and abstract-socket scoping (Landlock ABI 6)")
    if not enforced.get("ptrace"):
        missing.append("ptrace and /proc/<pid>/mem protection (Landlock)")
    return missing


# ---------------------------------------------------------------------------
# What a sandboxed worker must read
# ---------------------------------------------------------------------------

# DuckDB 1.5.5 before connect(): /proc/self/cgroup, the cgroup's memory and CPU
# limits (v1: memory/<path>/memory.limit_in_bytes, cpu/cpu.cfs_*; v2:
# <path>/memory.max, cpu.max), /sys/devices/system/cpu/online (glibc's
# get_nprocs), /proc/sys/vm/overcommit_memory (its jemalloc).
_SYSTEM_READ = [
    "/usr/lib", "/lib", "/lib64", "/usr/lib64",
    "/etc/ssl", "/usr/share/ca-certificates", "/etc/ca-certificates",
    "/etc/resolv.conf", "/etc/hosts", "/etc/nsswitch.conf", "/etc/host.conf", "/etc/gai.conf",
    "/etc/localtime", "/usr/share/zoneinfo", "/etc/ld.so.cache",
    "/sys/fs/cgroup", "/sys/devices/system/cpu",
    "/proc/sys/vm/overcommit_memory", "/proc/meminfo", "/proc/cpuinfo", "/proc/stat",
    # the AWS SDK's TLS library (s2n, in the aws extension) aborts the process
    # at its first use without its random source
    "/dev/urandom", "/dev/random", "/dev/null",
]


def worker_read_paths(python_dirs, deps_dir, extension_dir) -> list[str]:
    """The read-only paths a sandboxed worker needs: the running interpreter's
    standard library (call it in the worker, or in a backend, which runs the
    same /usr/bin/python3), python_dirs (the package's directories), deps_dir,
    extension_dir, system libraries, CA bundles, resolver and time-zone files,
    and the pieces of /proc and /sys DuckDB reads. /proc/self is given as
    /proc/<pid>: a rule binds an inode, and /proc/self is a symlink."""
    paths = []
    for key in ("stdlib", "platstdlib"):
        p = sysconfig.get_paths().get(key)
        if p and p not in paths:
            paths.append(p)
    paths += [str(p) for p in python_dirs or ()]
    paths += [str(p) for p in (deps_dir, extension_dir) if p]
    paths += _SYSTEM_READ
    paths.append(f"/proc/{os.getpid()}")
    return [p for p in dict.fromkeys(paths) if os.path.exists(p)]
