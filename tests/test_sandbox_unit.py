"""duckdb_secrets.sandbox, measured from outside: every test runs the code
under test in a child `/usr/bin/python3 -I -S` (the worker's interpreter) and
counts what actually happened -- bytes read, connections accepted by a
loopback server, files on disk, exit statuses -- rather than trusting a
setting. No PostgreSQL cluster; needs the deps installed by `make install`
(duckdb 1.5.5 and its extensions), found through pg_config."""

import json
import os
import shutil
import signal
import socket
import subprocess
import textwrap
import threading
import time
import uuid

import pytest

from duckdb_secrets import sandbox

pytestmark = pytest.mark.inprocess

PYTHON = "/usr/bin/python3"
PLPYTHON = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "plpython")
NOBODY = 65534


def _pkglibdir():
    try:
        return subprocess.run(["pg_config", "--pkglibdir"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


_LIB = _pkglibdir()
DEPS = os.path.join(_LIB, "duckdb_secrets", "deps") if _LIB else None
EXT_DIR = os.path.join(_LIB, "duckdb_secrets", "extensions", "role") if _LIB else None
HTTPFS = os.path.join(EXT_DIR, "v1.5.5", "linux_amd64", "httpfs.duckdb_extension") if _LIB else None


@pytest.fixture(scope="module")
def deps():
    if not (DEPS and os.path.isdir(os.path.join(DEPS, "duckdb")) and os.path.isfile(HTTPFS)):
        pytest.skip("duckdb deps/extensions not installed ($(pg_config --pkglibdir)/duckdb_secrets; make install)")
    return DEPS


# Every child starts with this: the package and the deps on sys.path, the
# test's parameters in ARGS (argv[1], JSON), and done() to hand back RESULT.
_PRELUDE = """
import json, os, sys
sys.path[:0] = [{plpython!r}, {deps!r}]
from duckdb_secrets import sandbox
ARGS = json.loads(sys.argv[1])
RESULT = {{}}
def done():
    sys.stdout.write("RESULT " + json.dumps(RESULT) + "\\n")
    sys.stdout.flush()
def err(f, *a, **k):
    try:
        r = f(*a, **k)
        return r if isinstance(r, (int, float, str, list)) else "ok"
    except Exception as e:
        return type(e).__name__ + ": " + (str(e).splitlines() or [""])[0][:120]
"""


def child_code(body):
    return _PRELUDE.format(plpython=PLPYTHON, deps=DEPS or "") + textwrap.dedent(body)


def child_cmd(body, args=None):
    return [PYTHON, "-I", "-S", "-c", child_code(body), json.dumps(args or {})]


def child_env(abi_max=None):
    env = {"PATH": "/usr/bin:/bin", "AWS_EC2_METADATA_DISABLED": "true", "HOME": "/nonexistent"}
    if abi_max is not None:
        env[sandbox.ABI_ENV] = str(abi_max)
    return env


def run_child(body, args=None, abi_max=None, timeout=30, **kw):
    proc = subprocess.run(child_cmd(body, args), env=child_env(abi_max), capture_output=True, text=True,
                          timeout=timeout, **kw)
    return proc, parse(proc.stdout)


def parse(stdout):
    for line in stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    return None


def _status(pid):
    with open(f"/proc/{pid}/status") as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


# The duckdb connection every engine-side child makes.
_CONNECT = """
import duckdb
con = duckdb.connect(':memory:', config={'threads': 2, 'memory_limit': '200MB',
                                         'extension_directory': ARGS['ext_dir'],
                                         'autoinstall_known_extensions': False,
                                         'autoload_known_extensions': False})
con.execute("SET enable_progress_bar = false")
con.execute(f"LOAD '{ARGS['httpfs']}'")
RESULT['select42'] = con.execute('SELECT 42').fetchall()[0][0]
"""


# ---------------------------------------------------------------------------
# harden()
# ---------------------------------------------------------------------------

def test_no_core_file_after_harden(tmp_path, deps):
    # core_pattern decides where a core goes: a plain name ("core" here) is a
    # file in the crashing process's cwd, so counting files in a fresh cwd sees
    # it; a "|handler" pattern pipes it to a program instead (then the control
    # below proves nothing and only the in-process checks of the next test count).
    with open("/proc/sys/kernel/core_pattern") as f:
        pattern = f.read().strip()
    control_dir, hardened_dir = tmp_path / "control", tmp_path / "hardened"
    control_dir.mkdir()
    hardened_dir.mkdir()
    # Both children first lift the soft core limit to the hard one (the shell
    # default here is 0), so that it is harden() that brings it down.
    lift = "import resource; resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY,) * 2)\n"
    control = subprocess.Popen(child_cmd(lift + "os.abort()\n"), cwd=control_dir, env=child_env(),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    hardened = subprocess.Popen(child_cmd(lift + "sandbox.harden(os.getppid(), None)\nos.abort()\n"),
                                cwd=hardened_dir, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    control.communicate(timeout=30)
    hardened.communicate(timeout=30)
    assert control.returncode == hardened.returncode == -signal.SIGABRT
    if not pattern.startswith("|") and "/" not in pattern:
        assert os.listdir(control_dir), "control: no core file although the limit allowed one"
    assert os.listdir(hardened_dir) == []


def test_harden_state(deps):
    # Simulate what a PostgreSQL backend leaves to its children: blocked and
    # ignored signals. harden() must clear them.
    body = """
    import resource, signal, ctypes
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGALRM})
    for s in (signal.SIGINT, signal.SIGHUP, signal.SIGCHLD, signal.SIGUSR2):
        signal.signal(s, signal.SIG_IGN)
    sandbox.harden(os.getppid(), 3 << 30, oom_score_adj=900)
    libc = ctypes.CDLL(None)
    RESULT['dumpable'] = libc.prctl(3, 0, 0, 0, 0)          # PR_GET_DUMPABLE
    RESULT['nnp'] = libc.prctl(39, 0, 0, 0, 0)              # PR_GET_NO_NEW_PRIVS
    RESULT['core'] = resource.getrlimit(resource.RLIMIT_CORE)
    RESULT['data'] = resource.getrlimit(resource.RLIMIT_DATA)
    RESULT['oom'] = open('/proc/self/oom_score_adj').read().strip()
    RESULT['pid'] = os.getpid()
    done()
    sys.stdin.read()            # stay alive until the test has looked at /proc/<pid>
    """
    proc = subprocess.Popen(child_cmd(body), env=child_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    try:
        result = parse(proc.stdout.readline())
        status = _status(proc.pid)
    finally:
        proc.communicate("", timeout=10)
    assert result["pid"] == proc.pid
    assert result["dumpable"] == 0 and result["nnp"] == 1
    assert result["core"] == [0, 0]
    assert result["data"] == [3 << 30, 3 << 30]
    assert result["oom"] == "900"
    assert status["NoNewPrivs"].strip() == "1"
    assert int(status["SigBlk"], 16) == 0
    ignored = int(status["SigIgn"], 16)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGQUIT, signal.SIGALRM, signal.SIGUSR1, signal.SIGUSR2,
                signal.SIGHUP, signal.SIGCHLD):
        assert not ignored & (1 << (sig - 1)), f"{sig!r} still ignored"
    # SIGPIPE stays ignored on purpose (an HTTP peer closing first must not kill the worker).
    assert ignored & (1 << (signal.SIGPIPE - 1))


@pytest.mark.skipif(os.geteuid() != 0, reason="needs to start processes as another uid")
def test_non_dumpable_hides_environ_from_same_uid(deps):
    # Root may read any /proc/<pid>/environ, so the reader and the child both
    # run as nobody: same uid, no privilege -- the case of a PostgreSQL
    # backend's other processes.
    body = """
    if ARGS['harden']:
        sandbox.harden(os.getppid(), None)
    done()
    sys.stdin.read()
    """
    reader = textwrap.dedent("""
        import sys
        try:
            print(len(open(sys.argv[1], 'rb').read()))
        except OSError as e:
            print(type(e).__name__)
    """)
    seen = {}
    for harden in (False, True):
        proc = subprocess.Popen(child_cmd(body, {"harden": harden}), env=dict(child_env(), CANARY_ENV="x" * 50),
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, user=NOBODY,
                                group=NOBODY, extra_groups=[], cwd="/")
        try:
            assert parse(proc.stdout.readline()) == {}
            out = subprocess.run([PYTHON, "-I", "-S", "-c", reader, f"/proc/{proc.pid}/environ"],
                                 capture_output=True, text=True, user=NOBODY, group=NOBODY, extra_groups=[],
                                 cwd="/", timeout=10).stdout.strip()
            owner = os.stat(f"/proc/{proc.pid}/environ").st_uid
        finally:
            proc.communicate("", timeout=10)
        seen[harden] = (out, owner)
    assert int(seen[False][0]) > 50 and seen[False][1] == NOBODY        # control: readable
    assert seen[True] == ("PermissionError", 0)      # non-dumpable: /proc/<pid>/* belongs to root


def test_dies_with_its_parent(deps):
    # grandparent (a subreaper, so that it can wait for the orphan) -> parent ->
    # child; the parent is SIGKILLed and the child must follow within 2 s.
    body = """
    import ctypes, signal, subprocess, time
    ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)         # PR_SET_CHILD_SUBREAPER
    parent_code = (
        "import subprocess, sys, time\\n"
        "subprocess.Popen([sys.executable, '-I', '-S', '-c', sys.argv[1], sys.argv[2]])\\n"
        "time.sleep(60)\\n")
    child_code = ARGS['child']
    parent = subprocess.Popen([sys.executable, '-I', '-S', '-c', parent_code, child_code, '{}'],
                              stdout=subprocess.PIPE, text=True)
    child_pid = int(parent.stdout.readline())
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    t0 = time.monotonic()
    while time.monotonic() - t0 < 5:
        pid, status = os.waitpid(child_pid, os.WNOHANG)
        if pid:
            RESULT['signal'] = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
            break
        time.sleep(0.01)
    else:
        os.kill(child_pid, signal.SIGKILL)
        os.waitpid(child_pid, 0)
    RESULT['seconds'] = time.monotonic() - t0
    done()
    """
    child = child_code("""
    import time
    sandbox.harden(os.getppid(), None)
    print(os.getpid(), flush=True)
    time.sleep(60)
    """)
    proc, result = run_child(body, {"child": child})
    assert proc.returncode == 0, proc.stderr
    assert result["signal"] == signal.SIGKILL
    assert result["seconds"] < 2


def test_parent_already_gone_exits_70(deps):
    # The race harden() closes: the parent died before PR_SET_PDEATHSIG, so
    # getppid() is no longer the pid the worker was given.
    proc, result = run_child("sandbox.harden(os.getppid() + 100000, None)\ndone()\n")
    assert proc.returncode == 70
    assert result is None


def test_data_limit(deps):
    body = """
    if ARGS['limit']:
        sandbox.harden(os.getppid(), ARGS['limit'])
    RESULT['python'] = err(lambda: len(bytearray(600 << 20)))
    if ARGS['limit']:
        import duckdb
        con = duckdb.connect(':memory:', config={'threads': 2, 'memory_limit': '200MB'})
        RESULT['duckdb'] = err(lambda: con.execute("SELECT length(repeat('x', 600000000))").fetchall())
        RESULT['after'] = con.execute('SELECT 42').fetchall()[0][0]
    done()
    """
    control, control_result = run_child(body, {"limit": None})
    proc, result = run_child(body, {"limit": 512 << 20})
    assert control.returncode == 0 and control_result["python"] == 600 << 20
    assert proc.returncode == 0, proc.stderr        # the worker survives, with errors
    assert result["python"].startswith("MemoryError")
    assert result["duckdb"].startswith("OutOfMemoryException")
    assert result["after"] == 42
    import resource
    assert resource.getrlimit(resource.RLIMIT_DATA) != (512 << 20, 512 << 20)   # only the child


# ---------------------------------------------------------------------------
# restrict(): files
# ---------------------------------------------------------------------------

# Probes run three ways: from the main thread, through DuckDB's own pool
# threads (a multi-file read_text is split among them: threads=2) and from a
# Python thread started after restrict().
_FILE_PROBES = """
import subprocess, threading
def probes(tag):
    r = {}
    def duck_bytes(paths):
        try:
            cur = con.cursor()
            return cur.execute('SELECT coalesce(sum(length(content)), 0) FROM read_text(?)', [paths]).fetchall()[0][0]
        except Exception as e:
            return type(e).__name__
    r['allowed'] = duck_bytes([ARGS['allowed']] * 32)
    r['passwd'] = duck_bytes(['/etc/passwd'])
    r['passwd_many'] = duck_bytes([ARGS['allowed']] * 31 + ['/etc/passwd'])
    r['outside'] = duck_bytes([ARGS['outside']] * 32)
    r['escape'] = duck_bytes([os.path.join(ARGS['rw'], '..', 'outside', 'secret.txt')])
    r['proc_root'] = duck_bytes(['/proc/self/root/etc/passwd'])
    def py_bytes(path):
        try:
            with open(path, 'rb') as f:
                return len(f.read())
        except OSError as e:
            return type(e).__name__
    r['py_passwd'] = py_bytes('/etc/passwd')
    r['py_outside'] = py_bytes(ARGS['outside'])
    r['py_allowed'] = py_bytes(ARGS['allowed'])
    cur = con.cursor()
    r['copy_tmp'] = err(cur.execute, f"COPY (SELECT 1) TO '{ARGS['tmp_target']}-{tag}.csv'")
    r['copy_rw'] = err(cur.execute, f"COPY (SELECT 1) TO '{ARGS['rw']}/out-{tag}.csv'")
    r['copy_escape'] = err(cur.execute, f"COPY (SELECT 1) TO '{ARGS['rw']}/../escape-{tag}.csv'")
    r['subprocess'] = err(lambda: subprocess.run(['/bin/true']).returncode)
    r['system'] = os.system('/bin/true')
    # A copy of true where the sandbox may read: readable, not executable.
    r['exec_readable'] = err(lambda: subprocess.run([ARGS['true']]).returncode)
    r['py_true'] = py_bytes(ARGS['true'])
    return r
RESULT['main'] = probes('main')
box = {}
t = threading.Thread(target=lambda: box.update(probes('thread')))
t.start()
t.join()
RESULT['thread'] = box
done()
"""


def _file_setup(tmp_path):
    allowed_dir, outside_dir, rw = tmp_path / "ro", tmp_path / "outside", tmp_path / "rw"
    for d in (allowed_dir, outside_dir, rw):
        d.mkdir()
    (allowed_dir / "ok.txt").write_text("fine\n")
    (outside_dir / "secret.txt").write_text("secret\n")
    shutil.copy("/bin/true", allowed_dir / "true")
    return {"allowed": str(allowed_dir / "ok.txt"), "allowed_dir": str(allowed_dir),
            "outside": str(outside_dir / "secret.txt"), "rw": str(rw), "true": str(allowed_dir / "true"),
            "tmp_target": f"/tmp/ds-sandbox-{uuid.uuid4().hex}",
            "ext_dir": EXT_DIR, "httpfs": HTTPFS, "deps": DEPS}


# The worker's order: harden, restrict, and only then import duckdb (importing
# it creates the default connection and a pool thread, which restrict() would
# not bind: see test_restrict_refuses_a_second_thread).
_RESTRICT_FILES = """
sandbox.harden(os.getppid(), None)
ro = sandbox.worker_read_paths([ARGS['plpython']], ARGS['deps'], ARGS['ext_dir']) + [ARGS['allowed_dir']]
RESULT['enforced'] = sandbox.restrict(ro, [ARGS['rw']], None)
"""


def _check_file_probes(result, args, tmp_path):
    for tag in ("main", "thread"):
        r = result[tag]
        assert r["allowed"] == 32 * 5, (tag, r)         # control: DuckDB reads what is allowed
        assert r["py_allowed"] == 5
        for key in ("passwd", "passwd_many", "outside", "escape", "proc_root"):
            assert r[key] == "IOException", (tag, key, r[key])     # 0 bytes: the query failed
        assert r["py_passwd"] == r["py_outside"] == "PermissionError"
        assert r["copy_tmp"].startswith("IOException")
        assert not os.path.exists(f"{args['tmp_target']}-{tag}.csv")
        assert r["copy_rw"] == "ok"
        with open(os.path.join(args["rw"], f"out-{tag}.csv")) as f:
            assert f.read().split() == ["1", "1"]        # header and row
        assert r["copy_escape"].startswith("IOException")
        assert not os.path.exists(tmp_path / f"escape-{tag}.csv")
        assert r["subprocess"].startswith("PermissionError")        # execve refused
        assert r["exec_readable"].startswith("PermissionError") and r["py_true"] > 0
        assert r["system"] != 0


def test_restrict_files(tmp_path, deps):
    args = dict(_file_setup(tmp_path), plpython=PLPYTHON)
    proc, result = run_child(_RESTRICT_FILES + _CONNECT + _FILE_PROBES, args)
    assert proc.returncode == 0, proc.stderr
    assert result["enforced"] == {"abi": sandbox.landlock_abi(), "files": True, "tcp": False, "scope": True,
                                  "ptrace": True, "sockets": True}
    # No execute right anywhere, yet the interpreter's extension modules,
    # _duckdb's .so and the httpfs extension (dlopen, mmap PROT_EXEC) loaded.
    assert result["select42"] == 42
    _check_file_probes(result, args, tmp_path)


def test_restrict_files_on_abi_2(tmp_path, deps):
    # Debian 12's own kernel: files yes, TCP and scoping no.
    args = dict(_file_setup(tmp_path), plpython=PLPYTHON)
    proc, result = run_child(_RESTRICT_FILES + _CONNECT + _FILE_PROBES, args, abi_max=2)
    assert proc.returncode == 0, proc.stderr
    enforced = result["enforced"]
    assert enforced == {"abi": 2, "files": True, "tcp": False, "scope": False, "ptrace": True, "sockets": True}
    missing = sandbox.describe_missing(enforced, wanted_files=True, wanted_tcp=True)
    assert missing == ["TCP connect restrictions (Landlock ABI 4)",
                       "signal and abstract-socket scoping (Landlock ABI 6)"]
    _check_file_probes(result, args, tmp_path)


def test_no_landlock_at_all(tmp_path, deps):
    args = _file_setup(tmp_path)
    body = """
    import socket
    sandbox.harden(os.getppid(), None)
    RESULT['enforced'] = sandbox.restrict(['/usr'], [], [])
    RESULT['passwd'] = len(open('/etc/passwd', 'rb').read())
    RESULT['udp'] = err(socket.socket, socket.AF_INET, socket.SOCK_DGRAM)
    done()
    """
    proc, result = run_child(body, args, abi_max=0)
    assert proc.returncode == 0, proc.stderr
    assert result["enforced"] == {"abi": 0, "files": False, "tcp": False, "scope": False, "ptrace": False,
                                  "sockets": True}
    assert result["passwd"] > 0             # honest: nothing from Landlock
    assert result["udp"].startswith("PermissionError")      # the seccomp filter does not need Landlock
    missing = sandbox.describe_missing(result["enforced"], wanted_files=True, wanted_tcp=True)
    assert missing[:3] == ["file-system restrictions (Landlock)", "TCP connect restrictions (Landlock ABI 4)",
                           "signal and abstract-socket scoping (Landlock ABI 6)"]
    assert sandbox.describe_missing(result["enforced"], wanted_files=False, wanted_tcp=False)[0].startswith(
        "signal")


def test_restrict_refuses_a_second_thread(deps):
    # import duckdb starts the default connection's pool thread; a restrict()
    # after it would leave that thread free (measured: a read_text of
    # /etc/passwd on duckdb.default_connection() then returned its bytes).
    body = """
    import duckdb
    RESULT['threads'] = len(os.listdir('/proc/self/task'))
    RESULT['restrict'] = err(sandbox.restrict, [], [], [])
    done()
    """
    proc, result = run_child(body)
    assert proc.returncode == 0, proc.stderr
    assert result["threads"] > 1
    assert result["restrict"].startswith("RuntimeError")


def test_missing_paths_are_skipped(tmp_path, deps):
    body = """
    RESULT['enforced'] = sandbox.restrict(['/nonexistent/dir', ARGS['file'] + '/not-a-dir', ARGS['file']],
                                          ['/nonexistent/rw'], None, deny_other_sockets=False)
    RESULT['file'] = len(open(ARGS['file'], 'rb').read())
    RESULT['dir'] = err(os.listdir, os.path.dirname(ARGS['file']))
    done()
    """
    f = tmp_path / "single.txt"
    f.write_text("abc")
    proc, result = run_child(body, {"file": str(f)})
    assert proc.returncode == 0, proc.stderr
    assert result["enforced"]["files"] is True
    assert result["file"] == 3                  # a rule on one file: that file only
    assert result["dir"].startswith("PermissionError")


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping the dentry cache needs root")
def test_proc_rules_survive_dentry_reclaim(tmp_path, deps):
    # procfs makes a new inode for /proc/<pid> when its dentry was reclaimed;
    # restrict() pins the rule paths with open descriptors. Without that pin,
    # the next connect() aborted DuckDB (it reads /proc/self/cgroup).
    body = """
    import sys
    sandbox.harden(os.getppid(), None)
    ro = sandbox.worker_read_paths([ARGS['plpython']], ARGS['deps'], ARGS['ext_dir'])
    RESULT['enforced'] = sandbox.restrict(ro, [], None)
    import duckdb
    duckdb.connect(':memory:', config={'threads': 1}).close()
    print('ready', flush=True)
    sys.stdin.readline()
    RESULT['cgroup'] = len(open('/proc/self/cgroup', 'rb').read())
    RESULT['select'] = duckdb.connect(':memory:', config={'threads': 1}).execute('SELECT 7').fetchall()[0][0]
    done()
    """
    args = {"plpython": PLPYTHON, "deps": DEPS, "ext_dir": EXT_DIR}
    proc = subprocess.Popen(child_cmd(body, args), env=child_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    # Dentries and inodes only, not the page cache; more than once, as the
    # dentry LRU gives a recently used entry a second chance.
    for _ in range(3):
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("2")
    out, errout = proc.communicate("go\n", timeout=30)
    assert proc.returncode == 0, errout
    result = parse(out)
    assert result["cgroup"] > 0 and result["select"] == 7


# ---------------------------------------------------------------------------
# restrict(): network and sockets
# ---------------------------------------------------------------------------

class LoopbackServer:
    """Counts the TCP connections accepted on 127.0.0.1:<port>."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted += 1
            conn.close()

    def close(self):
        time.sleep(0.1)         # let a late connection be counted
        self._stop.set()
        self._thread.join()
        self.sock.close()


@pytest.fixture
def servers():
    pair = (LoopbackServer(), LoopbackServer())
    yield pair
    for s in pair:
        s.close()


_NET_PROBES = """
import ctypes, errno, socket, time
def connect(port):
    s = socket.socket()
    try:
        s.settimeout(2)
        s.connect(('127.0.0.1', port))
        return 'ok'
    except OSError as e:
        return type(e).__name__
    finally:
        s.close()
RESULT['allowed'] = connect(ARGS['allowed'])
RESULT['other'] = connect(ARGS['other'])
RESULT['duck_http'] = err(lambda: con.execute(f"SELECT content FROM read_text('http://127.0.0.1:{ARGS['other']}/x')")
                          .fetchall())
RESULT['udp'] = err(socket.socket, socket.AF_INET, socket.SOCK_DGRAM)
RESULT['udp6'] = err(socket.socket, socket.AF_INET6, socket.SOCK_DGRAM)
RESULT['unix'] = err(socket.socket, socket.AF_UNIX, socket.SOCK_STREAM)
RESULT['socketpair'] = err(socket.socketpair)
RESULT['netlink'] = err(socket.socket, socket.AF_NETLINK, socket.SOCK_RAW, 0)
RESULT['sctp'] = err(socket.socket, socket.AF_INET, socket.SOCK_STREAM, 132)
RESULT['tcp6'] = err(lambda: socket.socket(socket.AF_INET6, socket.SOCK_STREAM | socket.SOCK_NONBLOCK).close())
def resolve(name):
    t0 = time.monotonic()
    r = err(lambda: socket.getaddrinfo(name, 80, type=socket.SOCK_STREAM)[0][4][0])
    return [r, time.monotonic() - t0]
# After the UDP probe above: no DNS packet can leave, /etc/hosts still answers.
RESULT['hosts'] = resolve('localhost')
RESULT['dns'] = resolve('ds-sandbox-probe.invalid')
def bind():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
RESULT['bind'] = err(bind)
libc = ctypes.CDLL(None, use_errno=True)
params = ctypes.create_string_buffer(120)
rc = libc.syscall(425, 4, params)                       # io_uring_setup
RESULT['io_uring'] = errno.errorcode.get(ctypes.get_errno()) if rc < 0 else os.close(rc) or 'ok'
done()
"""


def _net_args(servers):
    return {"allowed": servers[0].port, "other": servers[1].port, "ext_dir": EXT_DIR, "httpfs": HTTPFS,
            "deps": DEPS, "plpython": PLPYTHON}


_RESTRICT_NET = """
sandbox.harden(os.getppid(), None)
ro = sandbox.worker_read_paths([ARGS['plpython']], ARGS['deps'], ARGS['ext_dir'])
RESULT['enforced'] = sandbox.restrict(ro, [], [ARGS['allowed']])
"""


def test_restrict_tcp(servers, deps):
    proc, result = run_child(_RESTRICT_NET + _CONNECT + _NET_PROBES, _net_args(servers))
    allowed, other = servers
    allowed.close()
    other.close()
    assert proc.returncode == 0, proc.stderr
    assert result["enforced"]["tcp"] is True and result["enforced"]["sockets"] is True
    assert result["allowed"] == "ok" and allowed.accepted == 1
    assert result["other"] == "PermissionError"
    assert result["duck_http"].startswith("IOException")
    assert other.accepted == 0
    for key in ("udp", "udp6", "unix", "socketpair", "netlink", "sctp"):
        assert result[key].startswith("PermissionError"), (key, result[key])
    assert result["tcp6"] == "ok"
    assert result["bind"].startswith("PermissionError")
    assert result["io_uring"] == "EACCES"
    # glibc's DNS goes over UDP: refused at once; /etc/hosts names resolve.
    assert result["hosts"][0] == "127.0.0.1"
    assert result["dns"][0].startswith("gaierror") and result["dns"][1] < 1


def test_tcp_not_enforced_on_abi_3_is_reported(servers, deps):
    # The honest side of the report: below ABI 4 the other port is reachable
    # and the dict says so.
    proc, result = run_child(_RESTRICT_NET + _CONNECT + _NET_PROBES, _net_args(servers), abi_max=3)
    servers[1].close()
    assert proc.returncode == 0, proc.stderr
    assert result["enforced"]["tcp"] is False
    assert result["other"] == "ok" and servers[1].accepted >= 1
    assert result["udp"].startswith("PermissionError")      # the seccomp filter still holds


def test_sockets_allowed_without_the_filter(deps):
    body = """
    import socket
    RESULT['enforced'] = sandbox.restrict(None, None, None, scope=False, deny_other_sockets=False)
    a, b = socket.socketpair()
    a.close(); b.close()
    socket.socket(socket.AF_INET, socket.SOCK_DGRAM).close()
    RESULT['ok'] = True
    done()
    """
    proc, result = run_child(body)
    assert proc.returncode == 0, proc.stderr
    assert result["ok"] and result["enforced"]["sockets"] is False


# ---------------------------------------------------------------------------
# restrict(): scoping, ptrace, /proc of the parent
# ---------------------------------------------------------------------------

# A parent that listens on an abstract unix socket, runs the child and
# reports whether it is alive afterwards (a SIGTERM that got through would
# kill it: returncode -15) and how many connections it accepted.
_SCOPE_PARENT = """
import socket, subprocess
name = b'\\0ds-sandbox-' + os.urandom(6).hex().encode()
listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
listener.bind(name)
listener.listen(8)
listener.setblocking(False)
child = subprocess.run([sys.executable, '-I', '-S', '-c', ARGS['child'], json.dumps(dict(ARGS, name=name.hex()))],
                       capture_output=True, text=True)
RESULT['child'] = json.loads(child.stdout.split('RESULT ', 1)[1]) if 'RESULT ' in child.stdout else child.stderr
accepted = 0
while True:
    try:
        listener.accept()[0].close()
        accepted += 1
    except BlockingIOError:
        break
RESULT['accepted'] = accepted
RESULT['alive'] = True
done()
"""

_SCOPE_CHILD = """
import signal, socket
name = bytes.fromhex(ARGS['name'])
def kill(sig):
    os.kill(os.getppid(), sig)
def abstract():
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(name)
def read(what):
    with open(f'/proc/{os.getppid()}/{what}', 'rb') as f:
        if what == 'mem':
            f.seek(0x400000)
        return len(f.read(64))
def probes():
    return {'kill0': err(kill, 0), 'abstract': err(abstract), 'environ': err(read, 'environ'),
            'mem': err(read, 'mem')}
RESULT['before'] = probes()
RESULT['enforced'] = sandbox.restrict(None, None, None, scope=ARGS['scope'], deny_other_sockets=False)
RESULT['after'] = probes()
if RESULT['enforced']['scope']:     # without scoping it would kill the parent
    RESULT['sigterm'] = err(kill, signal.SIGTERM)
done()
"""


def _run_scope(scope, abi_max=None, user=None):
    args = {"child": child_code(_SCOPE_CHILD), "scope": scope}
    kw = {"user": user, "group": user, "extra_groups": [], "cwd": "/"} if user is not None else {}
    proc, result = run_child(_SCOPE_PARENT, args, abi_max=abi_max, **kw)
    assert proc.returncode == 0, (proc.returncode, proc.stderr)     # the parent survived the SIGTERM
    assert result["alive"]
    return result


@pytest.mark.parametrize("user", [None, pytest.param(NOBODY, id="same-uid-nobody")])
def test_scope_signals_abstract_sockets_and_parent_proc(deps, user):
    if user is not None and os.geteuid() != 0:
        pytest.skip("needs to start processes as another uid")
    result = _run_scope(scope=True, user=user)
    child = result["child"]
    assert child["enforced"]["scope"] is True
    # Control, before restrict(): the parent is reachable every way.
    assert child["before"]["kill0"] == "ok" and child["before"]["abstract"] == "ok"
    assert child["before"]["environ"] > 0 and child["before"]["mem"] == 64
    after = child["after"]
    assert after["kill0"].startswith("PermissionError")
    assert child["sigterm"].startswith("PermissionError")
    assert after["abstract"].startswith("PermissionError")
    assert result["accepted"] == 1                  # the control connection only
    # A Landlock domain forbids ptrace-mode access to processes outside it.
    # Measured on 6.18: for a same-uid unprivileged child (the worker runs as
    # postgres) every ptrace-checked file of the parent is refused, environ
    # and mem included. For root, mem, stack, syscall, io and the cwd/exe/root
    # links are refused but environ, maps, auxv, smaps and pagemap (opened in
    # PTRACE_MODE_READ through mm_access) stay readable.
    assert after["mem"].startswith("PermissionError")
    if user is not None:
        assert after["environ"].startswith("PermissionError")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs to start processes as another uid")
def test_ptrace_only_domain_on_old_abi(deps):
    # ABI 1, no file restriction wanted: the make_char|make_block domain
    # alone still keeps a same-uid parent's /proc/<pid>/environ and mem out
    # of reach; signals are not scoped there (reported).
    result = _run_scope(scope=True, abi_max=1, user=NOBODY)
    child = result["child"]
    assert child["enforced"] == {"abi": 1, "files": False, "tcp": False, "scope": False, "ptrace": True,
                                 "sockets": False}
    assert child["after"]["environ"].startswith("PermissionError")
    assert child["after"]["mem"].startswith("PermissionError")
    assert child["after"]["kill0"] == "ok" and child["after"]["abstract"] == "ok"
    assert result["accepted"] == 2


def test_landlock_abi_cap(monkeypatch):
    real = sandbox.landlock_abi()
    monkeypatch.setenv(sandbox.ABI_ENV, "2")
    assert sandbox.landlock_abi() == min(real, 2)
    monkeypatch.setenv(sandbox.ABI_ENV, "0")
    assert sandbox.landlock_abi() == 0
    monkeypatch.setenv(sandbox.ABI_ENV, "not a number")
    assert sandbox.landlock_abi() == real


def test_worker_read_paths(deps):
    # In the worker's interpreter: its standard library is part of the list.
    proc, result = run_child("""
    RESULT['paths'] = sandbox.worker_read_paths(['/nonexistent/pkg', ARGS['plpython']], ARGS['deps'], None)
    RESULT['pid'] = os.getpid()
    done()
    """, {"plpython": PLPYTHON, "deps": DEPS})
    paths = result["paths"]
    assert "/usr/lib/python3.11" in paths and PLPYTHON in paths and DEPS in paths
    assert "/etc/ssl" in paths and "/sys/fs/cgroup" in paths and f"/proc/{result['pid']}" in paths
    assert "/nonexistent/pkg" not in paths
    for p in paths:
        if p == PLPYTHON:       # given, wherever the checkout is (CI clones into /tmp)
            continue
        assert not p.startswith(("/var/lib/postgresql", "/tmp", "/home", "/root")), p
        assert p != "/proc" and p != "/usr/lib/python3/dist-packages"
