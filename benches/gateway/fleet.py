#!/usr/bin/env python3
"""Fleet capacity planning (issue 19, item 6): a gateway with N agents behind
it, driven by loadgen's `gateway` scenario (POST /v1/query, bearer token).

Owns: starting the fleet on loopback (one compute-gateway with a SQLite
store in a temp folder, its agents registered and assigned to user `u` with
no fallback to local compute, so nothing hides a routing failure), doing
things to agents at known wall-clock times (SIGKILL, SIGSTOP/SIGCONT),
sampling every process's CPU from /proc, and reading loadgen's JSON reports
into per-phase tables. Measures nothing itself that loadgen measures:
latency and counts are loadgen's. Must never leave a process it started
running (or stopped), nor bind anything but 127.0.0.1.

Scenarios:

  faults (default): 2 agents at a fixed --rate, one loadgen run per phase:
      steady   both agents up
      kill     a1 SIGKILLed --fault-at into the measured window
      stop     (a1 restarted and probed good first) a1 SIGSTOPped --fault-at
               into the window, SIGCONTed at its end
    Per phase: sent, ok, failed by label, p50/p99/max latency, answers by
    endpoint, and failures split by when they were sent relative to the
    fault (before it: in flight there; within 100 ms; later: what passive
    health should have prevented).

  scale: the SLO-safe rate (loadgen capacity: p95 < --slo-p95, availability
    99.9%) with 1..--agents agents, and the CPU each process spent in each
    step's measured window (/proc/<pid>/stat, per thread for the busiest),
    to show what bounds the curve on a shared machine.

The queries need no table (`SELECT {seq} AS n`: a text of its own per
request), so no grant and no database file is needed.

Usage: python3 benches/gateway/fleet.py [--scenario faults|scale] [--quick]
       [--rate 150] [--agents 3] [--slo-p95 100ms] [--json out.json]
       [--gateway-env K=V ...]
"""
import argparse
import atexit
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "agent"))
import benchlib as b  # noqa: E402

GATEWAY_BIN = os.environ.get("GATEWAY_BIN", os.path.join(b.TARGET, "release", "compute-gateway"))
LOADGEN_BIN = os.environ.get("LOADGEN_BIN", os.path.join(b.TARGET, "release", "loadgen"))
ADMIN = "fleet-admin-token"
USER_TOKEN = "fleet-user-token-0001"
SQL = "SELECT {seq} AS n"

# Every process this script started, so none outlives it (a stopped one is
# continued first: SIGKILL ends it either way, but its SIGTERM'd peers and
# anything waiting on it should not hang behind a stopped process).
_PROCS = []


def _cleanup():
    for p in _PROCS:
        if p.poll() is None:
            try:
                os.kill(p.pid, signal.SIGCONT)
                p.kill()
                p.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                pass


atexit.register(_cleanup)
for _sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    signal.signal(_sig, lambda s, f: sys.exit(128 + s))


def spawn(cmd, env, log_path):
    log = open(log_path, "ab")
    p = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    log.close()
    _PROCS.append(p)
    return p


def cpu_of(pid):
    """(process CPU seconds, busiest thread's CPU seconds by tid) from /proc; None once gone."""
    try:
        total = b.proc_cpu_seconds(pid)
    except OSError:
        return None
    threads = {}
    for stat in glob.glob(f"/proc/{pid}/task/*/stat"):
        try:
            with open(stat) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            threads[stat.split("/")[4]] = (int(fields[11]) + int(fields[12])) / b.CLK_TCK
        except (OSError, IndexError):
            pass
    return total, threads


def proc_state(pid):
    """The state letter of `pid` (R, S, Z, ...), None when there is no such process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def machine_busy_seconds():
    """CPU seconds all cores of the machine spent busy (not idle or waiting on I/O), from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = v
    return (user + nice + system + irq + softirq + steal) / b.CLK_TCK


class CpuSampler:
    """Samples the CPU of named processes (and of the whole machine, as
    `machine`) every `interval` s on a thread of its own."""

    def __init__(self, pids, interval=0.2):
        self.pids = dict(pids)  # name -> pid
        self.samples = []  # (unix time, {name: (total, {tid: s})})
        self.interval = interval
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _sample(self):
        now = time.time()
        snap = {}
        for name, pid in self.pids.items():
            c = cpu_of(pid)
            if c is not None:
                snap[name] = c
        snap["machine"] = (machine_busy_seconds(), {})
        self.samples.append((now, snap))

    def _run(self):
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)

    def stop(self):
        """Stops sampling, after one last sample (so a window that ended just now is covered)."""
        self._stop.set()
        self._t.join()
        self._sample()

    def window(self, t0, t1):
        """Cores used by each process over [t0, t1] (and its busiest thread), from the samples
        nearest outside the window: {name: (cores, busiest thread cores)}."""
        before = [s for s in self.samples if s[0] <= t0]
        after = [s for s in self.samples if s[0] >= t1]
        if not before or not after:
            return {}
        (ta, a), (tb, z) = before[-1], after[0]
        span = tb - ta
        out = {}
        for name in list(self.pids) + ["machine"]:
            if name in a and name in z:
                total = (z[name][0] - a[name][0]) / span
                busiest = max((z[name][1][t] - a[name][1].get(t, 0.0) for t in z[name][1]), default=0.0) / span
                out[name] = (total, busiest)
        return out


class Fleet:
    """One gateway on a free loopback port, and agents added to it by name."""

    def __init__(self, gateway_env, keep=False):
        self.keep = keep
        for path, what in ((GATEWAY_BIN, "GATEWAY_BIN"), (b.AGENT_BIN, "AGENT_BIN"), (LOADGEN_BIN, "LOADGEN_BIN")):
            if not os.path.exists(path):
                raise SystemExit(f"{path} not found: build the workspace (cargo build --release --workspace "
                                 f"--all-targets) or set {what}")
        self.dir = tempfile.mkdtemp(prefix="fleet-")
        self.port = b.free_port()
        env = dict(os.environ)
        env.update({
            "LISTEN_ADDR": f"127.0.0.1:{self.port}",
            "DATABASE_URL": f"sqlite:{self.dir}/gw.db",
            "GATEWAY_ADMIN_TOKEN": ADMIN,
            "FEATURE_REMOTE_ROUTING": "true",
            # The gateway logs an audit line per query at info: warn keeps
            # the log (and its cost) out of a load run.
            "LOG_LEVEL": "warn",
        })
        env.update(gateway_env)
        self.gateway_env = gateway_env
        self.proc = spawn([GATEWAY_BIN], env, os.path.join(self.dir, "gateway.log"))
        b.wait_port(self.port, proc=self.proc)
        self.agents = {}  # name -> [proc, port]
        self.admin("PUT", "/admin/users/u", {})
        self.admin("POST", "/admin/tokens", {"user": "u", "token": USER_TOKEN}, expect=(201,))

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def admin(self, method, path, body=None, expect=(200, 201, 204)):
        c = b.Client(self.port, timeout=30)
        try:
            status, raw = c.request(method, path, body, headers={"Authorization": f"Bearer {ADMIN}"})
        finally:
            c.close()
        if status not in expect:
            raise RuntimeError(f"{method} {path}: HTTP {status}: {raw[:300]!r}")
        return json.loads(raw) if raw else None

    def query(self, sql="SELECT 1 AS n"):
        c = b.Client(self.port, timeout=30)
        try:
            status, raw = c.request("POST", "/v1/query", {"sql": sql},
                                    headers={"Authorization": f"Bearer {USER_TOKEN}"})
        finally:
            c.close()
        return status, raw

    def _start_agent(self, name, port):
        env = dict(os.environ)
        env.update({"AGENT_TOKEN": b.TOKEN, "LISTEN_ADDR": f"127.0.0.1:{port}", "SHARDS": "1",
                    "REACTOR_PRIORITY": "normal", "LOG_LEVEL": "warn"})
        p = spawn([b.AGENT_BIN], env, os.path.join(self.dir, f"{name}.log"))
        b.wait_port(port, proc=p)
        return p

    def add_agent(self, name):
        port = b.free_port()
        p = self._start_agent(name, port)
        self.agents[name] = [p, port]
        self.admin("POST", "/compute-endpoints", {"name": name, "url": f"http://127.0.0.1:{port}",
                                                  "type": "REMOTE", "auth_token": b.TOKEN}, expect=(201,))
        self.admin("POST", f"/compute-endpoints/{name}/assignments",
                   {"principal": "u", "principal_type": "user", "is_default": True, "fallback_local": False},
                   expect=(201,))
        return p

    def pid(self, name):
        return self.agents[name][0].pid

    def kill(self, name):
        """SIGKILL; returns the wall-clock time it was sent."""
        p = self.agents[name][0]
        t = time.time()
        p.kill()
        p.wait()
        return t

    def signal(self, name, sig):
        t = time.time()
        os.kill(self.pid(name), sig)
        return t

    def restart(self, name):
        """A fresh agent process for `name` on its port (another port if that one is taken)."""
        port = self.agents[name][1]
        try:
            p = self._start_agent(name, port)
        except RuntimeError:
            port = b.free_port()
            p = self._start_agent(name, port)
            self.admin("PATCH", f"/compute-endpoints/{name}", {"url": f"http://127.0.0.1:{port}"})
        self.agents[name] = [p, port]

    def wait_usable(self, name, timeout=20.0):
        """Waits until the gateway's resolver would route to `name` again (its
        /health view says usable, or up on a gateway without that field);
        returns the seconds it took, or None."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            try:
                h = self.admin("GET", f"/compute-endpoints/{name}/health")
                ok = h.get("usable", h.get("up"))
                if ok:
                    return time.monotonic() - t0
            except (RuntimeError, OSError):
                pass
            time.sleep(0.05)
        return None

    def stop(self):
        for p, _ in self.agents.values():
            if p.poll() is None:
                os.kill(p.pid, signal.SIGCONT)
                p.terminate()
        if self.proc.poll() is None:
            self.proc.terminate()
        for p in [a[0] for a in self.agents.values()] + [self.proc]:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if self.keep:
            print(f"# kept the fleet's logs and loadgen's reports in {self.dir}")
        else:
            shutil.rmtree(self.dir, ignore_errors=True)


def loadgen_args(fleet, report, args, extra):
    return [LOADGEN_BIN, *extra, "--scenario", "gateway", "--url", fleet.url, "--token", USER_TOKEN,
            "--sql", args.sql, "--connections", str(args.connections), "--json", report,
            "--no-progress", "--quiet"]


def run_loadgen(cmd, log_path, during=None):
    """Runs loadgen; `during(proc)` runs meanwhile on this thread. Returns (exit code, CPU seconds)."""
    p = spawn(cmd, dict(os.environ), log_path)
    try:
        if during:
            during(p)
    finally:
        _, status, ru = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode not in (0, 1):
        with open(log_path, errors="replace") as f:
            raise RuntimeError(f"loadgen exited {p.returncode}: {f.read()[-2000:]}")
    return p.returncode, ru.ru_utime + ru.ru_stime


def sent_at(e):
    return e["sent_ms"] if e.get("sent_ms") is not None else e["intended_ms"]


def phase_summary(name, r, fault=None):
    """The numbers of one phase from loadgen's report; `fault` = (what, ms into the window)."""
    k = r["ops"]["by_kind"].get("gateway") or {"sent": 0, "succeeded": 0, "failed": 0, "failed_by": {},
                                               "latency": {"p50_ms": 0, "p99_ms": 0, "max_ms": 0}}
    out = {
        "phase": name, "sent": k["sent"], "ok": k["succeeded"], "failed": k["failed"],
        "failed_by": k["failed_by"], "p50_ms": k["latency"]["p50_ms"], "p99_ms": k["latency"]["p99_ms"],
        "max_ms": k["latency"]["max_ms"], "answered_by": r["answered_by"], "rate": r["settings"]["offered_rate"],
        "window_start_unix_ms": r["window_start_unix_ms"], "failure_log_dropped": r["failure_log_dropped"],
    }
    if fault:
        what, at_ms = fault
        log = r["failure_log"]
        out["fault"] = what
        out["fault_at_ms"] = at_ms
        out["failed_sent_before_fault"] = sum(1 for e in log if sent_at(e) < at_ms)
        out["failed_sent_0_100ms_after"] = sum(1 for e in log if at_ms <= sent_at(e) <= at_ms + 100)
        out["failed_sent_over_100ms_after"] = sum(1 for e in log if sent_at(e) > at_ms + 100)
        late = [sent_at(e) - at_ms for e in log if sent_at(e) >= at_ms]
        out["last_failure_sent_after_ms"] = max(late) if late else None
        # The first few, relative to the fault: when sent, when they ended.
        out["failures"] = [{"sent_after_ms": sent_at(e) - at_ms, "ended_after_ms": e["done_ms"] - at_ms,
                            "label": e["label"]} for e in log[:20]]
    return out


def load_note():
    la = os.getloadavg()
    return f"# load average {la[0]:.2f} {la[1]:.2f} {la[2]:.2f} at the start (other processes compete for the cores)"


def faults(args):
    b.header("Fleet behind a gateway: faults (2 agents; steady, one SIGKILLed, one SIGSTOPped)")
    print(load_note())
    fleet = Fleet(args.gateway_env, args.keep)
    phases = []
    try:
        fleet.add_agent("a1")
        fleet.add_agent("a2")
        for n in range(20):  # warm: connections, the agents' catalogs
            fleet.query(f"SELECT {n} AS warm")
        print(f"# gateway {fleet.url} ({' '.join(f'{k}={v}' for k, v in args.gateway_env.items()) or 'defaults'}), "
              f"agents a1 a2 (SHARDS=1), {args.rate:g} queries/s, {args.phase_s:g} s measured per phase "
              f"after {args.warmup_s:g} s warm-up; fault {args.fault_at_s:g} s into the window")

        def one(name, fault=None):
            report = os.path.join(fleet.dir, f"{name}.json")
            cmd = loadgen_args(fleet, report, args, ["run", "--rate", f"{args.rate:g}",
                                                     "--duration", f"{args.phase_s}s",
                                                     "--warmup", f"{args.warmup_s}s",
                                                     "--drain-timeout", "5s"])
            at = {}

            def during(p):
                if not fault:
                    return
                # The window opens about 50 ms + warm-up after loadgen starts;
                # the fault's exact offset is read back from the report.
                time.sleep(0.05 + args.warmup_s + args.fault_at_s)
                at["t"] = fault[0]()
                if fault[1]:
                    time.sleep(max(0.0, started + 0.05 + args.warmup_s + args.phase_s - time.time()))
                    at["end"] = fault[1]()

            started = time.time()
            busy0 = machine_busy_seconds()
            _, lg_cpu = run_loadgen(cmd, os.path.join(fleet.dir, f"{name}.log"), during)
            wall = time.time() - started
            busy = (machine_busy_seconds() - busy0) / wall
            with open(report) as f:
                r = json.load(f)
            f_ = None
            if fault:
                f_ = (fault[2], at["t"] * 1e3 - r["window_start_unix_ms"])
            s = phase_summary(name, r, f_)
            if fault and fault[1]:
                s["fault_ended_at_ms"] = at["end"] * 1e3 - r["window_start_unix_ms"]
            s["machine_busy_cores"] = busy
            s["loadgen_cores"] = lg_cpu / wall
            phases.append(s)
            return s

        one("steady")
        one("kill", (lambda: fleet.kill("a1"), None, "SIGKILL a1"))
        fleet.restart("a1")
        back = fleet.wait_usable("a1")
        print(f"# a1 restarted; the gateway routes to it again after {back:.2f} s" if back is not None
              else "# a1 restarted; the gateway did NOT show it usable within 20 s")
        one("stop", (lambda: fleet.signal("a1", signal.SIGSTOP), lambda: fleet.signal("a1", signal.SIGCONT),
                     "SIGSTOP a1"))
        back = fleet.wait_usable("a1")
        if back is not None:
            print(f"# a1 continued at the phase's end; the gateway shows it usable {back:.2f} s later"
                  + (" (never taken out of use)" if back < 0.05 else ""))
    finally:
        fleet.stop()
    print_phases(phases)
    return {"scenario": "faults", "phases": phases}


def print_phases(phases):
    print(f"{'phase':<8} {'rate/s':>7} {'sent':>6} {'ok':>6} {'failed':>6} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'max ms':>8} {'busy cores':>10}  answered by")
    for p in phases:
        by = ", ".join(f"{k} {v}" for k, v in sorted(p["answered_by"].items()))
        print(f"{p['phase']:<8} {p['rate']:>7g} {p['sent']:>6} {p['ok']:>6} {p['failed']:>6} {p['p50_ms']:>8.2f} "
              f"{p['p99_ms']:>8.2f} {p['max_ms']:>8.2f} {p['machine_busy_cores']:>10.2f}  {by}")
    print("  (latency from each query's intended start; busy cores: the whole machine's, anything else "
          "running included)")
    for p in phases:
        for label, n in sorted(p["failed_by"].items()):
            print(f"  {p['phase']}: failed {n} x {label}")
        if "fault" in p:
            last = p["last_failure_sent_after_ms"]
            end = f", ended at {p['fault_ended_at_ms']:.0f} ms" if "fault_ended_at_ms" in p else ""
            print(f"  {p['phase']}: {p['fault']} at {p['fault_at_ms']:.0f} ms into the window{end}; failed queries "
                  f"sent before it (in flight) {p['failed_sent_before_fault']}, within 100 ms after "
                  f"{p['failed_sent_0_100ms_after']}, more than 100 ms after {p['failed_sent_over_100ms_after']}"
                  + (f" (the last sent {last:.0f} ms after)" if last is not None else ""))
            for e in p["failures"][:5]:
                print(f"    sent {e['sent_after_ms']:+.0f} ms, ended {e['ended_after_ms']:+.0f} ms: {e['label']}")
        if p["failure_log_dropped"]:
            print(f"  {p['phase']}: {p['failure_log_dropped']} failures beyond loadgen's failure log (not split)")


def scale(args):
    b.header(f"Fleet behind a gateway: scale (SLO-safe rate with 1..{args.agents} agents)")
    print(load_note())
    fleet = Fleet(args.gateway_env, args.keep)
    rows = []
    try:
        print(f"# gateway {fleet.url} ({' '.join(f'{k}={v}' for k, v in args.gateway_env.items()) or 'defaults'}); "
              f"agents SHARDS=1; loadgen capacity: p95 < {args.slo_p95}, availability >= 99.9%, "
              f"steps of {args.step_s:g} s after {args.warmup_s:g} s warm-up, from {args.start_rate:g}/s x2, "
              f"at most {args.max_steps} steps")
        for n in range(1, args.agents + 1):
            name = f"a{n}"
            fleet.add_agent(name)
            fleet.wait_usable(name)
            for k in range(20):
                fleet.query(f"SELECT {k} AS warm")
            report = os.path.join(fleet.dir, f"scale-{n}.json")
            cmd = loadgen_args(fleet, report, args, [
                "capacity", "--start-rate", f"{args.start_rate:g}", "--max-rate", "20000", "--factor", "2",
                "--precision", "0.1", "--max-steps", str(args.max_steps), "--duration", f"{args.step_s}s",
                "--warmup", f"{args.warmup_s}s", "--slo-completion-p95", args.slo_p95, "--settle-timeout", "0s",
                "--drain-timeout", "10s"])
            pids = {"gateway": fleet.proc.pid}
            pids.update({a: fleet.pid(a) for a in fleet.agents})
            held = {}

            def during(p):
                pids["loadgen"] = p.pid
                sampler = held["sampler"] = CpuSampler(pids)
                # Until loadgen has exited but is not reaped yet (its /proc
                # entry still holds its CPU times): the last sample has them.
                while proc_state(p.pid) not in ("Z", None):
                    time.sleep(0.05)
                sampler.stop()

            run_loadgen(cmd, os.path.join(fleet.dir, f"scale-{n}.log"), during)
            sampler = held["sampler"]
            with open(report) as f:
                c = json.load(f)
            steps = []
            for s in sorted(c["steps"], key=lambda s: s["rate"]):
                r = s["report"]
                t0 = r["window_start_unix_ms"] / 1e3
                cpu = sampler.window(t0, t0 + r["measured_s"])
                steps.append({"rate": s["rate"], "passed": s["passed"], "failing": s["failing"],
                              "throughput": s["throughput"], "p50_ms": s["latency"]["p50_ms"],
                              "p95_ms": s["latency"]["p95_ms"], "p99_ms": s["latency"]["p99_ms"],
                              "answered_by": r["answered_by"], "cpu": cpu})
            rows.append({"agents": n, "capacity": c["lower_bound"], "upper": c["upper_bound"],
                         "first_failing": c["first_failing"], "summary": c["summary"], "steps": steps})
            print(f"## {n} agent{'s' if n > 1 else ''}: {c['summary']}")
            for s in steps:
                print("   " + step_line(s, list(fleet.agents)))
    finally:
        fleet.stop()
    print_scale(rows)
    return {"scenario": "scale", "rows": rows}


def step_line(s, agents):
    cpu = s["cpu"]
    parts = []
    for name in ["gateway"] + agents + ["loadgen"]:
        if name in cpu:
            total, busiest = cpu[name]
            parts.append(f"{name} {total:.2f} (thread {busiest:.2f})" if name == "gateway" else f"{name} {total:.2f}")
    ours = sum(v[0] for k, v in cpu.items() if k != "machine")
    others = max(0.0, cpu["machine"][0] - ours) if "machine" in cpu else float("nan")
    by = ", ".join(f"{k} {v}" for k, v in sorted(s["answered_by"].items()))
    return (f"{s['rate']:>8.1f}/s {'PASS' if s['passed'] else 'FAIL'} thru {s['throughput']:>7.1f}/s "
            f"p50 {s['p50_ms']:>7.2f} p95 {s['p95_ms']:>8.2f} ms  cores: {'; '.join(parts)}; fleet+loadgen "
            f"{ours:.2f}, other processes {others:.2f}, of {os.cpu_count()}  [{by}]"
            + (f"  failing {','.join(s['failing'])}" if s["failing"] else ""))


def bound_of(step, agents):
    """What the CPU figures say bounds a step: the gateway's busiest thread, the cores, or neither."""
    cpu = step["cpu"]
    if not cpu:
        return "no CPU samples"
    total = cpu["machine"][0] if "machine" in cpu else sum(v[0] for v in cpu.values())
    gw, gw_thread = cpu.get("gateway", (0.0, 0.0))
    ag = sum(cpu[a][0] for a in agents if a in cpu)
    cores = os.cpu_count()
    text = (f"gateway {gw:.2f} cores (busiest thread {gw_thread:.2f}), agents {ag:.2f}, "
            f"loadgen {cpu.get('loadgen', (0.0, 0.0))[0]:.2f}; machine {total:.2f} of {cores} cores busy")
    ours = sum(v[0] for k, v in cpu.items() if k != "machine")
    if total - ours > 0.25:
        text += f" (other processes {total - ours:.2f} cores: not a clean measurement)"
    if gw_thread >= 0.85:
        return text + " -> the gateway's query thread is saturated"
    if total >= 0.9 * cores:
        return text + " -> the machine's cores are saturated"
    return text + " -> no CPU saturated (latency/SLO-bound)"


def cpu_per_query(step, agents):
    """CPU microseconds per answered query in a step: gateway (its busiest thread), agents, loadgen."""
    cpu, q = step["cpu"], max(step["throughput"], 1e-9)
    us = lambda cores: cores / q * 1e6  # noqa: E731
    if "gateway" not in cpu:
        return None
    return {"gateway": us(cpu["gateway"][0]), "gateway_thread": us(cpu["gateway"][1]),
            "agents": us(sum(cpu[a][0] for a in agents if a in cpu)),
            "loadgen": us(cpu.get("loadgen", (0.0, 0.0))[0])}


def print_scale(rows):
    print(f"\n{'agents':>6} {'SLO-safe rate/s':>16} {'first fail/s':>13}  failing SLO   bound (at the first failing step, else the highest passing)")
    for r in rows:
        agents = [f"a{i}" for i in range(1, r["agents"] + 1)]
        fail = next((s for s in r["steps"] if not s["passed"] and s["rate"] == r["upper"]), None)
        ref = fail or max((s for s in r["steps"] if s["passed"]), key=lambda s: s["rate"], default=None)
        cap = f"{r['capacity']:.0f}" if r["capacity"] else "none"
        upper = f"{r['upper']:.0f}" if r["upper"] else "-"
        print(f"{r['agents']:>6} {cap:>16} {upper:>13}  {','.join(r['first_failing']) or '-':<12} "
              f"{bound_of(ref, agents) if ref else '-'}")
    print("\nCPU per answered query at the highest passing rate (what sizes a fleet whose parts have cores "
          "of their own):")
    for r in rows:
        agents = [f"a{i}" for i in range(1, r["agents"] + 1)]
        top = max((s for s in r["steps"] if s["passed"]), key=lambda s: s["rate"], default=None)
        c = cpu_per_query(top, agents) if top else None
        if c:
            r["cpu_us_per_query"] = c
            print(f"{r['agents']:>6} agent(s) at {top['rate']:.0f}/s: gateway {c['gateway']:.0f} us (its busiest "
                  f"thread {c['gateway_thread']:.0f} us: one such thread saturates near "
                  f"{1e6 / max(c['gateway_thread'], 1e-9):,.0f} queries/s), agents {c['agents']:.0f} us in all, "
                  f"loadgen {c['loadgen']:.0f} us")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenario", choices=["faults", "scale"], default="faults")
    ap.add_argument("--quick", action="store_true", help="a short smoke run")
    ap.add_argument("--rate", type=float, default=150.0, help="faults: queries per second")
    ap.add_argument("--phase-seconds", dest="phase_s", type=float, default=5.0, help="faults: measured s per phase")
    ap.add_argument("--fault-at", dest="fault_at_s", type=float, default=0.5,
                    help="faults: seconds into the measured window the agent is killed or stopped")
    ap.add_argument("--agents", type=int, default=3, help="scale: up to this many agents")
    ap.add_argument("--slo-p95", default="100ms", help="scale: p95 latency SLO of a capacity step")
    ap.add_argument("--start-rate", type=float, default=400.0, help="scale: first rate tried")
    ap.add_argument("--step-seconds", dest="step_s", type=float, default=2.5, help="scale: measured s per step")
    ap.add_argument("--max-steps", type=int, default=8, help="scale: capacity steps per agent count")
    ap.add_argument("--warmup", dest="warmup_s", type=float, default=1.0)
    ap.add_argument("--connections", type=int, default=256)
    ap.add_argument("--sql", default=SQL, help="statement sent ({seq}: unique per request)")
    ap.add_argument("--gateway-env", action="append", default=[], metavar="K=V",
                    help="extra gateway setting, e.g. WORKER_THREADS=2 (repeatable)")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--keep", action="store_true", help="keep the logs and loadgen's reports (the path is printed)")
    args = ap.parse_args()
    args.gateway_env = dict(kv.split("=", 1) for kv in args.gateway_env)
    if args.quick:
        args.phase_s, args.warmup_s, args.rate = 2.0, 0.5, min(args.rate, 100.0)
        args.step_s, args.max_steps, args.agents = 1.5, 4, min(args.agents, 2)
        args.start_rate = min(args.start_rate, 200.0)
    t0 = time.monotonic()
    out = faults(args) if args.scenario == "faults" else scale(args)
    out.update({"commit": b.git_commit(), "cores": os.cpu_count(), "args": vars(args),
                "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())})
    print(f"# {time.monotonic() - t0:.0f} s in all")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
