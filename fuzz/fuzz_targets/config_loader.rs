//! Arbitrary TOML text through the server's settings loader
//! (`Settings::load_from`, the same path as `webhook-server --config FILE`):
//! never a panic; a refused file gets an error that says where the problem is
//! (a key or a TOML line/column), and no error echoes the value of a secret key.
#![no_main]

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use webhook_server::settings::Settings;

/// Written into the secret-bearing keys of the seeds. When it only appears on
/// lines that set a secret key, no error may contain it (serde errors can
/// quote the offending value).
const CANARY: &str = "fuzzcanarysecret";

const SECRET_KEYS: &[&str] = &[
    "webhook_secret",
    "secrets",
    "secret",
    "token",
    "client_secret",
    "access_token",
    "consumer_key",
    "consumer_secret",
];

/// Keys an error may name (sections and leaves), matched as whole words.
const KEYS: &[&str] = &[
    "server",
    "log",
    "database",
    "admin",
    "rate_limit",
    "dispatch",
    "shopify",
    "woocommerce",
    "nats",
    "host",
    "port",
    "workers",
    "body_limit",
    "client_request_timeout_ms",
    "body_timeout_ms",
    "shutdown_timeout_secs",
    "format",
    "level",
    "url",
    "durability",
    "batch_max",
    "memory_max_events",
    "memory_max_keys",
    "max_connections",
    "schema",
    "token",
    "enabled",
    "per_second",
    "burst",
    "lease_secs",
    "batch",
    "poll_interval_ms",
    "max_attempts",
    "backoff_base_ms",
    "backoff_max_secs",
    "file",
    "http",
    "secret",
    "timeout_ms",
    "webhook_secret",
    "stores",
    "secrets",
    "id",
    "currency",
    "default_currency",
    "subject_prefix",
    "stream",
    "duplicate_window_secs",
    "create_stream",
    "name",
    "store_url",
    "api_version",
    "client_id",
    "client_secret",
    "access_token",
    "consumer_key",
    "consumer_secret",
    "auth",
];

/// Whether every occurrence of the canary is on a line setting a secret key.
fn canary_only_in_secrets(text: &str) -> bool {
    text.lines().filter(|l| l.contains(CANARY)).all(|l| {
        let Some((key, _)) = l.split_once('=') else {
            return false;
        };
        let key = key.trim().trim_matches('"');
        let leaf = key
            .rsplit('.')
            .next()
            .unwrap_or(key)
            .trim()
            .trim_matches('"');
        SECRET_KEYS.contains(&leaf)
    })
}

fn scratch() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("config-loader-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        dir.join("fuzz.toml")
    })
}

fuzz_target!(|data: &[u8]| {
    let path = scratch();
    let Ok(mut f) = std::fs::File::create(path) else {
        return;
    };
    if f.write_all(data).is_err() {
        return;
    }
    drop(f);
    // No environment: only the defaults and the file.
    match Settings::load_from(Some(path), &[]) {
        Ok(settings) => {
            // Whatever loaded is usable: validation passed, Debug never
            // shows secrets (the canary may show where it is not a secret,
            // e.g. in a database URL's path).
            let shown = format!("{settings:?}");
            if std::str::from_utf8(data).is_ok_and(canary_only_in_secrets) {
                assert!(!shown.contains(CANARY), "Debug shows a secret: {shown}");
            }
            let _ = settings.database.kind();
        }
        Err(err) => {
            let msg = format!("{err:#}");
            if let Ok(text) = std::str::from_utf8(data)
                && canary_only_in_secrets(text)
            {
                assert!(!msg.contains(CANARY), "error echoes a secret: {msg}");
            }
            // The contexts added by the loader say nothing about where.
            let detail = msg
                .replace("failed to load configuration", "")
                .replace("invalid configuration", "")
                .replace(&path.display().to_string(), "")
                .to_ascii_lowercase();
            let located = detail
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .any(|word| KEYS.contains(&word) || word == "line" || word == "column");
            assert!(located, "error names no key or position: {msg}");
        }
    }
});
