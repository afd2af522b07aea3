//! The error type of catalog calls.

use std::time::Duration;

/// A boxed error from a lower layer (HTTP client, I/O).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// `Result` with [`CatalogError`] as the default error.
pub type Result<T, E = CatalogError> = std::result::Result<T, E>;

/// Why a catalog call failed.
///
/// Platform crates map their HTTP and decoding errors into this one type so that
/// callers match on one enum whatever the platform. No variant ever carries a
/// credential: platform crates strip URLs (which may carry query-string
/// credentials) before building [`CatalogError::Transport`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CatalogError {
    /// The product (or other resource) does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The credentials were refused (HTTP 401/403 or the platform's equivalent).
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// The platform throttled us and the retry budget is spent.
    #[error("rate limited by the platform{}", retry_after_text(.retry_after))]
    RateLimited {
        /// How long the platform asked us to wait, when it said.
        retry_after: Option<Duration>,
    },
    /// Any other unsuccessful HTTP status, with the platform's message.
    #[error("HTTP {status}: {message}")]
    Http {
        /// HTTP status code.
        status: u16,
        /// The platform's error code, when it sent one (e.g. `woocommerce_rest_product_invalid_id`).
        code: Option<String>,
        /// The platform's message, or a short excerpt of the body.
        message: String,
    },
    /// The platform answered with data we could not read.
    #[error("could not decode platform response{}: {message}", at_path(.path))]
    Decode {
        /// The JSON path that failed, e.g. `data.products.nodes[3].variants`.
        path: String,
        /// What was wrong there.
        message: String,
    },
    /// One product of a listing could not be read and was left out:
    /// [`Catalog::stream_products`](crate::Catalog::stream_products)
    /// yields this in its place and goes on with the next product (every
    /// other error ends the stream). `try_collect` stops at it like at any
    /// error; a sync that would rather skip matches on it and carries on.
    #[error("product {id} skipped: could not decode it{}: {message}", at_path(.path))]
    UnreadableProduct {
        /// The platform's id of the product.
        id: String,
        /// The JSON path that failed (within the page or the product).
        path: String,
        /// What was wrong there.
        message: String,
    },
    /// The request did not complete (connection, timeout, TLS).
    #[error("transport error: {0}")]
    Transport(#[source] BoxError),
    /// The client was configured wrongly (bad URL, missing credential).
    #[error("invalid configuration: {0}")]
    Configuration(String),
}

/// ` at `path`` for a decode error that has one: a body that is not
/// JSON at all has none.
fn at_path(path: &str) -> String {
    if path.is_empty() {
        String::new()
    } else {
        format!(" at `{path}`")
    }
}

fn retry_after_text(retry_after: &Option<Duration>) -> String {
    match retry_after {
        Some(d) => format!(" (retry after {:.1}s)", d.as_secs_f64()),
        None => String::new(),
    }
}

impl CatalogError {
    /// Whether a later retry of the same call could succeed (throttling,
    /// transport failures, 5xx). Platform clients use this for their retry loops.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::RateLimited { .. } | Self::Transport(_) => true,
            // 501 (Not Implemented: a WAF refusing the method) and 505 do
            // not change on a retry.
            Self::Http { status, .. } => {
                *status == 429 || (*status >= 500 && !matches!(*status, 501 | 505))
            }
            _ => false,
        }
    }
}

/// Characters of an error body [`body_excerpt`] keeps.
const BODY_EXCERPT_MAX: usize = 200;

/// An unsuccessful answer's body as one short line for
/// [`CatalogError::Http`]: an HTML page (a proxy's 502, a host's error or
/// maintenance page) is named by its `<title>`, any other text has its
/// whitespace runs collapsed to one space and is cut to 200 characters.
/// Error messages are printed on one line; a page quoted raw would spill
/// markup over many.
///
/// ```
/// let page = b"<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head>\n<body>...</body></html>";
/// assert_eq!(catalog_core::error::body_excerpt(page), "an HTML page: \"502 Bad Gateway\"");
/// assert_eq!(catalog_core::error::body_excerpt(b"upstream\n  timed out"), "upstream timed out");
/// let wordpress = b"<html><head><title>WordPress &rsaquo; Error &#8211; 5 &amp; 6</title></head></html>";
/// assert_eq!(
///     catalog_core::error::body_excerpt(wordpress),
///     "an HTML page: \"WordPress \u{203a} Error \u{2013} 5 & 6\""
/// );
/// ```
#[must_use]
pub fn body_excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim_start_matches('\u{feff}').trim();
    if text.starts_with('<') {
        let lower = text.to_ascii_lowercase();
        let title = lower.find("<title").and_then(|open| {
            let start = open + lower[open..].find('>')? + 1;
            let end = start + lower[start..].find("</title")?;
            Some(one_line(&text[start..end]))
        });
        return match title.map(|t| decode_entities(&t)).filter(|t| !t.is_empty()) {
            Some(title) => format!("an HTML page: \"{}\"", cut(&title, 80)),
            None => "an HTML page".to_owned(),
        };
    }
    cut(&one_line(text), BODY_EXCERPT_MAX)
}

/// `text` with the character references a page title carries decoded:
/// numeric ones and the common named ones (`WordPress &rsaquo; Error`).
/// Others are left as written.
fn decode_entities(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let decoded = rest.find(';').filter(|end| *end <= 10).and_then(|end| {
            let name = &rest[1..end];
            let c = match name {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" | "#39" => Some('\''),
                "nbsp" => Some(' '),
                "rsaquo" => Some('\u{203a}'),
                "lsaquo" => Some('\u{2039}'),
                "raquo" => Some('\u{bb}'),
                "laquo" => Some('\u{ab}'),
                "ndash" => Some('\u{2013}'),
                "mdash" => Some('\u{2014}'),
                "hellip" => Some('\u{2026}'),
                _ => name
                    .strip_prefix("#x")
                    .or_else(|| name.strip_prefix("#X"))
                    .map(|hex| u32::from_str_radix(hex, 16))
                    .or_else(|| name.strip_prefix('#').map(str::parse::<u32>))
                    .and_then(Result::ok)
                    .and_then(char::from_u32),
            }?;
            Some((c, end))
        });
        match decoded {
            Some((c, end)) => {
                out.push(c);
                rest = &rest[end + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// `text` with every run of whitespace (newlines included) as one space.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The first `max` characters of `text`, and `…` when there were more.
fn cut(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_readable() {
        let e = CatalogError::RateLimited {
            retry_after: Some(Duration::from_millis(2500)),
        };
        assert_eq!(
            e.to_string(),
            "rate limited by the platform (retry after 2.5s)"
        );
        let e = CatalogError::Decode {
            path: "data.products.nodes[3].id".into(),
            message: "invalid type".into(),
        };
        assert!(e.to_string().contains("data.products.nodes[3].id"));
    }

    #[test]
    fn transient_classification() {
        let http = |status| CatalogError::Http {
            status,
            code: None,
            message: String::new(),
        };
        assert!(http(503).is_transient());
        assert!(!http(501).is_transient(), "a WAF's Method Not Implemented");
        assert!(http(429).is_transient());
        assert!(!http(400).is_transient());
        assert!(!CatalogError::NotFound("x".into()).is_transient());
        assert!(!CatalogError::Unauthorized("x".into()).is_transient());
    }
}
