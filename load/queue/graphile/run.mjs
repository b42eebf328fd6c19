// graphile-worker's side of load/queue (run by rythmiq-queue-bench, from the folder where
// bench.sh installed graphile-worker). Migrates graphile-worker's schema, adds TASKS no-op jobs
// in one statement (graphile_worker.add_jobs, the bulk form of add_job), prints "ready" and waits
// for a line on stdin (the caller opens its statement-count window), then runs the jobs with
// CONCURRENCY workers and prints one JSON line: the jobs completed and the window from the first
// job:start (a claim returned a job) to the last job:complete (its completion was recorded).
//
// Environment: DATABASE_URL, TASKS, CONCURRENCY, POOL_SIZE.
import { EventEmitter } from "node:events";
import { createInterface } from "node:readline";
import { Logger, run, runMigrations } from "graphile-worker";
import pg from "pg";

const tasks = Number.parseInt(process.env.TASKS ?? "20000", 10);
const concurrency = Number.parseInt(process.env.CONCURRENCY ?? "4", 10);
const poolSize = Number.parseInt(process.env.POOL_SIZE ?? "10", 10);

// Warnings and errors only: the benchmark's output is the JSON line.
const logger = new Logger(() => (level, message) => {
  if (level === "error" || level === "warning") console.error(`graphile-worker ${level}: ${message}`);
});

const pgPool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: poolSize });
await runMigrations({ pgPool, logger });
await pgPool.query(
  `SELECT graphile_worker.add_jobs(array(
     SELECT ('noop', json_build_object('i', i), NULL, NULL, NULL, NULL, NULL, NULL)::graphile_worker.job_spec
     FROM generate_series(1, $1::int) AS i))`,
  [tasks],
);

console.log("ready");
const lines = createInterface({ input: process.stdin });
await new Promise((resolve) => lines.once("line", resolve));
lines.close();

let first = null;
let last = null;
let done = 0;
let finished;
const allDone = new Promise((resolve) => {
  finished = resolve;
});
const events = new EventEmitter();
events.on("job:start", () => {
  first ??= performance.now();
});
events.on("job:complete", ({ error }) => {
  if (error) console.error(`graphile-worker job failed: ${error}`);
  done += 1;
  last = performance.now();
  if (done === tasks) finished();
});

const runner = await run({
  pgPool,
  logger,
  events,
  concurrency,
  noHandleSignals: true,
  taskList: { noop: async () => {} },
});
await allDone;
await runner.stop();
await pgPool.end();
console.log(JSON.stringify({ jobs: done, window_ms: last - first }));
