#!/usr/bin/env python3
"""Proves that grafana/tools/lint.py and the promtool tests can fail.

Copies what the lint reads (grafana/, migrations/, shared/src/metrics.rs) into a temporary
directory, breaks one thing at a time, and expects the lint to report that very problem (and
`promtool test rules` to fail on a rule whose threshold moved). Exits 1 if any break goes
unnoticed or if the unbroken copy is not clean.
"""

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.dont_write_bytecode = True  # importing the generator must not leave __pycache__ in the tree
ROOT = HERE.parent.parent
sys.path.insert(0, str(HERE))
import lint  # noqa: E402


def edit_json(rel, change):
    def apply(root):
        path = root / rel
        data = json.loads(path.read_text(encoding="utf-8"))
        change(data)
        path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return apply


def replace(rel, old, new):
    def apply(root):
        path = root / rel
        text = path.read_text(encoding="utf-8")
        if old not in text:
            raise AssertionError(f"self-test is stale: {old!r} not in {rel}")
        path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return apply


def replace_all(rel, old, new):
    def apply(root):
        path = root / rel
        text = path.read_text(encoding="utf-8")
        if old not in text:
            raise AssertionError(f"self-test is stale: {old!r} not in {rel}")
        path.write_text(text.replace(old, new), encoding="utf-8")
    return apply


def panel(data, title):
    return next(p for p in data["panels"] if p.get("title") == title)


OPS = "grafana/dashboards/operations.json"
COST = "grafana/dashboards/cost.json"
HEALTH = "grafana/dashboards/product-health.json"
RULES = "grafana/alerts/rythmiq.rules.yml"
TESTS = "grafana/alerts/tests/rythmiq_test.yml"

# (what is broken, how, a fragment the lint must report)
BREAKS = [
    ("invalid JSON", replace(COST, '"panels": [', '"panels": [,'), "not valid JSON"),
    ("duplicate panel id",
     edit_json(OPS, lambda d: d["panels"][4].update(id=d["panels"][3]["id"])), "duplicate panel id"),
    ("panel without unit",
     edit_json(OPS, lambda d: panel(d, "Queue depth")["fieldConfig"]["defaults"].pop("unit")),
     "no unit"),
    ("literal datasource uid",
     edit_json(HEALTH, lambda d: panel(d, "Fast-path share")["targets"][0].update(
         datasource={"type": "prometheus", "uid": "P1809F7CD0C75ACF3"})), "is a literal"),
    ("undefined datasource variable",
     edit_json(COST, lambda d: panel(d, "Budget left (SQL)").update(
         datasource={"type": "grafana-postgresql-datasource", "uid": "${DS_PG}"})),
     "DS_PG is not defined"),
    ("unknown metric",
     edit_json(OPS, lambda d: panel(d, "Queue depth")["targets"][0].update(
         expr="max by (state) (rythmiq_queue_length)")), "rythmiq_queue_length"),
    ("retired metric",
     edit_json(COST, lambda d: panel(d, "CPU-hours this month")["targets"][0].update(
         expr="max(rythmiq_cpu_hours_current_month)")), "retired"),
    ("_bucket of a counter",
     edit_json(OPS, lambda d: panel(d, "Retries")["targets"][0].update(
         expr="sum(rate(rythmiq_jobs_total_bucket[5m]))")), "rythmiq_jobs_total_bucket"),
    ("unknown SQL function",
     edit_json(COST, lambda d: panel(d, "Budget left (SQL)")["targets"][0].update(
         rawSql="SELECT get_cpu_budget_left(200)")), "get_cpu_budget_left"),
    ("unknown SQL table",
     edit_json(OPS, lambda d: panel(d, "WORKER_LOST (SQL)")["targets"][0].update(
         rawSql="SELECT count(*) FROM worker_events WHERE $__timeFilter(created_at)")),
     "worker_events"),
    ("title without its name",
     edit_json(HEALTH, lambda d: d.update(title="Rythmiq Quality")), "does not contain"),
    ("old schemaVersion", edit_json(OPS, lambda d: d.update(schemaVersion=27)), "schemaVersion"),
    ("field unknown to the Grafana schema",
     edit_json(OPS, lambda d: panel(d, "Queue depth").update(fieldConfg={})), "fieldConfg"),
    ("hand edit the generator does not make",
     edit_json(COST, lambda d: d.update(refresh="5s")), "differs from what"),
    ("threshold off the alert_thresholds table",
     replace(RULES, "expr: rythmiq:job_error_ratio:rate5m > 0.02", "expr: rythmiq:job_error_ratio:rate5m > 0.05"),
     "RythmiqErrorRateCritical: threshold"),
    ("generator threshold off the table",
     replace("grafana/tools/build_dashboards.py", "P95_SECONDS = (20, 30)", "P95_SECONDS = (20, 40)"),
     "P95_SECONDS"),
    ("missing runbook",
     lambda root: (root / "grafana/runbooks/cold-starts.md").unlink(), "cold-starts.md"),
    ("alert without severity", replace(RULES, "severity: warning", "team: sre"), "severity label"),
    ("alert never tested quiet", replace_all(
        "grafana/alerts/tests/ocr_rollbacks_test.yml", "alertname: RythmiqOcrRollbackSpike\n        exp_alerts: []",
        "alertname: RythmiqOcrRollbackSpike\n        exp_alerts: [{exp_labels: {severity: warning}}]"),
     "RythmiqOcrRollbackSpike: no promtool test expects it not to fire"),
    ("literal database password",
     replace("grafana/provisioning/datasources/rythmiq.yaml", "${RYTHMIQ_GRAFANA_PG_PASSWORD}", "hunter2"),
     "secureJsonData.password is a literal"),
]


def copy_tree(dst: Path):
    shutil.copytree(ROOT / "grafana", dst / "grafana",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "migrations", dst / "migrations")
    (dst / "shared/src").mkdir(parents=True)
    shutil.copy(ROOT / "shared/src/metrics.rs", dst / "shared/src/metrics.rs")


def run_lint(root: Path):
    # The generator module compares against the copy's own dashboards directory.
    return lint.Lint(root, root / "grafana/dashboards").run()


def main():
    failures = 0
    with tempfile.TemporaryDirectory(prefix="grafana-selftest-") as tmp:
        base = Path(tmp) / "clean"
        copy_tree(base)
        errors = run_lint(base)
        if errors:
            print("selftest: the clean copy is not clean:\n  " + "\n  ".join(errors), file=sys.stderr)
            failures += 1
        for i, (what, breaker, expect) in enumerate(BREAKS):
            root = Path(tmp) / f"break{i}"
            copy_tree(root)
            breaker(root)
            # The generator is imported once; reload it so a broken copy's generator is read.
            sys.modules.pop("build_dashboards", None)
            sys.path.insert(0, str(root / "grafana/tools"))
            try:
                import importlib
                lint.build_dashboards = importlib.import_module("build_dashboards")
                lint.build_dashboards.DASHBOARDS = root / "grafana/dashboards"
                errors = run_lint(root)
            finally:
                sys.path.remove(str(root / "grafana/tools"))
            if any(expect in e for e in errors):
                print(f"selftest: ok: {what} is caught")
            else:
                print(f"selftest: FAILED: {what} went unnoticed (expected {expect!r}); lint said:\n  "
                      + "\n  ".join(errors or ["nothing"]), file=sys.stderr)
                failures += 1

        # The promtool unit tests fail when an alert's threshold moves (only the P95 tests are
        # run: they are the ones that must notice).
        root = Path(tmp) / "promtool"
        copy_tree(root)
        replace(RULES, "expr: rythmiq:job_latency_seconds:p95_5m > 30",
                "expr: rythmiq:job_latency_seconds:p95_5m > 60")(root)
        doc = lint.load_yaml(root / TESTS)
        doc["tests"] = [t for t in doc["tests"] if "latency" in t["name"]]
        subset = root / "grafana/alerts/tests/latency_only.yml"
        subset.write_text(json.dumps(doc), encoding="utf-8")  # JSON is YAML
        res = subprocess.run(["promtool", "test", "rules", str(subset)],
                             capture_output=True, text=True, check=False)
        if res.returncode == 0 or not doc["tests"]:
            print("selftest: FAILED: promtool tests pass with a moved P95 threshold", file=sys.stderr)
            failures += 1
        else:
            print("selftest: ok: promtool tests catch a moved P95 threshold")

    if failures:
        print(f"selftest: {failures} failure(s)", file=sys.stderr)
        return 1
    print(f"selftest: all {len(BREAKS) + 1} deliberate breaks caught")
    return 0


if __name__ == "__main__":
    sys.exit(main())
