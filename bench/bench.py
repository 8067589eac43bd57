#!/usr/bin/env python3
"""Twinport gateway vs HAProxy vs nginx, on this machine, in one run.

Every proxy fronts the same two demo-node backends as an active-standby pair
with health checks (nginx OSS has no active checks: passive only), with one
worker thread, then two. Targets are measured in alternation (A/B/B/A) so
that drift of the machine hits all of them alike; the table shows medians.
Only loopback addresses are used; every load is bounded in time.
"""
import json, os, platform, re, signal, socket, statistics, subprocess, sys, tempfile, threading, time
import http.client

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release")
QUICK = "--quick" in sys.argv
# `--compare [LABEL=]BIN` (repeatable): more gateway binaries (earlier
# builds, see bench/before-after and bench/levers) measured in the same run
# beside this checkout's build; the label defaults to `twinport-before`. The
# table goes to bench/BEFORE-AFTER.md (or the file of `--out FILE`) and the
# failover trials are skipped.
COMPARE = {}
for i, arg in enumerate(sys.argv):
    if arg == "--compare":
        label, _, path = sys.argv[i + 1].rpartition("=")
        label = label or "twinport-before"
        # The label names the row; a Proxy whose kind starts with
        # "twinport" runs the gateway binary.
        COMPARE[label if label.startswith("twinport") else f"twinport-{label}"] = path
OUT = sys.argv[sys.argv.index("--out") + 1] if "--out" in sys.argv else None
# `--only plain1,https,upload,plain2,pinned`: only these sections (default: all of them).
ONLY = set(sys.argv[sys.argv.index("--only") + 1].split(",")) if "--only" in sys.argv else None
# Pinned tables: the proxy on CPU 0, load generator and backends on CPU 1.
PROXY_CPU, LOAD_CPU = "0", "1"
# `--rounds N`: more alternating rounds for a steadier median.
ROUNDS = int(sys.argv[sys.argv.index("--rounds") + 1]) if "--rounds" in sys.argv else (1 if QUICK else 2)
DURATION = 3 if QUICK else 4
CONNS = 50
TRIALS = 5 if QUICK else 20
# kind -> more of a Twinport `listeners.https` mapping (", key: value"), for
# a comparison of settings of one build (bench/LEVERS-3.md).
HTTPS_OPTIONS = {}
TMP = tempfile.mkdtemp(prefix="twinport-bench-")
procs = []
# (kind, table) -> the medians (and memory) each table showed: for the
# targets of issue 18 and the summary of a run with several gateway builds.
TARGETS = {}


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_port(port, timeout=15.0):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return True
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def spawn(cmd, log, **kw):
    p = subprocess.Popen(cmd, stdout=open(log, "ab"), stderr=subprocess.STDOUT, start_new_session=True, **kw)
    procs.append(p)
    return p


def stop(p):
    if p.poll() is None:
        try:
            os.killpg(p.pid, signal.SIGCONT)
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.wait()


def tree(pid):
    """pid and all its descendants."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            with open(f"/proc/{p}/task/{p}/children") as f:
                todo += [int(c) for c in f.read().split()]
        except OSError:
            pass
    return out


def cpu_seconds(pid):
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for p in tree(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except OSError:
            pass
    return total / tick


def memory_kib(pid, key):
    total = 0
    for p in tree(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith(key + ":"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


# ---------------------------------------------------------------- backends

class Backend:
    def __init__(self, name):
        self.name, self.port = name, free_port()
        self.start()

    def start(self):
        self.proc = spawn([f"{BIN}/demo-node", "--name", self.name, "--listen", f"127.0.0.1:{self.port}"],
                          f"{TMP}/node-{self.name}.log", env={**os.environ, "RUST_LOG": "warn"})
        wait_port(self.port)


# ---------------------------------------------------------------- proxies

def cert():
    subprocess.run([f"{BIN}/devcert", f"{TMP}/tls", "localhost", "127.0.0.1"], check=True, capture_output=True)
    c, k = f"{TMP}/tls/cert.pem", f"{TMP}/tls/key.pem"
    with open(f"{TMP}/tls/combined.pem", "w") as f:
        f.write(open(c).read() + open(k).read())
    return c, k


class Proxy:
    """A started proxy with a plain and a TLS port.

    `wrap`: a command the proxy runs under (bench/instructions: valgrind);
    `check`: the active health-check interval of Twinport and HAProxy in
    ms (bench/instructions: long enough that none falls into a count);
    `start_timeout`: seconds for the ports to open."""

    def __init__(self, kind, a, b, threads, tls, settle=0.5, wrap=(), check=250, start_timeout=15.0):
        self.kind, self.threads = kind, threads
        self.http, self.https = free_port(), free_port()
        cert_file, key_file = tls
        d = f"{TMP}/{kind}-{threads}-{self.http}"
        os.makedirs(d)
        if kind.startswith("twinport"):
            conf = f"""listeners:
  http: 127.0.0.1:{self.http}
  https: {{address: 127.0.0.1:{self.https}, certificate: {cert_file}, key: {key_file}{HTTPS_OPTIONS.get(kind, "")}}}
  metrics: 127.0.0.1:{free_port()}
mode: active-standby
nodes:
  - {{name: a, address: 127.0.0.1:{a.port}}}
  - {{name: b, address: 127.0.0.1:{b.port}}}
health_check: {{interval: {check}ms}}
watch_config: false
server: {{threads: {threads}, grace_period: 0s, graceful_shutdown_timeout: 1s, pid_file: {d}/gw.pid, upgrade_socket: {d}/up.sock}}
"""
            open(f"{d}/gateway.yaml", "w").write(conf)
            gateway = COMPARE.get(kind, f"{BIN}/gateway")
            cmd = [gateway, "--config", f"{d}/gateway.yaml"]
            env = {**os.environ, "RUST_LOG": "warn"}
        elif kind == "haproxy":
            conf = f"""global
  nbthread {threads}
  maxconn 8000
  tune.ssl.default-dh-param 2048
defaults
  mode http
  timeout connect 500ms
  timeout client 60s
  timeout server 60s
  retries 3
  option redispatch
  option http-keep-alive
frontend fe
  bind 127.0.0.1:{self.http}
  bind 127.0.0.1:{self.https} ssl crt {TMP}/tls/combined.pem alpn h2,http/1.1
  default_backend twins
backend twins
  option httpchk GET /ready
  http-reuse always
  server a 127.0.0.1:{a.port} check inter {check} fall 2 rise 3
  server b 127.0.0.1:{b.port} check inter {check} fall 2 rise 3 backup
"""
            open(f"{d}/haproxy.cfg", "w").write(conf)
            cmd = ["haproxy", "-db", "-f", f"{d}/haproxy.cfg"]
            env = None
        else:
            conf = f"""worker_processes {threads};
pid {d}/nginx.pid;
error_log {d}/error.log warn;
daemon off;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  upstream twins {{
    server 127.0.0.1:{a.port} max_fails=1 fail_timeout=10s;
    server 127.0.0.1:{b.port} backup;
    keepalive 64;
  }}
  keepalive_requests 1000000;
  client_max_body_size 16m;
  server {{
    listen 127.0.0.1:{self.http};
    listen 127.0.0.1:{self.https} ssl http2;
    ssl_certificate {cert_file};
    ssl_certificate_key {key_file};
    location / {{
      proxy_pass http://twins;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_next_upstream error timeout;
      proxy_connect_timeout 500ms;
    }}
  }}
}}
"""
            open(f"{d}/nginx.conf", "w").write(conf)
            cmd = ["nginx", "-c", f"{d}/nginx.conf", "-p", d]
            env = None
        self.proc = spawn(list(wrap) + cmd, f"{d}/out.log", env=env)
        wait_port(self.http, start_timeout)
        wait_port(self.https, start_timeout)
        # Let health checks settle and the backend answer through the proxy.
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.http, timeout=1)
                c.request("GET", "/whoami")
                if c.getresponse().status == 200:
                    break
            except OSError:
                pass
            time.sleep(0.1)
        time.sleep(settle)
        self.idle_kib = memory_kib(self.proc.pid, "VmRSS")

    def close(self):
        stop(self.proc)


class Direct:
    kind, threads = "direct", 0

    def __init__(self, a):
        self.http, self.https, self.proc, self.idle_kib = a.port, None, a.proc, memory_kib(a.proc.pid, "VmRSS")


# ---------------------------------------------------------------- load

WRK_SCRIPT = f"{TMP}/report.lua"
open(WRK_SCRIPT, "w").write("""
done = function(summary, latency, requests)
  io.write(string.format("RESULT %d %d %d %d %d %d\\n", summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9),
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.status + summary.errors.timeout))
end
""")


def pin(pid, cpus):
    """Every thread of pid and its descendants on `cpus` (e.g. "0" or "0,1")."""
    for p in tree(pid):
        subprocess.run(["taskset", "-a", "-p", "-c", cpus, str(p)], check=True, capture_output=True)


def load_cmd(pinned):
    return ["taskset", "-c", LOAD_CPU] if pinned else []


def wrk(url, conns=CONNS, close=False, seconds=DURATION, pinned=False):
    cmd = load_cmd(pinned) + ["wrk", "-t2", f"-c{conns}", f"-d{seconds}s", "--timeout", "5s", "-s", WRK_SCRIPT]
    if close:
        cmd += ["-H", "Connection: close"]
    out = subprocess.run(cmd + [url], capture_output=True, text=True, timeout=seconds + 30).stdout
    m = re.search(r"RESULT (\d+) (\d+) (\d+) (\d+) (\d+) (\d+)", out)
    if not m:
        raise RuntimeError(f"wrk said: {out}")
    n, dur_us, p50, p99, p999, errors = map(int, m.groups())
    return {"rps": n / (dur_us / 1e6), "requests": n, "p50": p50 / 1000, "p99": p99 / 1000, "p999": p999 / 1000, "errors": errors}


def run_h2load(args, timeout):
    """Runs h2load with `args` (load_cmd's prefix included, if any) and reads
    its summary: req/s, requests succeeded and failed, the run's seconds
    and the mean time per request in ms (nan if it printed none)."""
    r = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    out = r.stdout
    took = re.search(r"finished in ([\d.]+)(m?s), ([\d.]+) req/s", out)
    done = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed", out)
    if not took or not done:
        raise RuntimeError(f"h2load said: {out}{r.stderr}")
    mean = re.search(r"time for request:\s+\S+\s+\S+\s+(\S+)", out)
    m = mean.group(1) if mean else "?"
    mean_ms = float(m[:-2]) if m.endswith("ms") else float(m[:-2]) / 1000 if m.endswith("us") else float("nan")
    return {"rps": float(took.group(3)), "succeeded": int(done.group(2)), "failed": int(done.group(3)),
            "seconds": float(took.group(1)) / (1000 if took.group(2) == "ms" else 1), "mean": mean_ms}


def h2load(port, seconds=DURATION, pinned=False):
    cmd = load_cmd(pinned) + ["h2load", "-D", str(seconds), "-c", "10", "-m", "10", "-t", "1", f"https://127.0.0.1:{port}/whoami"]
    r = run_h2load(cmd, seconds + 30)
    return {"rps": r["rps"], "requests": r["succeeded"], "mean": r["mean"], "errors": r["failed"]}


UPLOAD_FILE = f"{TMP}/upload-1MiB.bin"
UPLOADS = 100 if QUICK else 400


def h2upload(port, pinned=False):
    """HTTP/2 uploads of 1 MiB each (POST /upload, which reads the body),
    4 connections × 4 streams: how fast a body gets through the proxy."""
    if not os.path.exists(UPLOAD_FILE):
        with open(UPLOAD_FILE, "wb") as f:
            f.write(os.urandom(1 << 20))
    cmd = load_cmd(pinned) + ["h2load", "-d", UPLOAD_FILE, "-n", str(UPLOADS), "-c", "4", "-m", "4", "-t", "1",
                              f"https://127.0.0.1:{port}/upload"]
    r = run_h2load(cmd, 300)
    return {"rps": r["rps"], "requests": r["succeeded"], "errors": UPLOADS - r["succeeded"]}


def upload_section(say, a, b, tls, kinds):
    """HTTP/2 uploads through every proxy, alternating rounds."""
    targets = [Proxy(k, a, b, 1, tls) for k in kinds]
    rows = {t.kind: [] for t in targets}
    try:
        for n in range(ROUNDS):
            for t in (targets if n % 2 == 0 else targets[::-1]):
                rows[t.kind].append(measure(t, lambda: h2upload(t.https)))
    finally:
        for t in targets:
            t.close()
    base = med(rows["haproxy"], "rps") if "haproxy" in rows else None
    say(f"## HTTP/2 uploads of 1 MiB (h2load -d, 4 connections × 4 streams, {UPLOADS} per run), 1 thread\n")
    say("| target | uploads/s | × HAProxy | CPU ms per upload | RSS peak MiB | errors |")
    say("|---|---:|---:|---:|---:|---:|")
    for t in targets:
        r = rows[t.kind]
        TARGETS[(t.kind, "upload")] = {"rps": med(r, "rps"), "cpu": med(r, "cpu_per_100k")}
        ratio = f"{med(r, 'rps') / base:.2f}" if base else "–"
        say(f"| {t.kind} | {fmt(med(r, 'rps'))} | {ratio} | {med(r, 'cpu_per_100k') / 100:.2f} | "
            f"{max(x['peak_kib'] for x in r) / 1024:.1f} | {sum(x['errors'] for x in r)} |")
    say()


def s_time(port, seconds=DURATION, pinned=False):
    """Full TLS handshakes, one connection at a time, each with a request
    (openssl s_time -new: no session is resumed, unlike wrk's reconnects)."""
    cmd = load_cmd(pinned) + ["openssl", "s_time", "-connect", f"127.0.0.1:{port}", "-new",
                              "-time", str(seconds), "-www", "/whoami"]
    t0 = time.time()
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30).stdout
    wall = time.time() - t0
    m = re.search(r"(\d+) connections in [\d.]+ real seconds", out) or re.search(r"(\d+) connections in", out)
    if not m or int(m.group(1)) == 0:
        raise RuntimeError(f"openssl s_time said: {out[-500:]}")
    n = int(m.group(1))
    return {"rps": n / wall, "requests": n, "mean": wall / n * 1000, "errors": 0}


def measure(target, fn):
    c0 = cpu_seconds(target.proc.pid)
    r = fn()
    r["cpu_per_100k"] = (cpu_seconds(target.proc.pid) - c0) / max(r["requests"], 1) * 100_000
    r["peak_kib"] = memory_kib(target.proc.pid, "VmHWM")
    return r


def med(rows, key):
    return statistics.median(r[key] for r in rows)


# ---------------------------------------------------------------- failover

def failover_trial(kind, how, tls):
    """Time from the primary's death to the first success from the twin."""
    a, b = Backend("a"), Backend("b")
    p = Proxy(kind, a, b, 1, tls, settle=0.1)
    results, stop_flag = [], threading.Event()

    def one():
        t0 = time.time()
        try:
            c = http.client.HTTPConnection("127.0.0.1", p.http, timeout=10)
            c.request("GET", "/whoami")
            r = c.getresponse()
            results.append((t0, time.time(), r.status, r.read().decode()))
        except OSError:
            results.append((t0, time.time(), 0, ""))

    def launcher():
        # A new request every 5 ms, each on its own connection and thread,
        # so a request stuck on the hung node never delays the next probe.
        while not stop_flag.is_set():
            threading.Thread(target=one, daemon=True).start()
            time.sleep(0.005)

    probe = threading.Thread(target=launcher)
    probe.start()
    time.sleep(0.4)
    killed = time.time()
    if how == "crash":
        os.killpg(a.proc.pid, signal.SIGKILL)
    else:
        os.killpg(a.proc.pid, signal.SIGSTOP)
    time.sleep(1.6)
    stop_flag.set()
    probe.join()
    # Requests still stuck on the hung node count as failed below.
    time.sleep(0.2)
    p.close()
    stop(a.proc)
    stop(b.proc)
    twin = [end - killed for (_, end, status, body) in results if status == 200 and body == "b" and end > killed]
    failed = sum(1 for (_, end, status, _) in results if status != 200 and end > killed)
    return (min(twin) if twin else float("inf")), failed


# ---------------------------------------------------------------- report

def fmt(x, nd=0):
    return "–" if x is None else f"{x:,.{nd}f}"


def section(say, a, b, tls, kinds, threads, pinned, plain, https):
    """Plain HTTP keep-alive (and, at one thread, the HTTPS tables) for
    every target, in alternating rounds; prints the tables."""
    targets = ([] if pinned else [Direct(a)]) + [Proxy(k, a, b, threads, tls) for k in kinds]
    if pinned:
        for t in targets:
            pin(t.proc.pid, PROXY_CPU)
    rows = {t.kind: [] for t in targets}
    proxies = [t for t in targets if not isinstance(t, Direct)]
    https_rows = {t.kind: {"ka": [], "new": [], "full": [], "h2": []} for t in proxies}
    for n in range(ROUNDS):
        # Every other round in the opposite order, so that whatever
        # drifts within a round (warmth, frequency) favours no target.
        order = targets if n % 2 == 0 else targets[::-1]
        if plain:
            for t in order:
                rows[t.kind].append(measure(t, lambda: wrk(f"http://127.0.0.1:{t.http}/whoami", pinned=pinned)))
        if https and threads == 1:
            for t in [t for t in order if not isinstance(t, Direct)]:
                https_rows[t.kind]["ka"].append(measure(t, lambda: wrk(f"https://127.0.0.1:{t.https}/whoami", pinned=pinned)))
                https_rows[t.kind]["new"].append(measure(t, lambda: wrk(f"https://127.0.0.1:{t.https}/whoami", conns=20, close=True, pinned=pinned)))
                https_rows[t.kind]["full"].append(measure(t, lambda: s_time(t.https, pinned=pinned)))
                https_rows[t.kind]["h2"].append(measure(t, lambda: h2load(t.https, pinned=pinned)))
    where = ", pinned" if pinned else ""
    if plain:
        base = med(rows["haproxy"], "rps")
        say(f"## Plain HTTP keep-alive, {threads} worker thread{'s' if threads > 1 else ''}{where}\n")
        say("| target | req/s | × HAProxy | p50 ms | p99 ms | p99.9 ms | CPU s / 100k req | RSS idle MiB | RSS peak MiB | errors |")
        say("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for t in targets:
            r = rows[t.kind]
            TARGETS[(t.kind, f"plain {threads}t{where}")] = {
                "rps": med(r, "rps"), "p99": med(r, "p99"), "cpu": med(r, "cpu_per_100k"),
                "idle": t.idle_kib / 1024, "peak": max(x["peak_kib"] for x in r) / 1024}
            say(f"| {t.kind} | {fmt(med(r, 'rps'))} | {med(r, 'rps') / base:.2f} | {med(r, 'p50'):.2f} | {med(r, 'p99'):.2f} | "
                f"{med(r, 'p999'):.2f} | {med(r, 'cpu_per_100k'):.2f} | {t.idle_kib / 1024:.1f} | {max(x['peak_kib'] for x in r) / 1024:.1f} | "
                f"{sum(x['errors'] for x in r)} |")
        say()
    if https and threads == 1:
        for key, title, cols in (("ka", "HTTPS keep-alive (HTTP/1.1), 1 thread", "p99"),
                                 ("new", "HTTPS, a new connection per request, its TLS session resumed (wrk, 20 connections), 1 thread", "p99"),
                                 ("full", "HTTPS, a full TLS handshake per connection (openssl s_time -new, one at a time), 1 thread", "mean"),
                                 ("h2", "HTTP/2 over TLS (h2load, 10 connections × 10 streams), 1 thread", "mean")):
            base = med(https_rows["haproxy"][key], "rps")
            say(f"## {title}{where}\n")
            say(f"| target | req/s | × HAProxy | {cols} ms | CPU s / 100k req | errors |")
            say("|---|---:|---:|---:|---:|---:|")
            for t in proxies:
                r = https_rows[t.kind][key]
                TARGETS[(t.kind, f"{key}{where}")] = {"rps": med(r, "rps"), "p99": med(r, cols), "cpu": med(r, "cpu_per_100k")}
                say(f"| {t.kind} | {fmt(med(r, 'rps'))} | {med(r, 'rps') / base:.2f} | {med(r, cols):.2f} | "
                    f"{med(r, 'cpu_per_100k'):.2f} | {sum(x['errors'] for x in r)} |")
            say()
    for t in proxies:
        t.close()


def against_targets(say):
    """Issue 18's targets, each with the measured figure and whether it
    holds, from the tables above."""
    rows = []

    def check(name, table, ok, figure):
        rows.append(f"| {name} | {table} | {figure} | {'yes' if ok else 'no'} |")

    for table in [t for (k, t) in TARGETS if k == "twinport"]:
        us, them = TARGETS[("twinport", table)], TARGETS.get(("haproxy", table))
        if not them:
            continue
        ratio = us["rps"] / them["rps"]
        if table.startswith("h2"):
            check("req/s ≥ 0.8× HAProxy", table, ratio >= 0.8, f"{ratio:.2f}×")
            continue
        if table.split(",")[0] in ("new", "full", "upload"):
            continue
        check("req/s ≥ 1.0× HAProxy", table, ratio >= 1.0, f"{ratio:.2f}×")
        check("p99 ≤ HAProxy's", table, us["p99"] <= them["p99"], f"{us['p99']:.2f} ms vs {them['p99']:.2f} ms")
        check("CPU s / 100k ≤ HAProxy's", table, us["cpu"] <= them["cpu"], f"{us['cpu']:.2f} vs {them['cpu']:.2f}")
        if "idle" in us:
            check("RSS idle ≤ 20 MiB", table, us["idle"] <= 20, f"{us['idle']:.1f} MiB")
            check("RSS under load ≤ 40 MiB", table, us["peak"] <= 40, f"{us['peak']:.1f} MiB")
    if rows:
        say("## Against the targets (issue 18)\n")
        say("| target | table | Twinport | holds |")
        say("|---|---|---|---|")
        for r in rows:
            say(r)
        say()


def main():
    tls = cert()
    a, b = Backend("a"), Backend("b")
    lines = []
    say = lambda s="": (print(s, flush=True), lines.append(s))
    started = time.time()
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    say(f"# Twinport benchmark\n\n`bench/run{' --quick' if QUICK else ''}` on {os.cpu_count()} cores ({cpu}), "
        f"{platform.system()} {platform.release()}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. "
        f"Backend: two `demo-node` processes (release); load: wrk, 2 threads, {CONNS} connections, {DURATION} s per run, "
        f"{ROUNDS} rounds, every other one in reverse order (medians). Backend, proxy and load generator share the same cores.\n")

    def wanted(section):
        return ONLY is None or section in ONLY

    kinds = ("twinport",) + tuple(COMPARE) + ("haproxy", "nginx")
    if wanted("plain1") or wanted("https"):
        section(say, a, b, tls, kinds, 1, pinned=False, plain=wanted("plain1"), https=wanted("https"))
    if wanted("upload"):
        upload_section(say, a, b, tls, kinds)
    if wanted("plain2"):
        section(say, a, b, tls, kinds, 2, pinned=False, plain=True, https=False)
    if wanted("pinned"):
        say("# Pinned: each proxy on CPU 0, backends and load generator on CPU 1\n")
        say("The same measurements with `taskset`: the proxy (1 worker thread) alone on one core, "
            "wrk or h2load and both backends on the other, so that the proxies do not compete "
            "with the load for a core and the ratio depends less on the scheduler.\n")
        pin(a.proc.pid, LOAD_CPU)
        pin(b.proc.pid, LOAD_CPU)
        section(say, a, b, tls, kinds, 1, pinned=True, plain=True, https=True)
        pin(a.proc.pid, "0,1")
        pin(b.proc.pid, "0,1")

    against_targets(say)
    if len(COMPARE) > 1:
        # One row per build in the order given (each one change after the
        # one before), this checkout's last.
        order = list(COMPARE) + ["twinport"]
        tables = list(dict.fromkeys(t for (_, t) in TARGETS))
        say("## What each change gave\n")
        say("Each build is the one above it plus one change; medians from the tables above (same run). "
            "ka = HTTPS keep-alive, new = a new connection per request (session resumed), full = a full TLS handshake per connection, h2 = HTTP/2 over TLS.\n")
        say("| build | " + " | ".join(f"{tb} req/s | {tb} CPU/100k" for tb in tables) + " |")
        say("|---|" + "---:|---:|" * len(tables))
        for kind in order + ["haproxy"]:
            cells = []
            for tb in tables:
                m = TARGETS.get((kind, tb))
                cells += [fmt(m and m["rps"]), "–" if m is None else f"{m['cpu']:.2f}"]
            say(f"| {kind} | " + " | ".join(cells) + " |")
        say()
    if COMPARE or OUT:
        builds = "; ".join(f"`{k}` is {v}" for k, v in COMPARE.items())
        say(f"{builds}{'; ' if builds else ''}`twinport` this checkout's build. Run took {time.time() - started:.0f} s.")
        with open(OUT or os.path.join(ROOT, "bench", "BEFORE-AFTER.md"), "w") as f:
            f.write("\n".join(lines) + "\n")
        return
    say(f"## Failover: primary's death to the first answer from the twin ({TRIALS} trials each)\n")
    say("A probe request every 5 ms, each on a new connection, none waiting for another; 'failed' counts answers "
        "other than 200 within the 1.6 s after the fault (requests still hanging then are not counted). HAProxy: `inter 250 fall 2 rise 3`, "
        "`retries 3`, `option redispatch`. Twinport: defaults (interval 250 ms, timeout 250 ms, fall 2).\n")
    say("| proxy | fault | median ms | max ms | failed requests (all trials) |")
    say("|---|---|---:|---:|---:|")
    stop(a.proc)
    stop(b.proc)
    for kind in ("twinport", "haproxy"):
        for how in ("crash", "hang"):
            times, failed = [], 0
            for _ in range(TRIALS):
                t, f = failover_trial(kind, how, tls)
                times.append(t * 1000)
                failed += f
            say(f"| {kind} | {'kill -9' if how == 'crash' else 'SIGSTOP'} | {statistics.median(times):.0f} | {max(times):.0f} | {failed} |")
    say()
    say(f"Run took {time.time() - started:.0f} s.")
    if not QUICK:
        # The table of what each change gave (bench/levers) belongs with
        # the results it explains.
        # bench/instructions' table (instructions per request) too.
        here = os.path.join(ROOT, "bench")
        def series(prefix):
            return sorted((f for f in os.listdir(here) if f.startswith(prefix) and f.endswith(".md")),
                          key=lambda f: (f != f"{prefix}.md", f))
        for name in series("LEVERS") + series("INSTRUCTIONS") + ["UPLOAD-RTT.md"]:
            path = os.path.join(here, name)
            if os.path.exists(path):
                lines += ["", open(path).read().replace("# ", "## ", 1)]
        with open(os.path.join(ROOT, "bench", "RESULTS.md"), "w") as f:
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    try:
        main()
    finally:
        for p in procs:
            stop(p)
