//! One-line errors with an exit code, and the detail `--verbose` adds.

use std::fmt;

use catalog_core::CatalogError;

use crate::config::{Store, redact_url};

/// What went wrong, which decides the exit code (see `docs/cli.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Anything else (local I/O, an unexpected state): exit code 1.
    Other,
    /// Configuration: a missing credential or store, a bad file: exit code 3.
    Config,
    /// The store or server could not be reached: exit code 4.
    Unreachable,
    /// Credentials or a signature were refused (401/403): exit code 5.
    Unauthorized,
    /// The product or event does not exist: exit code 6.
    NotFound,
    /// The store or server answered with an error: exit code 7.
    Remote,
    /// Done, but products whose data could not be read were left out:
    /// exit code 8.
    Partial,
    /// Interrupted by Ctrl-C: exit code 130.
    Interrupted,
}

impl Kind {
    /// The process exit code.
    pub(crate) fn exit_code(self) -> u8 {
        match self {
            Self::Other => 1,
            Self::Config => 3,
            Self::Unreachable => 4,
            Self::Unauthorized => 5,
            Self::NotFound => 6,
            Self::Remote => 7,
            Self::Partial => 8,
            Self::Interrupted => 130,
        }
    }
}

/// An error for the user: one line naming what to fix, plus optional detail.
#[derive(Debug)]
pub(crate) struct CliError {
    /// Decides the exit code.
    pub(crate) kind: Kind,
    /// The one-line message (never holds a secret).
    pub(crate) message: String,
    /// Shown with `--verbose` only (never holds a secret either).
    pub(crate) detail: Option<String>,
}

impl CliError {
    /// An error with a message.
    pub(crate) fn new(kind: Kind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            detail: None,
        }
    }

    /// Adds detail for `--verbose`.
    #[must_use]
    pub(crate) fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// A local I/O failure on `what`.
    pub(crate) fn io(what: impl fmt::Display, e: &std::io::Error) -> Self {
        Self::new(Kind::Other, format!("{what}: {e}"))
    }

    /// A catalog call to `store` failed.
    pub(crate) fn from_catalog(store: &Store, e: &CatalogError) -> Self {
        let name = &store.name;
        let platform = store.platform.title();
        let detail = error_chain(e);
        let err = match e {
            // WooCommerce names keys it read and refused
            // (`woocommerce_rest_authentication_error`): then they are wrong,
            // whatever the scheme.
            CatalogError::Unauthorized(m)
                if store.keys_ignored_over_http()
                    && !m.contains("woocommerce_rest_authentication_error") =>
            {
                Self::new(
                    Kind::Unauthorized,
                    format!(
                        "{platform} store {name} refused the credentials: WooCommerce reads Basic and \
                     query-string keys only over HTTPS; use an https:// store_url, or auth = \
                     \"oauth1\" for http ({})",
                        store.where_configured()
                    ),
                )
            }
            CatalogError::Unauthorized(_) => Self::new(
                Kind::Unauthorized,
                format!(
                    "{platform} store {name} refused the credentials: check {}",
                    store.credential_keys()
                ),
            ),
            CatalogError::Transport(_) => Self::new(
                Kind::Unreachable,
                format!(
                    "cannot reach {platform} store {name} at {}: check {} and the network",
                    redact_url(&store.store_url),
                    store.url_key()
                ),
            ),
            CatalogError::NotFound(what) => Self::new(Kind::NotFound, format!("not found: {what}")),
            CatalogError::Configuration(m) => Self::new(
                Kind::Config,
                format!(
                    "store {name} is not configured correctly ({}): {m}",
                    store.where_configured()
                ),
            ),
            CatalogError::RateLimited { .. } => Self::new(
                Kind::Remote,
                format!(
                    "{platform} store {name} keeps throttling us: {e}; retry later or raise --retries"
                ),
            ),
            CatalogError::Http { status, .. } if *status == 404 => Self::new(
                Kind::Unreachable,
                format!(
                    "{platform} store {name} answered 404 for its API: check {} (is it the store's address?)",
                    store.url_key()
                ),
            ),
            other => Self::new(
                Kind::Remote,
                format!("{platform} store {name} answered with an error: {other}"),
            ),
        };
        err.with_detail(detail)
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// The error and its sources, one per line.
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut last = out.clone();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        // An error that prints its source's message as part of its own
        // (`transport error: error sending request`, then `error sending
        // request`): the cause would only repeat the line above.
        if !last.ends_with(&text) {
            out.push_str("\n  caused by: ");
            out.push_str(&text);
        }
        last = text;
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::error_chain;
    use std::fmt;

    /// An error with a message and an optional source.
    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<Layer>>);

    impl fmt::Display for Layer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Layer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|l| l as _)
        }
    }

    #[test]
    fn a_cause_already_printed_by_the_line_above_is_not_repeated() {
        let e = Layer(
            "transport error: error sending request",
            Some(Box::new(Layer(
                "error sending request",
                Some(Box::new(Layer(
                    "tcp connect error",
                    Some(Box::new(Layer("Connection refused", None))),
                ))),
            ))),
        );
        assert_eq!(
            error_chain(&e),
            "transport error: error sending request\n  caused by: tcp connect error\n  caused by: Connection refused"
        );
    }
}
