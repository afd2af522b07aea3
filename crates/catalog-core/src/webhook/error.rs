use std::fmt;

/// Why a webhook request was refused before its payload was read.
///
/// Receivers answer these with 401 (signature problems) or 400 (malformed
/// headers) and record nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WebhookError {
    /// A required header is absent.
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    /// A header is present but unusable (empty, not UTF-8, wrong format).
    #[error("invalid header {name}: {reason}")]
    InvalidHeader {
        /// The header name.
        name: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The signature header (named) is absent: an unsigned request.
    #[error("missing signature header {0}")]
    MissingSignature(&'static str),
    /// The signature header is present but empty.
    #[error("empty signature")]
    EmptySignature,
    /// The signature is not valid base64.
    #[error("signature is not base64")]
    MalformedSignature,
    /// The signature decodes to the wrong number of bytes (HMAC-SHA256 gives 32).
    #[error("signature has {0} bytes, expected 32")]
    SignatureLength(usize),
    /// The signature does not match the body under any configured secret.
    #[error("signature does not match")]
    SignatureMismatch,
    /// A verifier was built with no secret, or with an empty one.
    #[error("no usable webhook secret configured")]
    NoSecret,
}

impl WebhookError {
    /// Whether this is a signature failure (answer 401) rather than a malformed
    /// request (answer 400).
    pub fn is_authentication_failure(&self) -> bool {
        matches!(
            self,
            Self::MissingSignature(_)
                | Self::EmptySignature
                | Self::MalformedSignature
                | Self::SignatureLength(_)
                | Self::SignatureMismatch
                | Self::NoSecret
        )
    }
}

/// A verified body that could not be turned into an event.
///
/// Carries the JSON path that failed so an operator can see what the platform
/// sent that we did not expect.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct PayloadError {
    /// The JSON path of the failure (empty for the document itself).
    pub path: String,
    /// What was wrong.
    pub message: String,
}

impl PayloadError {
    /// A payload error at a path. What the message quotes of the payload
    /// is cut to an excerpt (40 characters a quoted value, 300 in all):
    /// these errors are logged and stored beside the body.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: crate::excerpt::message(&path.into()),
            message: crate::excerpt::message(&message.into()),
        }
    }
}

impl fmt::Display for PayloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() || self.path == "." {
            write!(f, "unreadable payload: {}", self.message)
        } else {
            write!(f, "unreadable payload at `{}`: {}", self.path, self.message)
        }
    }
}

impl From<crate::CatalogError> for PayloadError {
    fn from(err: crate::CatalogError) -> Self {
        match err {
            crate::CatalogError::Decode { path, message } => Self::new(path, message),
            other => Self::new("", other.to_string()),
        }
    }
}
