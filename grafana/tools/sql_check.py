#!/usr/bin/env python3
"""Runs every SQL query of the dashboards against a real, migrated PostgreSQL.

The lint checks names; this checks that each query parses, that its columns and types exist and
that it runs. It starts a throw-away cluster (unix socket only) in a temporary directory,
applies apalis-postgres' migrations (from the crate's source in the cargo registry: they create
the `apalis` schema the queue lives in, as `rythmiq migrate` does) and then migrations/*.sql,
then grafana/provisioning/grafana_role.sql, then runs each query as that read-only role with
Grafana's macros expanded the way Grafana's PostgreSQL datasource
expands them, inside a transaction that is rolled back.

Skips (exit 0, with a message) when no PostgreSQL server binaries or no apalis-postgres source
are on this machine; exits 1 when a query fails. As root, the cluster runs as `postgres`.
SQL_CHECK_VERBOSE=1 prints every query's result.
"""

import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
FROM, TO = "'2026-11-01T00:00:00Z'", "'2026-11-08T00:00:00Z'"
VARIABLES = {"portal": "'neet-ug-2026-photo','passport-india-photo'"}


# A few rows so every query runs over data (casts of JSON fields, divisions, percentiles), not
# only through the planner: one completed and one failed job per active portal rule, their CPU
# rows (one of them today), error events and a worker heartbeat.
SAMPLE_ROWS = """
INSERT INTO jobs (id, user_id, portal_schema_id, portal_schema_version, state, correlation_id,
                  request_fingerprint, task_id, input_key, input_bytes, output_key, output_bytes,
                  ocr, error_code, created_at, started_at, finished_at)
SELECT gen_random_uuid(), gen_random_uuid(), ps.id, ps.version, s.state, 'corr-' || ps.slug,
       'fp', s.state || '-' || ps.slug, 'input/key', 120000,
       CASE WHEN s.state = 'completed' THEN 'output/key' END,
       CASE WHEN s.state = 'completed' THEN (ps.min_kb * 1024 + ps.max_kb * 1000) / 2 END,
       CASE WHEN s.state = 'completed'
            THEN '{"confidence": 0.91, "lines": 3, "chars": 40, "rolled_back": true}'::jsonb END,
       CASE WHEN s.state = 'failed' THEN 'SIZE_EXCEEDED' END,
       '2026-11-02T10:00:00Z', '2026-11-02T10:00:01Z', '2026-11-02T10:00:05Z'
FROM portal_schemas ps CROSS JOIN (VALUES ('completed'), ('failed')) AS s(state)
WHERE ps.active;
INSERT INTO cpu_metrics (job_id, worker_id, execution_temperature, processing_path,
                         total_cpu_seconds, total_wall_seconds, fetch_cpu_seconds,
                         decode_cpu_seconds, quality_cpu_seconds, ocr_cpu_seconds,
                         quality_score, ocr_confidence, created_at)
SELECT id, 'w-1', 'cold', 'fast', 0.61, 2.5, 0.01, 0.1, 0.05, 0.3, 0.86, 0.91, finished_at
FROM jobs WHERE state = 'completed';
INSERT INTO cpu_metrics (job_id, worker_id, execution_temperature, processing_path,
                         total_cpu_seconds, total_wall_seconds, created_at)
VALUES (gen_random_uuid(), 'w-1', 'warm', 'standard', 0.95, 3.0, now());
INSERT INTO error_events (job_id, error_code, error_stage, retryable, attempt, correlation_id,
                          worker_id, created_at)
VALUES (gen_random_uuid(), 'WORKER_LOST', 'worker', true, 1, 'corr-1', 'w-2', '2026-11-03T00:00:00Z'),
       (gen_random_uuid(), 'SIZE_EXCEEDED', 'schema', false, 1, 'corr-2', 'w-1', '2026-11-03T00:00:00Z');
INSERT INTO apalis.workers (id, worker_type, storage_name, layers, last_seen)
VALUES ('w-1', 'rythmiq', 'rythmiq-worker', '', now());
SELECT refresh_rollups();
"""


# Each query runs as the Grafana login of grafana/provisioning/grafana_role.sql, read-only.
AS_GRAFANA = "BEGIN READ ONLY;\nSET LOCAL ROLE rythmiq_grafana;\n"


def pg_bindir():
    for cand in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if os.path.exists(os.path.join(cand, "initdb")):
            return cand
    found = shutil.which("initdb")
    return os.path.dirname(found) if found else None


def apalis_migrations():
    home = Path(os.environ.get("CARGO_HOME", Path.home() / ".cargo"))
    dirs = sorted(glob.glob(str(home / "registry/src/*/apalis-postgres-*/migrations")))
    return sorted(glob.glob(os.path.join(dirs[-1], "*.sql"))) if dirs else []


def expand_macros(sql, time_from=FROM, time_to=TO, variables=None):
    """Grafana's PostgreSQL macros, as the datasource expands them. time_from and time_to are
    quoted SQL timestamps; variables maps a dashboard variable to its SQL text."""
    variables = VARIABLES if variables is None else variables

    def interval_seconds(text):
        m = re.fullmatch(r"'?(\d+)([smhd])'?", text.strip())
        if not m:
            return 60
        return int(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]

    sql = re.sub(r"\$__timeFilter\(([^()]+)\)", rf"\1 BETWEEN {time_from} AND {time_to}", sql)
    sql = re.sub(r"\$__timeGroupAlias\(([^,()]+),\s*([^()]+)\)",
                 lambda m: f"floor(extract(epoch from {m.group(1)})/{interval_seconds(m.group(2))})"
                           f"*{interval_seconds(m.group(2))} AS \"time\"", sql)
    sql = sql.replace("$__timeFrom()", time_from).replace("$__timeTo()", time_to)
    for name, value in variables.items():
        sql = sql.replace("${" + name + "}", value).replace("$" + name, value)
    if "$" in re.sub(r"\$\$", "", sql):
        raise ValueError(f"unexpanded macro or variable in: {sql}")
    return sql


def queries():
    for path in sorted((ROOT / "grafana/dashboards").glob("*.json")):
        dash = json.loads(path.read_text(encoding="utf-8"))
        for v in dash.get("templating", {}).get("list", []):
            if "postgres" in str((v.get("datasource") or {}).get("type", "")):
                yield f"{path.name} variable {v['name']}", v["query"]
        for p in dash.get("panels", []):
            for t in p.get("targets", []):
                if t.get("rawSql"):
                    yield f"{path.name} panel {p['id']} {p['title']!r} {t['refId']}", t["rawSql"]


def main():
    bindir = pg_bindir()
    apalis = apalis_migrations()
    if not bindir or not apalis:
        why = ("no PostgreSQL server binaries or no apalis-postgres source; "
               "scripts/setup.sh and a cargo build provide them")
        # CI has both after its set-up: a skip there would hide a broken check.
        if os.environ.get("CI"):
            print(f"sql_check: cannot run ({why})", file=sys.stderr)
            return 1
        print(f"sql_check: skipped ({why})")
        return 0
    as_root = os.geteuid() == 0
    runner = ["runuser", "-u", "postgres", "--"] if as_root else []
    tmp = tempfile.mkdtemp(prefix="grafana-sql-")
    try:
        if as_root:
            shutil.chown(tmp, "postgres")
        data = os.path.join(tmp, "data")
        subprocess.run(runner + [f"{bindir}/initdb", "-D", data, "-U", "postgres", "--auth=trust",
                                 "-E", "UTF8"], check=True, capture_output=True)
        subprocess.run(runner + [f"{bindir}/pg_ctl", "-D", data, "-l", os.path.join(tmp, "log"),
                                 "-o", f"-k {tmp} -p 5432 -c listen_addresses=''", "-w", "start"],
                       check=True, capture_output=True)
        try:
            return check(runner, bindir, tmp, apalis)
        finally:
            subprocess.run(runner + [f"{bindir}/pg_ctl", "-D", data, "-m", "immediate", "stop"],
                           check=False, capture_output=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def psql(runner, bindir, sock, sql):
    return subprocess.run(runner + [f"{bindir}/psql", "-h", sock, "-p", "5432", "-U", "postgres",
                                    "-d", "postgres", "-X", "-q", "-v", "ON_ERROR_STOP=1"],
                          input=sql, text=True, capture_output=True, check=False)


def check(runner, bindir, sock, apalis):
    # sqlx keeps its ledger in _sqlx_migrations; the role migration grants on it.
    schema = ["CREATE TABLE _sqlx_migrations (version BIGINT PRIMARY KEY, description TEXT, "
              "installed_on TIMESTAMPTZ DEFAULT now(), success BOOLEAN, checksum BYTEA, "
              "execution_time BIGINT);"]
    for f in apalis + sorted(glob.glob(str(ROOT / "migrations/*.sql"))):
        schema.append(Path(f).read_text(encoding="utf-8"))
    # The dashboards' own login, whose grants the queries below run under.
    schema.append((ROOT / "grafana/provisioning/grafana_role.sql").read_text(encoding="utf-8"))
    res = psql(runner, bindir, sock, "\n".join(schema))
    if res.returncode != 0:
        print(f"sql_check: migrating the scratch database failed:\n{res.stderr}", file=sys.stderr)
        return 1
    res = psql(runner, bindir, sock, SAMPLE_ROWS)
    if res.returncode != 0:
        print(f"sql_check: inserting sample rows failed:\n{res.stderr}", file=sys.stderr)
        return 1
    # Row-level security hides rows silently (no error): the role must see every user's jobs.
    seen = psql(runner, bindir, sock, AS_GRAFANA + "SELECT 'rows:' || count(*) FROM jobs;\nROLLBACK;\n")
    if seen.returncode != 0 or "rows:0" in seen.stdout or "rows:" not in seen.stdout:
        print("sql_check: rythmiq_grafana sees no jobs (row-level security; is it BYPASSRLS?)\n"
              + seen.stderr, file=sys.stderr)
        return 1
    # The check must be able to fail: a query naming a column that does not exist.
    broken = psql(runner, bindir, sock, AS_GRAFANA + expand_macros(
        "SELECT output_kb FROM jobs WHERE $__timeFilter(finished_at)") + ";\nROLLBACK;\n")
    if broken.returncode == 0:
        print("sql_check: a query on a missing column passed; the check cannot fail", file=sys.stderr)
        return 1
    failures, count = 0, 0
    for where, raw in queries():
        count += 1
        res = psql(runner, bindir, sock, f"{AS_GRAFANA}{expand_macros(raw)};\nROLLBACK;\n")
        if os.environ.get("SQL_CHECK_VERBOSE"):
            print(f"-- {where}\n{res.stdout}")
        if res.returncode != 0:
            failures += 1
            print(f"sql_check: {where}: {res.stderr.strip()}", file=sys.stderr)
    if failures:
        print(f"sql_check: {failures} of {count} dashboard queries fail", file=sys.stderr)
        return 1
    print(f"sql_check: all {count} dashboard SQL queries run on the migrated schema")
    return 0


if __name__ == "__main__":
    sys.exit(main())
