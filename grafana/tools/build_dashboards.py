#!/usr/bin/env python3
"""Writes grafana/dashboards/*.json from the panel lists below (stdlib only).

The JSON files are the product (Grafana provisions them as they are); this script is how they are
edited, so that ids, layout, datasource references and thresholds stay consistent. Edit here, run
`python3 grafana/tools/build_dashboards.py`, commit both. `grafana/check.sh` fails when a JSON
file differs from what this script writes.

Thresholds come from the `alert_thresholds` table (migrations/20261129000003_observability.sql),
the 200 CPU-hour monthly budget and the capacity plan's 0.72 / 0.90 / 1.20 CPU-s per document;
the PromQL reads the recorded series of grafana/alerts/rythmiq.rules.yml where an alert shares
the expression.
"""

import json
import sys
from pathlib import Path

DASHBOARDS = Path(__file__).resolve().parent.parent / "dashboards"

# Datasources are template variables: the dashboards hold no datasource uid of any instance.
PROM = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
PG = {"type": "grafana-postgresql-datasource", "uid": "${DS_POSTGRES}"}

# The numbers every panel and alert agree on.
ERROR_RATE = (0.01, 0.02)  # alert_thresholds error_rate
P95_SECONDS = (20, 30)  # alert_thresholds p95_latency_seconds
CPU_HOURS_MONTH = (50, 150)  # alert_thresholds cpu_hours_month
COLD_START_RATE = (0.10, 0.20)  # alert_thresholds cold_start_rate
BUDGET_HOURS = 200
PLAN = (0.72, 0.90, 1.20)  # CPU-s per document: GO / ADJUST / NO-GO lines
OLDEST_PENDING = (30, 120)  # seconds; the queue alerts
DRAIN_SECONDS = 120
ROLLBACK_SPIKE = 0.20
FAST_PATH_SCORE = 0.80  # worker/src/pipeline/quality.rs FAST_PATH_THRESHOLD

RUNBOOKS = "grafana/runbooks"


def steps(*pairs):
    """Absolute thresholds: a base colour, then (value, colour) steps."""
    base, *rest = pairs
    out = [{"color": base, "value": None}]
    out += [{"color": c, "value": v} for v, c in rest]
    return {"mode": "absolute", "steps": out}


def warn_crit(warning, critical):
    return steps("green", (warning, "yellow"), (critical, "red"))


PLAN_STEPS = steps("green", (PLAN[0], "yellow"), (PLAN[1], "orange"), (PLAN[2], "red"))


def prom(expr, legend="__auto", ref="A", instant=False, fmt=None):
    t = {"datasource": PROM, "editorMode": "code", "expr": expr, "legendFormat": legend, "refId": ref}
    if instant:
        t["instant"] = True
        t["range"] = False
    else:
        t["range"] = True
    if fmt:
        t["format"] = fmt
    return t


def sql(raw, ref="A", fmt="table"):
    return {"datasource": PG, "editorMode": "code", "format": fmt, "rawQuery": True,
            "rawSql": " ".join(raw.split()), "refId": ref}


class Layout:
    """Places panels left to right on Grafana's 24-column grid, wrapping to a new line."""

    def __init__(self):
        self.x = self.y = self.line_h = 0
        self.next_id = 1
        self.panels = []

    def add(self, panel, w, h):
        if self.x + w > 24:
            self.x, self.y, self.line_h = 0, self.y + self.line_h, 0
        panel["id"] = self.next_id
        self.next_id += 1
        panel["gridPos"] = {"h": h, "w": w, "x": self.x, "y": self.y}
        self.x += w
        self.line_h = max(self.line_h, h)
        self.panels.append(panel)

    def row(self, title):
        self.x, self.y = 0, self.y + self.line_h
        self.line_h = 0
        self.add({"type": "row", "title": title, "collapsed": False, "panels": []}, 24, 1)
        self.x, self.y, self.line_h = 0, self.y + 1, 0


def panel(kind, title, description, unit, targets, *, thresholds=None, lines=False,
          decimals=None, min_=None, max_=None, overrides=None, options=None, custom=None,
          mappings=None, datasource=None):
    defaults = {"unit": unit, "thresholds": thresholds or steps("green")}
    if decimals is not None:
        defaults["decimals"] = decimals
    if min_ is not None:
        defaults["min"] = min_
    if max_ is not None:
        defaults["max"] = max_
    if mappings:
        defaults["mappings"] = mappings
    if kind == "timeseries":
        c = {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 10, "showPoints": "never",
             "spanNulls": False, "thresholdsStyle": {"mode": "dashed" if lines else "off"}}
        c.update(custom or {})
        defaults["custom"] = c
        defaults["color"] = {"mode": "palette-classic"}
    elif custom:
        defaults["custom"] = custom
    if kind in ("stat", "gauge", "bargauge") and "color" not in defaults:
        defaults["color"] = {"mode": "thresholds"}
    p = {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": datasource or targets[0]["datasource"],
        "targets": targets,
        "fieldConfig": {"defaults": defaults, "overrides": overrides or []},
        "options": options or default_options(kind),
    }
    return p


def default_options(kind):
    if kind == "timeseries":
        return {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                "tooltip": {"mode": "multi", "sort": "desc"}}
    if kind == "stat":
        return {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                "colorMode": "value", "graphMode": "area", "justifyMode": "auto",
                "orientation": "auto", "textMode": "auto"}
    if kind == "gauge":
        return {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                "showThresholdLabels": True, "showThresholdMarkers": True}
    if kind == "bargauge":
        return {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                "displayMode": "gradient", "orientation": "vertical", "showUnfilled": True}
    if kind == "table":
        return {"cellHeight": "sm", "showHeader": True, "footer": {"show": False, "reducer": ["sum"]}}
    if kind == "piechart":
        return {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                "pieType": "donut", "legend": {"displayMode": "table", "placement": "right",
                                               "showLegend": True, "values": ["percent", "value"]},
                "tooltip": {"mode": "single", "sort": "none"}}
    return {}


def text(title, content):
    return {"type": "text", "title": title, "options": {"mode": "markdown", "content": content}}


def override(name, **props):
    return {"matcher": {"id": "byName", "options": name},
            "properties": [{"id": k, "value": v} for k, v in props.items()]}


def ds_var(name, label, plugin):
    return {"name": name, "label": label, "type": "datasource", "query": plugin, "current": {},
            "hide": 0, "refresh": 1, "regex": "", "options": [], "skipUrlSync": False}


def portal_var():
    # From SQL so every portal rule is listed, also those Prometheus has not seen yet; Grafana
    # formats a multi-value variable per datasource (a regex for PromQL, a quoted list for SQL).
    q = "SELECT DISTINCT slug FROM portal_schemas ORDER BY 1"
    return {"name": "portal", "label": "Portal rule", "type": "query", "datasource": PG,
            "query": q, "refresh": 1, "multi": True, "includeAll": True,
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]}, "hide": 0,
            "options": [], "regex": "", "sort": 1, "skipUrlSync": False}


def stage_var(metric):
    q = f"label_values({metric}, stage)"
    return {"name": "stage", "label": "Stage", "type": "query", "datasource": PROM,
            "query": {"query": q, "refId": "stage"}, "refresh": 2,
            "multi": True, "includeAll": True, "allValue": ".*",
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]}, "hide": 0,
            "options": [], "regex": "", "sort": 1, "skipUrlSync": False}


def dashboard(uid, title, description, layout, variables, time_from="now-6h"):
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["rythmiq"],
        "timezone": "utc",
        "editable": True,
        "graphTooltip": 1,
        "refresh": "1m",
        "schemaVersion": 41,
        "version": 1,
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "weekStart": "",
        "time": {"from": time_from, "to": "now"},
        "timepicker": {},
        "links": [{"title": "Rythmiq dashboards", "type": "dashboards", "tags": ["rythmiq"],
                   "asDropdown": True, "includeVars": False, "keepTime": True,
                   "targetBlank": False, "icon": "external link", "tooltip": "", "url": ""}],
        "annotations": {"list": [{
            "builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"},
            "enable": True, "hide": True, "iconColor": "rgba(0, 211, 255, 1)",
            "name": "Annotations & Alerts", "type": "dashboard"}]},
        "templating": {"list": [ds_var("DS_PROMETHEUS", "Prometheus", "prometheus"),
                                ds_var("DS_POSTGRES", "PostgreSQL", "grafana-postgresql-datasource"),
                                *variables]},
        "panels": layout.panels,
    }


# --------------------------------------------------------------------------------------------
# Operations: what on call looks at first.
# --------------------------------------------------------------------------------------------
def operations():
    L = Layout()
    ok_rate = 'status=~"completed|failed", portal=~"$portal"'
    L.add(text("How to use this dashboard",
               "On call's first stop. The top row is **now**; the rows below are **over the window** "
               "picked at the top right. Thresholds are the alert thresholds (error rate 1 % / 2 %, "
               "P95 20 s / 30 s, cold starts 10 % / 20 %, oldest pending job 30 s / 2 min). Each alert "
               f"opens a runbook in `{RUNBOOKS}/`. Prometheus panels are live; panels marked *SQL* read "
               "the database (the hourly rollups lag by their refresh)."), 24, 3)

    L.row("Now")
    L.add(panel("stat", "Error rate (5 min)",
                "Share of finished jobs that failed for good in the last 5 minutes "
                "(rythmiq:job_error_ratio:rate5m). Alert: RythmiqErrorRate*.", "percentunit",
                [prom("rythmiq:job_error_ratio:rate5m", "error rate", instant=True)],
                thresholds=warn_crit(*ERROR_RATE), decimals=2), 4, 4)
    L.add(panel("stat", "P95 job latency (5 min)",
                "P95 wall time of one job attempt (rythmiq:job_latency_seconds:p95_5m). "
                "Alert: RythmiqJobLatencyP95*.", "s",
                [prom("rythmiq:job_latency_seconds:p95_5m", "p95", instant=True)],
                thresholds=warn_crit(*P95_SECONDS), decimals=1), 4, 4)
    L.add(panel("stat", "Pending jobs",
                "Jobs waiting for a worker (rythmiq_queue_depth{state=\"pending\"}, read from "
                "queue_depth() by the API).", "short",
                [prom('max(rythmiq_queue_depth{state="pending"})', "pending", instant=True)]), 3, 4)
    L.add(panel("stat", "Oldest pending job",
                "Age of the oldest pending job. Alert: RythmiqOldestPendingJob*.", "s",
                [prom("max(rythmiq_queue_oldest_pending_age_seconds)", "age", instant=True)],
                thresholds=warn_crit(*OLDEST_PENDING), decimals=0), 3, 4)
    L.add(panel("stat", "In-flight jobs",
                "Jobs running right now, all workers (rythmiq_jobs_in_progress).", "short",
                [prom("sum(rythmiq_jobs_in_progress)", "in flight", instant=True)]), 3, 4)
    L.add(panel("stat", "Workers up",
                "Worker processes answering their /metrics scrape (up{job=\"rythmiq-worker\"}). "
                "Alert: RythmiqNoWorkerHeartbeats.", "short",
                [prom('count(up{job="rythmiq-worker"} == 1) or vector(0)', "up", instant=True)],
                thresholds=steps("red", (1, "green")), decimals=0), 3, 4)
    L.add(panel("stat", "Workers heartbeating (SQL)",
                "Workers whose heartbeat (apalis.workers.last_seen, every 5 s) is younger than the "
                "20 s orphan timeout.", "short",
                [sql("SELECT count(*) AS heartbeating FROM apalis.workers "
                     "WHERE last_seen > now() - interval '20 seconds'")],
                thresholds=steps("red", (1, "green")), decimals=0), 4, 4)

    L.row("Jobs over the window")
    L.add(panel("stat", "Jobs finished in the window",
                "Attempts finished over the dashboard window, by outcome (rythmiq_jobs_total).",
                "short",
                [prom(f'sum by (status) (increase(rythmiq_jobs_total{{portal=~"$portal"}}[$__range]))',
                      "{{status}}", instant=True)],
                options={**default_options("stat"), "graphMode": "none"}), 6, 5)
    L.add(panel("stat", "Error rate over the window",
                "Failed / (completed + failed) over the whole window (retries are not failures yet).",
                "percentunit",
                [prom(f'sum(increase(rythmiq_jobs_total{{status="failed", portal=~"$portal"}}[$__range])) '
                      f'/ sum(increase(rythmiq_jobs_total{{{ok_rate}}}[$__range]))',
                      "error rate", instant=True)],
                thresholds=warn_crit(*ERROR_RATE), decimals=2), 6, 5)
    L.add(panel("stat", "Error rate since the window start (SQL)",
                "get_error_rate() over the window: jobs finished since the window start that "
                "failed, from the jobs table.", "percentunit",
                [sql("SELECT get_error_rate(now() - $__timeFrom()::timestamptz) AS \"error rate\"")],
                thresholds=warn_crit(*ERROR_RATE), decimals=2), 6, 5)
    L.add(panel("stat", "P95 submit-to-finish latency (SQL)",
                "get_p95_latency() over the window: from job creation to finish, queue wait "
                "included (the Prometheus P95 is one attempt's wall time).", "s",
                [sql("SELECT get_p95_latency(now() - $__timeFrom()::timestamptz) AS p95")],
                thresholds=warn_crit(*P95_SECONDS), decimals=1), 6, 5)
    L.add(panel("timeseries", "Error rate (against the 1 % line)",
                "rythmiq:job_error_ratio:rate5m with the warning (1 %) and critical (2 %) lines.",
                "percentunit", [prom("rythmiq:job_error_ratio:rate5m", "error rate (5 min)")],
                thresholds=warn_crit(*ERROR_RATE), lines=True, min_=0), 12, 8)
    L.add(panel("timeseries", "P95 job latency (against the 30 s line)",
                "P95 (recorded) and median wall time of one job attempt, with the 20 s / 30 s lines.",
                "s",
                [prom("rythmiq:job_latency_seconds:p95_5m", "p95"),
                 prom("histogram_quantile(0.5, sum by (le) (rate(rythmiq_job_latency_seconds_bucket[$__rate_interval])))",
                      "median", ref="B")],
                thresholds=warn_crit(*P95_SECONDS), lines=True, min_=0), 12, 8)
    L.add(panel("timeseries", "Throughput by outcome",
                "Finished attempts per minute by status (completed / failed / retried).", "opm",
                [prom(f'sum by (status) (rate(rythmiq_jobs_total{{portal=~"$portal"}}[$__rate_interval])) * 60',
                      "{{status}}")], min_=0), 8, 8)
    L.add(panel("timeseries", "Completed jobs by path and portal",
                "Completed jobs per minute, fast vs standard path, per portal rule.", "opm",
                [prom(f'sum by (path, portal) (rate(rythmiq_jobs_total{{status="completed", portal=~"$portal"}}[$__rate_interval])) * 60',
                      "{{path}} {{portal}}")],
                min_=0, custom={"stacking": {"mode": "normal", "group": "A"}}), 8, 8)
    L.add(panel("timeseries", "Retries",
                "Attempts that failed with a retryable code and went back to the queue, per minute.",
                "opm",
                [prom(f'sum by (portal) (rate(rythmiq_jobs_total{{status="retried", portal=~"$portal"}}[$__rate_interval])) * 60',
                      "{{portal}}")], min_=0), 8, 8)

    L.row("Queue and workers")
    L.add(panel("timeseries", "Queue depth",
                "Jobs pending and processing (queue_depth(), exported by the API).", "short",
                [prom("max by (state) (rythmiq_queue_depth)", "{{state}}")], min_=0), 8, 8)
    L.add(panel("timeseries", "Oldest pending job and drain time",
                "Age of the oldest pending job (lines at 30 s and 2 min) and the time the pending "
                "queue needs to drain at the last 5 minutes' pace (rythmiq:queue_drain_seconds; "
                "alert above 2 min).", "s",
                [prom("max(rythmiq_queue_oldest_pending_age_seconds)", "oldest pending"),
                 prom("rythmiq:queue_drain_seconds", "drain time", ref="B")],
                thresholds=warn_crit(*OLDEST_PENDING), lines=True, min_=0), 8, 8)
    L.add(panel("timeseries", "In-flight jobs by worker",
                "rythmiq_jobs_in_progress per worker process: a process never holds more than its "
                "concurrency.", "short",
                [prom("sum by (instance) (rythmiq_jobs_in_progress)", "{{instance}}")],
                min_=0, custom={"stacking": {"mode": "normal", "group": "A"}}), 8, 8)
    L.add(panel("timeseries", "Workers up",
                "Worker processes answering their /metrics scrape.", "short",
                [prom('count(up{job="rythmiq-worker"} == 1) or vector(0)', "workers up")],
                thresholds=steps("red", (1, "green")), min_=0, decimals=0), 8, 8)
    L.add(panel("table", "Worker heartbeats (SQL)",
                "apalis.workers: every registered worker and the seconds since its last heartbeat "
                "(every 5 s; the orphan reaper takes a worker's jobs back after 20 s).", "s",
                [sql("SELECT id AS worker, worker_type, last_seen, "
                     "EXTRACT(EPOCH FROM now() - last_seen) AS seconds_since_heartbeat "
                     "FROM apalis.workers ORDER BY last_seen DESC LIMIT 100")],
                thresholds=steps("green", (10, "yellow"), (20, "red")),
                overrides=[override("last_seen", unit="dateTimeAsIso"),
                           override("seconds_since_heartbeat",
                                    **{"custom.cellOptions": {"type": "color-text"}})]), 16, 8)

    L.row("Errors")
    L.add(panel("timeseries", "Errors by code",
                "rythmiq_errors_total per minute by error code (retryable and final).", "opm",
                [prom('sum by (code) (rate(rythmiq_errors_total{stage=~"$stage"}[$__rate_interval])) * 60',
                      "{{code}}")], min_=0), 12, 8)
    L.add(panel("timeseries", "Errors by stage",
                "rythmiq_errors_total per minute by the stage the code belongs to.", "opm",
                [prom('sum by (stage) (rate(rythmiq_errors_total{stage=~"$stage"}[$__rate_interval])) * 60',
                      "{{stage}}")], min_=0), 12, 8)
    L.add(panel("table", "Errors by code and stage over the window (SQL)",
                "error_events_hourly: events and final (not retryable) events per code and stage.",
                "short",
                [sql("SELECT error_code, error_stage, sum(events) AS events, "
                     "sum(final_events) AS final_events FROM error_events_hourly "
                     "WHERE $__timeFilter(bucket) GROUP BY 1, 2 ORDER BY 3 DESC")]), 8, 8)
    L.add(panel("timeseries", "WORKER_LOST (SQL)",
                "Jobs taken back from a worker that stopped heartbeating (error_events, code "
                "WORKER_LOST): re-queued while attempts remain, failed when spent. The reaper "
                "records these in SQL only.", "short",
                [sql("SELECT $__timeGroupAlias(created_at, '5m'), "
                     "count(*) FILTER (WHERE retryable) AS \"re-queued\", "
                     "count(*) FILTER (WHERE NOT retryable) AS \"failed for good\" "
                     "FROM error_events WHERE error_code = 'WORKER_LOST' "
                     "AND $__timeFilter(created_at) GROUP BY 1 ORDER BY 1", fmt="time_series")],
                min_=0, custom={"drawStyle": "bars", "fillOpacity": 60}), 8, 8)
    L.add(panel("table", "Recent errors (SQL)",
                "get_recent_errors(): the latest error events with their correlation id (search "
                "the logs with it).", "short",
                [sql("SELECT created_at, error_code, error_stage, retryable, attempt, "
                     "correlation_id, worker_id FROM get_recent_errors(50)")],
                overrides=[override("created_at", unit="dateTimeAsIso")]), 8, 8)

    L.row("Cold starts and API")
    L.add(panel("timeseries", "Cold start rate",
                "Share of attempts that ran on a cold worker (rythmiq:cold_start_ratio:rate1h), "
                "lines at 10 % / 20 %.", "percentunit",
                [prom("rythmiq:cold_start_ratio:rate1h", "cold start rate (1 h)")],
                thresholds=warn_crit(*COLD_START_RATE), lines=True, min_=0), 8, 8)
    L.add(panel("timeseries", "Cold starts",
                "Cold starts per minute by worker (the first job of a process).", "opm",
                [prom("sum by (instance) (rate(rythmiq_cold_starts_total[$__rate_interval])) * 60",
                      "{{instance}}")], min_=0), 8, 8)
    L.add(panel("table", "Alert inputs now (SQL)",
                "alert_status(): each alert input over the last hour with its thresholds and level.",
                "none",
                [sql("SELECT metric, value, warning, critical, level FROM alert_status('1 hour')")],
                decimals=3), 8, 8)
    L.add(panel("timeseries", "API requests by status",
                "Requests per second by HTTP status (rythmiq_api_requests_total).", "reqps",
                [prom("sum by (status) (rate(rythmiq_api_requests_total[$__rate_interval]))",
                      "{{status}}")], min_=0), 12, 8)
    L.add(panel("timeseries", "API P95 latency by route",
                "P95 request latency per matched route (long-polls with ?wait= included).", "s",
                [prom("histogram_quantile(0.95, sum by (le, route) (rate(rythmiq_api_latency_seconds_bucket[$__rate_interval])))",
                      "{{route}}")], min_=0), 12, 8)

    return dashboard("rythmiq-operations", "Rythmiq Operations",
                     "On call: jobs, errors, latency, queue, workers.", L,
                     [portal_var(), stage_var("rythmiq_errors_total")], "now-6h")


# --------------------------------------------------------------------------------------------
# Cost: the CPU budget and the capacity plan.
# --------------------------------------------------------------------------------------------
def cost():
    L = Layout()
    per_day = f"{BUDGET_HOURS} * 3600.0 / EXTRACT(DAY FROM date_trunc('month', now()) + interval '1 month - 1 day')"
    L.add(text("Budget and capacity plan",
               f"The fleet has **{BUDGET_HOURS} CPU-hours a month**. Usage alerts at "
               f"{CPU_HOURS_MONTH[0]} h (warning) and {CPU_HOURS_MONTH[1]} h (critical) spent "
               "(the `alert_thresholds` table); the burn-rate alerts fire when the month is on course "
               "to overspend. The capacity plan's lines, in CPU-seconds per document: "
               f"**GO ≤ {PLAN[0]}** (the target), **ADJUST > {PLAN[1]}**, **NO-GO > {PLAN[2]}** "
               f"(between {PLAN[0]} and {PLAN[1]}: over target, still GO). At {PLAN[0]} CPU-s the "
               "budget carries about 33,300 documents a day in a 30-day month; at "
               f"{PLAN[1]} about 26,700; at {PLAN[2]} about 20,000. Hours are CPU-seconds / 3600."),
          24, 3)

    L.row("This month")
    L.add(panel("gauge", "CPU-hours this month",
                "rythmiq_cpu_seconds_current_month / 3600 (from get_monthly_cpu_usage(), exported "
                f"by the API) against the {BUDGET_HOURS} h budget; thresholds at 50 h / 150 h.", "h",
                [prom("max(rythmiq_cpu_seconds_current_month) / 3600", "CPU-hours", instant=True)],
                thresholds=warn_crit(*CPU_HOURS_MONTH), min_=0, max_=BUDGET_HOURS, decimals=1), 5, 6)
    L.add(panel("stat", "Projected at month end",
                "CPU-hours at the end of the month if the last 6 hours' pace holds "
                f"(rythmiq:cpu_seconds_month:projected / 3600). Red past the {BUDGET_HOURS} h budget.",
                "h", [prom("rythmiq:cpu_seconds_month:projected / 3600", "projected", instant=True)],
                thresholds=steps("green", (CPU_HOURS_MONTH[1], "yellow"), (BUDGET_HOURS, "red")),
                decimals=1), 5, 6)
    L.add(panel("stat", "Budget left (SQL)",
                f"get_cpu_budget_remaining({BUDGET_HOURS}): CPU-hours left this calendar month (UTC).",
                "h", [sql(f"SELECT get_cpu_budget_remaining({BUDGET_HOURS}) AS \"budget left\"")],
                thresholds=steps("red", (BUDGET_HOURS - CPU_HOURS_MONTH[1], "yellow"),
                                 (BUDGET_HOURS - CPU_HOURS_MONTH[0], "green")), decimals=1), 5, 6)
    L.add(panel("stat", "CPU-s per document (1 h)",
                "rythmiq:cpu_seconds_per_document:rate1h, coloured by the plan's lines "
                f"({PLAN[0]} / {PLAN[1]} / {PLAN[2]}).", "s",
                [prom("rythmiq:cpu_seconds_per_document:rate1h", "CPU-s per document", instant=True)],
                thresholds=PLAN_STEPS, decimals=3), 4, 6)
    L.add(panel("stat", "Documents a day the budget carries at today's cost (SQL)",
                "The month's budget per day divided by today's mean CPU-seconds per document "
                "(cpu_metrics since midnight UTC).", "short",
                [sql(f"SELECT ({per_day}) / NULLIF(avg(total_cpu_seconds), 0) AS \"documents a day\" "
                     "FROM cpu_metrics WHERE created_at >= date_trunc('day', now())")],
                decimals=0), 5, 6)

    L.row("Burn")
    L.add(panel("timeseries", "CPU-hours this month against the budget",
                "Spent so far and projected at month end, with the 50 h / 150 h alert lines; the "
                f"budget is {BUDGET_HOURS} h.", "h",
                [prom("max(rythmiq_cpu_seconds_current_month) / 3600", "spent"),
                 prom("rythmiq:cpu_seconds_month:projected / 3600", "projected at month end", ref="B")],
                thresholds=steps("green", (CPU_HOURS_MONTH[0], "yellow"), (CPU_HOURS_MONTH[1], "red"),
                                 (BUDGET_HOURS, "dark-red")),
                lines=True, min_=0), 12, 8)
    L.add(panel("timeseries", "Burn rate (share of the budget's pace)",
                "CPU spent per second over the budget's pace (200 CPU-hours spread over the month): "
                "100 % spends exactly the budget; the fast-burn alert fires above 200 % on both the "
                "1 h and 6 h windows.", "percentunit",
                [prom("rythmiq:cpu_budget_burn_ratio:rate1h", "1 h"),
                 prom("rythmiq:cpu_budget_burn_ratio:rate6h", "6 h", ref="B")],
                thresholds=steps("green", (1, "yellow"), (2, "red")), lines=True, min_=0), 12, 8)
    L.add(panel("timeseries", "CPU-hours a day by path (SQL)",
                "cpu_metrics_daily: CPU-hours spent per day on the fast and standard paths.", "h",
                [sql("SELECT bucket AS time, processing_path AS metric, cpu_seconds / 3600.0 AS value "
                     "FROM cpu_metrics_daily WHERE $__timeFilter(bucket) ORDER BY 1", fmt="time_series")],
                min_=0, custom={"drawStyle": "bars", "fillOpacity": 60,
                                "stacking": {"mode": "normal", "group": "A"}}), 12, 8)
    L.add(panel("timeseries", "Documents a day the budget carries",
                "Budget per day (rythmiq:cpu_budget_seconds:per_second × 86400) divided by the last "
                "hour's CPU-seconds per document.", "short",
                [prom("rythmiq:cpu_budget_seconds:per_second * 86400 / rythmiq:cpu_seconds_per_document:rate1h",
                      "documents a day")], min_=0, decimals=0), 12, 8)

    L.row("Per document")
    L.add(panel("timeseries", "CPU-s per document (GO / ADJUST / NO-GO)",
                "rythmiq:cpu_seconds_per_document over 1 h and 6 h (the alerts use 6 h) with the "
                f"plan's lines at {PLAN[0]} / {PLAN[1]} / {PLAN[2]}.", "s",
                [prom("rythmiq:cpu_seconds_per_document:rate1h", "1 h"),
                 prom("rythmiq:cpu_seconds_per_document:rate6h", "6 h", ref="B")],
                thresholds=PLAN_STEPS, lines=True, min_=0), 12, 8)
    L.add(panel("timeseries", "CPU-s per document by path (SQL)",
                "cpu_metrics_hourly: CPU-seconds per document on the fast and standard paths, with "
                "the plan's lines.", "s",
                [sql("SELECT bucket AS time, processing_path AS metric, "
                     "cpu_seconds / NULLIF(jobs, 0) AS value FROM cpu_metrics_hourly "
                     "WHERE $__timeFilter(bucket) ORDER BY 1", fmt="time_series")],
                thresholds=PLAN_STEPS, lines=True, min_=0), 12, 8)
    L.add(panel("timeseries", "CPU-s per document by stage",
                "Each stage's CPU-seconds per completed document (a stage a document skipped counts "
                "as 0), stacked: the stack's top is the total.", "s",
                [prom('sum by (stage) (rate(rythmiq_job_cpu_seconds_sum{stage=~"$stage", stage!="total"}[$__rate_interval])) '
                      '/ scalar(sum(rate(rythmiq_job_cpu_seconds_count{stage="total"}[$__rate_interval])))',
                      "{{stage}}")],
                thresholds=PLAN_STEPS, lines=True, min_=0,
                custom={"stacking": {"mode": "normal", "group": "A"}, "fillOpacity": 40}), 12, 8)
    L.add(panel("table", "CPU-s per document by path and stage over the window (SQL)",
                "cpu_metrics: mean CPU-seconds per document of every stage, per path (a stage the "
                "path skips counts as 0); startup is a worker process's start-up CPU, charged to "
                "its first completed job, so the stages and startup add up to the total.", "s",
                [sql("SELECT processing_path AS path, count(*) AS documents, "
                     "avg(total_cpu_seconds) AS total, "
                     "avg(COALESCE(fetch_cpu_seconds, 0)) AS fetch, "
                     "avg(COALESCE(decode_cpu_seconds, 0)) AS decode, "
                     "avg(COALESCE(quality_cpu_seconds, 0)) AS quality, "
                     "avg(COALESCE(pre_ocr_cpu_seconds, 0)) AS pre_ocr, "
                     "avg(COALESCE(enhancement_cpu_seconds, 0)) AS enhance, "
                     "avg(COALESCE(ocr_cpu_seconds, 0)) AS ocr, "
                     "avg(COALESCE(schema_cpu_seconds, 0)) AS schema, "
                     "avg(COALESCE(upload_cpu_seconds, 0)) AS upload, "
                     "avg(startup_cpu_seconds) AS startup "
                     "FROM cpu_metrics WHERE $__timeFilter(created_at) GROUP BY 1 ORDER BY 1")],
                thresholds=PLAN_STEPS, decimals=3,
                overrides=[override("documents", unit="short", decimals=0),
                           override("total", **{"custom.cellOptions": {"type": "color-background"}})]),
          12, 8)
    L.add(panel("stat", "Capacity plan verdict, last 7 days (SQL)",
                "Mean CPU-seconds per document over 7 days, read against the plan: GO up to "
                f"{PLAN[0]}, over target up to {PLAN[1]}, ADJUST up to {PLAN[2]}, NO-GO above.", "s",
                [sql("SELECT sum(total_cpu_seconds) / NULLIF(count(*), 0) AS \"CPU-s per document\" "
                     "FROM cpu_metrics WHERE created_at >= now() - interval '7 days'")],
                thresholds=PLAN_STEPS, decimals=3,
                mappings=[{"type": "range", "options": {"from": 0, "to": PLAN[0],
                                                        "result": {"text": "GO", "color": "green"}}},
                          {"type": "range", "options": {"from": PLAN[0], "to": PLAN[1],
                                                        "result": {"text": "GO (over target)", "color": "yellow"}}},
                          {"type": "range", "options": {"from": PLAN[1], "to": PLAN[2],
                                                        "result": {"text": "ADJUST", "color": "orange"}}},
                          {"type": "range", "options": {"from": PLAN[2], "to": 1e9,
                                                        "result": {"text": "NO-GO", "color": "red"}}}]),
          12, 5)

    return dashboard("rythmiq-cost", "Rythmiq Cost", "CPU budget and capacity plan.", L,
                     [stage_var("rythmiq_job_cpu_seconds_count")], "now-7d")


# --------------------------------------------------------------------------------------------
# Product Health: paths, quality, OCR, portal rules.
# --------------------------------------------------------------------------------------------
def product_health():
    L = Layout()
    portal_filter = "ps.slug IN ($portal)"
    L.add(text("What this dashboard answers",
               "Are inputs good enough for the fast path, does OCR hold up, does enhancement help, "
               "and does each portal rule produce files inside its KB window? Fast path: QUALITY "
               f"score ≥ {FAST_PATH_SCORE} skips ENHANCE. A rollback undoes an enhancement that "
               "lowered OCR confidence (standard path only). Sizes are checked against "
               "`[min_kb × 1024, max_kb × 1000]` bytes."), 24, 3)

    L.row("Paths and quality")
    L.add(panel("piechart", "Fast vs standard (completed, window)",
                "Completed jobs over the window by processing path.", "short",
                [prom('sum by (path) (increase(rythmiq_jobs_total{status="completed", portal=~"$portal"}[$__range]))',
                      "{{path}}", instant=True)]), 6, 8)
    L.add(panel("timeseries", "Fast-path share",
                "Share of completed jobs that took the fast path (Prometheus, live) and per day "
                "from cpu_metrics_daily (SQL).", "percentunit",
                [prom('sum(rate(rythmiq_jobs_total{status="completed", path="fast", portal=~"$portal"}[$__rate_interval])) '
                      '/ sum(rate(rythmiq_jobs_total{status="completed", path=~"fast|standard", portal=~"$portal"}[$__rate_interval]))',
                      "fast share")], min_=0, max_=1), 9, 8)
    L.add(panel("timeseries", "Fast-path share by day (SQL)",
                "cpu_metrics_daily: share of completed jobs on the fast path, per day.", "percentunit",
                [sql("SELECT bucket AS time, "
                     "sum(jobs) FILTER (WHERE processing_path = 'fast')::float8 / NULLIF(sum(jobs), 0) "
                     "AS \"fast share\" FROM cpu_metrics_daily WHERE $__timeFilter(bucket) "
                     "GROUP BY 1 ORDER BY 1", fmt="time_series")],
                min_=0, max_=1, custom={"drawStyle": "bars", "fillOpacity": 60}), 9, 8)
    L.add(panel("bargauge", "Quality score distribution (window)",
                "Processed inputs per QUALITY score bucket (upper bound shown) over the window; "
                f"the fast path starts at {FAST_PATH_SCORE}.", "short",
                [prom("sum by (le) (increase(rythmiq_quality_score_bucket[$__range]))", "{{le}}",
                      instant=True, fmt="heatmap")]), 12, 8)
    L.add(panel("timeseries", "Quality score percentiles",
                f"P10 and median QUALITY score, with the fast-path line at {FAST_PATH_SCORE}.", "none",
                [prom("histogram_quantile(0.5, sum by (le) (rate(rythmiq_quality_score_bucket[$__rate_interval])))",
                      "median"),
                 prom("histogram_quantile(0.1, sum by (le) (rate(rythmiq_quality_score_bucket[$__rate_interval])))",
                      "p10", ref="B")],
                thresholds=steps("orange", (FAST_PATH_SCORE, "green")), lines=True,
                min_=0, max_=1, decimals=2), 12, 8)

    L.row("OCR")
    L.add(panel("timeseries", "OCR confidence percentiles",
                "P10 and median mean OCR confidence of processed inputs (rythmiq_ocr_confidence).",
                "percentunit",
                [prom("histogram_quantile(0.5, sum by (le) (rate(rythmiq_ocr_confidence_bucket[$__rate_interval])))",
                      "median"),
                 prom("histogram_quantile(0.1, sum by (le) (rate(rythmiq_ocr_confidence_bucket[$__rate_interval])))",
                      "p10", ref="B")], min_=0, max_=1), 8, 8)
    L.add(panel("timeseries", "Mean quality and OCR confidence by path (SQL)",
                "cpu_metrics_hourly: hourly means per processing path.", "percentunit",
                [sql("SELECT bucket AS time, processing_path || ' OCR confidence' AS metric, "
                     "avg_ocr_confidence AS value FROM cpu_metrics_hourly "
                     "WHERE $__timeFilter(bucket) ORDER BY 1", fmt="time_series"),
                 sql("SELECT bucket AS time, processing_path || ' quality score' AS metric, "
                     "avg_quality_score AS value FROM cpu_metrics_hourly "
                     "WHERE $__timeFilter(bucket) ORDER BY 1", ref="B", fmt="time_series")],
                min_=0, max_=1), 8, 8)
    L.add(panel("timeseries", "OCR rollback rate",
                "Share of standard-path jobs whose enhancement was rolled back, over 30 min and over "
                f"a day; the spike alert fires above {ROLLBACK_SPIKE:.0%} and twice the day's share.",
                "percentunit",
                [prom("rythmiq:ocr_rollback_ratio:rate30m", "30 min"),
                 prom("rythmiq:ocr_rollback_ratio:rate1d", "1 day", ref="B")],
                thresholds=steps("green", (ROLLBACK_SPIKE, "orange")), lines=True, min_=0), 8, 8)
    L.add(panel("table", "Rollbacks per portal rule (SQL)",
                "Completed jobs over the window whose OCR summary says rolled_back, per rule.",
                "short",
                [sql("SELECT ps.slug AS portal, count(*) AS completed, "
                     "count(*) FILTER (WHERE (j.ocr ->> 'rolled_back')::boolean) AS rolled_back, "
                     "count(*) FILTER (WHERE (j.ocr ->> 'rolled_back')::boolean)::float8 / NULLIF(count(*), 0) AS rollback_share, "
                     "avg((j.ocr ->> 'confidence')::float8) AS mean_confidence "
                     "FROM jobs j JOIN portal_schemas ps ON ps.id = j.portal_schema_id "
                     f"WHERE j.state = 'completed' AND $__timeFilter(j.finished_at) AND {portal_filter} "
                     "GROUP BY 1 ORDER BY 4 DESC NULLS LAST")],
                overrides=[override("rollback_share", unit="percentunit", decimals=1),
                           override("mean_confidence", unit="percentunit", decimals=1)]), 24, 8)

    L.row("Portal rules")
    L.add(panel("timeseries", "Outcomes per portal rule",
                "Finished attempts per minute by portal rule and status.", "opm",
                [prom('sum by (portal, status) (rate(rythmiq_jobs_total{portal=~"$portal"}[$__rate_interval])) * 60',
                      "{{portal}} {{status}}")], min_=0), 12, 8)
    L.add(panel("table", "Outcomes per portal rule over the window (SQL)",
                "Jobs created in the window per rule version: completed, failed, still open, and "
                "the failed share of finished jobs.", "short",
                [sql("SELECT ps.slug AS portal, ps.version, count(*) AS jobs, "
                     "count(*) FILTER (WHERE j.state = 'completed') AS completed, "
                     "count(*) FILTER (WHERE j.state = 'failed') AS failed, "
                     "count(*) FILTER (WHERE j.state IN ('pending', 'processing')) AS open, "
                     "count(*) FILTER (WHERE j.state = 'failed')::float8 "
                     "/ NULLIF(count(*) FILTER (WHERE j.state IN ('completed', 'failed')), 0) AS failed_share "
                     "FROM jobs j JOIN portal_schemas ps ON ps.id = j.portal_schema_id "
                     f"WHERE $__timeFilter(j.created_at) AND {portal_filter} "
                     "GROUP BY 1, 2 ORDER BY 1, 2")],
                thresholds=warn_crit(*ERROR_RATE),
                overrides=[override("failed_share", unit="percentunit", decimals=2,
                                    **{"custom.cellOptions": {"type": "color-text"}})]), 12, 8)
    L.add(panel("table", "Failures per portal rule and error code (SQL)",
                "Jobs that failed for good in the window, per rule and error code.", "short",
                [sql("SELECT ps.slug AS portal, j.error_code, count(*) AS failed "
                     "FROM jobs j JOIN portal_schemas ps ON ps.id = j.portal_schema_id "
                     f"WHERE j.state = 'failed' AND $__timeFilter(j.finished_at) AND {portal_filter} "
                     "GROUP BY 1, 2 ORDER BY 3 DESC")]), 8, 8)
    L.add(panel("table", "Output size against each rule's KB window (SQL)",
                "Completed outputs in the window per rule version: the accepted byte window "
                "[min_kb × 1024, max_kb × 1000], the smallest, median and largest output, outputs "
                "outside the window (should be 0) and where the median sits in the window.", "bytes",
                [sql("SELECT ps.slug AS portal, ps.version, ps.format, count(*) AS outputs, "
                     "ps.min_kb * 1024 AS window_min, ps.max_kb * 1000 AS window_max, "
                     "min(j.output_bytes) AS smallest, "
                     "percentile_cont(0.5) WITHIN GROUP (ORDER BY j.output_bytes) AS median, "
                     "max(j.output_bytes) AS largest, "
                     "count(*) FILTER (WHERE j.output_bytes < ps.min_kb * 1024 "
                     "OR j.output_bytes > ps.max_kb * 1000) AS outside_window, "
                     "(percentile_cont(0.5) WITHIN GROUP (ORDER BY j.output_bytes) - ps.min_kb * 1024) "
                     "/ NULLIF(ps.max_kb * 1000 - ps.min_kb * 1024, 0) AS median_position "
                     "FROM jobs j JOIN portal_schemas ps ON ps.id = j.portal_schema_id "
                     f"WHERE j.state = 'completed' AND $__timeFilter(j.finished_at) AND {portal_filter} "
                     "GROUP BY ps.slug, ps.version, ps.format, ps.min_kb, ps.max_kb ORDER BY 1, 2")],
                overrides=[override("outputs", unit="short"),
                           override("outside_window", unit="short",
                                    thresholds=steps("green", (1, "red")),
                                    **{"custom.cellOptions": {"type": "color-background"}}),
                           override("median_position", unit="percentunit", decimals=0)]), 16, 8)
    L.add(panel("timeseries", "Output position in the KB window (SQL)",
                "Mean position of outputs inside their rule's byte window per hour: 0 % is "
                "min_kb × 1024, 100 % is max_kb × 1000; outside that range is a bug.",
                "percentunit",
                [sql("SELECT $__timeGroupAlias(j.finished_at, '1h'), ps.slug AS metric, "
                     "avg((j.output_bytes - ps.min_kb * 1024.0) "
                     "/ NULLIF(ps.max_kb * 1000.0 - ps.min_kb * 1024.0, 0)) AS value "
                     "FROM jobs j JOIN portal_schemas ps ON ps.id = j.portal_schema_id "
                     f"WHERE j.state = 'completed' AND $__timeFilter(j.finished_at) AND {portal_filter} "
                     "GROUP BY 1, 2 ORDER BY 1", fmt="time_series")],
                thresholds=steps("green", (1, "red")), lines=True), 24, 8)

    return dashboard("rythmiq-product-health", "Rythmiq Product Health",
                     "Fast vs standard, quality, OCR, and each portal rule's outcomes and sizes.", L,
                     [portal_var()], "now-24h")


BUILDERS = {"operations.json": operations, "cost.json": cost, "product-health.json": product_health}


def render(build):
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"


def main(argv):
    out = Path(argv[1]) if len(argv) > 1 else DASHBOARDS
    out.mkdir(parents=True, exist_ok=True)
    for name, build in BUILDERS.items():
        (out / name).write_text(render(build), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
