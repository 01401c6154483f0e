"""Where a non-superuser's engine may send requests: the egress proxy.

DuckDB's httpfs takes settings from an object store URL's query string
(``s3://b/x?s3_endpoint=host:port``), so neither a check of the statement text
nor DuckDB's ``allowed_directories`` (a prefix match on the URL) can decide
which host a request reaches. DuckDB does send every HTTP request of an engine
through its ``http_proxy`` setting -- plain http as an absolute URI, https as
CONNECT -- and ``lock_configuration`` keeps a role from changing that setting.
So every non-superuser's engine gets a proxy of its own, a child process of
the backend running this file, that lets a request through only to a host and
port the role's secrets or the administrator named (``Policy``), and never to
a link-local (instance metadata) address, whatever the name resolves to.

Refusals are reported to the backend on the child's standard output, so the
user gets a 42501 naming the host instead of DuckDB's HTTP error. The child
exits when the backend closes its standard input (engine closed, backend gone).

This module is imported by the backend (Policy, Proxy) and run as a script by
the server's Python (the proxy itself); the script part uses the standard
library only.
"""

import ipaddress
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import threading

# Addresses never contacted, whatever name resolves to them: link-local
# (cloud instance metadata, 169.254.169.254 / fd00:ec2::254) and "this host".
NEVER = [ipaddress.ip_network(n) for n in ("169.254.0.0/16", "0.0.0.0/8", "fe80::/10", "fd00:ec2::/32", "::/128")]

HEAD_LIMIT = 65536
CONNECT_TIMEOUT = 10.0
IDLE_TIMEOUT = 600.0


# --- the policy --------------------------------------------------------------

_HOSTPORT = re.compile(r"^(\[[0-9a-fA-F:.]+\]|[^:/\s\[\]]+)(?::(\d{1,5}))?$")


def split_hostport(authority, default_ports=(443, 80)):
    """'host[:port]' -> (host, ports) with the host lowercased, or None."""
    m = _HOSTPORT.match((authority or "").strip())
    if not m:
        return None
    host = m.group(1).strip("[]").lower().rstrip(".")
    if not host:
        return None
    ports = (int(m.group(2)),) if m.group(2) else tuple(default_ports)
    if any(not 0 < p < 65536 for p in ports):
        return None
    return host, ports


def url_hostport(url):
    """The (host, ports) an http(s) URL or URL prefix names, or None."""
    m = re.match(r"^(https?)://([^/?#]*)", url or "", re.IGNORECASE)
    if not m:
        return None
    authority = m.group(2).rsplit("@", 1)[-1]
    return split_hostport(authority, (443,) if m.group(1).lower() == "https" else (80,))


class Policy:
    """Hosts (exact, or '.suffix' for a domain and its subdomains) and ports."""

    __slots__ = ("rules",)

    def __init__(self, rules=()):
        # rules: iterable of (host or '.suffix', port)
        self.rules = tuple(sorted({(h.lower(), int(p)) for h, p in rules}))

    def allows(self, host, port):
        host = host.lower().rstrip(".")
        for pattern, p in self.rules:
            if p != port:
                continue
            if pattern.startswith("."):
                if host.endswith(pattern) or host == pattern[1:]:
                    return True
            elif host == pattern:
                return True
        return False

    def to_json(self):
        return json.dumps({"rules": [list(r) for r in self.rules]})

    @classmethod
    def from_json(cls, text):
        return cls(tuple(r) for r in json.loads(text)["rules"])


def never_contacted(address):
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in net for net in NEVER)


# --- the backend's side ------------------------------------------------------

def _server_python():
    """The interpreter that runs the backend's Python (plpython3u links it)."""
    exe = sys.executable or ""
    if os.path.basename(exe).startswith("python") and os.access(exe, os.X_OK):
        return exe
    return os.path.join(sys.base_exec_prefix, "bin", f"python{sys.version_info[0]}.{sys.version_info[1]}")


class Proxy:
    """The proxy process of one engine. Started and stopped by the backend."""

    def __init__(self, policy):
        import subprocess
        self.policy = policy
        self.proc = subprocess.Popen(
            [_server_python(), "-I", "-S", os.path.abspath(__file__)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            close_fds=True, cwd="/", env={"PATH": "/usr/bin:/bin", "LC_ALL": "C"})
        try:
            self.proc.stdin.write((policy.to_json() + "\n").encode())
            self.proc.stdin.flush()
            line = self._readline(5.0)
            if not line.startswith(b"port "):
                raise OSError("the egress proxy did not start")
            self.port = int(line.split()[1])
        except BaseException:
            self.close()
            raise
        os.set_blocking(self.proc.stdout.fileno(), False)
        self._buffer = b""

    def _readline(self, timeout):
        fd = self.proc.stdout.fileno()
        out = b""
        while not out.endswith(b"\n"):
            ready, _, _ = select.select([fd], [], [], timeout)
            if not ready:
                break
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            out += chunk
        return out

    @property
    def address(self):
        return f"127.0.0.1:{self.port}"

    def alive(self):
        return self.proc.poll() is None

    def refused(self):
        """Hosts refused since the last call, oldest first."""
        try:
            while True:
                chunk = os.read(self.proc.stdout.fileno(), 65536)
                if not chunk:
                    break
                self._buffer += chunk
        except (BlockingIOError, OSError):
            pass
        lines, _, self._buffer = self._buffer.rpartition(b"\n")
        out = []
        for line in lines.split(b"\n"):
            if line.startswith(b"refused "):
                host = line[8:].decode("ascii", "replace")
                if host not in out:
                    out.append(host)
        return out

    def close(self):
        proc, self.proc = getattr(self, "proc", None), None
        if proc is None:
            return
        for f in (proc.stdin, proc.stdout):
            try:
                f.close()
            except OSError:
                pass
        try:
            proc.wait(timeout=2)
        except subprocess.TimeoutExpired:     # still running: end the process we started
            proc.kill()
            proc.wait()


# --- the proxy process ---------------------------------------------------------

class _State:
    policy = Policy()
    lock = threading.Lock()


def _report(host, port):
    try:
        os.write(1, f"refused {host}:{port}\n".encode("ascii", "replace"))
    except OSError:     # the backend is not reading (full pipe) or gone
        pass


def _read_head(conn):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return None, b""
        data += chunk
        if len(data) > HEAD_LIMIT:
            return None, b""
    head, _, rest = data.partition(b"\r\n\r\n")
    return head.decode("latin-1"), rest


def _deny(conn, host, port, reason=b"not allowed"):
    _report(host, port)
    body = b"duckdb_secrets: the engine may not reach this host (" + reason + b")\n"
    conn.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nConnection: close\r\n"
                 b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)


def _open(host, port):
    """A connection to host:port, or None if it resolves only to addresses never contacted."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    last = None
    for family, kind, proto, _, addr in infos:
        if never_contacted(addr[0]):
            continue
        s = socket.socket(family, kind, proto)
        s.settimeout(CONNECT_TIMEOUT)
        try:
            s.connect(addr)
            s.settimeout(None)
            return s
        except OSError as e:
            last = e
            s.close()
    if last is not None:
        raise last
    return None


def _relay(a, b):
    """Copy both ways until either side closes (or both are idle too long)."""
    peers = {a: b, b: a}
    while True:
        ready, _, _ = select.select([a, b], [], [], IDLE_TIMEOUT)
        if not ready:
            return
        for s in ready:
            try:
                data = s.recv(262144)
                if not data:
                    return
                peers[s].sendall(data)
            except OSError:
                return


def _handle(conn):
    upstream = None
    try:
        conn.settimeout(60)
        head, rest = _read_head(conn)
        if head is None:
            return
        lines = head.split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3:
            return
        method, target, version = parts
        if method == "CONNECT":
            hp = split_hostport(target, ())
            if hp is None or len(hp[1]) != 1:
                return _deny(conn, target[:200], 0, b"bad target")
        else:
            hp = url_hostport(target)
            if hp is None or not target.lower().startswith("http://"):
                return _deny(conn, target[:200], 0, b"bad target")
        host, (port,) = hp[0], hp[1][:1]
        with _State.lock:
            policy = _State.policy
        if not policy.allows(host, port):
            return _deny(conn, host, port)
        try:
            upstream = _open(host, port)
        except OSError:
            conn.sendall(b"HTTP/1.1 502 Bad Gateway\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
            return
        if upstream is None:
            return _deny(conn, host, port, b"link-local address")
        conn.settimeout(None)
        if method == "CONNECT":
            conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            if rest:
                upstream.sendall(rest)
        else:
            # One request per connection: the next may name another host.
            path = "/" + target.split("/", 3)[3] if target.count("/") >= 3 else "/"
            keep = [h for h in lines[1:] if h.split(":", 1)[0].strip().lower()
                    not in ("proxy-connection", "proxy-authorization", "connection", "keep-alive")]
            out = "\r\n".join([f"{method} {path} {version}", *keep, "Connection: close"]) + "\r\n\r\n"
            upstream.sendall(out.encode("latin-1") + rest)
        _relay(conn, upstream)
    except OSError:
        pass
    finally:
        for s in (conn, upstream):
            if s is not None:
                try:
                    s.close()
                except OSError:
                    pass


def _policy_reader():
    """New policies arrive one JSON line each; end of input means the backend is done."""
    for line in sys.stdin.buffer:
        try:
            policy = Policy.from_json(line.decode())
        except (ValueError, KeyError, TypeError):
            continue
        with _State.lock:
            _State.policy = policy
    os._exit(0)


def _name_this_process():
    """ps shows it as its backend's egress proxy (run as a script: the package is beside it)."""
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    try:
        from duckdb_secrets.proctitle import set_title
    except ImportError:
        return
    set_title(f"postgres: duckdb egress proxy for backend {os.getppid()}", "duckdb egress")


def main():
    # PostgreSQL signals a backend's whole process group (cancel: SIGINT);
    # only the backend acts on those. SIGTERM (terminate, shutdown) ends us too.
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGALRM, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    first = sys.stdin.buffer.readline()
    if not first:
        return
    _State.policy = Policy.from_json(first.decode())
    _name_this_process()
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    os.write(1, f"port {listener.getsockname()[1]}\n".encode())
    os.set_blocking(1, False)
    threading.Thread(target=_policy_reader, daemon=True).start()
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=_handle, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    main()
