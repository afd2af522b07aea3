//! `catalog`: look at a store's catalog in the unified model, export it as
//! JSON lines, sign and send test webhooks, and inspect the webhook server's
//! events. Reads the same configuration as `webhook-server`.
//!
//! See `docs/cli.md` for every command, the configuration keys and the exit codes.
#![allow(clippy::print_stdout)]

mod config;
mod error;
mod events;
mod export;
mod output;
mod products;
mod webhook;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use secrecy::SecretString;

use crate::config::{Config, Platform, Tuning};
use crate::error::{CliError, Kind};

/// Look at a store's catalog, export it, and test webhook deliveries.
///
/// Reads the webhook server's configuration file (--config), the CATALOG_*
/// variables and .env; without a file, one store per platform comes from
/// SHOPIFY_STORE_URL / WOOCOMMERCE_STORE_URL and their credentials.
#[derive(Debug, Parser)]
#[command(name = "catalog", version, propagate_version = true)]
struct Cli {
    /// The configuration file (the webhook server's TOML file).
    #[arg(long, short = 'c', global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The store to use: its `name`, `id` or store URL, or a platform name
    /// when that platform has one store. Optional when only one is configured.
    #[arg(long, short = 's', global = true, value_name = "NAME")]
    store: Option<String>,
    /// Show the detail behind errors and debug logs of the platform clients.
    #[arg(long, short = 'v', global = true)]
    verbose: bool,
    /// Retries of throttled, failed (5xx) or unreachable requests.
    #[arg(long, global = true, default_value_t = 3, value_name = "N")]
    retries: u32,
    /// Timeout of each request, in seconds.
    #[arg(long, global = true, default_value_t = 30, value_name = "SECS")]
    timeout: u64,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Read products in the unified model.
    #[command(subcommand)]
    Products(ProductsCommand),
    /// Write the whole catalog as JSON lines, one product per line.
    Export(ExportArgs),
    /// Sign or send test webhook deliveries.
    #[command(subcommand)]
    Webhook(WebhookCommand),
    /// Inspect and replay the webhook server's stored events (admin API).
    #[command(subcommand)]
    Events(EventsCommand),
}

#[derive(Debug, Subcommand)]
enum ProductsCommand {
    /// One product by the platform's id (Shopify: numeric id or GID).
    Get {
        /// The product id.
        id: String,
        /// Print the unified model as JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// The first products of the catalog.
    List {
        /// How many products to show (at least 1).
        #[arg(long, short = 'n', default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..))]
        limit: u32,
        /// Print the unified model as a JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
struct ExportArgs {
    /// The output file (JSON lines); it is replaced.
    #[arg(long, short = 'o', value_name = "FILE.jsonl")]
    out: PathBuf,
    /// Shopify: read pages instead of running a bulk export.
    #[arg(long)]
    paged: bool,
    /// Shopify: how often to poll a running bulk export, in milliseconds.
    #[arg(long, default_value_t = 2000, value_name = "MS")]
    poll_interval_ms: u64,
}

#[derive(Debug, Args)]
struct DeliveryArgs {
    /// Whose deliveries to imitate.
    #[arg(long, short = 'p', value_enum)]
    platform: Platform,
    /// The topic: products/create, product.updated, or just create, update,
    /// delete, restore (default create).
    #[arg(long, short = 't')]
    topic: Option<String>,
    /// The environment variable holding the webhook secret (default: the
    /// selected store's first secret from the configuration).
    #[arg(long, value_name = "VAR")]
    secret_env: Option<String>,
    /// The store the delivery claims to come from (default: the selected
    /// store's id, else an example store).
    #[arg(long, value_name = "ID")]
    store_id: Option<String>,
}

#[derive(Debug, Subcommand)]
enum WebhookCommand {
    /// Print the headers the platform would send with this body.
    Sign {
        #[command(flatten)]
        delivery: DeliveryArgs,
        /// The body file (`-` for stdin); its exact bytes are signed.
        file: PathBuf,
    },
    /// Send a signed delivery with fresh ids and print the response.
    Send {
        #[command(flatten)]
        delivery: DeliveryArgs,
        /// The body file (`-` for stdin); default: the platform's documented
        /// sample for the topic.
        #[arg(long, value_name = "FILE")]
        payload: Option<PathBuf>,
        /// Where to send it (default: the configured server's
        /// /webhooks/PLATFORM/products/ACTION).
        #[arg(long, value_name = "URL")]
        to: Option<String>,
    },
}

#[derive(Debug, Args)]
struct ServerArgs {
    /// The webhook server (default: http://HOST:PORT from server.host and server.port in
    /// the configuration).
    #[arg(long, value_name = "URL")]
    server: Option<String>,
    /// The environment variable holding the admin token (default
    /// CATALOG_ADMIN_TOKEN, or admin.token in the configuration).
    #[arg(long, value_name = "VAR")]
    token_env: Option<String>,
}

/// The statuses the server keeps (`docs/webhooks.md`).
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum EventStatusArg {
    Pending,
    Delivered,
    Failed,
    Dead,
}

impl EventStatusArg {
    fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
            Self::Dead => "dead",
        }
    }
}

#[derive(Debug, Subcommand)]
enum EventsCommand {
    /// The most recent events, newest first.
    List {
        #[command(flatten)]
        server: ServerArgs,
        /// Only this platform's events.
        #[arg(long, value_enum)]
        platform: Option<Platform>,
        /// Only this store's events (its id, however spelt: a bare
        /// shop.example.com names the https site).
        #[arg(long, value_name = "ID")]
        store_id: Option<String>,
        /// Only this topic, in any platform's spelling (products/create is
        /// product.created), or any other topic as the platform sent it.
        #[arg(long)]
        topic: Option<String>,
        /// Only events with this status.
        #[arg(long, value_enum)]
        status: Option<EventStatusArg>,
        /// How many events to show (at least 1).
        #[arg(long, short = 'n', default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..))]
        limit: u32,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// One event with its raw body.
    Show {
        #[command(flatten)]
        server: ServerArgs,
        /// The event id.
        id: String,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Queue an event for delivery to the sinks again.
    Replay {
        #[command(flatten)]
        server: ServerArgs,
        /// The event id.
        id: String,
    },
}

fn init_logging(verbose: bool) {
    // Only our crates at debug: HTTP-level logs could show URLs that carry
    // WooCommerce query-string credentials.
    let filter = if verbose {
        "warn,catalog_shopify=debug,catalog_woocommerce=debug,catalog_core=debug"
    } else {
        "warn"
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(Kind::Other.exit_code());
        }
    };
    let verbose = cli.verbose;
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", e.message);
            if let Some(detail) = e.detail.as_deref().filter(|_| verbose) {
                for line in detail.lines() {
                    eprintln!("  {line}");
                }
            } else if e.detail.is_some() {
                eprintln!("  (run with --verbose for the detail)");
            }
            ExitCode::from(e.kind.exit_code())
        }
    }
}

async fn run(cli: Cli) -> Result<(), CliError> {
    let config = Config::load(cli.config.as_deref())?;
    let timeout = Duration::from_secs(cli.timeout.max(1));
    let tuning = |poll_ms: u64| Tuning {
        retries: cli.retries,
        timeout,
        bulk_poll: Duration::from_millis(poll_ms.max(10)),
    };
    let store_flag = cli.store.as_deref();
    match cli.command {
        Command::Products(cmd) => {
            let store = config.select(store_flag, None)?;
            let client = store.client(tuning(2000))?;
            match cmd {
                ProductsCommand::Get { id, json } => products::get(store, &client, &id, json).await,
                ProductsCommand::List { limit, json } => {
                    products::list(store, &client, limit, json).await
                }
            }
        }
        Command::Export(args) => {
            let store = config.select(store_flag, None)?;
            let client = store.client(tuning(args.poll_interval_ms))?;
            export::export(
                store,
                &client,
                &export::ExportOptions {
                    out: args.out,
                    paged: args.paged,
                },
            )
            .await
        }
        Command::Webhook(WebhookCommand::Sign { delivery, file }) => {
            let resolved = webhook::resolve(&config, &inputs(&delivery, Some(&file), store_flag))?;
            webhook::print_headers(&resolved)
        }
        Command::Webhook(WebhookCommand::Send {
            delivery,
            payload,
            to,
        }) => {
            let resolved =
                webhook::resolve(&config, &inputs(&delivery, payload.as_deref(), store_flag))?;
            webhook::send(
                &resolved,
                to.as_deref(),
                &config.server_url(),
                timeout,
                cli.verbose,
            )
            .await
        }
        Command::Events(cmd) => {
            let server = match &cmd {
                EventsCommand::List { server, .. }
                | EventsCommand::Show { server, .. }
                | EventsCommand::Replay { server, .. } => server,
            };
            let admin = admin_client(&config, server, timeout)?;
            match cmd {
                EventsCommand::List {
                    platform,
                    store_id,
                    topic,
                    status,
                    limit,
                    json,
                    ..
                } => {
                    admin
                        .list(
                            &events::ListFilter {
                                platform: platform.map(|p| p.as_str().to_owned()),
                                // --store-id filters by any id; --store, as
                                // for the other commands, names a
                                // configured store (exit 3 if none).
                                store: match (store_id, store_flag) {
                                    (Some(id), _) => Some(config.store_filter(&id, platform)),
                                    (None, Some(name)) => {
                                        Some(config.select(Some(name), platform)?.recorded_id())
                                    }
                                    (None, None) => None,
                                },
                                topic: topic.as_deref().map(webhook::canonical_topic),
                                status: status.map(|s| s.as_str().to_owned()),
                                limit,
                            },
                            json,
                        )
                        .await
                }
                EventsCommand::Show { id, json, .. } => admin.show(&id, json).await,
                EventsCommand::Replay { id, .. } => admin.replay(&id).await,
            }
        }
    }
}

fn inputs<'a>(
    d: &'a DeliveryArgs,
    payload: Option<&'a std::path::Path>,
    store: Option<&'a str>,
) -> webhook::Inputs<'a> {
    webhook::Inputs {
        platform: d.platform,
        topic: d.topic.as_deref(),
        payload,
        secret_env: d.secret_env.as_deref(),
        store,
        store_id: d.store_id.as_deref(),
    }
}

fn admin_client(
    config: &Config,
    args: &ServerArgs,
    timeout: Duration,
) -> Result<events::Admin, CliError> {
    let token = match &args.token_env {
        Some(var) => match std::env::var(var) {
            Ok(v) if !v.trim().is_empty() => SecretString::from(v),
            _ => {
                return Err(CliError::new(
                    Kind::Config,
                    format!("--token-env {var}: the variable {var} is not set or empty; export the server's admin token in it"),
                ));
            }
        },
        None => config.admin_token().cloned().ok_or_else(|| {
            CliError::new(
                Kind::Config,
                "no admin token: set CATALOG_ADMIN_TOKEN (the server's admin token) or pass --token-env VAR",
            )
        })?,
    };
    let base = args.server.clone().unwrap_or_else(|| config.server_url());
    events::Admin::new(&base, token, timeout)
}
