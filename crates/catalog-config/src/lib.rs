//! # catalog-config
//!
//! The configuration layering the catalog apps share (the webhook server and
//! the `catalog` CLI read the same file and variables):
//!
//! 1. built-in defaults (TOML text, optional),
//! 2. a TOML file (`--config FILE`, optional),
//! 3. `CATALOG_*` environment variables (`CATALOG_DISPATCH__BATCH` is
//!    `dispatch.batch`: `__` separates levels),
//! 4. the seed's variables ([`ENV_ALIASES`]: `APP_PORT`,
//!    `SHOPIFY_WEBHOOK_SECRET`, ...), which win over everything else.
//!
//! Errors name the key or the line and never contain a value: configuration
//! holds secrets, and start-up errors end up in logs. `toml` quotes the
//! offending line and serde the refused value; both are taken out
//! ([`redact`]), and errors `toml` gives without a position are located.
//!
//! ```
//! #[derive(serde::Deserialize)]
//! struct Server { port: u16 }
//! #[derive(serde::Deserialize)]
//! struct Settings { server: Server }
//!
//! let env = vec![("APP_PORT".to_owned(), "9000".to_owned())];
//! let layers = catalog_config::Layers {
//!     defaults: Some("[server]\nport = 8050\n"),
//!     file: None,
//!     env: &env,
//! };
//! let s: Settings = catalog_config::load(&layers).unwrap();
//! assert_eq!(s.server.port, 9000);
//! ```

pub mod redact;
pub mod strict;

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

/// Seed-compatible environment variables and the keys they set. They take
/// precedence over `CATALOG_*` variables and the file. Empty values are
/// ignored.
pub const ENV_ALIASES: &[(&str, &str)] = &[
    ("APP_HOST", "server.host"),
    ("APP_PORT", "server.port"),
    ("SHOPIFY_CLIENT_SECRET", "shopify.webhook_secret"),
    ("SHOPIFY_WEBHOOK_SECRET", "shopify.webhook_secret"),
    ("WOOCOMMERCE_WEBHOOK_SECRET", "woocommerce.webhook_secret"),
    ("CATALOG_DATABASE_URL", "database.url"),
    ("CATALOG_ADMIN_TOKEN", "admin.token"),
];

/// Where configuration comes from, lowest precedence first.
#[derive(Debug, Clone, Copy)]
pub struct Layers<'a> {
    /// Built-in defaults, as TOML text.
    pub defaults: Option<&'a str>,
    /// The configuration file, when one was given (it must exist).
    pub file: Option<&'a Path>,
    /// The environment (`std::env::vars()`, or a fixed list in tests); only
    /// `CATALOG_*` variables and [`ENV_ALIASES`] are read.
    pub env: &'a [(String, String)],
}

/// Why configuration could not be loaded. No variant carries a value read
/// from the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LoadError {
    /// The file given does not exist (or is not a file).
    MissingFile(PathBuf),
    /// The file given exists but cannot be read (permissions): the path and
    /// the system's reason.
    Unreadable(PathBuf, String),
    /// A seed variable could not be applied to its key.
    Alias {
        /// The variable (`APP_PORT`).
        var: &'static str,
        /// The key it sets (`server.port`).
        key: &'static str,
    },
    /// The layers could not be read or merged (a TOML syntax error, a value
    /// out of range): the message, with its line and key, without the
    /// excerpt of the file.
    Syntax(String),
    /// The merged configuration does not fit the settings type (a wrong
    /// type, a missing or unknown key): the message, naming the key, with
    /// refused strings hidden.
    Invalid(String),
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingFile(path) => {
                if path.exists() {
                    write!(
                        f,
                        "configuration file {} is not a regular file",
                        path.display()
                    )
                } else {
                    write!(f, "configuration file {} does not exist", path.display())
                }
            }
            Self::Unreadable(path, reason) => write!(
                f,
                "cannot read configuration file {}: {reason}",
                path.display()
            ),
            Self::Alias { var, key } => write!(f, "invalid value for {var} ({key})"),
            Self::Syntax(msg) | Self::Invalid(msg) => f.write_str(msg),
        }
    }
}

impl std::error::Error for LoadError {}

/// Reads the layers into `T`.
///
/// # Errors
/// [`LoadError`]; its message never contains a configured value.
pub fn load<T: DeserializeOwned>(layers: &Layers<'_>) -> Result<T, LoadError> {
    let mut builder = config::Config::builder();
    if let Some(defaults) = layers.defaults {
        builder = builder.add_source(config::File::from_str(defaults, config::FileFormat::Toml));
    }
    if let Some(path) = layers.file {
        if !path.is_file() {
            return Err(LoadError::MissingFile(path.to_path_buf()));
        }
        // The `config` crate's own message for this names no file.
        if let Err(e) = std::fs::File::open(path) {
            return Err(LoadError::Unreadable(path.to_path_buf(), e.to_string()));
        }
        builder = builder
            .add_source(config::File::from(path.to_path_buf()).format(config::FileFormat::Toml));
    }
    // The aliases that start with CATALOG_ (`CATALOG_DATABASE_URL`) are
    // applied below, under their keys: read as `CATALOG_*` they would
    // also be keys of their own (`database_url`), unknown ones.
    let catalog_env: config::Map<String, String> = layers
        .env
        .iter()
        .filter(|(k, _)| k.starts_with("CATALOG_") && !ENV_ALIASES.iter().any(|(a, _)| a == k))
        .cloned()
        .collect();
    builder = builder.add_source(
        config::Environment::with_prefix("CATALOG")
            .prefix_separator("_")
            .separator("__")
            .source(Some(catalog_env)),
    );
    for (var, key) in ENV_ALIASES {
        if let Some((_, value)) = layers.env.iter().find(|(k, _)| k == var)
            && !value.is_empty()
        {
            builder = builder
                .set_override(*key, value.as_str())
                .map_err(|_| LoadError::Alias { var, key })?;
        }
    }
    builder
        .build()
        .map_err(|e| {
            // A syntax error quotes the line, which may be a secret's, and
            // a value error the value (an integer beyond i64 under
            // `admin.token`, say): both hidden, the position kept.
            let mut msg =
                redact::redact_quoted_values(&redact::strip_source_excerpt(&e.to_string()));
            // `toml` reports some value errors (integers beyond i64,
            // overflowing floats) without a position, others with a line
            // but no key: find the line, and name its key.
            if !msg.contains("key `")
                && let Some((line, key)) = layers
                    .file
                    .and_then(|p| std::fs::read(p).ok())
                    .and_then(|bytes| first_failing_line(&String::from_utf8_lossy(&bytes)))
            {
                msg = if msg.contains("line ") {
                    format!("{msg} (key `{key}`)")
                } else {
                    format!("{msg} (line {line}, key `{key}`)")
                };
            }
            LoadError::Syntax(msg)
        })?
        .try_deserialize()
        // serde quotes refused values, which may be secrets: all are
        // hidden, since a secret may be written under the wrong key.
        .map_err(|e| {
            LoadError::Invalid(with_env_names(&redact::redact_quoted_values(
                &e.to_string(),
            )))
        })
}

/// The environment variables that set `key` (`server.port`: `APP_PORT`,
/// `CATALOG_SERVER__PORT`), none for keys inside lists or for a section
/// (`server`: its keys have variables, the section itself none).
pub fn env_names(key: &str) -> Vec<String> {
    if key.is_empty() || key.contains('[') {
        return Vec::new();
    }
    let mut names: Vec<String> = ENV_ALIASES
        .iter()
        .filter(|(_, k)| *k == key)
        .map(|(var, _)| (*var).to_owned())
        .collect();
    let own = format!("CATALOG_{}", key.to_ascii_uppercase().replace('.', "__"));
    if key.contains('.') && !names.contains(&own) {
        names.push(own);
    }
    names
}

/// `config` writes list elements' keys as `stores[0]secrets`; this adds the
/// dot, and after the key a message names (`for key `server.port``), the
/// variables that set it.
fn with_env_names(message: &str) -> String {
    let mut fixed = String::with_capacity(message.len() + 40);
    let mut chars = message.chars().peekable();
    while let Some(c) = chars.next() {
        fixed.push(c);
        if c == ']'
            && chars
                .peek()
                .is_some_and(|n| n.is_ascii_alphabetic() || *n == '_')
        {
            fixed.push('.');
        }
    }
    // `… for key `server.port`` and `missing configuration field "dispatch.http.url"`.
    let (start, close) = match (
        fixed.find("for key `"),
        fixed.find("missing configuration field \""),
    ) {
        (Some(i), _) => (i + "for key `".len(), '`'),
        (None, Some(i)) => (i + "missing configuration field \"".len(), '"'),
        (None, None) => return fixed,
    };
    let Some(len) = fixed[start..].find(close) else {
        return fixed;
    };
    let names = env_names(&fixed[start..start + len]);
    if names.is_empty() {
        return fixed;
    }
    let end = start + len + 1;
    format!(
        "{} (environment: {}){}",
        &fixed[..end],
        names.join(" or "),
        &fixed[end..]
    )
}

/// The first line (1-based) at which the file stops loading, with the key
/// (`section.key`) written on it, found by loading growing prefixes of the
/// file with the same parser. Used only on the error path, for errors that
/// `toml` reports without a position (integers beyond i64, overflowing
/// floats, ...): whatever the token's shape, the first failing prefix ends on
/// the line that holds it (or on the first line of a construct spanning
/// several lines, which names the same key).
fn first_failing_line(text: &str) -> Option<(usize, String)> {
    // Configuration files are small; bound the work for pathological input.
    const MAX_LINES: usize = 5_000;
    let lines: Vec<&str> = text.lines().take(MAX_LINES).collect();
    let mut section = String::new();
    for n in 1..=lines.len() {
        let line = lines[n - 1].trim();
        if let Some(header) = line.strip_prefix('[') {
            section = header
                .trim_start_matches('[')
                .split(']')
                .next()
                .unwrap_or_default()
                .trim()
                .to_owned();
        }
        let prefix = lines[..n].join("\n");
        let fails = config::Config::builder()
            .add_source(config::File::from_str(&prefix, config::FileFormat::Toml))
            .build()
            .is_err();
        if fails {
            let key = line.split_once('=').map_or(line, |(k, _)| k).trim();
            let key = if section.is_empty() || line.starts_with('[') {
                key.to_owned()
            } else {
                format!("{section}.{key}")
            };
            // Never echo a value: only what stands before `=` (or a header).
            return Some((n, key.chars().take(100).collect()));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Shopify {
        webhook_secret: Option<String>,
        #[serde(default)]
        secrets: Vec<String>,
    }

    #[derive(Debug, serde::Deserialize)]
    struct Settings {
        shopify: Shopify,
        #[serde(default)]
        server: Option<Server>,
    }

    #[derive(Debug, serde::Deserialize)]
    struct Server {
        port: u16,
    }

    fn load_file(text: &str, env: &[(String, String)]) -> Result<Settings, LoadError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, text).unwrap();
        load(&Layers {
            defaults: Some("[shopify]\n"),
            file: Some(&path),
            env,
        })
    }

    #[test]
    fn layers_apply_in_order() {
        let env = vec![
            ("CATALOG_SERVER__PORT".to_owned(), "9001".to_owned()),
            ("SHOPIFY_WEBHOOK_SECRET".to_owned(), "from-seed".to_owned()),
        ];
        let s = load_file(
            "[shopify]\nwebhook_secret = \"from-file\"\n[server]\nport = 9000\n",
            &env,
        )
        .unwrap();
        assert_eq!(s.shopify.webhook_secret.as_deref(), Some("from-seed"));
        assert_eq!(s.server.unwrap().port, 9001);
        // An empty seed variable is ignored.
        let env = vec![("SHOPIFY_WEBHOOK_SECRET".to_owned(), String::new())];
        let s = load_file("[shopify]\nwebhook_secret = \"from-file\"\n", &env).unwrap();
        assert_eq!(s.shopify.webhook_secret.as_deref(), Some("from-file"));
        assert!(s.shopify.secrets.is_empty());
    }

    #[test]
    fn errors_name_the_place_and_never_the_value() {
        // Syntax: toml's excerpt would show the line, secret and all.
        let err = load_file("[shopify]\nwebhook_secret = \"s3cret-a\" 12\n", &[]).unwrap_err();
        assert!(matches!(err, LoadError::Syntax(_)), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("line 2"), "{msg}");
        assert!(!msg.contains("s3cret-a"), "{msg}");
        // Type: serde quotes the refused string.
        let err = load_file("[shopify]\nsecrets = \"s3cret-b\"\n", &[]).unwrap_err();
        assert!(matches!(err, LoadError::Invalid(_)), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("shopify.secrets"), "{msg}");
        assert!(!msg.contains("s3cret-b"), "{msg}");
        // From the environment too.
        let env = vec![("CATALOG_SERVER__PORT".to_owned(), "s3cret-c".to_owned())];
        let msg = load_file("[shopify]\n", &env).unwrap_err().to_string();
        assert!(msg.contains("server.port"), "{msg}");
        assert!(!msg.contains("s3cret-c"), "{msg}");
        // An integer beyond i64 is located although toml gives no position.
        let msg = load_file(&format!("[server]\nport = 8{}\n", "9".repeat(40)), &[])
            .unwrap_err()
            .to_string();
        assert!(msg.contains("line 2"), "{msg}");
    }

    #[test]
    fn errors_name_the_variables_of_the_key() {
        let env = vec![("APP_PORT".to_owned(), "eighty".to_owned())];
        let msg = load_file("[shopify]\n", &env).unwrap_err().to_string();
        assert!(
            msg.contains("`server.port` (environment: APP_PORT or CATALOG_SERVER__PORT)"),
            "{msg}"
        );
        assert!(!msg.contains("eighty"), "{msg}");
        assert_eq!(
            with_env_names("invalid type for key `shopify.stores[0]secrets`"),
            "invalid type for key `shopify.stores[0].secrets`"
        );
        assert_eq!(
            env_names("database.url"),
            ["CATALOG_DATABASE_URL", "CATALOG_DATABASE__URL"]
        );
        assert!(env_names("a.b[1].c").is_empty());
        // An unknown key is reported against its section, which no
        // variable sets as a whole.
        assert!(env_names("server").is_empty());
        assert_eq!(
            with_env_names("unknown field `prot`, expected one of `host`, `port` for key `server`"),
            "unknown field `prot`, expected one of `host`, `port` for key `server`"
        );
        assert_eq!(
            with_env_names("missing configuration field \"dispatch.http.url\""),
            "missing configuration field \"dispatch.http.url\" (environment: CATALOG_DISPATCH__HTTP__URL)"
        );
    }

    #[test]
    fn aliases_named_like_catalog_variables_are_not_keys_of_their_own() {
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Strict {
            database: Database,
        }
        #[derive(Debug, serde::Deserialize)]
        struct Database {
            url: String,
        }
        let env = vec![(
            "CATALOG_DATABASE_URL".to_owned(),
            "sqlite://x.db".to_owned(),
        )];
        let s: Strict = load(&Layers {
            defaults: Some("[database]\nurl = \"memory://\"\n"),
            file: None,
            env: &env,
        })
        .unwrap();
        assert_eq!(s.database.url, "sqlite://x.db");
    }

    /// A file that exists but cannot be read is named, with the reason.
    #[cfg(unix)]
    #[test]
    fn an_unreadable_file_is_named() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("locked.toml");
        std::fs::write(&path, "[server]\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o000)).unwrap();
        if std::fs::File::open(&path).is_ok() {
            eprintln!("skipped: this user (root) reads files of mode 000");
            return;
        }
        let err = load::<Settings>(&Layers {
            defaults: None,
            file: Some(&path),
            env: &[],
        })
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with(&format!(
                "cannot read configuration file {}",
                path.display()
            )),
            "{text}"
        );
        assert!(text.contains("ermission denied"), "{text}");
    }

    #[test]
    fn a_missing_file_is_named() {
        let err = load::<Settings>(&Layers {
            defaults: None,
            file: Some(Path::new("/nonexistent/c.toml")),
            env: &[],
        })
        .unwrap_err();
        assert_eq!(
            err,
            LoadError::MissingFile(PathBuf::from("/nonexistent/c.toml"))
        );
        assert_eq!(
            err.to_string(),
            "configuration file /nonexistent/c.toml does not exist"
        );
    }

    #[test]
    fn positionless_errors_are_located() {
        let big = "9".repeat(45);
        let text = format!(
            "[a]\nsecret = \"{big}\" # {big}\nok = 5\nlist = [1, 2_000, {big}]\nlow = -{big}\n"
        );
        assert_eq!(first_failing_line(&text), Some((4, "a.list".to_owned())));
        let negative = format!("[a]\nok = 1\nlow = -{big}\n");
        assert_eq!(first_failing_line(&negative), Some((3, "a.low".to_owned())));
        assert_eq!(first_failing_line("port = 8050\n"), None);
        let hex = format!("x = 0x{}\n", "f".repeat(40));
        assert_eq!(first_failing_line(&hex), Some((1, "x".to_owned())));
        let commented = format!("# a = {big}\nport = 7{big}#8\n");
        assert_eq!(first_failing_line(&commented), Some((2, "port".to_owned())));
        let float = "[serve-r]\nport = 700088888888888700088888888888888888888E8844888888888\n";
        assert_eq!(
            first_failing_line(float),
            Some((2, "serve-r.port".to_owned()))
        );
        // The value itself is never part of the answer.
        let secret = "[shopify]\nwebhook_secret = \"s3cret\" 12\n";
        let (line, key) = first_failing_line(secret).unwrap();
        assert_eq!((line, key.as_str()), (2, "shopify.webhook_secret"));
    }
}
