//! The `relay-operator` binary: `run`, `crd`, `render`, `import`, `rollback`, `version`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::sync::Arc;

use relay_operator::controller::restart_budget::RestartBudget;
use relay_operator::controller::runner::{self, RunOptions};
use relay_operator::hook::{HookVia, ReloadOptions, Transport};
use relay_operator::import::{self, EnvTarget, FileReader, ImportOptions};
use relay_operator::ops::{http, leader, metrics::Metrics, shutdown, telemetry};
use relay_operator::{crdgen, manifest};

/// jemalloc, with a background thread that hands freed pages back to the system after 1 s
/// (`.cargo/config.toml`). A start over 10,000 services decodes and reconciles them all at
/// once; glibc's malloc kept what that burst freed between live objects (a restarted
/// operator settled at 175 MiB against 144 MiB for the first start), jemalloc returns it:
/// 143 MiB right after the restart, 127 MiB after a first start (BENCHMARKS.md).
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Kubernetes operator for long-lived network services.
#[derive(Parser)]
#[command(name = "relay-operator", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controller.
    Run(RunArgs),
    /// Print the CustomResourceDefinitions (or write one file per kind with --dir).
    Crd {
        /// Write `<crd-name>.yaml` files into this directory instead of printing.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Print the Pods, Services, PVCs and ConfigMaps the operator would create (offline).
    Render(RenderArgs),
    /// Convert a docker-compose file into RelayServices, HealthPolicies and Secret templates
    /// (stdout) with a report of every compose key (stderr).
    Import(ImportArgs),
    /// Roll a RelayService back to a kept revision (through the kubeconfig's cluster): sets
    /// the annotation relayops.io/rollback-to and waits for the operator to apply it.
    Rollback(RollbackArgs),
    /// Print the version.
    Version,
}

/// Options of `relay-operator render`.
#[derive(clap::Args)]
struct RenderArgs {
    /// Manifest file, directory or `-` for standard input (repeatable); multi-document YAML.
    #[arg(short = 'f', long = "filename", value_name = "FILE|DIR|-", required = true)]
    files: Vec<PathBuf>,
    /// An object the inputs reference but that is created elsewhere: `KIND/NAME` or
    /// `NAMESPACE/KIND/NAME` (kinds secret, healthpolicy, relayservice; `*` matches any run
    /// of characters, e.g. `secret/*`). Repeatable.
    #[arg(long = "assume-exists", value_name = "[NAMESPACE/]KIND/NAME")]
    assume_exists: Vec<manifest::AssumeExists>,
    /// Output format: a YAML stream, or one JSON `List`.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Yaml)]
    output: OutputFormat,
}

/// Output format of `render`.
#[derive(Clone, Copy, clap::ValueEnum)]
enum OutputFormat {
    /// `---`-separated documents, each headed by `# Source: Kind namespace/name`.
    Yaml,
    /// `{"apiVersion": "v1", "kind": "List", "items": [...]}`.
    Json,
}

/// Options of `relay-operator import`.
#[derive(clap::Args)]
struct ImportArgs {
    /// The compose file; `-` reads stdin.
    #[arg(short = 'f', long = "filename")]
    file: PathBuf,
    /// Namespace written into every object (default: none, kubectl's current namespace).
    #[arg(long)]
    namespace: Option<String>,
    /// Variables for `${VAR}` interpolation, in dotenv format. The process environment is
    /// never read.
    #[arg(long)]
    env_file: Option<PathBuf>,
    /// Import the services of this compose profile too (repeatable).
    #[arg(long = "profile")]
    profiles: Vec<String>,
    /// Where `environment` goes: `config` (config.data, a mounted file the reload hook can
    /// apply) or `env` (container environment variables, as compose sets them).
    #[arg(long, value_enum, default_value_t = EnvTarget::Config)]
    env_into: EnvTarget,
}

/// Options of `relay-operator rollback`.
#[derive(clap::Args)]
struct RollbackArgs {
    /// The RelayService.
    service: String,
    /// Its namespace (default: the kubeconfig context's).
    #[arg(short = 'n', long)]
    namespace: Option<String>,
    /// The revision to restore (see `status.revisions`); default: the one applied before
    /// the current one.
    #[arg(long = "to-revision", value_parser = clap::value_parser!(i64).range(1..))]
    to_revision: Option<i64>,
    /// How long to wait for the operator to apply it, e.g. `60s` or `2m`; `0s` returns once
    /// the request is set.
    #[arg(long, default_value = "60s")]
    timeout: relay_operator::api::Duration,
}

/// Options of `relay-operator run` (each also settable by environment variable).
#[derive(clap::Args)]
struct RunArgs {
    /// Namespaces to watch, comma-separated; all when empty.
    #[arg(long, env = "RELAY_NAMESPACES", value_delimiter = ',')]
    namespaces: Vec<String>,
    /// Namespace whose Secrets the operator may read (repeatable; the variable takes a
    /// comma-separated list). Default: the watched namespaces with --namespaces, none when
    /// watching all. Secrets are never listed cluster-wide.
    #[arg(long = "secret-namespace", env = "RELAY_SECRET_NAMESPACES", value_delimiter = ',')]
    secret_namespaces: Vec<String>,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, env = "RELAY_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    metrics_addr: SocketAddr,
    /// Log format.
    #[arg(long, env = "RELAY_LOG_FORMAT", value_enum, default_value_t = telemetry::LogFormat::Text)]
    log_format: telemetry::LogFormat,
    /// Log filter, e.g. `info` or `info,kube=debug`.
    #[arg(long, env = "RELAY_LOG_LEVEL", default_value = "info")]
    log_level: String,
    /// Refuse to create pods for images with mutable tags (`:latest` or none).
    #[arg(long, env = "RELAY_REQUIRE_PINNED_IMAGES")]
    require_pinned_images: bool,
    /// Hold a coordination.k8s.io Lease before reconciling (several replicas).
    #[arg(long, env = "RELAY_LEADER_ELECTION")]
    leader_election: bool,
    /// Name of the Lease.
    #[arg(long, env = "RELAY_LEASE_NAME", default_value = "relay-operator")]
    lease_name: String,
    /// Namespace of the Lease (defaults to the operator's own, from POD_NAMESPACE).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    /// Most reload hook calls in flight at once, over all services.
    #[arg(long, env = "RELAY_HOOK_CONCURRENCY", default_value_t = relay_operator::hook::DEFAULT_CONCURRENCY,
          value_parser = clap::value_parser!(usize))]
    hook_concurrency: usize,
    /// Most reload hook calls of one service in flight at once (within --hook-concurrency).
    #[arg(long, env = "RELAY_HOOK_CONCURRENCY_PER_SERVICE",
          default_value_t = relay_operator::hook::DEFAULT_CONCURRENCY_PER_SERVICE,
          value_parser = clap::value_parser!(usize))]
    hook_concurrency_per_service: usize,
    /// How reload hooks are reached: `pod-ip` (direct, in-cluster) or `proxy` (through the
    /// API server's pod proxy, e.g. when the operator runs outside the cluster).
    #[arg(long, env = "RELAY_HOOK_VIA", value_enum, default_value_t = HookVia::PodIp)]
    hook_via: HookVia,
    /// Most pod restarts in flight at once over all services (template rollouts,
    /// `onFailure: Restart`, rollbacks); a restart holds its slot until the replacement pod
    /// is Ready. Unlimited when unset.
    #[arg(long, env = "RELAY_MAX_CONCURRENT_RESTARTS", value_parser = clap::value_parser!(u32).range(1..))]
    max_concurrent_restarts: Option<u32>,
}

fn run(args: RunArgs) -> Result<(), String> {
    telemetry::init(args.log_format, &args.log_level).map_err(|e| e.to_string())?;
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    runtime.block_on(run_async(args))
}

async fn run_async(args: RunArgs) -> Result<(), String> {
    let metrics = Arc::new(Metrics::new().map_err(|e| e.to_string())?);
    if !args.leader_election {
        // Leads from the first scrape on.
        leader::act_alone(&metrics);
    }
    let state = http::HttpState::new(metrics.clone());
    let ready = state.ready.clone();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stop_tx = Arc::new(stop_tx);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    };
    let server = tokio::spawn(http::serve(args.metrics_addr, state, stopped()));
    let stop = stop_tx.clone();
    tokio::spawn(async move {
        shutdown::signal().await;
        tracing::info!("shutting down");
        stop.send_replace(true);
    });

    // Both ring and aws-lc-rs reach rustls through dependencies; pick one explicitly, or
    // building the client panics. An error only means a provider is already installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
    // Serving /metrics does not need the API server; the controllers retry until it is
    // reachable (joining a leader election needs it at start-up).
    let client =
        kube::Client::try_default().await.map_err(|e| format!("cannot build Kubernetes client: {e}"))?;
    let lease = if args.leader_election {
        let config = leader::LeaderConfig::new(&args.lease_namespace, &args.lease_name);
        let mut lease =
            leader::acquire(client.clone(), &config, metrics.clone()).await.map_err(|e| e.to_string())?;
        tokio::select! {
            led = lease.wait_until_leader() => led.map_err(|e| e.to_string())?,
            () = stopped() => {
                // Stopped while following: leave the election; there is nothing to hand over.
                return lease.release().await.map_err(|e| e.to_string());
            }
        }
        // Losing the lease makes this replica unready and stops it; its Deployment restarts
        // it as a follower.
        let mut watcher = lease.subscribe();
        let (stop, ready) = (stop_tx.clone(), ready.clone());
        let on_loss = tokio::spawn(async move {
            let _ = watcher.wait_for(|leader| !*leader).await;
            ready.store(false, std::sync::atomic::Ordering::SeqCst);
            tracing::warn!("lost the leader lease; stopping");
            stop.send_replace(true);
        });
        Some((lease, on_loss))
    } else {
        None
    };
    let transport = Transport::from_via(args.hook_via, client.clone()).map_err(|e| e.to_string())?;
    let reload = ReloadOptions::new(args.hook_concurrency, args.hook_concurrency_per_service, transport);
    // One budget for every watched namespace's controllers.
    let restarts = Arc::new(RestartBudget::new(args.max_concurrent_restarts.map(|n| n as usize)));
    let namespaces: Vec<Option<String>> =
        if args.namespaces.is_empty() { vec![None] } else { args.namespaces.into_iter().map(Some).collect() };
    // Ready once the caches of every watched namespace have synced.
    let unsynced = Arc::new(std::sync::atomic::AtomicUsize::new(namespaces.len()));
    let controllers = namespaces.into_iter().map(|namespace| {
        let (unsynced, ready) = (unsynced.clone(), ready.clone());
        let synced = move || {
            if unsynced.fetch_sub(1, std::sync::atomic::Ordering::SeqCst) == 1 {
                ready.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        };
        let options = RunOptions {
            secret_namespaces: runner::secret_namespaces(namespace.as_deref(), &args.secret_namespaces),
            namespace,
            require_pinned_images: args.require_pinned_images,
            instance: std::env::var("POD_NAME").ok(),
            reload: reload.clone(),
            restarts: restarts.clone(),
        };
        runner::run(client.clone(), options, synced, metrics.clone(), stopped())
    });
    // Controllers finish their running reconciles on shutdown; one stuck on an unreachable
    // API server must not hold the process past the kubelet's grace period.
    let give_up = async {
        stopped().await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    tokio::select! {
        _ = futures::future::join_all(controllers) => {}
        () = give_up => tracing::warn!(grace = ?SHUTDOWN_GRACE, "controllers did not stop in time; exiting"),
    }
    if let Some((lease, on_loss)) = lease {
        // Hand the lease back now, so a follower takes over at once instead of when it expires
        // (`release` gives up after `leader::RELEASE_TIMEOUT`).
        on_loss.abort();
        if let Err(err) = lease.release().await {
            tracing::warn!(error = %err, "could not release the leader lease");
        }
    }
    match tokio::time::timeout(SHUTDOWN_GRACE, server).await {
        Ok(served) => served.map_err(|e| e.to_string())?.map_err(|e| e.to_string()),
        Err(_) => Ok(()),
    }
}

/// How long shutdown waits for running work: well inside the default 30 s
/// `terminationGracePeriodSeconds`.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

fn main() -> ExitCode {
    let cli = Cli::parse();
    let json_logs =
        matches!(&cli.command, Command::Run(args) if args.log_format == telemetry::LogFormat::Json);
    let result = match cli.command {
        Command::Run(args) => run(args),
        Command::Crd { dir: Some(dir) } => crdgen::write_crd_dir(&dir).map_err(|e| e.to_string()),
        Command::Crd { dir: None } => {
            crdgen::crds_yaml().map_err(|e| e.to_string()).and_then(|y| write_stdout(&y))
        }
        Command::Render(args) => render(&args),
        Command::Import(args) => import_compose(args),
        Command::Rollback(args) => rollback(args),
        Command::Version => write_stdout(&format!("relay-operator {}\n", env!("CARGO_PKG_VERSION"))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // A log collector reading `--log-format json` gets the fatal error as JSON too.
        Err(message) if json_logs => {
            eprintln!(
                "{}",
                serde_json::json!({"level": "ERROR", "target": "relay_operator", "message": message})
            );
            ExitCode::FAILURE
        }
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// `render -f …`: everything or nothing — output is printed only when every input rendered;
/// otherwise every error is printed, one per line.
fn render(args: &RenderArgs) -> Result<(), String> {
    let options = manifest::RenderOptions { assume_exists: args.assume_exists.clone() };
    let rendering = match manifest::render_paths(&args.files, &options) {
        Ok(rendering) => rendering,
        Err(errors) => {
            let (last, others) = errors.0.split_last().ok_or("render failed")?;
            for error in others {
                eprintln!("error: {error}");
            }
            return Err(last.to_string());
        }
    };
    let out = match args.output {
        OutputFormat::Yaml => {
            let mut out = String::new();
            for object in &rendering.objects {
                let yaml = serde_saphyr::to_string(&object.value).map_err(|e| e.to_string())?;
                out.push_str(&format!("---\n# Source: {}\n{yaml}", object.owner));
            }
            out
        }
        OutputFormat::Json => {
            let items: Vec<&serde_json::Value> = rendering.objects.iter().map(|o| &o.value).collect();
            let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items});
            serde_json::to_string_pretty(&list).map_err(|e| e.to_string())? + "\n"
        }
    };
    for note in &rendering.notes {
        eprintln!("note: {note}");
    }
    for warning in &rendering.warnings {
        eprintln!("warning: {warning}");
    }
    write_stdout(&out)
}

/// `rollback SERVICE`: set the annotation and wait for the operator's answer.
fn rollback(args: RollbackArgs) -> Result<(), String> {
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    runtime.block_on(async {
        // As in `run`: pick the TLS provider before building the client.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client =
            kube::Client::try_default().await.map_err(|e| format!("cannot build Kubernetes client: {e}"))?;
        let request = relay_operator::rollback::RollbackRequest {
            namespace: args.namespace.unwrap_or_else(|| client.default_namespace().to_owned()),
            name: args.service,
            to_revision: args.to_revision,
            timeout: args.timeout.into(),
        };
        let done = relay_operator::rollback::rollback(client, &request).await.map_err(|e| e.to_string())?;
        write_stdout(&format!("{done}\n"))
    })
}

/// Reads `env_file:` entries relative to the compose file's directory.
struct DirReader(PathBuf);

impl FileReader for DirReader {
    fn read(&self, path: &str) -> Result<String, String> {
        std::fs::read_to_string(self.0.join(path)).map_err(|e| e.to_string())
    }
}

/// `import -f …`: manifests on stdout, the report on stderr; fails only on unreadable input.
fn import_compose(args: ImportArgs) -> Result<(), String> {
    let read = |path: &PathBuf| {
        if path.as_os_str() == "-" {
            std::io::read_to_string(std::io::stdin())
        } else {
            std::fs::read_to_string(path)
        }
        .map_err(|e| format!("{}: cannot read: {e}", path.display()))
    };
    let text = read(&args.file)?;
    let mut options = ImportOptions {
        namespace: args.namespace,
        profiles: args.profiles,
        env_target: args.env_into,
        ..ImportOptions::default()
    };
    if let Some(env_file) = &args.env_file {
        let env = std::fs::read_to_string(env_file)
            .map_err(|e| format!("{}: cannot read: {e}", env_file.display()))?;
        options.variables = import::parse_env_file(&env);
    }
    let base = match args.file.parent() {
        Some(dir) if args.file.as_os_str() != "-" && !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let source = args.file.display().to_string();
    let imported =
        import::import_compose(&source, &text, &options, &DirReader(base)).map_err(|e| e.to_string())?;
    let yaml = imported.to_yaml()?;
    eprint!("{}", imported.report);
    write_stdout(&yaml)
}

/// Write the command's output. A reader that stopped early (`… | head`) is not an error:
/// `print!` would panic on the broken pipe.
fn write_stdout(text: &str) -> Result<(), String> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(format!("cannot write the output: {e}")),
        _ => Ok(()),
    }
}
