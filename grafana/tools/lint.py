#!/usr/bin/env python3
"""Lints the Grafana dashboards and the Prometheus rules against the code they describe.

Checks (each failure is printed; the exit status is 1 when there is any):
- every dashboard is valid JSON, its title names it (Operations / Cost / Product Health), its
  schemaVersion is current (39 or later), its panel ids are unique, and it is exactly what
  grafana/tools/build_dashboards.py writes;
- every panel that shows data has a unit and a datasource; every datasource reference is a
  dashboard variable (`${DS_...}`) or one of Grafana's built-in pseudo datasources, never an
  instance's uid; each variable it names exists;
- every metric a PromQL query (panels, variables, rules) reads is a constant of
  shared/src/metrics.rs (histograms with their _bucket/_sum/_count series), a series recorded by
  grafana/alerts/rythmiq.rules.yml, or Prometheus' own `up`; the retired
  `rythmiq_cpu_hours_current_month` is refused;
- every table, view and function an SQL query names exists in migrations/*.sql (or, for the
  queue's `apalis.*` tables, in apalis-postgres' own migrations);
- every alert has a `severity` label, `summary`, `description` and a `runbook_url` naming a file
  in grafana/runbooks/; the threshold alerts use exactly the `alert_thresholds` numbers; every
  alert is expected to fire and expected not to fire somewhere in grafana/alerts/tests/*.yml;
- the provisioning files provide a datasource of every type the dashboards' datasource
  variables ask for, and take every address and credential from the environment;
- the dashboards parse into the Grafana Foundation SDK's dashboard types (PyPI
  `grafana-foundation-sdk`, Grafana 11.6 schema) without losing a field, and every panel type is
  one the SDK knows.

Usage: lint.py [--root DIR] [--dashboards DIR]. DIR defaults to the repository holding this file.
"""

import argparse
import glob
import json
import os
import re
import sys
from pathlib import Path

try:
    import yaml
except ImportError:
    sys.exit("lint: PyYAML is not installed (scripts/setup.sh --test installs it)")

# libyaml when the wheel has it (much faster), the pure-Python loader otherwise.
YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

HERE = Path(__file__).resolve().parent
sys.dont_write_bytecode = True  # importing the generator must not leave __pycache__ in the tree
sys.path.insert(0, str(HERE))
import build_dashboards  # noqa: E402  (the generator next to this file)

EXPECTED_TITLES = {"operations.json": "Operations", "cost.json": "Cost",
                   "product-health.json": "Product Health"}
MIN_SCHEMA_VERSION = 39
RETIRED_METRICS = {"rythmiq_cpu_hours_current_month":
                   "retired: use rythmiq_cpu_seconds_current_month / 3600"}
# Series Prometheus itself writes for every target.
PROMETHEUS_SERIES = {"up"}
# Grafana's pseudo datasources: names, not an instance's uid.
BUILTIN_DATASOURCES = {"-- Grafana --", "-- Mixed --", "-- Dashboard --"}
# Panels that show no query data need no unit.
NO_DATA_PANELS = {"row", "text"}
# The queue schema is created by apalis-postgres' migrations (shipped inside that crate), not by
# migrations/*.sql; these are its tables, used when the crate's source is not on this machine.
APALIS_TABLES = {"apalis.workers", "apalis.jobs"}

# Alerts whose threshold is an `alert_thresholds` row: alert -> (metric, level, scale).
THRESHOLD_ALERTS = {
    "RythmiqErrorRateWarning": ("error_rate", "warning", 1),
    "RythmiqErrorRateCritical": ("error_rate", "critical", 1),
    "RythmiqJobLatencyP95Warning": ("p95_latency_seconds", "warning", 1),
    "RythmiqJobLatencyP95Critical": ("p95_latency_seconds", "critical", 1),
    # The gauge is in seconds, the table in hours.
    "RythmiqCpuMonthlyUsageWarning": ("cpu_hours_month", "warning", 3600),
    "RythmiqCpuMonthlyUsageCritical": ("cpu_hours_month", "critical", 3600),
    "RythmiqColdStartRateWarning": ("cold_start_rate", "warning", 1),
    "RythmiqColdStartRateCritical": ("cold_start_rate", "critical", 1),
}
# The generator's constants that must equal the table: constant -> metric.
GENERATOR_THRESHOLDS = {"ERROR_RATE": "error_rate", "P95_SECONDS": "p95_latency_seconds",
                        "CPU_HOURS_MONTH": "cpu_hours_month", "COLD_START_RATE": "cold_start_rate"}

PROMQL_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and",
                   "or", "unless", "offset", "inf", "nan", "atan2", "start", "end"}
# SQL words followed by "(" that are not functions the migrations must define.
SQL_BUILTINS = {
    "count", "sum", "avg", "min", "max", "round", "coalesce", "nullif", "extract", "date_trunc",
    "percentile_cont", "percentile_disc", "now", "greatest", "least", "abs", "floor", "ceil",
    "to_char", "to_timestamp", "cast", "lower", "upper", "length", "stddev", "variance",
    "generate_series", "date_part", "make_interval", "jsonb_array_length", "array_agg",
    "string_agg", "bool_or", "bool_and",
    # keywords written before a parenthesis
    "in", "filter", "over", "as", "values", "group", "within", "and", "or", "not", "exists",
    "any", "all", "interval", "from", "where", "when", "then", "else", "select", "join", "on",
    "using", "case", "is", "by", "order", "limit", "distinct",
}
# Grafana's SQL macros ($__timeFilter(col) and friends) are expanded before Postgres sees them.
GRAFANA_MACRO = re.compile(r"\$__\w+(\([^()]*\))?")


class Lint:
    def __init__(self, root: Path, dashboards: Path):
        self.root = root
        self.dashboards = dashboards
        self.errors = []
        self.catalog, self.histograms = self.metric_catalog()
        self.rules = self.load_rules()
        self.recorded = {r["record"] for g in self.rules for r in g["rules"] if "record" in r}
        self.sql_objects, self.sql_functions = self.migration_objects()
        self.thresholds = self.alert_threshold_rows()

    def fail(self, where, msg):
        self.errors.append(f"{where}: {msg}")

    # ---- sources of truth -------------------------------------------------------------------
    def metric_catalog(self):
        src = (self.root / "shared/src/metrics.rs").read_text(encoding="utf-8")
        consts = dict(re.findall(r'pub const (\w+): &str = "([^"]+)";', src))
        if not consts:
            self.fail("shared/src/metrics.rs", "no metric constants found")
        hist_consts = set(re.findall(r"describe_histogram!\(\s*(\w+)", src))
        return set(consts.values()), {consts[c] for c in hist_consts if c in consts}

    def load_rules(self):
        path = self.root / "grafana/alerts/rythmiq.rules.yml"
        return load_yaml(path)["groups"]

    def migration_objects(self):
        objects, functions = set(), set()
        texts = [Path(p).read_text(encoding="utf-8")
                 for p in sorted(glob.glob(str(self.root / "migrations/*.sql")))]
        for text in texts:
            for kind, name in re.findall(
                    r"CREATE\s+(?:OR\s+REPLACE\s+)?(TABLE|MATERIALIZED\s+VIEW|VIEW|FUNCTION)\s+"
                    r"(?:IF\s+NOT\s+EXISTS\s+)?([\w.]+)", text, re.IGNORECASE):
                (functions if kind.upper() == "FUNCTION" else objects).add(name.lower())
        apalis = set()
        home = Path(os.environ.get("CARGO_HOME", Path.home() / ".cargo"))
        for p in glob.glob(str(home / "registry/src/*/apalis-postgres-*/migrations/*.sql")):
            apalis |= {n.lower() for n in re.findall(
                r"CREATE\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?(apalis\.\w+)",
                Path(p).read_text(encoding="utf-8"), re.IGNORECASE)}
        objects |= apalis or APALIS_TABLES
        if not objects or not functions:
            self.fail("migrations/", "no tables or functions found")
        return objects, functions

    def alert_threshold_rows(self):
        text = (self.root / "migrations/20261129000003_observability.sql").read_text(encoding="utf-8")
        block = text.split("INSERT INTO alert_thresholds", 1)[-1].split(";", 1)[0]
        rows = re.findall(r"\('(\w+)',\s*'(\w+)',\s*([\d.]+),\s*([\d.]+)\)", block)
        if not rows:
            self.fail("migrations", "no alert_thresholds rows found")
        return {m: {"warning": float(w), "critical": float(c)} for m, _, w, c in rows}

    # ---- PromQL -----------------------------------------------------------------------------
    def promql_metrics(self, expr):
        # Grafana's variable query label_values(metric, label): the label is not a metric.
        e = re.sub(r"label_values\(\s*([^,()]*?(?:\{[^}]*\})?)\s*,\s*\w+\s*\)", r"\1", expr)
        e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', e)  # strings
        e = re.sub(r"\{[^}]*\}", "", e)  # label matchers (and Grafana's ${var})
        e = re.sub(r"\[[^\]]*\]", "", e)  # ranges, e.g. [$__rate_interval]
        e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
        e = re.sub(r"\$\w+", " ", e)  # Grafana variables outside braces
        names = set()
        for m in re.finditer(r"(?<![\w:.])([a-zA-Z_:][\w:]*)(\s*\()?", e):
            name, call = m.group(1), m.group(2)
            if call or name.lower() in PROMQL_KEYWORDS:
                continue
            if re.fullmatch(r"\d+[smhdwy]", name):
                continue
            names.add(name)
        return names

    def check_promql(self, where, expr):
        for name in sorted(self.promql_metrics(expr)):
            if name in RETIRED_METRICS:
                self.fail(where, f"{name} is {RETIRED_METRICS[name]}")
                continue
            if name in self.catalog or name in self.recorded or name in PROMETHEUS_SERIES:
                continue
            base = re.sub(r"_(bucket|sum|count)$", "", name)
            if base != name and base in self.histograms:
                continue
            self.fail(where, f"metric {name!r} is not in shared/src/metrics.rs nor recorded "
                             "by grafana/alerts/rythmiq.rules.yml")

    # ---- SQL --------------------------------------------------------------------------------
    def check_sql(self, where, raw):
        q = GRAFANA_MACRO.sub(" x ", raw)
        q = re.sub(r"'(?:[^']|'')*'", "''", q)  # string literals
        q = re.sub(r'"[^"]*"', " x ", q)  # quoted aliases
        q = re.sub(r"(?i)\bextract\s*\(\s*\w+\s+from\b", "extract(", q)  # EXTRACT(x FROM col)
        ctes = {c.lower() for c in re.findall(r"(?i)\b(\w+)\s+AS\s*\(", q)}
        for fn in re.findall(r"(?<![\w.])([A-Za-z_][\w.]*)\s*\(", q):
            low = fn.lower()
            if low in SQL_BUILTINS or low in ctes:
                continue
            if low not in self.sql_functions:
                self.fail(where, f"SQL function {fn}() is not defined in migrations/*.sql")
        for rel in re.findall(r"(?i)\b(?:from|join)\s+([A-Za-z_][\w.]*)\b(?!\s*\()", q):
            low = rel.lower()
            if low in self.sql_objects or low in ctes:
                continue
            self.fail(where, f"SQL relation {rel!r} is not a table or view of migrations/*.sql")

    # ---- dashboards -------------------------------------------------------------------------
    def check_datasource(self, where, ds, variables):
        if ds is None:
            return
        if isinstance(ds, str):
            self.fail(where, f"datasource given by name {ds!r}; use a {{type, uid: ${{DS_...}}}} reference")
            return
        uid = ds.get("uid")
        if uid in BUILTIN_DATASOURCES:
            return
        m = re.fullmatch(r"\$\{?(\w+)\}?", uid or "")
        if not m:
            self.fail(where, f"datasource uid {uid!r} is a literal; use a datasource variable")
        elif m.group(1) not in variables:
            self.fail(where, f"datasource variable {m.group(1)} is not defined")

    def check_dashboard(self, path: Path):
        name = path.name
        try:
            dash = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            self.fail(name, f"not valid JSON: {e}")
            return None
        want = EXPECTED_TITLES.get(name)
        if want is None:
            self.fail(name, "unexpected dashboard file")
        elif want not in dash.get("title", ""):
            self.fail(name, f"title {dash.get('title')!r} does not contain {want!r}")
        if not isinstance(dash.get("schemaVersion"), int) or dash["schemaVersion"] < MIN_SCHEMA_VERSION:
            self.fail(name, f"schemaVersion {dash.get('schemaVersion')} < {MIN_SCHEMA_VERSION}")
        if not dash.get("uid"):
            self.fail(name, "no uid")

        var_list = dash.get("templating", {}).get("list", [])
        variables = {v.get("name"): v for v in var_list}
        for v in var_list:
            where = f"{name} variable {v.get('name')}"
            if v.get("type") == "datasource":
                if v.get("current") not in ({}, None):
                    self.fail(where, "a datasource variable must not pin a current datasource")
                continue
            self.check_datasource(where, v.get("datasource"), variables)
            self.check_query(where, v.get("datasource"), v.get("query"))
        for a in dash.get("annotations", {}).get("list", []):
            self.check_datasource(f"{name} annotation {a.get('name')}", a.get("datasource"), variables)

        ids = set()
        panels = list(dash.get("panels", []))
        for p in list(panels):
            panels += p.get("panels", [])  # panels inside collapsed rows
        for p in panels:
            where = f"{name} panel {p.get('id')} {p.get('title')!r}"
            pid = p.get("id")
            if not isinstance(pid, int):
                self.fail(where, "panel id missing")
            elif pid in ids:
                self.fail(where, "duplicate panel id")
            ids.add(pid)
            if p.get("type") in NO_DATA_PANELS:
                continue
            unit = p.get("fieldConfig", {}).get("defaults", {}).get("unit")
            if not unit:
                self.fail(where, "no unit (fieldConfig.defaults.unit)")
            if not p.get("targets"):
                self.fail(where, "no query")
            self.check_datasource(where, p.get("datasource"), variables)
            for t in p.get("targets", []):
                ds = t.get("datasource") or p.get("datasource")
                self.check_datasource(f"{where} {t.get('refId')}", ds, variables)
                self.check_query(f"{where} {t.get('refId')}", ds, t)
        return dash

    def check_query(self, where, ds, q):
        kind = (ds or {}).get("type", "") if isinstance(ds, dict) else ""
        if isinstance(q, dict):
            text = q.get("expr") or q.get("rawSql") or q.get("query") or ""
        else:
            text = q or ""
        if not text:
            self.fail(where, "empty query")
        elif kind == "prometheus":
            self.check_promql(where, text)
        elif "postgres" in kind:
            self.check_sql(where, text)
        else:
            self.fail(where, f"query on an unexpected datasource type {kind!r}")

    def check_generated(self):
        for name, build in build_dashboards.BUILDERS.items():
            path = self.dashboards / name
            if path.exists() and path.read_text(encoding="utf-8") != build_dashboards.render(build):
                self.fail(name, "differs from what grafana/tools/build_dashboards.py writes; "
                                "edit the generator and run it")
        for metric_const, metric in GENERATOR_THRESHOLDS.items():
            row = self.thresholds.get(metric)
            have = getattr(build_dashboards, metric_const)
            if row and tuple(have) != (row["warning"], row["critical"]):
                self.fail("build_dashboards.py", f"{metric_const} = {have} but alert_thresholds "
                                                 f"has {metric} {row['warning']} / {row['critical']}")

    def check_sdk(self, dash, name):
        """Round-trips the dashboard through the Grafana Foundation SDK's types."""
        from grafana_foundation_sdk.cog import plugins, runtime
        from grafana_foundation_sdk.cog.encoder import JSONEncoder
        from grafana_foundation_sdk.models.dashboard import Dashboard

        plugins.register_default_plugins()
        try:
            typed = Dashboard.from_json(dash)
            back = json.loads(json.dumps(typed, cls=JSONEncoder))
        except Exception as e:  # the SDK raises whatever a malformed field triggers
            self.fail(name, f"Grafana dashboard types reject it: {type(e).__name__}: {e}")
            return
        for path in lost_fields(dash, back, ""):
            self.fail(name, f"{path}: not a field of the Grafana dashboard schema")
        for p in dash.get("panels", []):
            kind = p.get("type")
            if kind != "row" and runtime.panelcfg_config(kind) is None:
                self.fail(name, f"panel {p.get('id')}: unknown panel type {kind!r}")

    # ---- provisioning -----------------------------------------------------------------------
    def check_provisioning(self, dash_types):
        env_ref = re.compile(r"^(\$\{\w+\}|\$\w+|\$__(env|file)\{[^}]+\})$")
        base = self.root / "grafana/provisioning"
        provided = set()
        files = sorted(base.glob("datasources/*.yaml"))
        if not files:
            self.fail("grafana/provisioning/datasources", "no datasource provisioning file")
        for f in files:
            where = f"provisioning {f.name}"
            for ds in (load_yaml(f) or {}).get("datasources", []):
                provided.add(ds.get("type"))
                values = {"url": ds.get("url"), "user": ds.get("user"),
                          "database": (ds.get("jsonData") or {}).get("database")}
                values.update({f"secureJsonData.{k}": v
                               for k, v in (ds.get("secureJsonData") or {}).items()})
                for key, value in values.items():
                    if value is not None and not env_ref.match(str(value)):
                        self.fail(f"{where} {ds.get('name')}",
                                  f"{key} is a literal; take it from the environment (${{VAR}})")
        for t in sorted(dash_types - provided):
            self.fail("grafana/provisioning/datasources", f"no datasource of type {t!r} provisioned")
        files = sorted(base.glob("dashboards/*.yaml"))
        if not files:
            self.fail("grafana/provisioning/dashboards", "no dashboard provisioning file")
        for f in files:
            for prov in (load_yaml(f) or {}).get("providers", []):
                if prov.get("type") != "file" or not (prov.get("options") or {}).get("path"):
                    self.fail(f"provisioning {f.name}", "provider must be type: file with options.path")

    # ---- rules ------------------------------------------------------------------------------
    def check_rules(self):
        alerts = []
        for g in self.rules:
            for r in g["rules"]:
                where = f"rules {r.get('alert') or r.get('record')}"
                self.check_promql(where, r["expr"])
                if "alert" not in r:
                    continue
                alerts.append(r["alert"])
                labels, ann = r.get("labels", {}), r.get("annotations", {})
                if labels.get("severity") not in ("warning", "critical"):
                    self.fail(where, "severity label must be warning or critical")
                for key in ("summary", "description", "runbook_url"):
                    if not ann.get(key):
                        self.fail(where, f"no {key} annotation")
                url = ann.get("runbook_url", "")
                if not url.startswith("grafana/runbooks/") or not (self.root / url).is_file():
                    self.fail(where, f"runbook_url {url!r} is not a file in grafana/runbooks/")
                spec = THRESHOLD_ALERTS.get(r["alert"])
                if spec:
                    metric, level, scale = spec
                    want = self.thresholds.get(metric, {}).get(level)
                    m = re.search(r">\s*([\d.]+(?:\s*\*\s*[\d.]+)?)\s*$", r["expr"].strip())
                    got = eval_product(m.group(1)) if m else None
                    if want is None or got is None or abs(got - want * scale) > 1e-9:
                        self.fail(where, f"threshold {got} is not alert_thresholds "
                                         f"{metric}/{level} = {want} (x{scale})")
                if labels.get("severity") != (spec[1] if spec else labels.get("severity")):
                    self.fail(where, "severity differs from the alert_thresholds level")
        self.check_rule_tests(alerts)

    def check_rule_tests(self, alerts):
        fires, quiet = set(), set()
        files = sorted(glob.glob(str(self.root / "grafana/alerts/tests/*.yml")))
        if not files:
            self.fail("grafana/alerts/tests", "no promtool test files")
        for f in files:
            doc = load_yaml(Path(f))
            for t in doc.get("tests", []):
                for a in t.get("alert_rule_test", []):
                    (fires if a.get("exp_alerts") else quiet).add(a["alertname"])
        for a in alerts:
            if a not in fires:
                self.fail(f"alert {a}", "no promtool test expects it to fire")
            if a not in quiet:
                self.fail(f"alert {a}", "no promtool test expects it not to fire")

    def run(self, sdk=True):
        self.check_rules()
        found = {p.name: p for p in sorted(self.dashboards.glob("*.json"))}
        for want in EXPECTED_TITLES:
            if want not in found:
                self.fail(want, "missing")
        dash_types = set()
        for name, path in found.items():
            dash = self.check_dashboard(path)
            if dash is None:
                continue
            dash_types |= {v.get("query") for v in dash.get("templating", {}).get("list", [])
                           if v.get("type") == "datasource"}
            if sdk:
                self.check_sdk(dash, name)
        self.check_generated()
        self.check_provisioning(dash_types)
        return self.errors


def load_yaml(path: Path):
    return yaml.load(path.read_text(encoding="utf-8"), Loader=YAML_LOADER)


def eval_product(text):
    out = 1.0
    for part in text.split("*"):
        out *= float(part)
    return out


def lost_fields(orig, back, path):
    """Paths present in `orig` that the typed round trip dropped or changed."""
    if isinstance(orig, dict):
        if not isinstance(back, dict):
            return [path or "."]
        out = []
        for k, v in orig.items():
            if k not in back:
                if v is not None:
                    out.append(f"{path}.{k}")
            else:
                out += lost_fields(v, back[k], f"{path}.{k}")
        return out
    if isinstance(orig, list):
        if not isinstance(back, list) or len(orig) != len(back):
            return [path]
        return [p for i, (a, b) in enumerate(zip(orig, back)) for p in lost_fields(a, b, f"{path}[{i}]")]
    return [] if orig == back else [f"{path} ({orig!r} became {back!r})"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--root", type=Path, default=HERE.parent.parent)
    ap.add_argument("--dashboards", type=Path, default=None)
    args = ap.parse_args()
    dashboards = args.dashboards or args.root / "grafana/dashboards"
    try:
        import grafana_foundation_sdk  # noqa: F401
    except ImportError:
        print("lint: grafana-foundation-sdk is not installed (scripts/setup.sh --test installs it)",
              file=sys.stderr)
        return 2
    errors = Lint(args.root, dashboards).run()
    for e in errors:
        print(f"lint: {e}", file=sys.stderr)
    if errors:
        print(f"lint: {len(errors)} problem(s)", file=sys.stderr)
        return 1
    print(f"lint: {len(list(dashboards.glob('*.json')))} dashboards and the rules are consistent")
    return 0


if __name__ == "__main__":
    sys.exit(main())
