#!/usr/bin/env python3
"""Every dashboard panel returns data from a live stack.

Starts the real `rythmiq dev` (target/debug/rythmiq: its own Postgres cluster, in a temporary
data dir, on a free loopback port) and Debian's `prometheus` on loopback, scraping it every
second with grafana/alerts/rythmiq.rules.yml loaded. Runs real jobs through the HTTP API:

- a document job whose process is killed (kill -9) while it runs; a restarted `rythmiq dev`
  takes it back through the orphan reaper (`WORKER_LOST`, re-queued) and completes it on the
  standard path;
- a photo that completes on the fast path, a second photo for another portal rule;
- a JPEG whose header claims 60000 x 60000 pixels, which fails with `DECODE_FAILED`.

Then it evaluates every PromQL target of grafana/dashboards/*.json through Prometheus' HTTP API
(`/api/v1/query`, template variables substituted as Grafana substitutes them for the
dashboard's default time range) and runs every SQL target against the dev database as the
read-only Grafana login of grafana/provisioning/grafana_role.sql, and requires data from each:
a finite sample, a row with a value. The variables' own queries must list values too, every
rule must evaluate without error, and the error-rate alerts must be pending (one job in four
failed). Jobs start only once Prometheus has scraped the process that runs them, as in
production, so every rate sees them. Prints one line per target and how long it took, and exits
1 on any failure, including a missing prerequisite: a check that cannot run has failed.

Usage: live_check.py [--binary PATH] [--keep]
  --binary  the rythmiq binary (default target/debug/rythmiq; waits a while for it to appear,
            as a rebuild replaces it)
  --keep    keep the temporary directory (logs, data) and print where it is
"""

import argparse
import csv
import io
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.dont_write_bytecode = True  # importing the SQL check must not leave __pycache__ in the tree
sys.path.insert(0, str(HERE))
import sql_check  # noqa: E402  (Grafana's SQL macros, PostgreSQL's server binaries)

DASHBOARDS = ROOT / "grafana/dashboards"
RULES = ROOT / "grafana/alerts/rythmiq.rules.yml"
GRAFANA_ROLE_SQL = ROOT / "grafana/provisioning/grafana_role.sql"
DATASOURCES = ROOT / "grafana/provisioning/datasources/rythmiq.yaml"
FIXTURES = ROOT / "pipeline/tests/fixtures"

# What `rythmiq dev` creates: its database, and the superuser of its cluster (trust auth on
# loopback), which applies grafana_role.sql as the README tells operators to.
DATABASE = "rythmiq"
SUPERUSER = "rythmiq"
GRAFANA_LOGIN = "rythmiq_grafana"

# Scrape and rule evaluation every second, so the check waits seconds, not minutes.
SCRAPE_SECONDS = 1
# Grafana computes $__interval from the time range and the panel's width in pixels; a
# full-width panel is about this many points.
MAX_DATA_POINTS = 1000

# One process serves the API and the workers in `rythmiq dev`, so its /metrics holds both. In
# production the API and each worker are separate targets of the jobs the rules expect: split
# the one target into those two jobs by metric name, so that `up{job="rythmiq-worker"}` is real
# and no series is counted twice.
API_METRICS = r"rythmiq_(api_.*|queue_.*|cpu_.*_current_month|alert_.*)"

# How long each phase may take before the check gives up on it.
BINARY_WAIT = 120
DEV_START = 120
PROMETHEUS_START = 30
JOB_DONE = 120
INGEST = 30
EVALUATE = 30


class CheckFailed(Exception):
    """The stack could not be brought to the state the check needs."""


# ------------------------------------------------------------------------------------------
# Small helpers
# ------------------------------------------------------------------------------------------
# Loopback only: a proxy from the environment must not see these requests.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http(method, url, body=None, headers=None, timeout=75):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with OPENER.open(req, timeout=timeout) as res:
            return res.status, res.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def poll(what, deadline_seconds, probe, interval=0.25):
    """Calls probe() until it returns something truthy; raises CheckFailed at the deadline."""
    end = time.monotonic() + deadline_seconds
    last = None
    while True:
        try:
            got = probe()
        except (OSError, urllib.error.URLError) as e:  # not listening yet
            got, last = None, e
        if got:
            return got
        if time.monotonic() > end:
            raise CheckFailed(f"{what}: not within {deadline_seconds} s"
                              + (f" (last error: {last})" if last else ""))
        time.sleep(interval)


def seconds(text):
    """'6h', '7d', '90s' -> seconds."""
    m = re.fullmatch(r"(\d+)([smhdw])", text)
    if not m:
        raise ValueError(f"not a duration: {text}")
    return int(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[m.group(2)]


def tail(path, lines=40):
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# ------------------------------------------------------------------------------------------
# The stack: rythmiq dev and Prometheus
# ------------------------------------------------------------------------------------------
class Stack:
    def __init__(self, tmp, binary):
        self.tmp = tmp
        self.binary = binary
        self.data = tmp / "data"
        self.api_port = free_port()
        self.prom_port = free_port()
        self.dev = None
        self.dev_runs = 0
        self.prometheus = None
        self.token = None

    @property
    def api(self):
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def prom(self):
        return f"http://127.0.0.1:{self.prom_port}"

    @property
    def dev_log(self):
        return self.tmp / f"dev-{self.dev_runs}.log"

    def dev_env(self):
        # The flags below say everything; a developer's own RYTHMIQ_* settings (a database, a
        # secret, a listen address) must not leak in. The models stay where setup put them.
        env = {k: v for k, v in os.environ.items()
               if not (k.startswith(("RYTHMIQ_", "OTEL_")) and k != "RYTHMIQ_MODELS_DIR")
               and k not in ("DATABASE_URL", "RUST_LOG")}
        env["NO_COLOR"] = "1"
        return env

    def start_dev(self):
        self.dev_runs += 1
        log = open(self.dev_log, "w", encoding="utf-8")
        cmd = [str(self.binary), "dev", "--listen", f"127.0.0.1:{self.api_port}",
               "--data-dir", str(self.data), "--workers", "2",
               # Quick heartbeats and reaping, a short retry backoff and frequent rollup
               # refreshes: the same code paths, in seconds instead of minutes.
               "--heartbeat-secs", "1", "--orphan-timeout-secs", "5", "--retry-base-secs", "1",
               "--maintenance-secs", "2", "--poll-interval-ms", "250"]
        # Its own session: a Ctrl-C on the check reaches the check, which stops dev in order.
        self.dev = subprocess.Popen(cmd, cwd=ROOT, env=self.dev_env(), stdout=log,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
        log.close()

        def ready():
            if self.dev.poll() is not None:
                raise CheckFailed(f"rythmiq dev exited with {self.dev.returncode}:\n"
                                  + tail(self.dev_log))
            return "rythmiq dev is ready: " in self.dev_log.read_text(errors="replace")
        poll("rythmiq dev ready", DEV_START, ready)

    def kill_dev(self):
        """Kills the dev process the way a crash or the OOM killer would: no shutdown at all.
        Its Postgres cluster (a separate daemon) keeps running; the next start reuses it."""
        self.dev.kill()
        self.dev.wait()

    def stop_dev(self):
        if self.dev is None or self.dev.poll() is not None:
            return
        self.dev.send_signal(signal.SIGINT)
        try:
            self.dev.wait(timeout=45)
        except subprocess.TimeoutExpired:
            self.dev.kill()
            self.dev.wait()

    def stop_postgres(self):
        """After a crash of dev, its cluster may still run: stop it (only this data dir's)."""
        pgdata = self.data / "pg"
        if not (pgdata / "postmaster.pid").exists():
            return
        bindir = sql_check.pg_bindir()
        if not bindir:
            return
        runner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run(runner + [f"{bindir}/pg_ctl", "-D", str(pgdata), "-m", "immediate", "stop"],
                       capture_output=True, check=False)

    def pg_port(self):
        # postmaster.pid, line 4: the port (the cluster listens on 127.0.0.1 only).
        lines = (self.data / "pg/postmaster.pid").read_text().splitlines()
        return int(lines[3])

    def start_prometheus(self):
        config = self.tmp / "prometheus.yml"
        job = "  - job_name: {name}\n" \
              "    static_configs:\n" \
              "      - targets: ['127.0.0.1:{port}']\n" \
              "    metric_relabel_configs:\n" \
              "      - source_labels: [__name__]\n" \
              "        regex: '{regex}'\n" \
              "        action: {action}\n"
        config.write_text(
            "global:\n"
            f"  scrape_interval: {SCRAPE_SECONDS}s\n"
            f"  scrape_timeout: {SCRAPE_SECONDS}s\n"
            f"  evaluation_interval: {SCRAPE_SECONDS}s\n"
            "rule_files:\n"
            f"  - '{RULES}'\n"
            "scrape_configs:\n"
            + job.format(name="rythmiq-api", port=self.api_port, regex=API_METRICS, action="keep")
            + job.format(name="rythmiq-worker", port=self.api_port, regex=API_METRICS,
                         action="drop"),
            encoding="utf-8")
        log = open(self.tmp / "prometheus.log", "w", encoding="utf-8")
        self.prometheus = subprocess.Popen(
            ["prometheus", f"--config.file={config}",
             f"--storage.tsdb.path={self.tmp / 'prometheus-data'}",
             f"--web.listen-address=127.0.0.1:{self.prom_port}", "--log.level=warn"],
            cwd=self.tmp, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)
        log.close()

        def ready():
            if self.prometheus.poll() is not None:
                raise CheckFailed(f"prometheus exited with {self.prometheus.returncode}:\n"
                                  + tail(self.tmp / "prometheus.log"))
            return http("GET", f"{self.prom}/-/ready", timeout=2)[0] == 200
        poll("prometheus ready", PROMETHEUS_START, ready)

    def stop_prometheus(self):
        if self.prometheus is None or self.prometheus.poll() is not None:
            return
        self.prometheus.terminate()
        try:
            self.prometheus.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.prometheus.kill()
            self.prometheus.wait()

    # --- Prometheus' HTTP API -------------------------------------------------------------
    def query(self, expr, at=None):
        form = {"query": expr}
        if at is not None:
            form["time"] = f"{at:.3f}"
        status, body = http("POST", f"{self.prom}/api/v1/query",
                            urllib.parse.urlencode(form).encode(),
                            {"Content-Type": "application/x-www-form-urlencoded"}, timeout=30)
        try:
            return json.loads(body)
        except ValueError:
            return {"status": "error", "error": f"HTTP {status}: {body[:200]!r}"}

    def wait_scraped(self):
        """Until Prometheus has scraped the dev process that is up now, under both jobs. Jobs
        start after that: a counter a process increments before its first scrape has no
        earlier sample to rise from, and rate() would never see that increment."""
        since = time.time()

        def scraped():
            return self.value('count(timestamp(up{job=~"rythmiq-api|rythmiq-worker"} == 1) '
                              f'> {since:.3f})') == 2
        poll("Prometheus scraped rythmiq dev", INGEST, scraped)

    def value(self, expr):
        """The single value of a scalar-valued PromQL expression, or None."""
        res = self.query(expr)
        result = res.get("data", {}).get("result") if res.get("status") == "success" else None
        if not result:
            return None
        return float(result[0]["value"][1])

    # --- the API ----------------------------------------------------------------------------
    def mint_token(self):
        # `rythmiq token` reads the secret `dev` generated into the data dir.
        out = subprocess.run([str(self.binary), "token", "--user", str(uuid.uuid4()),
                              "--data-dir", str(self.data)],
                             cwd=ROOT, env=self.dev_env(), capture_output=True, text=True,
                             check=False)
        if out.returncode != 0 or not out.stdout.strip():
            raise CheckFailed(f"rythmiq token failed: {out.stderr.strip()}")
        self.token = out.stdout.strip()

    def submit(self, path, portal):
        boundary = uuid.uuid4().hex
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"portal\"\r\n\r\n"
                f"{portal}\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
                f"filename=\"{path.name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
                ).encode() + path.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
        status, raw = http("POST", f"{self.api}/v1/jobs", body, {
            "Authorization": f"Bearer {self.token}",
            "Content-Type": f"multipart/form-data; boundary={boundary}"})
        if status != 202:
            raise CheckFailed(f"POST /v1/jobs ({path.name} for {portal}): {status} {raw[:300]!r}")
        return json.loads(raw)["job_id"]

    def job(self, job_id, wait=0):
        query = f"?wait={wait}" if wait else ""
        status, raw = http("GET", f"{self.api}/v1/jobs/{job_id}{query}",
                           headers={"Authorization": f"Bearer {self.token}"})
        if status != 200:
            raise CheckFailed(f"GET /v1/jobs/{job_id}: {status} {raw[:300]!r}")
        return json.loads(raw)

    def finished(self, job_id):
        def done():
            job = self.job(job_id, wait=30)
            return job if job["status"] in ("completed", "failed") else None
        return poll(f"job {job_id} finished", JOB_DONE, done, interval=0)

    # --- the database, as psql -------------------------------------------------------------
    def psql(self, sql, user):
        env = {**os.environ, "PGCONNECT_TIMEOUT": "10"}
        for k in ("PGPASSWORD", "PGSERVICE", "PGOPTIONS"):
            env.pop(k, None)
        return subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(self.pg_port()), "-U", user,
                               "-d", DATABASE, "-X", "-q", "--csv", "-v", "ON_ERROR_STOP=1",
                               "-c", sql],
                              env=env, capture_output=True, text=True, check=False, timeout=60)


# ------------------------------------------------------------------------------------------
# The jobs
# ------------------------------------------------------------------------------------------
PHOTO = FIXTURES / "photos/astronaut.jpg"  # a clean portrait: the fast path for a photo rule
COFFEE = FIXTURES / "photos/coffee.jpg"
# A real JPEG whose frame header claims 60000 x 60000 pixels: refused before decoding.
PIXEL_BOMB = FIXTURES / "decode-regressions/jpeg-sof-60000x60000.jpg"
# The 512 px portrait against the A4 document rule scores below the fast-path line (its
# resolution is far under the target): the standard path, with ENHANCE and a full OCR read,
# the slowest job there is, so it can be caught while it runs.
SLOW = (PHOTO, "aadhaar-update-document")

JOBS = [  # (file, portal rule, expected status, expected error code)
    (PHOTO, "neet-ug-2026-photo", "completed", None),
    (COFFEE, "college-generic-photo", "completed", None),
    (PIXEL_BOMB, "neet-ug-2026-photo", "failed", "DECODE_FAILED"),
]


LIVE_ALERTS = ["RythmiqErrorRateWarning", "RythmiqErrorRateCritical"]


def run_jobs(stack):
    """Runs the jobs; returns how many completed and failed in the process that is up now."""
    # A worker that dies mid-job: the only way to WORKER_LOST (the reaper records it in SQL).
    victim = None
    for _ in range(3):
        job_id = stack.submit(*SLOW)

        def running():
            status = stack.job(job_id)["status"]
            return status if status != "pending" else None
        if poll(f"job {job_id} claimed", JOB_DONE, running, interval=0.02) == "processing":
            stack.kill_dev()
            victim = job_id
            break
    if victim is None:
        raise CheckFailed(f"three {SLOW[1]} jobs finished before they could be seen running; "
                          "WORKER_LOST cannot be provoked")
    print(f"live_check: killed rythmiq dev while job {victim} ran; restarting it")
    stack.start_dev()
    stack.wait_scraped()
    ids = [(stack.submit(path, portal), path, portal, status, code)
           for path, portal, status, code in JOBS]

    job = stack.finished(victim)
    if job["status"] != "completed" or job["attempts"] < 2:
        raise CheckFailed(f"the job taken back from the killed worker should complete on a "
                          f"later attempt: {job['status']} {job['error_code']} after "
                          f"{job['attempts']} attempt(s)")
    completed, failed = 1, 0
    for job_id, path, portal, want, code in ids:
        job = stack.finished(job_id)
        if job["status"] != want or job["error_code"] != code:
            raise CheckFailed(f"{path.name} for {portal}: expected {want} {code or ''}, got "
                              f"{job['status']} {job['error_code']}: {job['error_message']}")
        completed += want == "completed"
        failed += want == "failed"
    return completed, failed


def wait_for_ingest(stack, completed, failed):
    """Until Prometheus has scraped every outcome and evaluated every rule after that."""
    def scraped():
        done = stack.value('sum(rythmiq_jobs_total{job="rythmiq-worker", status="completed"})')
        bad = stack.value('sum(rythmiq_jobs_total{job="rythmiq-worker", status="failed"})')
        return done is not None and bad is not None and done >= completed and bad >= failed
    poll("Prometheus scraped the jobs' outcomes", INGEST, scraped)
    since = datetime.now(timezone.utc)

    def evaluated():
        status, raw = http("GET", f"{stack.prom}/api/v1/rules", timeout=10)
        groups = json.loads(raw)["data"]["groups"] if status == 200 else []
        if not groups:
            return False
        for g in groups:
            last = datetime.strptime(g["lastEvaluation"][:19], "%Y-%m-%dT%H:%M:%S")
            if last.replace(tzinfo=timezone.utc) < since + timedelta(seconds=1):
                return False
        return groups
    groups = poll("every rule group evaluated after the scrape", INGEST, evaluated)
    loaded = sum(len(g["rules"]) for g in groups)
    broken = [f"{r['name']}: {r.get('lastError')}" for g in groups for r in g["rules"]
              if r.get("health") != "ok"]
    return loaded, broken


# ------------------------------------------------------------------------------------------
# The dashboards' targets
# ------------------------------------------------------------------------------------------
def time_settings(dash):
    """$__range, $__interval, $__rate_interval for the dashboard's default window, as Grafana
    computes them with the provisioned datasource's timeInterval."""
    window = seconds(dash["time"]["from"].removeprefix("now-"))
    m = re.search(r"timeInterval:\s*(\d+)s", DATASOURCES.read_text(encoding="utf-8"))
    scrape = int(m.group(1)) if m else 15
    interval = max(window // MAX_DATA_POINTS, scrape)
    return {"window": window, "interval": interval,
            "rate_interval": max(interval + scrape, 4 * scrape)}


def promql_text(expr, t, variables):
    subs = {"$__rate_interval": f"{t['rate_interval']}s",
            "$__interval_ms": str(t["interval"] * 1000), "$__interval": f"{t['interval']}s",
            "$__range_ms": str(t["window"] * 1000), "$__range_s": str(t["window"]),
            "$__range": f"{t['window']}s"}
    for k in sorted(subs, key=len, reverse=True):
        expr = expr.replace(k, subs[k])
    for name, (prom_value, _) in variables.items():
        expr = expr.replace("${" + name + "}", prom_value).replace("$" + name, prom_value)
    if "$" in expr:
        raise ValueError(f"unexpanded variable in: {expr}")
    return expr


def sql_text(raw, t, variables):
    now = datetime.now(timezone.utc)
    iso = lambda d: "'" + d.strftime("%Y-%m-%dT%H:%M:%SZ") + "'"  # noqa: E731
    # A second past now: rows written this very second are inside the window.
    return sql_check.expand_macros(raw, iso(now - timedelta(seconds=t["window"])),
                                   iso(now + timedelta(seconds=1)),
                                   {name: sql for name, (_, sql) in variables.items()})


def variable_values(stack, dash):
    """Each query variable of a dashboard at "All" (its saved value): the PromQL and the SQL
    text Grafana puts in its place, and a check that its own query lists values."""
    out, checks = {}, []
    for v in dash["templating"]["list"]:
        if v["type"] != "query":
            continue
        ds = v["datasource"]["type"]
        if "postgres" in ds:
            res = stack.psql(v["query"], GRAFANA_LOGIN)
            values = [r[0] for r in parse_csv(res.stdout)[1:]] if res.returncode == 0 else []
            verdict = (f"{len(values)} values" if values
                       else f"no values {res.stderr.strip()}".strip())
        else:
            m = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", v["query"]["query"])
            status, raw = http("GET", f"{stack.prom}/api/v1/label/{m.group(2)}/values?"
                               + urllib.parse.urlencode({"match[]": m.group(1)}), timeout=10)
            values = json.loads(raw).get("data") or [] if status == 200 else []
            verdict = f"{len(values)} values" if values else "no values"
        checks.append((f"variable ${v['name']}", "var", bool(values), verdict))
        if v.get("allValue"):
            out[v["name"]] = (v["allValue"], v["allValue"])
        else:
            # Grafana's multi-value formats: a regex alternation for Prometheus, a quoted list
            # for SQL.
            prom = "(" + "|".join(promql_regex_escape(x) for x in values) + ")"
            sql = ",".join("'" + x.replace("'", "''") + "'" for x in values)
            out[v["name"]] = (prom, sql)
    return out, checks


def promql_regex_escape(value):
    """A regex metacharacter gets a backslash, itself escaped inside PromQL's double-quoted
    string (as Grafana does; a bare `\\-` would be an invalid string escape)."""
    return re.sub(r"([\\^$.|?*+()\[\]{}])", r"\\\\\1", value)


def panels(dash):
    for p in dash.get("panels", []):
        yield p
        yield from p.get("panels", [])  # a collapsed row holds its panels


def parse_csv(text):
    return list(csv.reader(io.StringIO(text)))


def judge_promql(res):
    if res.get("status") != "success":
        return False, f"error: {res.get('error', res)}"
    data = res["data"]
    if data["resultType"] == "scalar":
        values = [data["result"][1]]
    elif data["resultType"] == "vector":
        values = [s["value"][1] for s in data["result"]]
    else:
        values = [v[1] for s in data["result"] for v in s["values"]]
    if not values:
        return False, "no data (empty result)"
    finite = [v for v in values if math.isfinite(float(v))]
    if not finite:
        return False, f"no data ({len(values)} series, all NaN/Inf)"
    return True, f"{len(values)} series"


def judge_sql(res, fmt="table"):
    if res.returncode != 0:
        return False, "error: " + " ".join(res.stderr.split())[:200]
    header, *rows = parse_csv(res.stdout) or [[]]
    if not rows:
        return False, "no rows"
    # A time series' values are its columns other than the time and the series name.
    labels = {"time", "metric"} if fmt == "time_series" else set()
    values = [i for i, name in enumerate(header) if name not in labels]
    if not any(row[i] != "" for row in rows for i in values):
        return False, f"{len(rows)} rows, every value NULL"
    return True, f"{len(rows)} rows"


def targets(stack):
    """(where, kind, thunk) for every target; the thunk evaluates it and returns (ok, detail)."""
    out, var_checks = [], []
    for path in sorted(DASHBOARDS.glob("*.json")):
        dash = json.loads(path.read_text(encoding="utf-8"))
        t = time_settings(dash)
        variables, checks = variable_values(stack, dash)
        var_checks += [(f"{path.stem} {w}", k, ok, d) for w, k, ok, d in checks]
        for p in panels(dash):
            for target in p.get("targets", []):
                where = f"{path.stem} #{p['id']} {p['title']} [{target['refId']}]"
                if target.get("expr"):
                    out.append((where, "PromQL", lambda x=target["expr"], t=t, v=variables:
                                judge_promql(stack.query(promql_text(x, t, v)))))
                elif target.get("rawSql"):
                    out.append((where, "SQL", lambda r=target["rawSql"], f=target.get("format"),
                                t=t, v=variables: judge_sql(
                                    stack.psql(sql_text(r, t, v), GRAFANA_LOGIN), f)))
    return out, var_checks


def guarded(thunk):
    """A target whose text cannot even be built (an unknown macro) fails like one without data."""
    try:
        return thunk()
    except (ValueError, KeyError, subprocess.SubprocessError) as e:
        return False, f"error: {e}"


def self_test(stack):
    """The judges must be able to say no: a series that does not exist, a query that returns
    no rows, a table the Grafana login may not read."""
    problems = []
    if judge_promql(stack.query("rythmiq_no_such_series_total"))[0]:
        problems.append("a PromQL query for a missing series counted as data")
    if judge_promql(stack.query("0 / 0"))[0]:
        problems.append("a NaN result counted as data")
    if judge_sql(stack.psql("SELECT 1 WHERE false", GRAFANA_LOGIN))[0]:
        problems.append("an SQL query returning no rows counted as data")
    res = stack.psql("SELECT count(*) FROM user_credits", GRAFANA_LOGIN)
    if res.returncode == 0 or "permission denied" not in res.stderr:
        problems.append("the Grafana login read user_credits (is it the read-only role?)")
    return problems


# ------------------------------------------------------------------------------------------
def check(stack, started):
    stack.start_dev()
    stack.start_prometheus()
    res = stack.psql(GRAFANA_ROLE_SQL.read_text(encoding="utf-8"), SUPERUSER)
    if res.returncode != 0:
        raise CheckFailed(f"applying grafana_role.sql: {res.stderr.strip()}")
    stack.mint_token()
    stack.wait_scraped()
    completed, failed = run_jobs(stack)
    print(f"live_check: {completed + failed} jobs ran ({completed} completed, {failed} failed, "
          f"one taken back from a killed worker) in {time.monotonic() - started:.0f} s")
    loaded, broken = wait_for_ingest(stack, completed, failed)
    problems = self_test(stack)

    all_targets, var_checks = targets(stack)
    # The alerting rules see the live series too: one failed job in four puts both error-rate
    # alerts past their lines (pending: their `for:` is minutes).
    for alert in LIVE_ALERTS:
        expr = f'ALERTS{{alertname="{alert}"}}'
        all_targets.append((f"alert {alert} pending or firing", "alert",
                            lambda e=expr: judge_promql(stack.query(e))))
    verdicts = {}
    end = time.monotonic() + EVALUATE
    while True:
        # The rollups refresh every 2 s and rules evaluate every second: a target without data
        # gets another pass until the deadline (never a skip). One that returned data keeps its
        # verdict: its rate window may have moved past the jobs by the next pass.
        for i, (_, _, thunk) in enumerate(all_targets):
            if not verdicts.get(i, (False,))[0]:
                verdicts[i] = guarded(thunk)
        if all(ok for ok, _ in verdicts.values()) or time.monotonic() > end:
            break
        time.sleep(1)
    results = var_checks + [(where, kind, *verdicts[i])
                            for i, (where, kind, _) in enumerate(all_targets)]

    width = max(len(w) for w, *_ in results)
    for where, kind, ok, detail in results:
        print(f"  {'OK  ' if ok else 'FAIL'}  {kind:<6} {where:<{width}}  {detail}")
    fails = [r for r in results if not r[2]]
    print(f"live_check: {len(results) - len(fails)} of {len(results)} targets return data "
          f"({sum(k == 'PromQL' for _, k, *_ in results)} PromQL, "
          f"{sum(k == 'SQL' for _, k, *_ in results)} SQL, "
          f"{sum(k == 'var' for _, k, *_ in results)} variables, "
          f"{sum(k == 'alert' for _, k, *_ in results)} alerts); {loaded} rules loaded")
    for b in broken:
        print(f"live_check: rule not healthy: {b}", file=sys.stderr)
    for p in problems:
        print(f"live_check: self-test: {p}", file=sys.stderr)
    return not fails and not broken and not problems


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--binary", type=Path, default=ROOT / "target/debug/rythmiq")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    started = time.monotonic()

    missing = [f"{tool} ({why})" for tool, why in (
        ("prometheus", "Debian's `prometheus` package; scripts/setup.sh --test installs it"),
        ("psql", "PostgreSQL's client; scripts/setup.sh installs it")) if not shutil.which(tool)]
    if not sql_check.pg_bindir():
        missing.append("PostgreSQL's server binaries (scripts/setup.sh installs them)")
    if missing:
        print("live_check: cannot run, missing: " + "; ".join(missing), file=sys.stderr)
        return 1
    try:
        # A rebuild replaces the binary: give it a moment to come back.
        poll(f"{args.binary} present", BINARY_WAIT, lambda: os.access(args.binary, os.X_OK), 1)
    except CheckFailed as e:
        print(f"live_check: {e} (cargo build first)", file=sys.stderr)
        return 1

    tmp = Path(tempfile.mkdtemp(prefix="rythmiq-live-"))
    # As root the cluster runs as `postgres`, which must reach the data dir inside.
    tmp.chmod(0o755)
    stack = Stack(tmp, args.binary)
    # A SIGTERM (a CI timeout) unwinds through the finally below like Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    ok = False
    try:
        ok = check(stack, started)
    except CheckFailed as e:
        print(f"live_check: {e}", file=sys.stderr)
        print(f"--- {stack.dev_log.name} (last lines)\n{tail(stack.dev_log)}\n"
              f"--- prometheus.log (last lines)\n{tail(tmp / 'prometheus.log')}", file=sys.stderr)
    finally:
        stack.stop_prometheus()
        stack.stop_dev()
        stack.stop_postgres()
        if args.keep:
            print(f"live_check: kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    took = time.monotonic() - started
    print(f"live_check: {'passed' if ok else 'FAILED'} in {took:.0f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
