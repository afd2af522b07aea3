//! Secrets that cannot be the platform's: empty, blank, placeholders,
//! published examples.

use secrecy::{ExposeSecret, SecretString};

use super::refuse;

/// The Standard Webhooks specification's test vector secret, which example
/// files tend to carry: a signing key anyone can read.
pub(super) const PUBLISHED_WHSEC: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// Whether a secret is still the placeholder of the example files
/// (`deploy/webhook-server.env.example`, the docs): copied as is, it would
/// be a secret anyone can read.
pub(super) fn is_placeholder(secret: &str) -> bool {
    secret.to_ascii_lowercase().contains("replace-me")
}

/// Refuses a webhook secret that cannot be the platform's: empty (in the
/// file or a `CATALOG_*` variable; an empty seed variable counts as unset),
/// blank, or the example files' placeholder. The message names the key,
/// never the value.
pub(super) fn check_secret(key: &str, secret: &SecretString) -> anyhow::Result<()> {
    let value = secret.expose_secret();
    if value.is_empty() {
        return Err(refuse(
            key,
            "is empty: set the secret, or remove the key to leave it unset",
        ));
    }
    if value.trim().is_empty() {
        return Err(refuse(key, "is blank (whitespace only)"));
    }
    if is_placeholder(value) {
        return Err(refuse(
            key,
            "still holds the example file's placeholder (replace-me): set the platform's secret",
        ));
    }
    Ok(())
}
