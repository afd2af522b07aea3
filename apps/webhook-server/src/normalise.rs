//! The product of a stored delivery, derived from its raw body.
//!
//! The receiver answers a delivery as soon as the verified raw body is
//! stored with its product id ([`WebhookSource::triage`]): decoding and
//! mapping the product is work the platform does not wait for, and keeping
//! it off the acknowledgement path means a normaliser that rejects a body
//! (or a bug in one) can never cost a delivery. The dispatcher normalises
//! each event before the sinks see it ([`crate::dispatch`]), marking
//! unreadable ones `failed`; the admin API derives the product on read. An
//! event replayed after an upgrade is normalised by the new code.
//!
//! [`WebhookSource::triage`]: catalog_core::webhook::WebhookSource::triage

use catalog_core::webhook::{PayloadError, VerifiedDelivery};

use crate::platforms::Platforms;
use crate::store::{EventStatus, NewEvent};

/// The normalised product of `event` as JSON text (without the product's
/// `raw` copy of the payload: the raw body is stored beside it).
///
/// `Ok(None)` for events without a product: deletes, other topics, stores
/// without the settings a product needs (a WooCommerce store without its
/// currency), failed events, and events of a platform this build or
/// configuration does not include. A product stored by an earlier version
/// is returned as stored.
///
/// # Errors
/// [`PayloadError`] when the body cannot be normalised.
pub fn product_json(
    platforms: &Platforms,
    event: &NewEvent,
) -> Result<Option<String>, PayloadError> {
    if event.product.is_some() || event.status == EventStatus::Failed {
        return Ok(event.product.clone());
    }
    let Some(entry) = platforms.get(&event.platform) else {
        return Ok(None);
    };
    // Verified before it was stored: only verified deliveries are stored.
    let delivery = VerifiedDelivery::reloaded(event.meta());
    let parsed = entry
        .source
        .parse_lean(&delivery, &event.raw_body, event.received_at)?;
    parsed
        .product
        .map(|mut p| {
            p.raw = serde_json::Value::Null;
            serde_json::to_string(&p)
        })
        .transpose()
        .map_err(|e| PayloadError::new("", format!("cannot serialise the product: {e}")))
}
