//! The server's error type: logged in detail, answered with an opaque body.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};

use crate::store::StoreError;

/// `Result` with the server [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a request was refused. The response carries only a short code
/// (`{"error":"unauthorized"}`); the detail goes to the log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Malformed request (400).
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The route's topic differs from the topic header (400).
    #[error("topic mismatch: route expects {expected}, header says {got}")]
    TopicMismatch {
        /// The route's topic.
        expected: String,
        /// The header's topic (canonical form).
        got: String,
    },
    /// Signature or token refused (401).
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// A delivery from a store the configuration does not list for its
    /// platform (401, as an unknown signer; counted apart in the metrics).
    #[error("unauthorized: store {0:?} is not configured")]
    UnknownStore(String),
    /// No such route or resource (404).
    #[error("not found")]
    NotFound,
    /// A route that exists, asked with another method (405).
    #[error("method not allowed; use {allow}")]
    MethodNotAllowed {
        /// The methods the route takes (`POST`).
        allow: &'static str,
    },
    /// The event is being delivered right now (409): a replay waits for the
    /// attempt in progress to end.
    #[error("the event is being delivered; replay it once the attempt has ended")]
    InFlight,
    /// A `Content-Encoding` other than `identity` (415): signatures cover
    /// the bytes as sent, and the platforms send them uncompressed.
    #[error("Content-Encoding is not supported: send the body uncompressed")]
    UnsupportedEncoding,
    /// Body not received in time (408).
    #[error("request body not received in time")]
    Timeout,
    /// Body larger than the limit (413).
    #[error("payload larger than {limit} bytes")]
    PayloadTooLarge {
        /// The limit.
        limit: usize,
    },
    /// Too many requests from one address (429).
    #[error("rate limited")]
    RateLimited,
    /// The platform has no secret configured (503: the platform retries, and
    /// the operator can configure it meanwhile).
    #[error("platform {0} has no webhook secret configured")]
    NotConfigured(String),
    /// The store failed (503: the platform retries).
    #[error("store failure: {0}")]
    Store(#[from] StoreError),
    /// Anything else (500).
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// The short code sent to the client.
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadRequest(_) => "bad_request",
            Self::TopicMismatch { .. } => "topic_mismatch",
            Self::Unauthorized(_) | Self::UnknownStore(_) => "unauthorized",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed { .. } => "method_not_allowed",
            Self::InFlight => "in_flight",
            Self::UnsupportedEncoding => "unsupported_encoding",
            Self::Timeout => "timeout",
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::RateLimited => "rate_limited",
            Self::NotConfigured(_) | Self::Store(_) => "unavailable",
            Self::Internal(_) => "internal",
        }
    }
}

/// Characters of a 400's `message` kept.
const MESSAGE_MAX: usize = 300;

/// Store failures answered (503), logged at most every 10 s.
static STORE_FAILURES: crate::log_budget::LogBudget =
    crate::log_budget::LogBudget::new(std::time::Duration::from_secs(10));

impl ResponseError for Error {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) | Self::TopicMismatch { .. } => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) | Self::UnknownStore(_) => StatusCode::UNAUTHORIZED,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::InFlight => StatusCode::CONFLICT,
            Self::UnsupportedEncoding => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Timeout => StatusCode::REQUEST_TIMEOUT,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Self::NotConfigured(_) | Self::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        if matches!(self, Self::NotConfigured(_)) {
            // Already logged (warn) where it was detected; one line per delivery is enough.
        } else if let Self::Store(_) = self {
            // One per refused delivery while the store fails (a full disk:
            // thousands a minute): one line every 10 s, with the count.
            if let Some(failed) = STORE_FAILURES.hit() {
                tracing::error!(error = %self, failed, "requests failed: the store refused them (at most one such line every 10 s, failed = how many since the last)");
            }
        } else if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
        } else {
            tracing::debug!(error = %self, "request refused");
        }
        let mut res = HttpResponse::build(status);
        if matches!(self, Self::Unauthorized(_) | Self::UnknownStore(_)) {
            res.insert_header(("WWW-Authenticate", "Bearer"));
        }
        if matches!(self, Self::RateLimited) {
            res.insert_header(("Retry-After", "1"));
        }
        if let Self::MethodNotAllowed { allow } = self {
            res.insert_header(("Allow", *allow));
        }
        match self {
            // What to fix, for a request the client can correct: which
            // parameter or header, in our words (values quoted in it are
            // already clipped where senders choose them).
            Self::BadRequest(_) | Self::TopicMismatch { .. } => {
                let message: String = self
                    .to_string()
                    .trim_start_matches("bad request: ")
                    .chars()
                    .take(MESSAGE_MAX)
                    .collect();
                res.json(serde_json::json!({ "error": self.code(), "message": message }))
            }
            _ => res.json(serde_json::json!({ "error": self.code() })),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Error;

    /// Every short code an answer can carry is in the OpenAPI document's
    /// `Error` enum (clients generated from it would reject the others).
    #[test]
    fn every_code_is_in_the_openapi_document() {
        let doc: serde_json::Value =
            serde_json::from_str(crate::routes::docs::OPENAPI).expect("the document parses");
        let listed = &doc["components"]["responses"]["Error"]["content"]["application/json"]["schema"]
            ["properties"]["error"]["enum"];
        let every = [
            Error::BadRequest(String::new()),
            Error::TopicMismatch {
                expected: String::new(),
                got: String::new(),
            },
            Error::Unauthorized(String::new()),
            Error::UnknownStore(String::new()),
            Error::NotFound,
            Error::MethodNotAllowed { allow: "POST" },
            Error::InFlight,
            Error::UnsupportedEncoding,
            Error::Timeout,
            Error::PayloadTooLarge { limit: 1 },
            Error::RateLimited,
            Error::NotConfigured(String::new()),
            Error::Store(crate::store::StoreError::Unavailable),
            Error::Internal(String::new()),
        ];
        for e in every {
            // A new variant must be listed above: this match says so.
            match e {
                Error::BadRequest(_)
                | Error::TopicMismatch { .. }
                | Error::Unauthorized(_)
                | Error::UnknownStore(_)
                | Error::NotFound
                | Error::MethodNotAllowed { .. }
                | Error::InFlight
                | Error::UnsupportedEncoding
                | Error::Timeout
                | Error::PayloadTooLarge { .. }
                | Error::RateLimited
                | Error::NotConfigured(_)
                | Error::Store(_)
                | Error::Internal(_) => {}
            }
            let code = e.code();
            assert!(
                listed
                    .as_array()
                    .is_some_and(|l| l.iter().any(|c| c == code)),
                "{code} is not in the OpenAPI Error enum: {listed}"
            );
        }
    }
}
