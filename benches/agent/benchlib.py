"""Shared plumbing for the benches/agent scripts.

Owns: starting and stopping the processes a benchmark needs on loopback
(the agent binary, nginx, wrk), reading /proc memory and CPU figures, a
small keep-alive HTTP client, and the ratio statistics (median, min-max)
every script prints. Must never leave a process it started running, bind
anything but 127.0.0.1, or time anything itself (the scripts do that).
"""
import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
LUA_DIR = os.path.join(HERE, "lua")
TOKEN = "bench"
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/compute-agent-target"))
AGENT_BIN = os.environ.get("AGENT_BIN", os.path.join(TARGET, "release", "compute-agent"))
INPROC_BIN = os.environ.get("INPROC_BIN", os.path.join(TARGET, "release", "agent-inproc-bench"))
SHARED_CORES_NOTE = (f"note: the load generator shares this machine's {os.cpu_count()} cores with the "
                     "server under test (same settings on both sides of every ratio)")
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=30.0, proc=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


def proc_status(pid):
    """VmRSS / VmHWM in bytes from /proc/<pid>/status."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                k, v = line.split(":", 1)
                out[k] = int(v.split()[0]) * 1024
    return out


def proc_cpu_seconds(pid):
    """user + system CPU seconds of the process (all threads)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


class Agent:
    """The compute-agent binary on a free loopback port; stopped on exit."""

    def __init__(self, shards=2, extra_env=None, log_path=None):
        if not os.path.exists(AGENT_BIN):
            raise SystemExit(f"agent binary not found at {AGENT_BIN} (build it, or set AGENT_BIN)")
        self.port = free_port()
        env = dict(os.environ)
        env.update({"AGENT_TOKEN": TOKEN, "LISTEN_ADDR": f"127.0.0.1:{self.port}", "SHARDS": str(shards)})
        env.update(extra_env or {})
        self.log_path = log_path or os.path.join(tempfile.gettempdir(), f"bench-agent-{self.port}.log")
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([AGENT_BIN], env=env, stdout=self._log, stderr=subprocess.STDOUT)
        try:
            wait_port(self.port, proc=self.proc)
            self.wait_healthy()
        except Exception:
            self.stop()
            raise

    @property
    def pid(self):
        return self.proc.pid

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def wait_healthy(self, timeout=30.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                status, body = Client(self.port).request("GET", "/health")
                if status == 200:
                    return json.loads(body)
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError("agent never answered /health with 200")

    def health(self):
        status, body = Client(self.port).request("GET", "/health")
        assert status == 200, (status, body)
        return json.loads(body)

    def memory(self):
        return proc_status(self.pid)

    def cpu_seconds(self):
        return proc_cpu_seconds(self.pid)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


class Nginx:
    """nginx answering every request with a fixed small JSON body (raw-HTTP reference)."""

    BODY = '{"columns":["1"],"rows":[[1]],"row_count":1}'

    def __init__(self, workers=2, static_file=None):
        """static_file: also serve this file's bytes at /static (e.g. a page-sized body)."""
        if not shutil.which("nginx"):
            raise SystemExit("nginx not installed (apt-get install -y nginx-light)")
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="bench-nginx-")
        conf = os.path.join(self.dir, "nginx.conf")
        static = ""
        if static_file:
            shutil.copy(static_file, os.path.join(self.dir, "static"))
            static = f"location = /static {{ default_type application/json; root {self.dir}; }}"
        with open(conf, "w") as f:
            f.write(f"""
worker_processes {workers};
daemon off;
pid {self.dir}/nginx.pid;
error_log {self.dir}/error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {self.dir};
  keepalive_requests 1000000;
  server {{
    listen 127.0.0.1:{self.port};
    location / {{ default_type application/json; return 200 '{self.BODY}'; }}
    {static}
  }}
}}
""")
        self.proc = subprocess.Popen(["nginx", "-c", conf, "-p", self.dir], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        wait_port(self.port, proc=self.proc)

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


class RawConn:
    """Minimal keep-alive client for probes: sends prepared request bytes, reads one
    Content-Length response, returns its status. No parsing beyond that, so a
    prober's own cost stays small next to what it measures."""

    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port))
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def send(self, req):
        self.s.sendall(req)
        while b"\r\n\r\n" not in self.buf:
            self.buf += self._recv()
        head, rest = self.buf.split(b"\r\n\r\n", 1)
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            k, _, v = line.partition(b":")
            if k.strip().lower() == b"content-length":
                length = int(v)
        while len(rest) < length:
            rest += self._recv()
        self.buf = rest[length:]
        return status

    def _recv(self):
        d = self.s.recv(65536)
        if not d:
            raise ConnectionError("closed")
        return d

    def close(self):
        self.s.close()


def paced_probe(port, rate, seconds, request):
    """Open-loop prober: `request(i)` -> bytes, sent at `rate` per second over four
    keep-alive connections (round robin, so every shard's reactor is probed) for
    `seconds`; latency runs from each request's intended send time. Returns
    p50/p99/max in ms, the count and the non-200 answers."""
    conns = [RawConn(port) for _ in range(4)]
    for c in conns:
        c.send(request(-1))
    lat, bad = [], 0
    interval = 1.0 / rate
    start = time.perf_counter() + 0.05
    n = int(rate * seconds)
    for i in range(n):
        intended = start + i * interval
        # Sleep, never spin: a prober that busy-waits burns most of a core,
        # and the fair scheduler then makes it wait for its turn behind the
        # server's threads, so the tail it reports is its own. Oversleeping
        # counts anyway, because latency runs from the intended send time.
        now = time.perf_counter()
        if intended > now:
            time.sleep(intended - now)
        if conns[i % 4].send(request(i)) != 200:
            bad += 1
        lat.append(time.perf_counter() - intended)
    for c in conns:
        c.close()
    lat.sort()
    pick = lambda p: lat[min(len(lat) - 1, int(p / 100 * len(lat)))] * 1e3  # noqa: E731
    return {"p50": pick(50), "p99": pick(99), "max": lat[-1] * 1e3, "n": len(lat), "bad": bad}


def execute_request(sql):
    """The bytes of a POST /execute of `sql`, token included."""
    body = json.dumps({"sql": sql}).encode()
    return (b"POST /execute HTTP/1.1\r\nHost: bench\r\nX-Agent-Token: " + TOKEN.encode()
            + b"\r\nContent-Type: application/json\r\nContent-Length: "
            + str(len(body)).encode() + b"\r\n\r\n" + body)


class Client:
    """One keep-alive HTTP/1.1 connection (http.client), token header included."""

    def __init__(self, port, timeout=60):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)

    def request(self, method, path, body=None, headers=None):
        h = {"X-Agent-Token": TOKEN}
        if body is not None:
            h["Content-Type"] = "application/json"
            if not isinstance(body, (bytes, str)):
                body = json.dumps(body)
        h.update(headers or {})
        self.conn.request(method, path, body=body, headers=h)
        resp = self.conn.getresponse()
        return resp.status, resp.read()

    def json(self, method, path, body=None, expect=(200,), headers=None):
        status, raw = self.request(method, path, body, headers)
        if status not in expect:
            raise RuntimeError(f"{method} {path}: HTTP {status}: {raw[:300]!r}")
        return json.loads(raw)

    def close(self):
        self.conn.close()


def run_wrk(url, script, script_args=(), connections=64, threads=2, seconds=5, timeout_s=10):
    """Runs wrk with a benches/agent/lua script; returns the WRKJSON summary + req/s."""
    if not shutil.which("wrk"):
        raise SystemExit("wrk not installed (apt-get install -y wrk)")
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", f"--timeout={timeout_s}s",
           "-s", os.path.join(LUA_DIR, script), url]
    if script_args:
        cmd += ["--"] + [str(a) for a in script_args]
    env = dict(os.environ, BENCH_LUA_DIR=LUA_DIR, BENCH_TOKEN=TOKEN)
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=seconds + 60)
    line = next((l for l in out.stdout.splitlines() if l.startswith("WRKJSON ")), None)
    if out.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stdout[-2000:]} {out.stderr[-2000:]}")
    r = json.loads(line[len("WRKJSON "):])
    r["rate"] = r["requests"] / (r["duration_us"] / 1e6)
    r["errors"] = sum(r[k] for k in ("err_connect", "err_read", "err_write", "err_status", "err_timeout"))
    r["stdout"] = out.stdout
    return r


def median(xs):
    return statistics.median(xs)


def ratio_summary(num, den):
    """Per-round ratios num[i]/den[i] -> (median, min, max)."""
    rs = [a / b for a, b in zip(num, den)]
    return median(rs), min(rs), max(rs)


def fmt_rate(x):
    return f"{x:,.0f}"


def git_commit():
    try:
        return subprocess.run(["git", "-C", HERE, "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10).stdout.strip()
    except Exception:
        return "?"


def header(title):
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print(f"# {title}")
    print(f"# {stamp}, commit {git_commit()}, {os.cpu_count()} cores; {SHARED_CORES_NOTE}")
