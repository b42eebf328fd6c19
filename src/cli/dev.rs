//! `rythmiq dev`: the embedded default. A private Postgres cluster, local object storage, the API
//! and N workers in one process, all state under one data dir; Ctrl-C stops everything.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use rythmiq_embedded_pg::{EmbeddedOptions, EmbeddedPostgres};
use rythmiq_shared::config::{
    ApiArgs, DevLogArgs, JwtSecretArgs, MasterKeyArgs, ObjectStoreArgs, PoolArgs, WorkerArgs,
};
use rythmiq_shared::db;
use rythmiq_shared::storage::Storage;
use tokio_util::sync::CancellationToken;

/// Name of the database `dev` keeps its data in.
const DATABASE: &str = "rythmiq";

/// `rythmiq dev`: the production settings, except that the database, the local object store,
/// the JWT secret and (unless RYTHMIQ_MASTER_KEY is set) the master keys live in the data dir.
#[derive(Args)]
pub struct DevArgs {
    /// Address the API listens on (`0.0.0.0:8080` lets a phone on the same network open the
    /// student page).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: String,
    /// Where the cluster, the object store and the generated secret live.
    #[arg(long, default_value = ".rythmiq")]
    data_dir: PathBuf,
    /// Worker runtimes to start (each runs one job at a time). Default: number of cores.
    #[arg(long)]
    workers: Option<usize>,
    #[command(flatten)]
    secret: JwtSecretArgs,
    #[command(flatten)]
    api: ApiArgs,
    #[command(flatten)]
    worker: WorkerArgs,
    #[command(flatten)]
    pool: PoolArgs,
    #[command(flatten)]
    store: ObjectStoreArgs,
    #[command(flatten)]
    keys: MasterKeyArgs,
    #[command(flatten)]
    pub log: DevLogArgs,
}

/// The student page's sign-in links: the token travels in the URL fragment, which the browser
/// never sends to the server; the page keeps it in `sessionStorage`. On a wildcard address,
/// one link per address of this machine, so a phone on the same network can open it.
fn page_links(addr: std::net::SocketAddr, token: &str) -> String {
    let hosts: Vec<std::net::IpAddr> = if addr.ip().is_unspecified() {
        let mut ips = vec![std::net::IpAddr::from([127, 0, 0, 1])];
        ips.extend(lan_addresses(addr.is_ipv6()));
        ips
    } else {
        vec![addr.ip()]
    };
    hosts
        .into_iter()
        .map(|ip| {
            let host = std::net::SocketAddr::new(ip, addr.port());
            format!("  http://{host}/#token={token}")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// This machine's non-loopback addresses (IPv4, and IPv6 global ones when listening on `[::]`).
fn lan_addresses(ipv6: bool) -> Vec<std::net::IpAddr> {
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    let mut ips: Vec<std::net::IpAddr> = addrs
        .filter_map(|a| a.address)
        .filter_map(|a| {
            if let Some(v4) = a.as_sockaddr_in() {
                Some(std::net::IpAddr::V4(v4.ip()))
            } else if ipv6 {
                // Link-local addresses need a zone to be reached; only global ones are listed.
                a.as_sockaddr_in6()
                    .map(|v6| v6.ip())
                    .filter(|ip| (ip.segments()[0] & 0xe000) == 0x2000)
                    .map(std::net::IpAddr::V6)
            } else {
                None
            }
        })
        .filter(|ip| !ip.is_loopback())
        .collect();
    ips.sort();
    ips.dedup();
    ips
}

pub async fn run(args: DevArgs) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating {}", args.data_dir.display()))?;
    let data_dir = std::fs::canonicalize(&args.data_dir)?;
    let secret = super::jwt_secret(&args.secret, &data_dir, true)?;

    tracing::info!(data_dir = %data_dir.join("pg").display(), "starting embedded postgres");
    let pg = EmbeddedPostgres::start(EmbeddedOptions {
        data_dir: data_dir.join("pg"),
        port: None,
        fast: false,
        keep_running_on_drop: false,
    })
    .await
    .context("starting the embedded Postgres cluster")?;
    let outcome = serve(&args, &data_dir, &pg, secret).await;
    pg.stop()
        .await
        .context("stopping the embedded Postgres cluster")?;
    outcome
}

async fn serve(
    args: &DevArgs,
    data_dir: &std::path::Path,
    pg: &EmbeddedPostgres,
    secret: String,
) -> anyhow::Result<ExitCode> {
    if !pg.database_exists(DATABASE).await? {
        pg.create_database(DATABASE).await?;
    }
    let url = pg.url_for(DATABASE);
    let admin = db::connect(&url, 2).await?;
    db::migrate(&admin).await.context("migrating")?;
    admin.close().await;
    // The API and the workers act as their own database roles, as in production.
    let pool_size = args.pool.db_pool_size;
    let api_pool = db::connect_as(&url, pool_size, db::Role::Api).await?;
    let worker_pool = db::connect_as(&url, pool_size, db::Role::Worker).await?;

    // The embedded default: a key ring generated into the data dir unless RYTHMIQ_MASTER_KEY
    // is set.
    let keys = args.keys.key_ring_or_data_dir(data_dir)?;
    let storage = Storage::open(
        args.store.settings(data_dir.join("objects")),
        &args.store.backend()?,
        std::sync::Arc::new(keys),
    )?;

    let api_settings = args.api.settings(args.listen.clone(), secret.clone())?;
    // Each worker runtime runs one job at a time; `--workers` says how many run.
    let worker_settings = args.worker.settings(1)?;
    let workers = args
        .workers
        .unwrap_or_else(rythmiq_shared::config::available_cores);

    let shutdown = CancellationToken::new();
    let listener = tokio::net::TcpListener::bind(&api_settings.listen)
        .await
        .with_context(|| format!("binding {}", api_settings.listen))?;
    let addr = listener.local_addr()?;
    // One engine for every worker runtime of this process, and the API's file checks: the
    // models load once.
    let ocr = super::serve::load_ocr(&args.worker.ocr.models, &worker_settings, workers)?;
    let state = rythmiq_api::AppState::new(api_pool.clone(), storage.clone(), api_settings)
        .with_models(ocr.clone());
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn({
        let shutdown = shutdown.clone();
        async move {
            rythmiq_api::serve(listener, state, shutdown)
                .await
                .map_err(anyhow::Error::from)
        }
    });
    let startup = rythmiq_worker::StartupCpu::so_far();
    for _ in 0..workers {
        let worker = rythmiq_worker::Worker::new(
            worker_pool.clone(),
            rythmiq_worker::job::Pipeline::new(storage.clone(), ocr.clone()),
            worker_settings.clone(),
        )
        .with_startup_cpu(startup.clone());
        let shutdown = shutdown.clone();
        tasks.spawn(async move { worker.run(shutdown).await.map_err(anyhow::Error::from) });
    }

    let user = uuid::Uuid::new_v4();
    let token = rythmiq_shared::auth::mint(&secret, user, 86_400)?;
    let dir = data_dir.display();
    let page = page_links(addr, &token);
    println!(
        "rythmiq dev is ready: http://{addr}  ({workers} workers, data in {dir})\n\
         \n\
         The student page, signed in (valid 24 h; keep the link to yourself):\n{page}\n\
         \n\
         Try it:\n\
         \x20 rythmiq submit photo.jpg --portal neet-ug-2026-photo --server http://{addr} --data-dir {dir}\n\
         \x20 curl -H 'Authorization: Bearer {token}' -F file=@photo.jpg -F portal=neet-ug-2026-photo http://{addr}/v1/jobs\n\
         \n\
         Portal rules: http://{addr}/v1/portal-schemas   API description: http://{addr}/openapi.json\n\
         Database (superuser, loopback only): {url}\n\
         Press Ctrl-C to stop (Postgres stops too)."
    );

    tokio::select! {
        () = super::shutdown_signal() => tracing::info!("shutting down"),
        Some(res) = tasks.join_next() => {
            // A component ended on its own: report it and bring the rest down.
            if let Ok(Err(e)) = res { tracing::error!(error = %e, "a component failed"); }
        }
    }
    shutdown.cancel();
    while tasks.join_next().await.is_some() {}
    api_pool.close().await;
    worker_pool.close().await;
    Ok(ExitCode::SUCCESS)
}
