//! The ordered steps of a delivery, independent of actix:
//!
//! 1. identify the store (`WebhookSource::inspect`; pings stop here, answered 200);
//! 2. verify the signature over the raw bytes with that store's secrets (401,
//!    nothing recorded, no dedup entry);
//! 3. check the route's topic against the header (400);
//! 4. triage: the body is JSON of the topic's shape, and which product it is
//!    about (an unreadable verified body is kept as `failed`);
//! 5. insert if new, durably, before answering 200 (store errors: 503).
//!
//! The product is normalised from the stored body after the answer, by the
//! dispatcher ([`crate::normalise`]): a body that is JSON but cannot be
//! normalised becomes `failed` then, kept with its raw body all the same.
//!
//! The body size limit and read timeout come before step 1, in the route.

use bytes::Bytes;
use catalog_core::webhook::{HeaderLookup, Inbound, WebhookError};
use catalog_core::{InsertOutcome, Topic};
use chrono::Utc;

use crate::error::Error;
use crate::platforms::{PlatformEntry, VerifierLookup, Verifiers};
use crate::store::{EventStore, NewEvent};

/// A delivery that was answered 200.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Accepted {
    /// A ping: nothing stored.
    Ping,
    /// A new event, stored durably.
    Stored {
        /// Our event id.
        id: String,
        /// Canonical topic.
        topic: String,
    },
    /// Already stored: nothing changed.
    Duplicate {
        /// Our event id.
        id: String,
        /// Canonical topic.
        topic: String,
    },
    /// Verified but unreadable: stored as failed with its raw body.
    Unparseable {
        /// Our event id.
        id: String,
        /// Canonical topic.
        topic: String,
    },
}

impl Accepted {
    /// The canonical topic, when known.
    pub fn topic(&self) -> Option<&str> {
        match self {
            Self::Ping => None,
            Self::Stored { topic, .. }
            | Self::Duplicate { topic, .. }
            | Self::Unparseable { topic, .. } => Some(topic),
        }
    }
}

/// Maps an inspection or verification error to 400 or 401. A missing or empty
/// signature header counts as an authentication failure.
fn reject(err: &WebhookError, platform: &PlatformEntry, headers: &dyn HeaderLookup) -> Error {
    let signature_absent_or_blank = platform
        .signature_headers
        .iter()
        .all(|h| headers.get(h).is_none_or(|v| v.trim().is_empty()));
    let about_signature = match err {
        WebhookError::MissingHeader(name) | WebhookError::InvalidHeader { name, .. } => platform
            .signature_headers
            .iter()
            .any(|h| h.eq_ignore_ascii_case(name)),
        _ => false,
    };
    if err.is_authentication_failure() || (about_signature && signature_absent_or_blank) {
        Error::Unauthorized(err.to_string())
    } else {
        Error::BadRequest(err.to_string())
    }
}

/// Deliveries and pings refused for want of a secret: anyone can send
/// them, so they are warned about at most once a minute, with the count.
static UNCONFIGURED: crate::log_budget::LogBudget =
    crate::log_budget::LogBudget::new(std::time::Duration::from_secs(60));

/// Characters of a sender-chosen store name kept in logs and errors.
const STORE_TEXT_MAX: usize = 80;

/// `text` cut to [`STORE_TEXT_MAX`] characters (`…` marking the cut).
fn clipped(text: &str) -> String {
    match text.char_indices().nth(STORE_TEXT_MAX) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// Runs steps 1 to 5 for one delivery whose body was read within the limits.
///
/// `expected` is the route's topic (`None` on `/webhooks/{platform}`, where the
/// header decides).
///
/// # Errors
/// The [`Error`] to answer with; nothing was stored then (except that a store
/// error leaves it unknown whether the insert happened, which is why it is a 503).
pub async fn process(
    platform: &PlatformEntry,
    store: &dyn EventStore,
    expected: Option<&Topic>,
    headers: &dyn HeaderLookup,
    body: Bytes,
) -> Result<Accepted, Error> {
    let received_at = Utc::now();
    let source = &*platform.source;
    let delivery = match source.inspect(headers, &body) {
        // A ping (unsigned by the platform) says the URL works: not so
        // while every delivery would be refused for want of a secret.
        Ok(Inbound::Ping(_)) if matches!(platform.verifiers, Verifiers::Unconfigured) => {
            if let Some(refused) = UNCONFIGURED.hit() {
                tracing::warn!(platform = %platform.id(), refused, "pings refused: no webhook secret configured for this platform (at most one such line a minute; refused = how many since the last)");
            }
            return Err(Error::NotConfigured(platform.id().as_str().to_owned()));
        }
        Ok(Inbound::Ping(_)) => return Ok(Accepted::Ping),
        Ok(Inbound::Delivery(d)) => d,
        Err(e) => return Err(reject(&e, platform, headers)),
    };
    let verifier = match platform.verifiers.for_store(&delivery.meta.store) {
        Ok(v) => v,
        Err(VerifierLookup::Unconfigured) => {
            if let Some(refused) = UNCONFIGURED.hit() {
                tracing::warn!(
                    platform = %platform.id(),
                    refused,
                    "deliveries refused: no webhook secret configured for this platform (at most one such line a minute; refused = how many since the last)"
                );
            }
            return Err(Error::NotConfigured(platform.id().as_str().to_owned()));
        }
        Err(VerifierLookup::UnknownStore) => {
            // Sender-chosen text, before any verification: kept short.
            let store = clipped(&delivery.meta.store);
            // The likelier misconfiguration than a wrong secret (a store
            // missing from the list, a WordPress in a subfolder): said at
            // warn, or it goes unseen until the platform gives up.
            if let Some(refused) = platform.unknown_stores.hit() {
                tracing::warn!(
                    platform = %platform.id(),
                    store = %store,
                    refused,
                    "deliveries refused: the store is not configured for this platform; add it to the platform's stores with its secret (at most one such line a minute; refused = how many since the last)"
                );
            }
            return Err(Error::UnknownStore(store));
        }
    };
    // For the refusal warning: `verify` consumes the delivery.
    let claimed_store = delivery.meta.store.clone();
    let verified = delivery.verify(&body, verifier).map_err(|e| {
        let refusal = reject(&e, platform, headers);
        if matches!(refusal, Error::Unauthorized(_))
            && let Some(refused) = platform.refusals.hit()
        {
            tracing::warn!(
                platform = %platform.id(),
                store = %clipped(&claimed_store),
                error = %e,
                refused,
                "deliveries refused: the signature matches no secret of the store (at most one such line a minute; refused = how many since the last)"
            );
        }
        refusal
    })?;
    let meta = verified.meta();
    if let Some(expected) = expected
        && *expected != meta.topic
    {
        return Err(Error::TopicMismatch {
            expected: expected.as_str().to_owned(),
            got: meta.topic.as_str().to_owned(),
        });
    }
    let topic = meta.topic.as_str().to_owned();
    // Only what storing needs: the body is JSON of the topic's shape and
    // names its product (for per-product ordering). The product itself is
    // derived from the stored body after the answer (crate::normalise).
    let (record, parsed) = match source.triage(&verified, &body) {
        Ok(product_id) => (
            NewEvent::received(meta, body, product_id, received_at),
            true,
        ),
        Err(err) => {
            tracing::warn!(
                platform = %meta.platform,
                store = %meta.store,
                topic = %topic,
                error = %err,
                "verified delivery could not be parsed; stored as failed"
            );
            (NewEvent::unparseable(meta, body, &err, received_at), false)
        }
    };
    let id = record.id.clone();
    match store.insert(record).await? {
        InsertOutcome::Duplicate => Ok(Accepted::Duplicate { id, topic }),
        InsertOutcome::Inserted if parsed => Ok(Accepted::Stored { id, topic }),
        InsertOutcome::Inserted => Ok(Accepted::Unparseable { id, topic }),
    }
}

#[cfg(test)]
mod tests {
    use super::clipped;

    #[test]
    fn store_names_from_senders_are_clipped() {
        assert_eq!(clipped("shop.example.com"), "shop.example.com");
        let long = "é".repeat(3000);
        let cut = clipped(&long);
        assert_eq!(cut.chars().count(), 81);
        assert!(cut.ends_with('…'));
    }
}
