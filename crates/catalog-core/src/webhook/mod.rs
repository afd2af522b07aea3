//! Webhook verification and the platform-neutral delivery flow.
//!
//! A delivery goes through three steps, in this order, and each platform crate
//! plugs into them through [`WebhookSource`]:
//!
//! 1. [`WebhookSource::inspect`] reads the (untrusted) headers: is this a ping,
//!    which store claims to have sent it, which topic, which signature. Nothing
//!    is stored or looked up yet.
//! 2. [`UnverifiedDelivery::verify`] checks the signature over the **raw body
//!    bytes** with the store's secrets ([`HmacVerifier`]). Only this step can make
//!    a [`VerifiedDelivery`].
//! 3. [`WebhookSource::parse`] turns the verified body into a [`CatalogEvent`].
//!    A verified body that cannot be parsed gives a [`PayloadError`], so that a
//!    receiver can keep the delivery for inspection rather than lose it.
//!
//! [`receive`] runs the three steps for callers that do not need to act between them.
//!
//! [`CatalogEvent`]: crate::CatalogEvent

mod error;
mod headers;
mod source;
mod verify;

pub use error::{PayloadError, WebhookError};
pub use headers::{HeaderLookup, Headers, optional_header, required_header, signature_header};
pub use source::{
    DeliveryMeta, Inbound, Ping, Received, UnverifiedDelivery, VerifiedDelivery, WebhookSource,
    check_triage, receive,
};
pub use verify::{HmacVerifier, SIGNATURE_LEN, sign};
