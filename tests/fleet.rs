//! The fleet as Kubernetes runs it (deploy/k8s/base): `rythmiq migrate`, two `rythmiq api` and
//! three `rythmiq worker` processes, each started with the arguments and the environment its
//! Deployment or Job gives it (ConfigMaps and Secret references resolved as the kubelet does),
//! against a Postgres server of this test's own (not `rythmiq dev`), each process logged in as
//! its own database login (deploy/db/logins.sql). 100 jobs go in through both APIs while a
//! worker is SIGKILLed mid-job and an API is SIGTERMed mid-run; every job completes exactly once.
//! The KEDA ScaledObject's query runs as the scaler's login. Then KEDA's formula, applied to
//! that query and target, starts and stops worker processes under a 200-job burst, against one
//! fixed worker.
//!
//! What one machine must change from the manifests, and nothing else: the object store is the
//! local filesystem backend (a directory all processes share) instead of S3, ports are the OS's
//! (several pods share one host), and the models are the repository's (the image has them at
//! RYTHMIQ_MODELS_DIR). `Pod::set` refuses a variable the manifests do not set.

mod common;

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use common::{MASTER_KEY, SECRET, eventually, logged_address, photo_jpeg, signal, slow_png};
use futures::{StreamExt, TryStreamExt};
use serde::Deserialize;
use serde_yaml::Value;
use sqlx::PgPool;
use uuid::Uuid;

const BIN: &str = env!("CARGO_BIN_EXE_rythmiq");

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

// -------------------------------------------------------------------------------------------
// The manifests

/// Every object of deploy/k8s/base's kustomization, as written.
struct Manifests(Vec<Value>);

impl Manifests {
    fn load() -> Result<Self> {
        let base = repo().join("deploy/k8s/base");
        let read = |p: &Path| std::fs::read_to_string(p).with_context(|| p.display().to_string());
        let kustomization: Value = serde_yaml::from_str(&read(&base.join("kustomization.yaml"))?)?;
        let mut objects = Vec::new();
        for resource in kustomization["resources"]
            .as_sequence()
            .context("resources")?
        {
            let text = read(&base.join(resource.as_str().context("a resource path")?))?;
            for doc in serde_yaml::Deserializer::from_str(&text) {
                let object = Value::deserialize(doc)?;
                if !object.is_null() {
                    objects.push(object);
                }
            }
        }
        Ok(Self(objects))
    }

    fn get(&self, kind: &str, name: &str) -> Result<&Value> {
        self.0
            .iter()
            .find(|o| {
                o["kind"].as_str() == Some(kind) && o["metadata"]["name"].as_str() == Some(name)
            })
            .with_context(|| format!("{kind}/{name} is not in deploy/k8s/base"))
    }

    fn container(&self, kind: &str, name: &str) -> Result<&Value> {
        let c = &self.get(kind, name)?["spec"]["template"]["spec"]["containers"][0];
        ensure!(c.is_mapping(), "{kind}/{name} has no container");
        Ok(c)
    }

    /// What the kubelet starts for a pod `pod_name` of this workload: the container's
    /// arguments and its environment (`envFrom` ConfigMaps, then `env`; later entries win).
    fn pod(&self, kind: &str, name: &str, pod_name: &str, secrets: &Secrets) -> Result<Pod> {
        let c = self.container(kind, name)?;
        let args = strings(&c["args"])?;
        let mut env = HashMap::new();
        for from in c["envFrom"].as_sequence().into_iter().flatten() {
            let cm = from["configMapRef"]["name"]
                .as_str()
                .context("envFrom takes ConfigMaps only (secrets are named one by one)")?;
            for (k, v) in self.get("ConfigMap", cm)?["data"]
                .as_mapping()
                .into_iter()
                .flatten()
            {
                env.insert(scalar(k)?, scalar(v)?);
            }
        }
        for e in c["env"].as_sequence().into_iter().flatten() {
            let var = scalar(&e["name"])?;
            let from = &e["valueFrom"];
            let (secret, config) = (&from["secretKeyRef"], &from["configMapKeyRef"]);
            let value = if !e["value"].is_null() {
                scalar(&e["value"])?
            } else if secret.is_mapping() {
                let name = (scalar(&secret["name"])?, scalar(&secret["key"])?);
                match secrets.get(&name) {
                    Some(v) => v.clone(),
                    None if secret["optional"].as_bool() == Some(true) => continue,
                    None => bail!("{var}: the test has no value for the secret {name:?}"),
                }
            } else if from["fieldRef"]["fieldPath"].as_str() == Some("metadata.name") {
                pod_name.to_owned()
            } else if config.is_mapping() {
                let data = &self.get("ConfigMap", &scalar(&config["name"])?)?["data"];
                scalar(&data[scalar(&config["key"])?.as_str()])?
            } else {
                bail!("{var}: a source the test does not resolve: {from:?}")
            };
            env.insert(var, value);
        }
        Ok(Pod { args, env })
    }

    /// The ScaledObject's postgresql trigger: its query and its target (tasks per worker).
    fn scaler_trigger(&self) -> Result<(String, f64)> {
        let so = self.get("ScaledObject", "rythmiq-worker")?;
        let trigger = so["spec"]["triggers"]
            .as_sequence()
            .into_iter()
            .flatten()
            .find(|t| t["type"].as_str() == Some("postgresql"))
            .context("no postgresql trigger")?;
        let m = &trigger["metadata"];
        Ok((
            scalar(&m["query"])?,
            scalar(&m["targetQueryValue"])?.parse()?,
        ))
    }

    /// The HTTP paths of a Deployment's readiness and liveness probes.
    fn probe_paths(&self, name: &str) -> Result<Vec<String>> {
        let c = self.container("Deployment", name)?;
        ["readinessProbe", "livenessProbe"]
            .iter()
            .map(|p| scalar(&c[*p]["httpGet"]["path"]))
            .collect()
    }
}

fn scalar(v: &Value) -> Result<String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        other => bail!("not a scalar: {other:?}"),
    }
}

fn strings(v: &Value) -> Result<Vec<String>> {
    v.as_sequence()
        .context("not a list")?
        .iter()
        .map(scalar)
        .collect()
}

/// The test's values of the Secrets the manifests name, by (secret, key).
type Secrets = HashMap<(String, String), String>;

/// One container's command line and environment.
struct Pod {
    args: Vec<String>,
    env: HashMap<String, String>,
}

impl Pod {
    /// Overrides a variable the manifests set (see the module's documentation for which).
    fn set(&mut self, var: &str, value: impl Into<String>) -> Result<()> {
        ensure!(
            self.env.contains_key(var),
            "{var} is not set by deploy/k8s/base"
        );
        self.env.insert(var.to_owned(), value.into());
        Ok(())
    }

    /// Starts `rythmiq ARGS` with exactly this environment, logging to `log`.
    fn spawn(&self, log: &Path) -> Result<Child> {
        let file = File::create(log)?;
        Ok(Command::new(BIN)
            .args(&self.args)
            .env_clear()
            .envs(&self.env)
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()?)
    }
}

// -------------------------------------------------------------------------------------------
// The fleet

/// A running pod; killed if the test ends early.
struct Proc {
    child: Child,
    name: String,
    /// The API's address, or the worker's metrics/probe address.
    addr: String,
    started: chrono::DateTime<chrono::Utc>,
}

impl Proc {
    /// The worker's name in the database (`host-pid-suffix`) contains this.
    fn pid_tag(&self) -> String {
        format!("-{}-", self.child.id())
    }

    /// Peak resident memory (VmHWM) in MiB, while it runs.
    fn peak_rss_mib(&self) -> Option<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let kb: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        Some(kb / 1024.0)
    }

    /// SIGTERM, then waits for a clean exit (as the kubelet does, up to the grace period).
    async fn terminate(mut self, grace: Duration) -> Result<()> {
        signal(&self.child, "TERM")?;
        let deadline = Instant::now() + grace;
        loop {
            if let Some(status) = self.child.try_wait()? {
                ensure!(
                    status.success(),
                    "{} exited with {status} on SIGTERM",
                    self.name
                );
                return Ok(());
            }
            ensure!(
                Instant::now() < deadline,
                "{} did not stop within {grace:?}",
                self.name
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Fleet {
    dir: tempfile::TempDir,
    /// Every process's log, kept after the run (the last run's only) for a failure's story.
    logs: PathBuf,
    manifests: Manifests,
    secrets: Secrets,
    /// The superuser, for the test's own reads.
    db: PgPool,
    started: AtomicUsize,
}

impl Fleet {
    fn pod(&self, kind: &str, name: &str, role: &str) -> Result<(Pod, String)> {
        let n = self.started.fetch_add(1, Ordering::Relaxed);
        let pod_name = format!("{name}-{n}");
        let mut pod = self.manifests.pod(kind, name, &pod_name, &self.secrets)?;
        ensure!(
            pod.args.first().map(String::as_str) == Some(role),
            "{name} runs {:?}",
            pod.args
        );
        if role != "migrate" {
            pod.set("RYTHMIQ_STORAGE_BACKEND", "local")?;
            pod.set(
                "RYTHMIQ_STORAGE_DIR",
                self.dir.path().join("objects").display().to_string(),
            )?;
            // Workers run the pipeline and the API checks files: both load the models.
            let models = std::env::var("RYTHMIQ_MODELS_DIR")
                .unwrap_or_else(|_| repo().join("models").display().to_string());
            pod.set("RYTHMIQ_MODELS_DIR", models)?;
        }
        Ok((pod, pod_name))
    }

    async fn start(
        &self,
        mut pod: Pod,
        name: String,
        listen_var: &str,
        ready: &str,
    ) -> Result<Proc> {
        pod.set(listen_var, "127.0.0.1:0")?;
        let log = self.logs.join(format!("{name}.log"));
        let started = chrono::Utc::now();
        let child = pod.spawn(&log)?;
        let mut proc = Proc {
            child,
            name,
            addr: String::new(),
            started,
        };
        proc.addr = logged_address(&log, ready).await?;
        Ok(proc)
    }

    async fn start_api(&self) -> Result<Proc> {
        let (pod, name) = self.pod("Deployment", "rythmiq-api", "api")?;
        self.start(pod, name, "RYTHMIQ_LISTEN", "api listening")
            .await
    }

    async fn start_worker(&self) -> Result<Proc> {
        let (pod, name) = self.pod("Deployment", "rythmiq-worker", "worker")?;
        self.start(
            pod,
            name,
            "RYTHMIQ_METRICS_LISTEN",
            "worker metrics listening",
        )
        .await
    }

    /// Waits until every probe path of the Deployment answers 200 on the process.
    async fn wait_probes(&self, deployment: &str, proc: &Proc) -> Result<()> {
        let client = reqwest::Client::new();
        for path in self.manifests.probe_paths(deployment)? {
            let url = format!("http://{}{path}", proc.addr);
            eventually(60, || async {
                Ok(client
                    .get(&url)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success()))
            })
            .await
            .with_context(|| format!("{} {url} never answered 200", proc.name))?;
        }
        Ok(())
    }

    async fn terminal_jobs(&self) -> Result<i64> {
        Ok(
            sqlx::query_scalar("SELECT count(*) FROM jobs WHERE state IN ('completed', 'failed')")
                .fetch_one(&self.db)
                .await?,
        )
    }

    async fn wait_terminal(&self, total: i64, secs: u64) -> Result<()> {
        eventually(secs, || async { Ok(self.terminal_jobs().await? >= total) })
            .await
            .with_context(|| format!("{total} jobs did not all finish within {secs}s"))
    }
}

/// The autoscaler's view: the ScaledObject's query, run as the scaler's login.
struct Scaler {
    pool: PgPool,
    query: String,
    target: f64,
}

impl Scaler {
    async fn backlog(&self) -> Result<i64> {
        Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(self.query.clone()))
            .fetch_one(&self.pool)
            .await?)
    }

    /// KEDA hands the value to an HPA as an AverageValue metric: ceil(value / target) replicas,
    /// within the bounds.
    fn desired(&self, backlog: i64, min: usize, max: usize) -> usize {
        let want = (backlog as f64 / self.target).ceil();
        (want.max(0.0) as usize).clamp(min, max)
    }
}

// -------------------------------------------------------------------------------------------
// Submitting, as a client behind a load balancer would

/// The bulk of the jobs: small photos and signatures (the fast, cheap part of the mix).
fn inputs() -> Vec<(Vec<u8>, &'static str)> {
    let portals = [
        "neet-ug-2026-photo",
        "neet-ug-2026-signature",
        "jee-main-2026-photo",
        "college-generic-photo",
    ];
    (0..8u32)
        .map(|i| {
            (
                photo_jpeg(360 + 20 * i, 460 + 20 * i, i),
                portals[i as usize % portals.len()],
            )
        })
        .collect()
}

/// `POST /v1/jobs` for a new user, starting at `apis[first]`. A replica that refuses the
/// connection or answers 5xx is skipped for the next, with the same Idempotency-Key, so a
/// request that was stored before its answer was lost is not stored twice.
async fn submit(
    client: &reqwest::Client,
    apis: &[String],
    first: usize,
    file: Vec<u8>,
    portal: &str,
) -> Result<Uuid> {
    let user = Uuid::new_v4();
    let token = common::token_for(user);
    let key = Uuid::new_v4().to_string();
    let mut last = String::new();
    for attempt in 0..40 {
        let api = &apis[(first + attempt) % apis.len()];
        let form = reqwest::multipart::Form::new()
            .part(
                "file",
                reqwest::multipart::Part::bytes(file.clone()).file_name("upload.jpg"),
            )
            .text("portal", portal.to_owned());
        let sent = client
            .post(format!("http://{api}/v1/jobs"))
            .bearer_auth(&token)
            .header("Idempotency-Key", &key)
            .multipart(form)
            .send()
            .await;
        match sent {
            Ok(resp) if resp.status() == reqwest::StatusCode::ACCEPTED => {
                let body: serde_json::Value = resp.json().await?;
                return Ok(body["job_id"].as_str().context("job_id")?.parse()?);
            }
            Ok(resp) if resp.status().is_server_error() => {
                last = format!("{api}: {}", resp.status())
            }
            Ok(resp) => bail!("{api} answered {}: {}", resp.status(), resp.text().await?),
            Err(e) => last = format!("{api}: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("no API took the job: {last}")
}

/// Submits `n` jobs, `parallel` at a time, spread over `apis`; counts each in `done`.
async fn submit_many(
    client: &reqwest::Client,
    apis: &[String],
    n: usize,
    parallel: usize,
    done: &AtomicUsize,
) -> Result<Vec<Uuid>> {
    let inputs = inputs();
    futures::stream::iter(0..n)
        .map(|i| {
            let (file, portal) = inputs[i % inputs.len()].clone();
            async move {
                let id = submit(client, apis, i, file, portal).await?;
                done.fetch_add(1, Ordering::Relaxed);
                anyhow::Ok(id)
            }
        })
        .buffer_unordered(parallel)
        .try_collect()
        .await
}

// -------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_fleet_runs_as_the_manifests_say_and_loses_nothing() -> Result<()> {
    let manifests = Manifests::load()?;
    let (query, target) = manifests.scaler_trigger()?;

    // A Postgres server of our own, with a database owned by a login that is no superuser
    // (CREATEROLE, as a managed Postgres gives): the one that migrates.
    let dir = common::shared_tempdir()?;
    let (pg, _watchdog, _watchdog_stdin) =
        common::start_cluster(&dir.path().join("pg"), None).await?;
    let db = PgPool::connect(&pg.url()).await?;
    sqlx::query("CREATE ROLE rythmiq_owner LOGIN CREATEROLE")
        .execute(&db)
        .await?;
    // Not in the same statement batch: CREATE DATABASE refuses to run inside a transaction.
    sqlx::query("CREATE DATABASE rythmiq OWNER rythmiq_owner")
        .execute(&db)
        .await?;
    db.close().await;
    let url = |login: &str| format!("postgres://{login}@127.0.0.1:{}/rythmiq", pg.port());
    let secret = |name: &str, key: &str, value: String| ((name.to_owned(), key.to_owned()), value);
    let secrets: Secrets = [
        secret("rythmiq-migrate", "DATABASE_URL", url("rythmiq_owner")),
        secret("rythmiq-api", "DATABASE_URL", url("rythmiq_api_login")),
        secret("rythmiq-api", "RYTHMIQ_JWT_SECRET", SECRET.to_owned()),
        secret(
            "rythmiq-worker",
            "DATABASE_URL",
            url("rythmiq_worker_login"),
        ),
        secret(
            "rythmiq-scaler",
            "DATABASE_URL",
            url("rythmiq_scaler_login"),
        ),
        secret("rythmiq-keys", "RYTHMIQ_MASTER_KEY", MASTER_KEY.to_owned()),
        // Unused with the local object store, but the pods reference them.
        secret(
            "rythmiq-s3",
            "RYTHMIQ_S3_ACCESS_KEY_ID",
            "unused".to_owned(),
        ),
        secret(
            "rythmiq-s3",
            "RYTHMIQ_S3_SECRET_ACCESS_KEY",
            "unused".to_owned(),
        ),
    ]
    .into_iter()
    .collect();
    let logs = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fleet-logs");
    let _ = std::fs::remove_dir_all(&logs);
    std::fs::create_dir_all(&logs)?;
    println!("fleet: process logs in {}", logs.display());
    let fleet = Fleet {
        dir,
        logs,
        manifests,
        secrets,
        db: PgPool::connect(&pg.url_for("rythmiq")).await?,
        started: AtomicUsize::new(0),
    };

    // As deploy/README.md's first install: the services' logins (as the owner), then the migrate
    // Job; running logins.sql again afterwards changes nothing.
    let owner = PgPool::connect(&url("rythmiq_owner")).await?;
    let logins = std::fs::read_to_string(repo().join("deploy/db/logins.sql"))?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(logins.clone()))
        .execute(&owner)
        .await?;
    let (migrate, name) = fleet.pod("Job", "rythmiq-migrate", "migrate")?;
    let status = migrate
        .spawn(&fleet.logs.join(format!("{name}.log")))?
        .wait()?;
    ensure!(status.success(), "rythmiq migrate: {status}");
    sqlx::raw_sql(sqlx::AssertSqlSafe(logins))
        .execute(&owner)
        .await?;
    owner.close().await;
    let scaler = Scaler {
        pool: PgPool::connect(&url("rythmiq_scaler_login")).await?,
        query,
        target,
    };
    // The scaler's login reads the backlog and nothing else.
    let denied = sqlx::query("SELECT count(*) FROM jobs")
        .execute(&scaler.pool)
        .await;
    ensure!(
        matches!(&denied, Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42501")),
        "the scaler's login may read jobs: {denied:?}"
    );
    ensure!(
        scaler.backlog().await? == 0,
        "an empty queue has no backlog"
    );

    let client = reqwest::Client::new();
    let run = Instant::now();
    let apis = [fleet.start_api().await?, fleet.start_api().await?];
    for api in &apis {
        fleet.wait_probes("rythmiq-api", api).await?;
    }
    let addrs: Vec<String> = apis.iter().map(|a| a.addr.clone()).collect();

    // Half the jobs wait before any worker runs: three slow ones (a worker will die holding
    // one) and 47 small ones. The scaler sees every one of them.
    let slow = slow_png(7000, 7000);
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(submit(&client, &addrs, i, slow.clone(), "ibps-2026-photo").await?);
    }
    let slow_ids = ids.clone();
    let counted = AtomicUsize::new(0);
    ids.extend(submit_many(&client, &addrs, 47, 4, &counted).await?);
    ensure!(
        scaler.backlog().await? == 50,
        "the scaler's query sees the 50 waiting jobs"
    );

    let mut workers = Vec::new();
    for _ in 0..3 {
        workers.push(fleet.start_worker().await?);
    }

    // The other half arrives while the fleet works, and an API is SIGTERMed halfway through
    // it: clients go on at the other replica.
    let submitted = Arc::new(AtomicUsize::new(0));
    let second_half = {
        let (client, addrs, submitted) = (client.clone(), addrs.clone(), submitted.clone());
        tokio::spawn(async move { submit_many(&client, &addrs, 50, 2, &submitted).await })
    };
    let [api0, api1] = apis;
    let api_stopped = {
        let submitted = submitted.clone();
        tokio::spawn(async move {
            while submitted.load(Ordering::Relaxed) < 25 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            api1.terminate(Duration::from_secs(75)).await
        })
    };

    // SIGKILL a worker in the middle of a job (a slow one, if it can be caught); the
    // Deployment would start another pod. A worker that finished its job just before the
    // signal died idle: then the next one goes.
    let deadline = Instant::now() + Duration::from_secs(120);
    let (killed_tag, lost) = loop {
        let holders: Vec<String> = sqlx::query_scalar(
            "SELECT worker_id FROM jobs WHERE state = 'processing' AND worker_id IS NOT NULL \
             ORDER BY id = ANY($1) DESC",
        )
        .bind(&slow_ids)
        .fetch_all(&fleet.db)
        .await?;
        let holder = |h: &String| workers.iter().position(|w| h.contains(&w.pid_tag()));
        if let Some(i) = holders.iter().find_map(holder) {
            let killed = workers.remove(i);
            let tag = killed.pid_tag();
            signal(&killed.child, "KILL")?;
            drop(killed);
            workers.push(fleet.start_worker().await?);
            // Its job stays `processing` under its name until a reaper re-queues it.
            let lost: Vec<Uuid> = sqlx::query_scalar(
                "SELECT id FROM jobs WHERE state = 'processing' AND worker_id LIKE '%' || $1 || '%'",
            )
            .bind(&tag)
            .fetch_all(&fleet.db)
            .await?;
            if !lost.is_empty() {
                break (tag, lost);
            }
        }
        ensure!(
            Instant::now() < deadline,
            "no worker was killed holding a job"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    for w in &workers {
        fleet.wait_probes("rythmiq-worker", w).await?;
    }
    api_stopped.await??;
    ids.extend(second_half.await??);
    ensure!(ids.len() == 100);

    fleet.wait_terminal(100, 300).await?;
    let (jobs, completed, distinct_outputs): (i64, i64, i64) = sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE state = 'completed'), count(DISTINCT output_key) FROM jobs",
    )
    .fetch_one(&fleet.db)
    .await?;
    ensure!(
        jobs == 100,
        "{jobs} jobs for 100 submissions: a retried request was stored twice"
    );
    ensure!(completed == 100, "{completed} of 100 jobs completed");
    ensure!(distinct_outputs == 100);
    let metric_rows: Vec<(Uuid, i64)> =
        sqlx::query_as("SELECT job_id, count(*) FROM cpu_metrics GROUP BY job_id")
            .fetch_all(&fleet.db)
            .await?;
    ensure!(
        metric_rows.len() == 100 && metric_rows.iter().all(|(_, n)| *n == 1),
        "each job completed exactly once: {metric_rows:?}"
    );
    let tasks: Vec<(String, i32)> = sqlx::query_as("SELECT status, attempts FROM apalis.jobs")
        .fetch_all(&fleet.db)
        .await?;
    ensure!(
        tasks.len() == 100 && tasks.iter().all(|(s, _)| s == "Done"),
        "{tasks:?}"
    );
    // The job the killed worker held ran again elsewhere, once.
    let reruns: Vec<(i32, i64, String)> = sqlx::query_as(
        "SELECT j.attempts, (SELECT count(*) FROM error_events e \
                             WHERE e.job_id = j.id AND e.error_code = 'WORKER_LOST'), j.worker_id \
         FROM jobs j WHERE j.id = ANY($1)",
    )
    .bind(&lost)
    .fetch_all(&fleet.db)
    .await?;
    for (attempts, lost_events, rerun_by) in &reruns {
        ensure!(
            *attempts == 2 && *lost_events == 1 && !rerun_by.contains(&killed_tag),
            "the killed worker's job: attempts {attempts}, WORKER_LOST {lost_events}, by {rerun_by}"
        );
    }
    ensure!(
        scaler.backlog().await? == 0,
        "a drained queue has no backlog"
    );
    // The largest (49 MP) images went through these workers.
    let mut peak_rss = 0f64;
    for w in workers {
        peak_rss = peak_rss.max(w.peak_rss_mib().unwrap_or(0.0));
        w.terminate(Duration::from_secs(45)).await?;
    }
    println!(
        "fleet: 100 jobs through 2 APIs and 3 workers (one SIGKILLed, one API SIGTERMed) in {:.1}s",
        run.elapsed().as_secs_f64()
    );

    // Autoscaling. First, one fixed worker drains a 200-job burst.
    let addrs = vec![api0.addr.clone()];
    let burst = 200;
    let counted = AtomicUsize::new(0);
    submit_many(&client, &addrs, burst, 8, &counted).await?;
    let t0 = Instant::now();
    let fixed = fleet.start_worker().await?;
    fleet.wait_terminal(100 + burst as i64, 600).await?;
    let fixed_drain = t0.elapsed();
    peak_rss = peak_rss.max(fixed.peak_rss_mib().unwrap_or(0.0));
    fixed.terminate(Duration::from_secs(45)).await?;

    // Then the same burst with KEDA's formula on the ScaledObject's query starting and
    // stopping workers between 1 and 4 (a 1 s loop instead of its pollingInterval).
    submit_many(&client, &addrs, burst, 8, &counted).await?;
    let t0 = Instant::now();
    let (min, max) = (1, 4);
    let mut running: Vec<Proc> = Vec::new();
    let mut seen: Vec<(String, chrono::DateTime<chrono::Utc>)> = Vec::new();
    let mut most = 0;
    let mut steps = Vec::new();
    loop {
        let backlog = scaler.backlog().await?;
        if backlog == 0 {
            break;
        }
        ensure!(
            t0.elapsed() < Duration::from_secs(600),
            "the autoscaled burst did not drain"
        );
        let want = scaler.desired(backlog, min, max);
        if want != running.len() {
            steps.push(format!(
                "{:.1}s backlog {backlog} -> {want}",
                t0.elapsed().as_secs_f64()
            ));
        }
        while running.len() < want {
            let w = fleet.start_worker().await?;
            seen.push((w.pid_tag(), w.started));
            running.push(w);
        }
        while running.len() > want {
            if let Some(w) = running.pop() {
                peak_rss = peak_rss.max(w.peak_rss_mib().unwrap_or(0.0));
                w.terminate(Duration::from_secs(45)).await?;
            }
        }
        most = most.max(running.len());
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let scaled_drain = t0.elapsed();
    for w in running {
        peak_rss = peak_rss.max(w.peak_rss_mib().unwrap_or(0.0));
        w.terminate(Duration::from_secs(45)).await?;
    }
    let total = 100 + 2 * burst as i64;
    ensure!(fleet.terminal_jobs().await? == total);
    let (completed, once): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM jobs WHERE state = 'completed'), \
                (SELECT count(*) FROM (SELECT job_id FROM cpu_metrics GROUP BY job_id HAVING count(*) = 1) t)",
    )
    .fetch_one(&fleet.db)
    .await?;
    ensure!(
        completed == total && once == total,
        "{completed} completed, {once} exactly once, of {total}"
    );
    ensure!(most > 1, "the autoscaler never scaled past one worker");

    // Cold start: from a worker's start to its first completed job.
    let mut cold = Vec::new();
    for (tag, started) in &seen {
        let first: Option<chrono::DateTime<chrono::Utc>> = sqlx::query_scalar(
            "SELECT min(finished_at) FROM jobs WHERE worker_id LIKE '%' || $1 || '%'",
        )
        .bind(tag)
        .fetch_one(&fleet.db)
        .await?;
        if let Some(first) = first {
            cold.push((first - *started).num_milliseconds() as f64 / 1000.0);
        }
    }
    let cpu: Option<f64> = sqlx::query_scalar("SELECT avg(total_cpu_seconds) FROM cpu_metrics")
        .fetch_one(&fleet.db)
        .await?;
    let cpu = cpu.unwrap_or_default();
    println!(
        "fleet: scaler query `{}`, targetQueryValue {}",
        scaler.query, scaler.target
    );
    println!(
        "fleet: {burst}-job burst drained by one fixed worker in {:.1}s",
        fixed_drain.as_secs_f64()
    );
    println!(
        "fleet: {burst}-job burst drained by 1..{max} autoscaled workers in {:.1}s (peak {most}): {}",
        scaled_drain.as_secs_f64(),
        steps.join(", ")
    );
    println!("fleet: worker start to first completed job: {cold:?} s");
    println!("fleet: worker peak RSS {peak_rss:.0} MiB; mean CPU per job {cpu:.3} s");
    api0.terminate(Duration::from_secs(75)).await?;
    Ok(())
}
