//! `webhook-server [--config FILE]`: loads settings, starts tracing, runs the
//! HTTP server and the dispatcher, and drains both on SIGINT/SIGTERM.

use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix_http::body::BoxBody;
use actix_http::{HttpMessage as _, HttpService, Protocol, Request, Response, StatusCode, header};
use actix_service::{IntoServiceFactory as _, ServiceFactoryExt as _, fn_service, map_config};
use actix_web::App;
use actix_web::dev::AppConfig;
use anyhow::{Context as _, bail};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::{FilterExt as _, filter_fn};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{Layer as _, fmt};
use webhook_server::answer_deadline::AnswerDeadline;
use webhook_server::dispatch::DispatchConfig;
use webhook_server::metrics::{Metrics, Outcome};
use webhook_server::platforms::Platforms;
use webhook_server::platforms::Verifiers;
use webhook_server::settings::{LogFormat, Settings, check_log_filter};
use webhook_server::{AppState, build_handlers, configure, open_store};

// glibc malloc showed up as a quarter of the request path's CPU in profiles
// (many small allocations across two worker threads); mimalloc halves that.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const USAGE: &str = "\
webhook-server: receives Shopify and WooCommerce product webhooks, verifies
them, stores them once and hands them to the configured sinks.

Usage: webhook-server [--config FILE]
       webhook-server copy-store --to URL [--to-schema NAME] [--config FILE]

  -c, --config FILE  TOML configuration (see docs/configuration.md)
  -h, --help         this text
  -V, --version      the version

copy-store copies every event of the configured store (database.url) into
the store at URL (sqlite://PATH or postgres://...; --to-schema for its
PostgreSQL schema): history, deduplication and undelivered events, as they
are. Stop the server first. Running it again copies only what is missing.
See docs/deployment.md.

Configuration: built-in defaults, then FILE, then the environment
(CATALOG_<SECTION>__<KEY>, and APP_HOST, APP_PORT, SHOPIFY_WEBHOOK_SECRET,
SHOPIFY_CLIENT_SECRET, WOOCOMMERCE_WEBHOOK_SECRET, CATALOG_DATABASE_URL,
CATALOG_ADMIN_TOKEN);
a .env file in the working directory is read first. RUST_LOG, when set,
replaces log.level.
";

/// What the command line asks for.
enum Invocation {
    /// Run the server.
    Serve { config: Option<PathBuf> },
    /// Copy the configured store's events into another store.
    CopyStore {
        config: Option<PathBuf>,
        to: String,
        to_schema: Option<String>,
    },
}

fn parse_args() -> anyhow::Result<Invocation> {
    // `--key value` or `--key=value`, each at most once.
    fn set(
        slot: &mut Option<String>,
        name: &str,
        inline: Option<String>,
        args: &mut impl Iterator<Item = String>,
    ) -> anyhow::Result<()> {
        if slot.is_some() {
            bail!("{name} is given twice");
        }
        *slot = Some(match inline {
            Some(v) => v,
            None => args
                .next()
                .with_context(|| format!("{name} needs a value; see --help"))?,
        });
        Ok(())
    }
    let mut args = std::env::args().skip(1);
    let mut copy = false;
    let mut config = None;
    let mut to = None;
    let mut to_schema = None;
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, v)) if flag.starts_with("--") => (flag.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        match flag.as_str() {
            // The command, before or after the options.
            "copy-store" if !copy => copy = true,
            "--config" | "-c" => set(&mut config, "--config", inline, &mut args)?,
            "--to" => set(&mut to, "--to", inline, &mut args)?,
            "--to-schema" => set(&mut to_schema, "--to-schema", inline, &mut args)?,
            "--help" | "-h" => {
                let _ = std::io::stdout().write_all(USAGE.as_bytes());
                std::process::exit(0);
            }
            "--version" | "-V" => {
                let version = concat!("webhook-server ", env!("CARGO_PKG_VERSION"), "\n");
                let _ = std::io::stdout().write_all(version.as_bytes());
                std::process::exit(0);
            }
            other => bail!(
                "unknown argument {other:?}; usage: webhook-server [--config FILE], or webhook-server copy-store --to URL (--help)"
            ),
        }
    }
    let config = config.map(PathBuf::from);
    if copy {
        let to = to.context("copy-store needs --to URL (the store to copy into); see --help")?;
        Ok(Invocation::CopyStore {
            config,
            to,
            to_schema,
        })
    } else if to.is_some() || to_schema.is_some() {
        bail!(
            "--to and --to-schema belong to copy-store: webhook-server copy-store --to URL (--help)"
        )
    } else {
        Ok(Invocation::Serve { config })
    }
}

/// Keeps SIGHUP from stopping the server. Its default action ends the
/// process at once, with no drain: requests in flight were cut (an outside
/// audit). The server does not reload its configuration, so a `kill -HUP`
/// meant as a reload, or the hangup of the terminal it runs in, is logged
/// and otherwise ignored.
fn ignore_hangups() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::hangup()) {
            Ok(mut hup) => {
                tokio::spawn(async move {
                    while hup.recv().await.is_some() {
                        tracing::warn!(
                            "SIGHUP ignored: the server does not reload its configuration; restart it to apply changes (SIGTERM stops it gracefully)"
                        );
                    }
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGHUP; a hangup will stop the server")
            }
        }
    }
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; Ctrl-C only");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Whether an event may be written whatever the filter says: async-nats
/// prints the server address with its user and password (or token) at
/// debug, on every connection attempt, so its lines stop at `info`. A cap,
/// not a level: with a `warn` filter its `info` lines stay out too. And
/// sqlx warns of a PostgreSQL URL parameter it does not know with its value
/// (`sslpassword=...`, a mistyped `passwrd=...`): those lines never.
fn not_a_credential_leak(meta: &tracing::Metadata<'_>) -> bool {
    let target = meta.target();
    let nats_detail = target.starts_with("async_nats") && *meta.level() > tracing::Level::INFO;
    !nats_detail && !target.starts_with("sqlx_postgres::options")
}

/// Whether an event is not actix-http's report of a malformed request:
/// its HTTP/1 dispatcher logs anyone's protocol errors (a repeated
/// `Content-Length`, a bad `Transfer-Encoding`) at `error`, which this
/// server keeps for its own failures (the client gets its 400 anyway).
/// A filter that names `actix_http` gets them back.
fn not_client_noise(meta: &tracing::Metadata<'_>) -> bool {
    !meta.target().starts_with("actix_http::h1::dispatcher")
}

fn init_tracing(settings: &Settings) -> anyhow::Result<()> {
    // RUST_LOG replaces log.level; a filter that does not parse stops
    // start-up rather than falling back (or silencing everything).
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.trim().is_empty() => {
            check_log_filter(&v).context("RUST_LOG is not a log filter")?;
            v
        }
        _ => settings.log.level.clone(),
    };
    let wants_actix_http = filter.contains("actix_http");
    let filter = EnvFilter::try_new(&filter)
        .context("log filter")?
        .and(filter_fn(not_a_credential_leak))
        .and(filter_fn(move |meta| {
            wants_actix_http || not_client_noise(meta)
        }));
    // Colours only on a terminal: escape codes in a file or a journal are
    // noise.
    let ansi = std::io::stdout().is_terminal();
    match settings.log.format {
        LogFormat::Json => tracing_subscriber::registry()
            .with(fmt::layer().json().with_ansi(ansi).with_filter(filter))
            .init(),
        LogFormat::Text => tracing_subscriber::registry()
            .with(fmt::layer().with_ansi(ansi).with_filter(filter))
            .init(),
    }
    Ok(())
}

/// Exit status: 0 after a clean shutdown, 2 for a command line it cannot
/// read, 1 for a configuration it refuses or a failure while running, and
/// 128 + the signal's number for a copy-store a signal stopped. The
/// error goes to stderr as a message and its causes, never with a
/// backtrace (`RUST_BACKTRACE` is for panics, not for refused settings).
fn main() -> std::process::ExitCode {
    let invocation = match parse_args() {
        Ok(invocation) => invocation,
        Err(e) => {
            eprintln!("Error: {e:#}");
            return std::process::ExitCode::from(2);
        }
    };
    let system = actix_web::rt::System::new();
    let done = match invocation {
        Invocation::Serve { config } => system.block_on(run(config)),
        Invocation::CopyStore {
            config,
            to,
            to_schema,
        } => system.block_on(copy(config.as_deref(), to, to_schema)),
    };
    match done {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            match e.downcast_ref::<Interrupted>() {
                Some(i) => std::process::ExitCode::from(128 + i.signal),
                None => std::process::ExitCode::FAILURE,
            }
        }
    }
}

/// `webhook-server copy-store`: the configured store's events into the
/// store at `to` (see [`webhook_server::copy_store`]), with progress on
/// stderr and the outcome on stdout.
async fn copy(
    config: Option<&std::path::Path>,
    to: String,
    to_schema: Option<String>,
) -> anyhow::Result<()> {
    use webhook_server::copy_store::{
        CopyError, copy_store_until, open_source, open_target, target_settings,
    };

    let settings = Settings::load(config)?;
    // The stores' own warnings (a slow database) on stderr, coloured only
    // for a terminal.
    fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(EnvFilter::new("warn"))
        .finish()
        .with(filter_fn(not_a_credential_leak))
        .try_init()
        .ok();
    let target = target_settings(&settings, to, to_schema)?;
    let source = open_source(&settings).await?;
    if let Some(why) = source
        .in_use()
        .await
        .context("database.url: cannot read it")?
    {
        eprintln!(
            "warning: {why}. Stop its replicas first: what they dispatch after the copy reads an event is dispatched again by the target, and what they store after it is not copied (run the copy again once they are stopped)."
        );
    }
    if target.database.kind()? == webhook_server::settings::StoreKind::Postgres
        && target.database.schema.is_none()
    {
        eprintln!(
            "note: no schema given (--to-schema, or database.schema / CATALOG_DATABASE__SCHEMA): the copy goes into the connection's search_path (usually public), where only replicas without database.schema look"
        );
    }
    let dest = open_target(&target).await?;
    eprintln!("copying {} to {}", source.describe(), dest.describe());
    let started = std::time::Instant::now();
    let mut said = started;
    // A signal stops the copy between two writes (the one in progress is
    // finished: its store may complete it anyway), so the counts it gives
    // are what the target holds; a second run goes on from there.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let signal = Arc::new(std::sync::Mutex::new(None));
    let watcher = {
        let (stop, signal) = (Arc::clone(&stop), Arc::clone(&signal));
        tokio::spawn(async move {
            let received = copy_interrupted().await;
            if let Ok(mut slot) = signal.lock() {
                *slot = Some(received);
            }
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            eprintln!("{}: finishing the write in progress", received.0);
        })
    };
    let result = copy_store_until(&*source, &*dest, &stop, |r| {
        if said.elapsed() >= Duration::from_secs(2) {
            said = std::time::Instant::now();
            eprintln!(
                "  {} read, {} copied, {} already there",
                r.read,
                r.copied.total(),
                r.already_there
            );
        }
    })
    .await;
    watcher.abort();
    // Closed either way: SQLite's writer finishes and its lock is let go.
    drop(source);
    dest.close().await;
    let received = signal.lock().ok().and_then(|slot| *slot);
    let report = match (result, received) {
        (Err(stopped @ CopyError::Stopped { .. }), Some((name, number))) => {
            return Err(anyhow::Error::new(Interrupted {
                signal: number,
                message: format!("{name}: {stopped}"),
            }));
        }
        (result, _) => result?,
    };
    writeln!(
        std::io::stdout(),
        "copied {} events ({}) in {:.1}s; {} were in the target already",
        report.copied.total(),
        report.copied,
        started.elapsed().as_secs_f64(),
        report.already_there
    )
    .context("writing the outcome to stdout")
}

/// Resolves with the signal's name and number on SIGINT or SIGTERM.
/// SIGHUP keeps its own disposition: a copy started under `nohup` (which
/// ignores it) must survive the terminal going away, and one that was not
/// has no terminal left to report to (a hangup mid-write loses nothing: the
/// write's transaction does not commit, and a second run goes on).
async fn copy_interrupted() -> (&'static str, u8) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut int), Ok(mut term)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            return std::future::pending().await;
        };
        tokio::select! {
            _ = int.recv() => ("interrupted (SIGINT)", 2),
            _ = term.recv() => ("stopped (SIGTERM)", 15),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        ("interrupted", 2)
    }
}

/// A copy stopped by a signal: the process exits with 128 + its number,
/// as a shell reports a process the signal ended, so a script can tell it
/// from a failure (1).
#[derive(Debug)]
struct Interrupted {
    signal: u8,
    message: String,
}

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Interrupted {}

async fn run(config: Option<PathBuf>) -> anyhow::Result<()> {
    let settings = Settings::load(config.as_deref())?;
    init_tracing(&settings)?;
    ignore_hangups();

    let platforms = Platforms::from_settings(&settings)?;
    let store = open_store(&settings).await?;
    let handlers = build_handlers(&settings).await?;
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        store = %store.describe(),
        "webhook-server starting"
    );
    if matches!(
        settings.database.kind(),
        Ok(webhook_server::settings::StoreKind::Memory)
    ) {
        // Acknowledged deliveries are what the platforms stop retrying:
        // an operator must not take this store for a durable one.
        tracing::warn!(
            max_events = settings.database.memory_max_events,
            "the memory store keeps nothing across a restart and drops its oldest events beyond database.memory_max_events, delivered or not: for tests and benchmarks, not for acknowledging real deliveries (use SQLite or PostgreSQL)"
        );
    }
    for p in platforms.iter() {
        if matches!(p.verifiers, Verifiers::Unconfigured) {
            tracing::warn!(
                platform = %p.id(),
                "platform enabled without a webhook secret: its deliveries are refused (503) until one is configured (see docs/configuration.md)"
            );
        } else {
            tracing::info!(platform = %p.id(), stores = %p.verifiers.describe(), "platform enabled");
        }
    }
    // Shopify's webhook prices carry no currency: an unconfigured store's
    // are labelled USD, which must not go unnoticed for a store that sells
    // in another one.
    let shopify = &settings.shopify;
    if platforms.get("shopify").is_some()
        && shopify.is_configured()
        && shopify.default_currency.is_none()
        && (shopify.stores.is_empty() || shopify.stores.iter().any(|s| s.currency.is_none()))
    {
        tracing::warn!(
            "shopify: webhook prices carry no currency and some stores have none configured: their prices are labelled USD (set shopify.default_currency or shopify.stores[].currency)"
        );
    }
    // WooCommerce's payloads carry no currency either, and without one
    // configured its events carry no normalised product at all: said once
    // here rather than discovered as `product: null` downstream.
    let woocommerce = &settings.woocommerce;
    if platforms.get("woocommerce").is_some()
        && woocommerce.is_configured()
        && woocommerce.default_currency.is_none()
        && (woocommerce.stores.is_empty()
            || woocommerce.stores.iter().any(|s| s.currency.is_none()))
    {
        tracing::warn!(
            "woocommerce: webhook prices carry no currency and some stores have none configured: their events carry no normalised product (product null, product_id set) until woocommerce.default_currency or woocommerce.stores[].currency is set"
        );
    }
    if platforms.iter().next().is_none() {
        tracing::warn!("no platform compiled in: every webhook route answers 404");
    }
    let state = AppState::new(&settings, platforms, store);
    let dispatcher = if settings.dispatch.enabled {
        let names: Vec<&str> = handlers.iter().map(|h| h.name()).collect();
        tracing::info!(sinks = %names.join(", "), "dispatcher enabled");
        if names.is_empty() {
            tracing::warn!(
                "the dispatcher has no sink (dispatch.log is false and no file, http or nats sink is set): events will be marked delivered without going anywhere; set dispatch.enabled = false to keep them pending"
            );
        }
        Some(
            state
                .dispatcher(dispatch_config(&settings), handlers)
                .spawn_on_own_thread(settings.dispatch.nice)
                .context("cannot start the dispatcher thread")?,
        )
    } else {
        tracing::info!("dispatcher disabled");
        None
    };
    let pruner = if settings.retention.enabled() {
        tracing::info!(policy = %settings.retention.describe(), "retention enabled");
        Some(
            state
                .pruner(settings.retention)
                .spawn(webhook_server::retention::ROUND_EVERY),
        )
    } else {
        tracing::info!(
            "retention off: every event is kept (retention.delivered_days and retention.failed_days are 0)"
        );
        None
    };
    tracing::info!(
        admin = state.admin_token.is_some(),
        rate_limit = settings.rate_limit.enabled,
        "admin API {}",
        if state.admin_token.is_some() {
            "enabled"
        } else {
            "disabled (set CATALOG_ADMIN_TOKEN)"
        }
    );

    let app_state = state.clone();
    let client_request_timeout = Duration::from_millis(settings.server.client_request_timeout_ms);
    // The longest one request may take from its first byte to the start of
    // its answer, by the server's own limits, plus a margin: past it the
    // connection is closed (see answer_deadline: actix times only a
    // connection's first head).
    let answer_deadline = client_request_timeout
        + Duration::from_millis(settings.server.body_timeout_ms)
        + Duration::from_millis(settings.server.store_timeout_ms)
        + Duration::from_secs(1);
    let body_limit = settings.server.body_limit;
    let metrics = Arc::clone(&state.metrics);
    // actix-web's HttpServer, taken apart for the two pieces it lacks: the
    // `Expect: 100-continue` hook, so that a body declared over the limit
    // gets 413 before the client is invited to send it, and the stream
    // under an answer deadline (every request timed, not only the first).
    let http = move || {
        let app_state = app_state.clone();
        let metrics = Arc::clone(&metrics);
        let app = App::new().configure(move |c| configure(c, app_state));
        let http = HttpService::build()
            .client_request_timeout(client_request_timeout)
            .client_disconnect_timeout(Duration::from_secs(1))
            .expect(fn_service(move |req: Request| {
                continue_unless_too_large(req, body_limit, Arc::clone(&metrics))
            }))
            .finish(map_config(
                app.into_factory()
                    .map_err(|err: actix_web::Error| err.error_response()),
                |_| AppConfig::default(),
            ));
        // `HttpService::tcp`, with the stream under a deadline.
        fn_service(move |io: tokio::net::TcpStream| async move {
            let peer = io.peer_addr().ok();
            Ok((
                AnswerDeadline::new(io, answer_deadline),
                Protocol::Http1,
                peer,
            ))
        })
        .and_then(http)
    };
    let listen = (settings.server.host.as_str(), settings.server.port);
    let addrs: Vec<std::net::SocketAddr> = std::net::ToSocketAddrs::to_socket_addrs(&listen)
        .with_context(|| {
            format!(
                "cannot resolve {}:{} (server.host / server.port, APP_HOST / APP_PORT)",
                settings.server.host, settings.server.port
            )
        })?
        .collect();
    let mut server = actix_server::Server::build()
        .shutdown_timeout(settings.server.shutdown_timeout_secs)
        // Signals are handled below, so that the dispatcher is told to
        // stop at once rather than after the requests have drained.
        .disable_signals();
    if settings.server.workers > 0 {
        server = server.workers(settings.server.workers);
    }
    for addr in &addrs {
        let refused =
            || format!("cannot listen on {addr} (server.host / server.port, APP_HOST / APP_PORT)");
        let listener = listen_on(*addr).with_context(refused)?;
        // The address bound: with port 0, the one the system picked.
        let bound = listener.local_addr().with_context(refused)?;
        server = server
            .listen("webhook-server", listener, http.clone())
            .with_context(refused)?;
        tracing::info!(addr = %bound, "listening");
    }
    // Runs until SIGINT/SIGTERM. Then, together: the HTTP server stops
    // accepting and waits up to shutdown_timeout for in-flight requests,
    // and the dispatcher finishes the round in progress (what is acknowledged
    // meanwhile is stored, and dispatched after the next start). One after
    // the other, the two budgets added up past a service manager's stop
    // timeout.
    let drain = Duration::from_secs(settings.server.shutdown_timeout_secs);
    let mut dispatcher = dispatcher;
    let running = server.run();
    let http = running.handle();
    let mut running = std::pin::pin!(running);
    let dispatcher_ended = async {
        match dispatcher.as_mut() {
            Some(d) => d.ended().await,
            None => std::future::pending().await,
        }
    };
    // Why the server stops.
    enum Stop {
        ServerEnded,
        Signal,
        DispatcherDied,
    }
    let stop = tokio::select! {
        result = &mut running => {
            result.context("HTTP server failed")?;
            Stop::ServerEnded
        }
        () = shutdown_signal() => Stop::Signal,
        () = dispatcher_ended => Stop::DispatcherDied,
    };
    match stop {
        Stop::ServerEnded => {}
        Stop::Signal => {
            tracing::info!("shutting down: draining in-flight requests and the dispatcher");
            state.begin_draining();
            // Sent now; the server future below carries it out.
            let stopped = http.stop(true);
            let dispatch = async {
                if let Some(d) = dispatcher.take() {
                    d.shutdown(drain).await;
                }
            };
            let (result, ()) = tokio::join!(&mut running, dispatch);
            result.context("HTTP server failed")?;
            stopped.await;
        }
        Stop::DispatcherDied => {
            // Its panic is on stderr. Stored events wait, durably, for the
            // next start; exiting with an error lets the service manager
            // restart us (a server that only acknowledges looks healthy).
            tracing::error!(
                "the dispatcher stopped unexpectedly: shutting down (acknowledged events are stored and will be dispatched after a restart)"
            );
            state.begin_draining();
            let stopped = http.stop(true);
            let result = (&mut running).await;
            stopped.await;
            result.context("HTTP server failed")?;
            if let Some(p) = pruner {
                p.abort();
            }
            state.store.close().await;
            anyhow::bail!("the dispatcher stopped unexpectedly");
        }
    }
    if let Some(p) = pruner {
        // A chunk already queued in the store completes; none follows.
        p.abort();
    }
    if let Some(d) = dispatcher {
        d.shutdown(drain).await;
    }
    state.store.close().await;
    tracing::info!("shutdown complete");
    Ok(())
}

/// The dispatcher's settings, its attempt budget counting every network
/// sink configured (the HTTP one is in `dispatch`, NATS beside it).
fn dispatch_config(settings: &Settings) -> DispatchConfig {
    let mut config = DispatchConfig::from_settings(&settings.dispatch);
    config.attempt_budget = settings.attempt_budget();
    config
}

/// The `Expect: 100-continue` hook: a body declared over `limit` is refused
/// with 413 before the "100 Continue" that would invite the client to send
/// it (the handler would refuse it unread anyway, after the upload). The
/// connection closes: the client may send the body regardless.
async fn continue_unless_too_large(
    req: Request,
    limit: usize,
    metrics: Arc<Metrics>,
) -> Result<Request, Response<BoxBody>> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        // Counted as the handler counts a 413: by platform and, on an
        // action route (`/webhooks/shopify/products/create`), its topic.
        if let Some(rest) = req.path().strip_prefix("/webhooks/") {
            let mut parts = rest.split('/');
            let platform = parts.next().unwrap_or("other");
            let topic = match (parts.next(), parts.next()) {
                (Some("products"), Some(action)) => catalog_core::Topic::from_action(action),
                _ => None,
            };
            metrics.record_delivery(
                platform,
                topic.as_ref().map(catalog_core::Topic::as_str),
                Outcome::TooLarge,
                Duration::ZERO,
            );
        }
        return Err(Response::build(StatusCode::PAYLOAD_TOO_LARGE)
            .insert_header((header::CONTENT_TYPE, "application/json"))
            .insert_header((header::CONNECTION, "close"))
            .body(r#"{"error":"payload_too_large"}"#)
            .map_into_boxed_body());
    }
    Ok(req)
}

/// A listening socket as actix-server makes one for `bind` (address reuse,
/// a backlog of 2048), made here so that the address it got can be logged:
/// with port 0 the system picks one, and `bind` would not say which.
fn listen_on(addr: std::net::SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(2048)?;
    Ok(socket.into())
}
