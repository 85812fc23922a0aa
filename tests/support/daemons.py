"""Real squid, unbound and dnsmasq on 127.0.0.1, plus a tiny HTTP origin and DNS origin.

Each starter writes its configuration into a fresh temporary directory, picks free ports, waits
until the daemon answers and returns a handle whose ``stop()`` kills exactly the process it
started and removes the directory. Nothing here touches system configuration.

The DNS origin is a dnsmasq answering 127.0.0.1 for every name under ``.test``; the resolvers
under test forward to it, so a name that is not blocked resolves (NOERROR) instead of failing for
lack of an upstream network.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import random
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
from hypothesis import strategies as st

LOOPBACK = "127.0.0.1"
SQUID = shutil.which("squid") or "/usr/sbin/squid"
UNBOUND = shutil.which("unbound") or "/usr/sbin/unbound"
UNBOUND_CHECKCONF = shutil.which("unbound-checkconf") or "/usr/sbin/unbound-checkconf"
UNBOUND_CONTROL = shutil.which("unbound-control") or "/usr/sbin/unbound-control"
DNSMASQ = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"

RCODES = {0: "NOERROR", 2: "SERVFAIL", 3: "NXDOMAIN", 5: "REFUSED"}


class DaemonError(RuntimeError):
    """A daemon did not start, answer or reload; carries the tail of its log."""


def installed(*programs: str) -> bool:
    return all(Path(program).exists() for program in programs)


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


def free_dual_port() -> int:
    """A port free for both TCP and UDP (DNS servers bind both)."""
    for _ in range(50):
        port = free_port()
        with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind((LOOPBACK, port))
            return port
    raise DaemonError("no port free for both TCP and UDP")


def shared_tempdir(prefix: str) -> Path:
    """A temporary directory that squid's unprivileged user can read and write too."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o777)
    return path


@dataclass
class Daemon:
    name: str
    process: subprocess.Popen[bytes]
    directory: Path
    port: int
    log: Path
    extra: dict[str, object] = field(default_factory=dict)

    def stop(self) -> None:
        if self.process.poll() is None:
            # SIGKILL: the daemons keep nothing worth flushing, and squid takes seconds on TERM.
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)
        shutil.rmtree(self.directory, ignore_errors=True)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


# --- HTTP origin ---------------------------------------------------------------------------


class _OriginHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = f"origin ok {self.headers.get('Host', '')}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return


@contextlib.contextmanager
def http_origin() -> Iterator[int]:
    """An HTTP server on 127.0.0.1 answering 200 to every GET; yields its port."""
    server = ThreadingHTTPServer((LOOPBACK, 0), _OriginHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# --- squid ---------------------------------------------------------------------------------


def start_squid(block_file: Path, allow_file: Path, hosts: Sequence[str]) -> Daemon:
    """Squid denying ``block_file`` names unless ``allow_file`` names them.

    ``hosts`` are resolved to 127.0.0.1 through squid's own hosts file, so no DNS is needed.
    """
    directory = shared_tempdir("squid-")
    port = free_port()
    (directory / "hosts").write_text(f"{LOOPBACK} {' '.join(hosts)}\n")
    config = directory / "squid.conf"
    config.write_text(squid_config(directory, port, block_file, allow_file))
    _make_readable(directory, block_file, allow_file)

    process = subprocess.Popen(
        [SQUID, "-N", "-f", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    daemon = Daemon("squid", process, directory, port, directory / "cache.log", {"config": config})
    _wait_until(daemon, lambda: _tcp_open(port))
    return daemon


def squid_config(directory: Path, port: int, block_file: Path, allow_file: Path) -> str:
    return "\n".join(
        [
            f"http_port {LOOPBACK}:{port}",
            f"pid_filename {directory}/squid.pid",
            f"cache_log {directory}/cache.log",
            f"access_log stdio:{directory}/access.log",
            "cache_store_log none",
            "cache deny all",
            "cache_mem 8 MB",
            f"coredump_dir {directory}",
            f"hosts_file {directory}/hosts",
            f"dns_nameservers {LOOPBACK}",
            f"udp_incoming_address {LOOPBACK}",
            "shutdown_lifetime 1 seconds",
            "pinger_enable off",
            f'acl mde_block dstdomain "{block_file}"',
            f'acl mde_allow dstdomain "{allow_file}"',
            "http_access deny mde_block !mde_allow",
            "http_access allow localhost",
            "http_access deny all",
            "",
        ]
    )


def squid_parse(config: Path) -> subprocess.CompletedProcess[str]:
    """``squid -k parse``: exit 0 when squid accepts the configuration and its ACL files."""
    return subprocess.run(
        [SQUID, "-k", "parse", "-f", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def squid_reconfigure(daemon: Daemon) -> None:
    result = subprocess.run(
        [SQUID, "-k", "reconfigure", "-f", str(daemon.extra["config"])],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if result.returncode != 0:
        raise DaemonError(f"squid -k reconfigure failed: {result.stderr}\n{daemon.log_tail()}")


def fetch_through(proxy_port: int, url: str) -> int:
    """The HTTP status squid answers for ``url``."""
    with httpx.Client(proxy=f"http://{LOOPBACK}:{proxy_port}", timeout=10, trust_env=False) as c:
        return c.get(url).status_code


# --- dnsmasq -------------------------------------------------------------------------------


def start_dns_origin(domain: str = "test") -> Daemon:
    """dnsmasq answering 127.0.0.1 for every name under ``domain``."""
    return _start_dnsmasq("dns-origin-", [f"--address=/{domain}/{LOOPBACK}"])


def start_dnsmasq(servers_file: Path, upstream_port: int) -> Daemon:
    """dnsmasq reading ``servers_file`` (re-read on SIGHUP), forwarding the rest upstream."""
    return _start_dnsmasq(
        "dnsmasq-",
        [
            f"--servers-file={servers_file}",
            f"--server={LOOPBACK}#{upstream_port}",
            "--cache-size=0",
        ],
    )


def dnsmasq_test(servers_file: Path) -> subprocess.CompletedProcess[str]:
    """``dnsmasq --test`` with ``servers_file`` read as a configuration file."""
    return subprocess.run(
        [DNSMASQ, "--test", "--conf-file=/dev/null", f"--conf-file={servers_file}"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def reload_dnsmasq(daemon: Daemon) -> None:
    daemon.process.send_signal(signal.SIGHUP)


def _start_dnsmasq(prefix: str, options: list[str]) -> Daemon:
    directory = shared_tempdir(prefix)
    port = free_dual_port()
    log = directory / "dnsmasq.log"
    process = subprocess.Popen(
        [
            DNSMASQ,
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            f"--port={port}",
            f"--listen-address={LOOPBACK}",
            "--bind-interfaces",
            "--no-resolv",
            "--no-hosts",
            "--log-queries",
            f"--log-facility={log}",
            f"--pid-file={directory}/dnsmasq.pid",
            f"--user={pwd.getpwuid(os.geteuid()).pw_name}",
            *options,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    daemon = Daemon("dnsmasq", process, directory, port, log)
    _wait_until(daemon, lambda: _dns_answers(port))
    return daemon


# --- unbound -------------------------------------------------------------------------------


def start_unbound(
    upstream_port: int, *, include: Path | None = None, rpz: Path | None = None
) -> Daemon:
    """unbound forwarding to the DNS origin, with a local-zone include file or an RPZ zone."""
    directory = shared_tempdir("unbound-")
    port, control_port = free_dual_port(), free_port()
    config = directory / "unbound.conf"
    config.write_text(
        unbound_config(directory, port, control_port, upstream_port, include=include, rpz=rpz)
    )
    log = directory / "unbound.log"

    process = subprocess.Popen(
        [UNBOUND, "-d", "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    daemon = Daemon("unbound", process, directory, port, log, {"config": config})
    _wait_until(daemon, lambda: _dns_answers(port))
    return daemon


def unbound_config(
    directory: Path,
    port: int,
    control_port: int,
    upstream_port: int,
    *,
    include: Path | None,
    rpz: Path | None,
) -> str:
    lines = [
        "server:",
        f"  interface: {LOOPBACK}",
        f"  port: {port}",
        "  do-ip6: no",
        '  username: ""',
        '  chroot: ""',
        f'  directory: "{directory}"',
        f'  pidfile: "{directory}/unbound.pid"',
        "  use-syslog: no",
        f'  logfile: "{directory}/unbound.log"',
        "  verbosity: 1",
        "  do-not-query-localhost: no",
        "  access-control: 127.0.0.0/8 allow",
        f'  module-config: "{"respip iterator" if rpz else "iterator"}"',
        "  msg-cache-size: 1m",
        "  rrset-cache-size: 1m",
        "  cache-max-ttl: 0",
        "  cache-max-negative-ttl: 0",
        "  num-threads: 1",
        # unbound answers NXDOMAIN for the reserved "test." domain by default; the tests use it.
        '  local-zone: "test." nodefault',
    ]
    if include is not None:
        lines.append(f'include: "{include}"')
    if rpz is not None:
        lines += ["rpz:", '  name: "rpz.test."', f'  zonefile: "{rpz}"', "  rpz-log: yes"]
    lines += [
        "forward-zone:",
        '  name: "."',
        f"  forward-addr: {LOOPBACK}@{upstream_port}",
        "remote-control:",
        "  control-enable: yes",
        f"  control-interface: {LOOPBACK}",
        f"  control-port: {control_port}",
        "  control-use-cert: no",
        "",
    ]
    return "\n".join(lines)


def unbound_checkconf(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [UNBOUND_CHECKCONF, str(config)], capture_output=True, text=True, timeout=30, check=False
    )


def unbound_control(daemon: Daemon, *command: str) -> str:
    result = subprocess.run(
        [UNBOUND_CONTROL, "-c", str(daemon.extra["config"]), *command],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if result.returncode != 0:
        raise DaemonError(f"unbound-control {' '.join(command)}: {result.stdout}{result.stderr}")
    return result.stdout


# --- DNS client ----------------------------------------------------------------------------


def resolve(port: int, name: str, qtype: int = 1, timeout: float = 3.0) -> tuple[str, int]:
    """Ask 127.0.0.1:``port`` for ``name``; returns (rcode name, number of answers)."""
    query_id = random.randrange(1 << 16)
    header = struct.pack("!HHHHHH", query_id, 0x0100, 1, 0, 0, 0)
    labels = b"".join(bytes([len(part)]) + part.encode() for part in name.split(".") if part)
    packet = header + labels + b"\x00" + struct.pack("!HH", qtype, 1)

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.settimeout(timeout)
        client.sendto(packet, (LOOPBACK, port))
        while True:
            reply, _ = client.recvfrom(4096)
            if struct.unpack("!H", reply[:2])[0] == query_id:
                break
    flags, _, answers = struct.unpack("!HHH", reply[2:8])
    rcode = flags & 0x0F
    return RCODES.get(rcode, str(rcode)), answers


# --- helpers -------------------------------------------------------------------------------


def _make_readable(directory: Path, *files: Path) -> None:
    # Squid started as root drops to its own user and re-reads ACL files as that user on
    # reconfigure, so keep them (in a shared_tempdir) readable to others.
    for path in files:
        if path.exists():
            path.chmod(0o644)
    directory.chmod(0o777)


def _tcp_open(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.2)
        return probe.connect_ex((LOOPBACK, port)) == 0


def _dns_answers(port: int) -> bool:
    try:
        resolve(port, "probe.invalid", timeout=0.2)
    except OSError:
        return False
    return True


def _wait_until(daemon: Daemon, ready: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if daemon.process.poll() is not None:
            tail = daemon.log_tail()
            shutil.rmtree(daemon.directory, ignore_errors=True)
            raise DaemonError(f"{daemon.name} exited with {daemon.process.returncode}:\n{tail}")
        if ready():
            return
        time.sleep(0.05)
    daemon.stop()
    raise DaemonError(f"{daemon.name} did not answer within {timeout} s")


# --- hostile inputs (shared by the unit fuzz tests and the daemon checks) -------------------

HOSTILE_FRAGMENTS = (
    "\n",
    "\r",
    "\r\n",
    "\x00",
    "\x0b",
    "\x0c",
    "\x85",
    "\u2028",
    "\u2029",
    "\ufeff",
    '"',
    "'",
    "`",
    ";",
    "#",
    "$",
    "$(reboot)",
    "\\",
    " ",
    "\t",
    "*",
    "^",
    "/",
    ":",
    "@",
    "%",
    "%0a",
    "..",
    ".",
    "]",
    "[",
    "{",
    "}",
    "|",
    "&",
    "=",
    "server=/x/",
    "local-zone:",
    "http_access allow all",
    "include:",
    "$INCLUDE /etc/passwd",
    "rpz-ip",
    "xn--",
    "Ü",
    "例え",
    "ｅｘａｍｐｌｅ",
    "\u0301",
    "\U0001f600",
    "-",
    "_",
)

_WORDS = (
    "evil",
    "ok",
    "www",
    "test",
    "example",
    "com",
    "a",
    "0",
    "8.8.8.8",
    "2001:4860::8888",
    "[2001:4860::8888]",
    "http://",
    "https://",
    "ftp://",
    ":8080",
    "/path",
    "?q=1",
    "/24",
)
_TYPES = ("Url", "DomainName", "IpAddress", "FileSha256", "CertificateThumbprint", "Bogus")
_ACTIONS = ("Block", "BlockAndRemediate", "AlertAndBlock", "Warn", "Allowed", "Audit", "Nope")


def _typed_values() -> dict[str, st.SearchStrategy[str]]:
    """Per indicator type: real-looking values, some with a hostile fragment spliced in."""
    label = st.from_regex(
        r"[a-zA-Z0-9][a-zA-Z0-9_-]{0,6}[a-zA-Z0-9]|[a-z]|bücher|例え", fullmatch=True
    )
    domain = st.builds(
        lambda labels, tld: ".".join([*labels, tld]),
        st.lists(label, min_size=1, max_size=3),
        st.sampled_from(["test", "com", "example", "Test."]),
    )
    path = st.lists(
        st.one_of(
            st.sampled_from(HOSTILE_FRAGMENTS), st.from_regex(r"[a-z0-9]{1,5}", fullmatch=True)
        ),
        max_size=4,
    ).map(lambda parts: "/" + "".join(parts))
    url = st.builds(
        lambda scheme, host, port, rest: f"{scheme}{host}{port}{rest}",
        st.sampled_from(["", "http://", "https://", "HTTP://", "ftp://"]),
        st.one_of(domain, st.sampled_from(["8.8.8.8", "[2001:4860::8888]", "10.0.0.1"])),
        st.sampled_from(["", ":80", ":443", ":8080", ":0", ":99999"]),
        st.one_of(st.just(""), path),
    )
    address = st.sampled_from(
        ["8.8.8.8", "1.1.1.1", "9.9.9.0/24", "2001:4860::8888", "2001:4860::/48", "::ffff:8.8.4.4"]
    )

    def soiled(clean: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        return st.one_of(
            clean,
            clean,
            st.builds(
                lambda text, fragment, where: text[:where] + fragment + text[where:],
                clean,
                st.sampled_from(HOSTILE_FRAGMENTS),
                st.integers(0, 40),
            ),
        )

    return {"DomainName": soiled(domain), "Url": soiled(url), "IpAddress": soiled(address)}


def hostile_values() -> st.SearchStrategy[str]:
    """Names, URLs and addresses with hostile fragments, or plain hostile noise."""
    noise = st.lists(
        st.one_of(st.sampled_from(HOSTILE_FRAGMENTS), st.sampled_from(_WORDS), st.text(max_size=4)),
        min_size=1,
        max_size=8,
    ).map("".join)
    return st.one_of(*_typed_values().values(), noise)


def hostile_records() -> st.SearchStrategy[object]:
    """Indicator records, mostly well-typed, with hostile values and sometimes hostile fields."""
    typed = st.one_of(
        *[st.tuples(st.just(kind), values) for kind, values in _typed_values().items()],
        st.tuples(st.sampled_from(_TYPES), hostile_values()),
    )
    return st.builds(
        lambda pair, rest: {"indicatorType": pair[0], "indicatorValue": pair[1], **rest},
        typed,
        st.fixed_dictionaries(
            {
                "id": st.one_of(st.integers(1, 10**6).map(str), hostile_values()),
                "action": st.sampled_from(_ACTIONS),
            },
            optional={
                "expirationTime": st.one_of(
                    st.none(), st.sampled_from(["2020-01-01T00:00:00Z", "2099-01-01T00:00:00Z"])
                ),
                "application": hostile_values(),
                "title": hostile_values(),
            },
        ),
    )


def hostile_batches(max_size: int = 25) -> st.SearchStrategy[list[object]]:
    """A page of records, with now and then a stray element that is not a record at all."""
    strays = st.lists(st.one_of(st.integers(), st.text(max_size=3), st.none()), max_size=2)
    return st.builds(
        lambda records, extra: [*records, *extra],
        st.lists(hostile_records(), max_size=max_size),
        strays,
    )
