"""test/bench/benchlib.py: what the figures of test/bench/bench.py share: the cluster and
the fast mock (connections, queries, the mock's control API, the worker's process),
pgbench, the statistics (median and spread), the Markdown table, the charts and the
report. Environment: PGHOST, PGPORT, HI_MOCK_PORT, HI_PGBIN (set by test/bench/run.sh).
"""
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request

import psycopg2
import psycopg2.errors

HERE = os.path.dirname(os.path.abspath(__file__))
PGHOST = os.environ.get("PGHOST", "/tmp")
PGPORT = int(os.environ.get("PGPORT", "54329"))
MOCK_PORT = int(os.environ.get("HI_MOCK_PORT", "18080"))
MOCK = "http://127.0.0.1:%d" % MOCK_PORT
PGBIN = os.environ.get("HI_PGBIN", "/usr/lib/postgresql/15/bin")
MAX_CONCURRENT = 64          # halo_itsm.max_concurrent_requests (default, set by run.sh)
LATENCY_MS = 20              # the mock's latency for figures 1, 3, 4

HALO_TABLES = ("timeline", "webhook_deliveries", "tickets", "outbox", "detections",
               "cases", "integration_secrets", "integrations")


def log(msg):
    """A progress line on stderr (the table goes to stdout)."""
    print("[bench %s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)


def now_us():
    """CLOCK_REALTIME in microseconds: the clock the fast mock stamps requests with."""
    return time.time_ns() // 1000


def loadavg():
    """The 1-minute load average."""
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


# --- database and mock helpers ------------------------------------------------------

def connect(dbname="halo", autocommit=True):
    """A new connection to the benchmark cluster."""
    c = psycopg2.connect(host=PGHOST, port=PGPORT, user="postgres", dbname=dbname)
    c.autocommit = autocommit
    return c


def q(c, sql, *args):
    """Runs sql; returns its rows (None for statements without a result)."""
    with c.cursor() as cur:
        cur.execute(sql, args or None)
        return cur.fetchall() if cur.description else None


def q1(c, sql, *args):
    """The first column of the first row of sql."""
    return q(c, sql, *args)[0][0]


def mock(method, path):
    """Calls the fast mock; returns the answer's body."""
    req = urllib.request.Request(MOCK + path, method=method, data=b"" if method == "POST" else None)
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.read()


def mock_latency(ms):
    """Sets the latency of the mock's Halo endpoints."""
    mock("POST", "/_bench/latency?us=%d" % int(ms * 1000))


def mock_records():
    """Tickets the mock created: {sid: [(received_us, answered_us, id), ...]}."""
    out = {}
    for line in mock("GET", "/_bench/records").decode().splitlines():
        sid, recv, sent, tid = line.split("\t")
        out.setdefault(sid, []).append((int(recv), int(sent), int(tid)))
    return out


def set_conf(c, name, value):
    """ALTER SYSTEM SET name = value and reload."""
    q(c, "ALTER SYSTEM SET %s = %s" % (name, value))
    q(c, "SELECT pg_reload_conf()")
    time.sleep(0.2)


def worker_pid(c):
    """The pid of the delivery worker (waits up to 15 s for it)."""
    for _ in range(150):
        pid = q(c, "SELECT pid FROM pg_stat_activity WHERE backend_type = 'halo_itsm delivery worker'")
        if pid:
            return pid[0][0]
        time.sleep(0.1)
    raise RuntimeError("the halo_itsm delivery worker is not running")


def restart_worker(c):
    """Terminates the delivery worker; returns the pid of the one the postmaster starts next."""
    old = worker_pid(c)
    q(c, "SELECT pg_terminate_backend(%s)", old)
    found = []

    def restarted():
        found[:] = [r[0] for r in q(c, "SELECT pid FROM pg_stat_activity WHERE backend_type = "
                                       "'halo_itsm delivery worker' AND pid <> %s", old)]
        return bool(found)
    wait_until(restarted, 30, "the worker's restart")
    return found[0]


def proc_status(pid):
    """VmRSS, RssAnon (kB) of a process."""
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "RssAnon", "RssShmem", "RssFile"):
                out[k] = int(v.split()[0])
    return out


def proc_cpu_s(pid):
    """User + system CPU seconds of a process."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_until(fn, timeout, what):
    """Polls fn until it is true; raises after timeout seconds."""
    end = time.time() + timeout
    while time.time() < end:
        if fn():
            return
        time.sleep(0.1)
    raise RuntimeError("timed out waiting for " + what)


def truncate_quietly(c, tables):
    """TRUNCATE tables without deadlocking with the worker: its integrations are disabled
    until nothing is in flight, and enabled again afterwards."""
    enabled = [r[0] for r in q(c, "SELECT id FROM halo_itsm.integrations WHERE enabled")]
    q(c, "UPDATE halo_itsm.integrations SET enabled = false")
    try:
        wait_until(lambda: q1(c, "SELECT count(*) = 0 FROM halo_itsm.outbox WHERE state = 'in_flight'"),
                   60, "in-flight items to finish")
    except RuntimeError:
        log("items still in flight; truncating anyway")
    for attempt in range(5):
        try:
            q(c, "TRUNCATE %s CASCADE" % ", ".join(tables))
            break
        except psycopg2.errors.DeadlockDetected:
            time.sleep(0.5)
    q(c, "UPDATE halo_itsm.integrations SET enabled = true WHERE id = ANY(%s)", enabled)


def reset_halo(c, dbname="halo"):
    """Empties the halo_itsm tables once nothing is in flight, and the mock's records."""
    truncate_quietly(c, ["halo_itsm." + t for t in HALO_TABLES])
    mock("POST", "/_bench/reset")


def make_integrations(c, n, tag):
    """Connects and configures n integrations to the mock (distinct names and client ids)."""
    ids = []
    for k in range(n):
        iid = q1(c, "SELECT halo_itsm.connect(%s, %s, 'bench-secret', name => %s)",
                 MOCK, "bench-client-%s-%d" % (tag, k), "bench-%s-%d" % (tag, k))
        q(c, "SELECT halo_itsm.configure(%s, category => 'Security>Incident')", iid)
        ids.append(iid)
    return ids


def insert_cases(c, prefix, n, ids):
    """Inserts n cases spread round-robin over integrations ids in one transaction;
    returns (commit time in us, sids)."""
    q(c, "BEGIN")
    q(c, """INSERT INTO halo_itsm.cases (sid, title, description, severity, integration_id)
            SELECT %s || g, 'Benchmark case ' || g, 'Inserted by the benchmark', 'high',
                   (%s::int[])[1 + g %% cardinality(%s::int[])]
              FROM generate_series(1, %s) g""", prefix, ids, ids, n)
    q(c, "COMMIT")
    return now_us(), [prefix + str(g) for g in range(1, n + 1)]


def wait_delivered(c, timeout):
    """Waits until the outbox has no pending or in-flight item; raises when one is dead."""
    def done():
        pending, dead = q(c, """SELECT count(*) FILTER (WHERE state IN ('pending', 'in_flight')),
                                       count(*) FILTER (WHERE state = 'dead')
                                  FROM halo_itsm.outbox""")[0]
        if dead:
            raise RuntimeError("%d outbox items are dead: %s" % (dead, q1(
                c, "SELECT last_error FROM halo_itsm.outbox WHERE state = 'dead' LIMIT 1")))
        return pending == 0
    wait_until(done, timeout, "delivery")


def check_exactly_once(c, sids, records):
    """(lost, duplicated) among sids: each must have reached the mock exactly once and be
    linked to that ticket id in halo_itsm.tickets."""
    linked = dict(q(c, """SELECT ca.sid, t.halo_ticket_id FROM halo_itsm.tickets t
                            JOIN halo_itsm.cases ca ON ca.id = t.case_id
                           WHERE ca.sid = ANY(%s)""", list(sids)))
    lost = dup = 0
    for sid in sids:
        got = records.get(sid, [])
        if len(got) == 0 or sid not in linked:
            lost += 1
        elif len(got) > 1:
            dup += 1
        elif got[0][2] != linked[sid]:
            lost += 1
    return lost, dup


def pgbench(script, seconds, clients, dbname="halo", options=None, per_statement=False, defines=None):
    """Runs pgbench with a custom script; returns (tps, [per-statement latency ms])."""
    env = dict(os.environ)
    if options:
        env["PGOPTIONS"] = options
    cmd = [os.path.join(PGBIN, "pgbench"), "-n", "-M", "prepared", "-h", PGHOST, "-p", str(PGPORT),
           "-U", "postgres", "-c", str(clients), "-j", str(min(clients, 2)), "-T", str(seconds),
           "-f", os.path.join(HERE, "pgbench", script)]
    for k, v in (defines or {}).items():
        cmd += ["-D", "%s=%s" % (k, v)]
    if per_statement:
        cmd.append("-r")
    cmd.append(dbname)
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    m = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", r.stdout)
    if r.returncode != 0 or not m:
        raise RuntimeError("pgbench failed: %s\n%s" % (r.stdout[-2000:], r.stderr[-2000:]))
    lat = []
    if per_statement:
        body = r.stdout.split("statement latencies in milliseconds", 1)[1]
        for line in body.splitlines()[1:]:
            mm = re.match(r"\s+([0-9.]+)\s+\S+\s+(.*)", line)
            if mm and not mm.group(2).startswith("\\"):
                lat.append(float(mm.group(1)))
    return float(m.group(1)), lat


# --- statistics and the table ----------------------------------------------------------

def med(xs):
    """Median."""
    return statistics.median(xs)


def pct(xs, p):
    """The p-th percentile (nearest rank) of xs."""
    s = sorted(xs)
    return s[max(0, min(len(s) - 1, int(round(p / 100.0 * len(s) + 0.5)) - 1))]


def fmt(x, digits=None):
    """A number with sensible precision."""
    if digits is None:
        digits = 0 if abs(x) >= 100 else 1 if abs(x) >= 10 else 2 if abs(x) >= 1 else 3
    return "%.*f" % (digits, x)


def spread(xs, unit="", digits=None):
    """'median (min-max) unit' of samples."""
    if len(xs) == 1:
        return "%s%s" % (fmt(xs[0], digits), unit)
    return "%s (%s–%s)%s" % (fmt(med(xs), digits), fmt(min(xs), digits), fmt(max(xs), digits), unit)


class Results:
    """The rows of the table and the raw samples of every figure."""

    def __init__(self):
        self.rows = []
        self.raw = {}
        self.notes = []
        self.worker_cpu_f1 = []     # figure 9: worker CPU ms per delivered item during figure 1
        self.worker_cpu_f4 = {}     # ... during figure 4, by number of integrations

    def row(self, fig, name, measured, baseline, ratios, target, met, unit="", bunit=None, digits=None):
        """Adds a table row: samples of the figure and its baseline, per-rep ratios."""
        self.rows.append(dict(fig=fig, name=name, measured=spread(measured, unit, digits),
                              baseline=spread(baseline, unit if bunit is None else bunit, digits)
                              if baseline else "–",
                              ratio=spread(ratios, "", 3 if ratios and med(ratios) < 10 else 1) if ratios else "–",
                              target=target, met=("yes" if met else "**no**") if met is not None else "–"))

    def table(self):
        """The Markdown table."""
        out = ["| # | figure | measured: median (min–max) | baseline: median (min–max) | ratio | target | met |",
               "|---|---|---|---|---|---|---|"]
        for r in self.rows:
            out.append("| %(fig)s | %(name)s | %(measured)s | %(baseline)s | %(ratio)s | %(target)s | %(met)s |" % r)
        return "\n".join(out)


# --- output ------------------------------------------------------------------------------------

def machine():
    """One line about the machine."""
    model = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem = int(f.readline().split()[1]) // (1024 * 1024)
    return "%s, %d cores, %d GiB, Linux %s" % (model or platform.machine(), os.cpu_count(), mem,
                                             platform.release())


def charts(res, outdir):
    """Writes throughput.png and latency.png with gnuplot (skipped without it)."""
    if shutil.which("gnuplot") is None:
        res.notes.append("gnuplot is not installed: no charts.")
        return
    tp = os.path.join(outdir, "throughput.tsv")
    with open(tp, "w") as f:
        f.write("# integrations\tmedian\tmin\tmax\tideal\n")
        for n, rates, ideal in getattr(res, "throughput", []):
            f.write("%d\t%.1f\t%.1f\t%.1f\t%.1f\n" % (n, med(rates), min(rates), max(rates), ideal))
    lt = os.path.join(outdir, "latency.tsv")
    lat = sorted(getattr(res, "latencies", []))
    with open(lt, "w") as f:
        f.write("# latency_ms\tcumulative_fraction\n")
        for i, x in enumerate(lat):
            f.write("%.3f\t%.4f\n" % (x, (i + 1) / len(lat)))
    script = """
set terminal pngcairo size 720,420 font ",10"
set output '%(out)s/throughput.png'
set title 'Delivery throughput vs. integrations (mock latency %(lat)d ms)'
set logscale xy
set xlabel 'integrations'
set ylabel 'tickets/s'
set key top left
set grid
set xrange [0.7:300]
plot '%(tp)s' using 1:5 with linespoints dt 2 lc rgb '#888888' title 'ideal min(n,%(mc)d)/latency', \\
     '%(tp)s' using 1:($5*0.7) with lines dt 3 lc rgb '#cc8888' title '0.7 x ideal', \\
     '%(tp)s' using 1:2:3:4 with yerrorlines pt 7 lc rgb '#1f77b4' title 'measured (median, min-max)'
set output '%(out)s/latency.png'
set title 'Commit-to-request latency (idle, all repetitions)'
unset logscale
set logscale x
set xlabel 'ms from COMMIT returning to the mock receiving the POST'
set ylabel 'fraction of requests'
set yrange [0:1]
set xrange [0.1:50]
set arrow 1 from 5, graph 0 to 5, graph 1 nohead dt 2 lc rgb '#888888'
set arrow 2 from 25, graph 0 to 25, graph 1 nohead dt 2 lc rgb '#cc8888'
plot '%(lt)s' using 1:2 with steps lw 2 lc rgb '#1f77b4' title 'cumulative fraction (targets: p50 5 ms, p99 25 ms)'
""" % dict(out=outdir, tp=tp, lt=lt, lat=LATENCY_MS, mc=MAX_CONCURRENT)
    r = subprocess.run(["gnuplot"], input=script, capture_output=True, text=True)
    if r.returncode != 0:
        res.notes.append("gnuplot failed: " + r.stderr.strip()[:300])


def report(res, S, mode, outdir, started, load_before):
    """Prints the table and writes latest.md and raw.json."""
    lines = ["# halo_itsm benchmarks (%s)" % mode, "",
             "- date: %s (took %.0f min)" % (started.strftime("%Y-%m-%d %H:%M %Z").strip(),
                                            (time.time() - started.timestamp()) / 60),
             "- machine: %s" % machine(),
             "- PostgreSQL: %s" % res.pg_version,
             "- load average (1 min) before / after: %.2f / %.2f" % (load_before, loadavg()),
             "- repetitions per figure: %d; medians with (min–max)" % S["reps"], "",
             res.table(), ""]
    rows = getattr(res, "mock_rows", None)
    if rows:
        lines += ["Mock capacity (wrk against the fast mock's POST /api/Tickets, %d s each):" % S["wrk_seconds"], "",
                  "| mock latency | connections | requests/s | of ideal connections/latency |",
                  "|---|---|---|---|"]
        for r in rows:
            lines.append("| %d ms | %d | %.0f | %s |" % (r["latency_ms"], r["connections"], r["requests_per_s"],
                                                        "%.2f" % r["ratio"] if r["ratio"] else "–"))
        lines.append("")
    for note in res.notes:
        lines.append("- " + note)
    text = "\n".join(lines) + "\n"
    print(text)
    with open(os.path.join(outdir, "latest.md"), "w") as f:
        f.write(text)
    with open(os.path.join(outdir, "raw.json"), "w") as f:
        json.dump(dict(mode=mode, sizes=S, results=res.raw, rows=res.rows), f, indent=1)
