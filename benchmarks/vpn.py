"""VPN throughput in one run: veth direct, wireguard-go, OpenVPN, tunflow WireGuard and native.

Run as root (network namespaces)::

    .venv/bin/python benchmarks/vpn.py                    # 3 reps × 5 s, every candidate
    .venv/bin/python benchmarks/vpn.py --quick            # smoke run: 1 rep × 2 s
    .venv/bin/python benchmarks/vpn.py --candidates veth,wggo,tunflow-wg --reps 5

Two namespaces joined by a veth pair (192.168.77.1/.2); each candidate is a tunnel between
them (10.77.0.1/.2, MTU 1420) — the topology and the peers' command lines of
``shared/bench/peers.sh``, here in Python. For every candidate: iperf3 TCP with 1 and 4 streams
(Gbit/s received), UDP with 64-byte payloads at full speed (kpps received), and the ping round
trip under no load (median of 20 pings 50 ms apart, ``--ping-interval``; "added" = minus veth
direct). Reps are interleaved (rep 1 of every candidate, then rep 2…), so slow drifts of a
shared machine spread over all of them; before every measurement the script waits (bounded)
until the host is quiet, and it holds ``/tmp/tfb-bench.lock`` so it never overlaps
``peers.sh``. Printed: medians (with min–max),
the tunnel processes' CPU, and ratios against wireguard-go and against veth direct.

Candidates: ``veth``, ``wggo`` (Debian's wireguard-go, both ends), ``ovpn-gcm`` (OpenVPN 2.6,
TLS, AES-256-GCM data channel), ``tunflow-wg`` (``tunflow up``, WireGuard mode),
``tunflow-native`` (``tunflow up``, native fast mode); and, for choosing the device in
WireGuard mode, ``tunflow-wg-offload`` (TSO super-packets split in Python, GRO on write) and
``tunflow-wg-plain`` (a plain TUN, one packet per read and per write) against the default
(plain reads, GRO-coalesced writes). The floor for a tunnel in Python: ``py-relay``
(``benchmarks/py_relay.py``, a bare blocking relay, one ChaCha20-Poly1305 call per packet, no
handshake), ``py-relay-tasks`` (the same in two anyio tasks waiting as tunflow's lanes do
under load) and ``py-relay-callbacks`` (in uvloop's reader callbacks, as tunflow's lanes relay a
packet at rest). The floor for native mode: ``py-relay-native`` (one AES-256-GCM call per TSO
super-packet, native mode's fragments and headers, gathered sends and scattered reads, no
handshake, no replay window, blocking) and ``py-relay-native-flat`` (the same with one header
per message instead of one per fragment: what the per-fragment headers cost).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PY = sys.executable
NS_A, NS_B = "tfvbA", "tfvbB"
VA, VB = "tfvba", "tfvbb"
UA, UB = "192.168.77.1", "192.168.77.2"
OA, OB = "10.77.0.1", "10.77.0.2"
TA, TB = "tfvtA", "tfvtB"
MTU = 1420
IPERF_PORT = 5201
LOCK = "/tmp/tfb-bench.lock"
HZ = os.sysconf("SC_CLK_TCK")
ALL = ["veth", "wggo", "ovpn-gcm", "tunflow-wg", "tunflow-native"]
EXTRA = [
    "tunflow-wg-offload",
    "tunflow-wg-plain",
    "tunflow-wg-asyncio",
    "tunflow-native-asyncio",
    "tunflow-wg-trio",
    "py-relay",
    "py-relay-tasks",
    "py-relay-callbacks",
    "py-relay-native",
    "py-relay-native-flat",
]


def log(msg: str) -> None:
    print(time.strftime("[%H:%M:%S] ") + msg, file=sys.stderr, flush=True)


def sh(*args: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout)
    if check and done.returncode:
        raise RuntimeError(f"{' '.join(args)}: {done.stderr.strip() or done.stdout.strip()}")
    return done


def nsx(ns: str, *args: str) -> list[str]:
    return ["ip", "netns", "exec", ns, *args]


# -- topology ----------------------------------------------------------------------------------


def teardown() -> None:
    for ns in (NS_A, NS_B):
        if ns in sh("ip", "netns", "list", check=False).stdout.split():
            for pid in sh("ip", "netns", "pids", ns, check=False).stdout.split():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), 9)
            sh("ip", "netns", "del", ns, check=False)
    for dev in (VA, VB):
        sh("ip", "link", "del", dev, check=False)


def underlay() -> None:
    teardown()
    for ns in (NS_A, NS_B):
        sh("ip", "netns", "add", ns)
    sh("ip", "link", "add", VA, "netns", NS_A, "type", "veth", "peer", "name", VB, "netns", NS_B)
    sh("ip", "-n", NS_A, "addr", "add", f"{UA}/24", "dev", VA)
    sh("ip", "-n", NS_B, "addr", "add", f"{UB}/24", "dev", VB)
    for ns, dev in ((NS_A, VA), (NS_B, VB)):
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        # IPv4-only overlay, as peers.sh: no IPv6 chatter on new TUN devices
        sh(
            *nsx(
                ns,
                "sysctl",
                "-qw",
                "net.ipv6.conf.all.disable_ipv6=1",
                "net.ipv6.conf.default.disable_ipv6=1",
            )
        )
        sh("ip", "-n", ns, "link", "set", dev, "up")


def wait_link(ns: str, dev: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while sh("ip", "-n", ns, "link", "show", dev, check=False).returncode:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{dev} did not appear in {ns}")
        time.sleep(0.05)


def cfg_tun(ns: str, dev: str, addr: str) -> None:
    sh("ip", "-n", ns, "addr", "replace", addr, "dev", dev)
    sh("ip", "-n", ns, "link", "set", dev, "mtu", str(MTU), "up")


def wait_ping(target: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while sh(*nsx(NS_A, "ping", "-n", "-q", "-c1", "-W1", target), check=False).returncode:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{target} not reachable through the tunnel")
        time.sleep(0.2)


# -- candidates ----------------------------------------------------------------------------------


class Candidate:
    """Starts a tunnel in the topology; its processes are stopped and reaped in ``stop``."""

    def __init__(self, name: str, tmp: Path) -> None:
        self.name = name
        self.tmp = tmp
        self.procs: list[subprocess.Popen[bytes]] = []
        self.target = OB

    def spawn(self, ns: str, tag: str, *argv: str, env: dict[str, str] | None = None) -> None:
        out = open(self.tmp / f"{self.name}-{tag}.log", "ab")  # noqa: SIM115 - lives with proc
        proc = subprocess.Popen(
            nsx(ns, *argv),
            stdout=out,
            stderr=out,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
        )
        out.close()
        self.procs.append(proc)

    def start(self) -> None:
        getattr(self, "start_" + self.name.replace("-", "_"))()

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        deadline = time.monotonic() + 5
        for p in self.procs:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        self.procs.clear()

    def cpu_ticks(self) -> int:
        total = 0
        for p in self.procs:
            try:
                stat = Path(f"/proc/{p.pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += int(stat[11]) + int(stat[12])
        return total

    # veth: no tunnel
    def start_veth(self) -> None:
        self.target = UB

    # wireguard-go, both ends, configured with wg setconf (as peers.sh)
    def start_wggo(self) -> None:
        keys = {s: sh("wg", "genkey").stdout.strip() for s in "ab"}
        pubs = {
            s: subprocess.run(
                ["wg", "pubkey"], input=keys[s], capture_output=True, text=True, check=True
            ).stdout.strip()
            for s in "ab"
        }
        env = {"WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD": "1"}
        self.spawn(NS_A, "A", "wireguard-go", "-f", TA, env=env)
        self.spawn(NS_B, "B", "wireguard-go", "-f", TB, env=env)
        wait_link(NS_A, TA)
        wait_link(NS_B, TB)
        for dev in (TA, TB):
            deadline = time.monotonic() + 10
            while not Path(f"/var/run/wireguard/{dev}.sock").exists():
                if time.monotonic() > deadline:
                    raise RuntimeError("wireguard-go made no control socket")
                time.sleep(0.05)
        for ns, dev, me, peer, paddr, under in (
            (NS_A, TA, "a", "b", OB, UB),
            (NS_B, TB, "b", "a", OA, UA),
        ):
            conf = self.tmp / f"{dev}.conf"
            conf.write_text(
                f"[Interface]\nPrivateKey = {keys[me]}\nListenPort = 51820\n\n[Peer]\n"
                f"PublicKey = {pubs[peer]}\nAllowedIPs = {paddr}/32\nEndpoint = {under}:51820\n"
            )
            sh(*nsx(ns, "wg", "setconf", dev, str(conf)))
        cfg_tun(NS_A, TA, f"{OA}/24")
        cfg_tun(NS_B, TB, f"{OB}/24")

    # OpenVPN 2.6, p2p TLS (self-made EC CA), AES-256-GCM data channel (as peers.sh ovpn-gcm)
    def start_ovpn_gcm(self) -> None:
        pki = self.tmp / "pki"
        if not (pki / "b.crt").exists():
            pki.mkdir(exist_ok=True)
            ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
            sh(
                "openssl",
                "req",
                "-x509",
                *ec,
                "-days",
                "2",
                "-subj",
                "/CN=tfv-ca",
                "-keyout",
                str(pki / "ca.key"),
                "-out",
                str(pki / "ca.crt"),
            )
            for s, eku in (("a", "serverAuth"), ("b", "clientAuth")):
                sh(
                    "openssl",
                    "req",
                    *ec,
                    "-subj",
                    f"/CN=tfv-{s}",
                    "-keyout",
                    str(pki / f"{s}.key"),
                    "-out",
                    str(pki / f"{s}.csr"),
                )
                (pki / f"{s}.ext").write_text(
                    f"basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage={eku}\n"
                )
                sh(
                    "openssl",
                    "x509",
                    "-req",
                    "-in",
                    str(pki / f"{s}.csr"),
                    "-CA",
                    str(pki / "ca.crt"),
                    "-CAkey",
                    str(pki / "ca.key"),
                    "-CAcreateserial",
                    "-days",
                    "2",
                    "-extfile",
                    str(pki / f"{s}.ext"),
                    "-out",
                    str(pki / f"{s}.crt"),
                )

        def common(me: str, peer: str, dev: str) -> list[str]:
            return [
                "openvpn",
                "--dev",
                dev,
                "--dev-type",
                "tun",
                "--proto",
                "udp",
                "--local",
                me,
                "--lport",
                "1194",
                "--remote",
                peer,
                "--rport",
                "1194",
                "--tun-mtu",
                str(MTU),
                "--disable-dco",
                "--fast-io",
                "--verb",
                "3",
                "--mute-replay-warnings",
                "--data-ciphers",
                "AES-256-GCM",
                "--ca",
                str(pki / "ca.crt"),
            ]

        self.spawn(
            NS_A,
            "A",
            *common(UA, UB, TA),
            "--tls-server",
            "--dh",
            "none",
            "--cert",
            str(pki / "a.crt"),
            "--key",
            str(pki / "a.key"),
        )
        self.spawn(
            NS_B,
            "B",
            *common(UB, UA, TB),
            "--tls-client",
            "--remote-cert-tls",
            "server",
            "--cert",
            str(pki / "b.crt"),
            "--key",
            str(pki / "b.key"),
        )
        wait_link(NS_A, TA)
        wait_link(NS_B, TB)
        cfg_tun(NS_A, TA, f"{OA}/24")
        cfg_tun(NS_B, TB, f"{OB}/24")

    # tunflow up, from wg-quick files
    def _tunflow(
        self, *, native: bool, args: tuple[str, ...] = (), env: dict[str, str] | None = None
    ) -> None:
        sys.path.insert(0, str(ROOT))
        from tunflow.wireguard import genkey, pubkey

        keys = {s: genkey() for s in "ab"}
        for ns, dev, me, peer, mine, paddr, under in (
            (NS_B, TB, "b", "a", OB, OA, UA),
            (NS_A, TA, "a", "b", OA, OB, UB),
        ):
            conf = self.tmp / f"{dev}.conf"
            conf.write_text(
                f"[Interface]\nPrivateKey = {keys[me]}\nListenPort = 51820\nAddress = {mine}/24\n"
                f"MTU = {MTU}\n\n[Peer]\nPublicKey = {pubkey(keys[peer])}\n"
                f"AllowedIPs = {paddr}/32\nEndpoint = {under}:51820\n"
                + ("Native = true\n" if native else "")
            )
            self.spawn(ns, ns[-1], PY, "-m", "tunflow.cli", "up", str(conf), "-q", *args, env=env)
        wait_link(NS_A, TA)
        wait_link(NS_B, TB)

    def start_tunflow_wg(self) -> None:
        self._tunflow(native=False)

    def start_tunflow_native(self) -> None:
        self._tunflow(native=True)

    def start_tunflow_wg_offload(self) -> None:
        self._tunflow(native=False, args=("--offload", "on"))

    def start_tunflow_wg_plain(self) -> None:
        self._tunflow(native=False, args=("--offload", "off"))

    def start_tunflow_wg_asyncio(self) -> None:
        self._tunflow(native=False, args=("--backend", "asyncio"))

    def start_tunflow_native_asyncio(self) -> None:
        self._tunflow(native=True, args=("--backend", "asyncio"))

    def start_tunflow_wg_trio(self) -> None:
        self._tunflow(native=False, args=("--backend", "trio"))

    # the floor: benchmarks/py_relay.py, a bare Python relay (no handshake, fixed key)
    def _py_relay(self, mode: str) -> None:
        for ns, dev, mine, under, peer in ((NS_B, TB, OB, UB, UA), (NS_A, TA, OA, UA, UB)):
            self.spawn(ns, ns[-1], PY, str(HERE / "py_relay.py"), mode, dev, under, peer)
            wait_link(ns, dev)
            cfg_tun(ns, dev, f"{mine}/24")

    def start_py_relay(self) -> None:
        self._py_relay("blocking")

    def start_py_relay_tasks(self) -> None:
        self._py_relay("tasks")

    def start_py_relay_callbacks(self) -> None:
        self._py_relay("callbacks")

    def start_py_relay_native(self) -> None:
        self._py_relay("native")

    def start_py_relay_native_flat(self) -> None:
        self._py_relay("native-flat")


# -- measuring -------------------------------------------------------------------------------------


def busy(interval: float) -> float:
    def ticks() -> tuple[int, int]:
        f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = f[3] + f[4]
        return sum(f) - idle, sum(f)

    b0, t0 = ticks()
    time.sleep(interval)
    b1, t1 = ticks()
    return 100.0 * (b1 - b0) / max(1, t1 - t0)


def quiet_wait(limit: float, tries: int = 10) -> float:
    """The background busy %, after waiting (bounded) for the host to calm down."""
    b = busy(0.5)
    for _ in range(tries):
        if b <= limit:
            break
        log(f"  host {b:.0f}% busy before the test (something else running?); waiting")
        time.sleep(2)
        b = busy(0.5)
    return b


def iperf(cand: Candidate, test: str, duration: float, tmp: Path) -> dict[str, float]:
    args = {
        "tcp1": [],
        "tcp4": ["-P", "4"],
        "udp64": ["-u", "-l", "64", "-b", "0"],
        "bidir": ["--bidir"],  # one stream each way (not in the table; for A/B runs)
    }[test]
    server = subprocess.Popen(
        nsx(NS_B, "iperf3", "-s", "-1", "-p", str(IPERF_PORT)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 5
        while str(IPERF_PORT) not in sh(*nsx(NS_B, "ss", "-Hltn"), check=False).stdout:
            if time.monotonic() > deadline:
                raise RuntimeError("iperf3 server did not start")
            time.sleep(0.05)
        t0, c0 = time.monotonic(), cand.cpu_ticks()
        done = sh(
            *nsx(
                NS_A,
                "iperf3",
                "-c",
                cand.target,
                "-p",
                str(IPERF_PORT),
                "-t",
                str(duration),
                *args,
                "-J",
            ),
            check=False,
            timeout=duration + 30,
        )
        wall, cpu = time.monotonic() - t0, cand.cpu_ticks() - c0
    finally:
        if server.poll() is None:
            server.terminate()
        server.wait(5)
    try:
        js = json.loads(done.stdout)
    except ValueError:
        return {"error": 1.0}
    if "error" in js:
        return {"error": 1.0}
    end = js.get("end", {})
    out = {"cpu": 100.0 * cpu / HZ / wall}
    if test == "udp64":
        rcv = end.get("sum_received") or end.get("sum", {})
        out["kpps"] = (
            (rcv.get("packets", 0) - rcv.get("lost_packets", 0)) / (rcv.get("seconds") or 1) / 1e3
        )
    else:
        out["gbps"] = (
            sum(
                end.get(k, {}).get("bits_per_second", 0)
                for k in ("sum_received", "sum_received_bidir_reverse")
            )
            / 1e9
        )
    return out


def ping_rtt(target: str, count: int, interval: float = 0.05) -> float:
    """Median round trip in ms under no load (``count`` pings ``interval`` seconds apart)."""
    done = sh(
        *nsx(NS_A, "ping", "-n", "-c", str(count), "-i", str(interval), "-W", "2", target),
        check=False,
        timeout=count * (interval + 0.5) + 10,
    )
    times = [float(w.split("=", 1)[1]) for w in done.stdout.split() if w.startswith("time=")]
    return statistics.median(times) if times else float("nan")


@contextlib.contextmanager
def bench_lock(wait: float) -> Iterator[None]:
    with open(LOCK, "w") as f:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"another benchmark holds {LOCK}") from None
                time.sleep(1)
        yield


# -- report ------------------------------------------------------------------------------------------


def med(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def cell(xs: list[float], fmt: str) -> str:
    if not xs:
        return "–"
    s = fmt.format(med(xs))
    if len(xs) > 1:
        s += f" ({fmt.format(min(xs))}–{fmt.format(max(xs))})"
    return s


def report(results: dict[str, dict[str, list[dict[str, float]]]], order: list[str]) -> str:
    def vals(c: str, test: str, key: str) -> list[float]:
        return [r[key] for r in results.get(c, {}).get(test, []) if key in r]

    lines = [
        "| candidate | TCP 1 stream Gbit/s | TCP 4 streams Gbit/s | UDP 64 B kpps | ping ms "
        "| tunnel CPU % (TCP 1) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for c in order:
        lines.append(
            f"| {c} | {cell(vals(c, 'tcp1', 'gbps'), '{:.2f}')} | "
            f"{cell(vals(c, 'tcp4', 'gbps'), '{:.2f}')} | {cell(vals(c, 'udp64', 'kpps'), '{:.0f}')} | "
            f"{cell(vals(c, 'ping', 'ms'), '{:.3f}')} | {cell(vals(c, 'tcp1', 'cpu'), '{:.0f}')} |"
        )
    ratio = []
    base = {
        t: med(vals("wggo", t, k))
        for t, k in (("tcp1", "gbps"), ("tcp4", "gbps"), ("udp64", "kpps"))
    }
    veth = {
        t: med(vals("veth", t, k))
        for t, k in (("tcp1", "gbps"), ("tcp4", "gbps"), ("udp64", "kpps"))
    }
    ping_veth = med(vals("veth", "ping", "ms"))
    ratio.append("")
    ratio.append(
        "| candidate | TCP 1 × wggo | TCP 4 × wggo | UDP × wggo | TCP 1 / veth "
        "| TCP 4 / veth | UDP / veth | ping added ms |"
    )
    ratio.append("| --- | --- | --- | --- | --- | --- | --- | --- |")

    def r(x: float, y: float, pct: bool = False) -> str:
        if not (x == x and y == y) or not y:
            return "–"
        return f"{100 * x / y:.0f} %" if pct else f"{x / y:.2f}×"

    for c in order:
        m = {
            t: med(vals(c, t, k))
            for t, k in (("tcp1", "gbps"), ("tcp4", "gbps"), ("udp64", "kpps"))
        }
        added = med(vals(c, "ping", "ms")) - ping_veth
        added_text = f"{added:+.3f}" if added == added else "–"
        ratio.append(
            f"| {c} | {r(m['tcp1'], base['tcp1'])} | {r(m['tcp4'], base['tcp4'])} | "
            f"{r(m['udp64'], base['udp64'])} | {r(m['tcp1'], veth['tcp1'], True)} | "
            f"{r(m['tcp4'], veth['tcp4'], True)} | {r(m['udp64'], veth['udp64'], True)} | "
            f"{added_text} |"
        )
    return "\n".join(lines + ratio)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    p.add_argument("--quick", action="store_true", help="smoke run: 1 rep, 2 s tests")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--duration", type=float, default=5.0, help="seconds per iperf3 test")
    p.add_argument("--candidates", default=",".join(ALL), help=f"from {ALL + EXTRA}")
    p.add_argument("--tests", default="tcp1,tcp4,udp64,ping")
    p.add_argument("--noise", type=float, default=10.0, help="host busy %% tolerated before a test")
    p.add_argument(
        "--ping-interval",
        type=float,
        default=0.05,
        help="seconds between pings (a host whose vCPUs wake slowly from a longer idle shows "
        "it in every round trip at 0.05; see docs/vpn.md)",
    )
    p.add_argument("--json", help="also write the raw results here")
    args = p.parse_args()
    if os.geteuid():
        print("needs root (network namespaces, TUN devices)", file=sys.stderr)
        return 1
    if args.quick:
        args.reps, args.duration = 1, 2.0
    order = [c for c in args.candidates.split(",") if c]
    for c in order:
        if c not in ALL + EXTRA:
            p.error(f"unknown candidate {c!r}")
    missing = [
        t for t in ("iperf3", "wireguard-go", "wg", "openvpn", "openssl") if not shutil.which(t)
    ]
    if missing:
        log(f"missing tools: {missing}; candidates needing them will fail")
    tests = args.tests.split(",")
    # SIGTERM (a killed run) unwinds like Ctrl-C: the tunnels stop, the namespaces go
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    results: dict[str, dict[str, list[dict[str, float]]]] = {c: {} for c in order}
    with tempfile.TemporaryDirectory(prefix="tfvpn.") as tmpdir, bench_lock(3600):
        tmp = Path(tmpdir)
        try:
            for rep in range(1, args.reps + 1):
                for c in order:
                    log(f"=== {c} (rep {rep})")
                    cand = Candidate(c, tmp)
                    try:
                        underlay()
                        cand.start()
                        wait_ping(cand.target)
                        for test in tests:
                            bg = quiet_wait(args.noise)
                            if test == "ping":
                                ms = ping_rtt(
                                    cand.target, 10 if args.quick else 20, args.ping_interval
                                )
                                res = {"ms": ms}
                            else:
                                res = iperf(cand, test, args.duration, tmp)
                            res["bg"] = bg
                            results[c].setdefault(test, []).append(res)
                            log(f"  {c} {test}: {res}")
                    except Exception as exc:  # a candidate that fails is reported, not fatal
                        log(f"  {c} failed: {exc}")
                        for f in sorted(tmp.glob(f"{c}-*.log")):
                            log(f"  {f.name}: {f.read_text(errors='replace')[-500:]}")
                    finally:
                        cand.stop()
                        teardown()
        finally:
            teardown()
    print(
        f"\nbenchmarks/vpn.py: {args.reps} rep(s) × {args.duration:g} s, MTU {MTU}, "
        f"{os.cpu_count()} CPUs, kernel {os.uname().release}\n"
    )
    print(report(results, order))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
