use std::fmt::Debug;

use chrono::{DateTime, Utc};

use super::{HeaderLookup, HmacVerifier, PayloadError, WebhookError};
use crate::{CatalogEvent, EventId, PlatformId, Topic};

/// What the headers of a delivery claim, before anything is verified.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeliveryMeta {
    /// The platform.
    pub platform: PlatformId,
    /// The store that claims to have sent it, normalised (lower-case shop
    /// domain, site URL without trailing slash). Used to pick the secrets.
    pub store: String,
    /// The topic.
    pub topic: Topic,
    /// The topic as sent.
    pub raw_topic: String,
    /// The deduplication key (see the platform crate for how it is derived).
    pub event_id: EventId,
    /// The platform's id of this delivery attempt.
    pub delivery_id: Option<String>,
    /// When the platform triggered the delivery.
    pub triggered_at: Option<DateTime<Utc>>,
    /// The API version the payload was serialised with.
    pub api_version: Option<String>,
}

impl DeliveryMeta {
    /// Meta for a delivery; optional fields start empty.
    pub fn new(
        platform: PlatformId,
        store: impl Into<String>,
        topic: Topic,
        raw_topic: impl Into<String>,
        event_id: EventId,
    ) -> Self {
        Self {
            platform,
            store: store.into(),
            topic,
            raw_topic: raw_topic.into(),
            event_id,
            delivery_id: None,
            triggered_at: None,
            api_version: None,
        }
    }

    /// Sets the delivery id.
    #[must_use]
    pub fn with_delivery_id(mut self, id: Option<String>) -> Self {
        self.delivery_id = id;
        self
    }

    /// Sets the trigger time.
    #[must_use]
    pub fn with_triggered_at(mut self, at: Option<DateTime<Utc>>) -> Self {
        self.triggered_at = at;
        self
    }

    /// Sets the API version.
    #[must_use]
    pub fn with_api_version(mut self, version: Option<String>) -> Self {
        self.api_version = version;
        self
    }
}

/// A delivery whose signature has not been checked yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnverifiedDelivery {
    /// What the headers claim.
    pub meta: DeliveryMeta,
    /// The signature header's value.
    pub signature: String,
}

impl UnverifiedDelivery {
    /// Checks the signature over the raw body; the only way to get a
    /// [`VerifiedDelivery`].
    ///
    /// # Errors
    /// The [`WebhookError`] of [`HmacVerifier::verify`].
    pub fn verify(
        self,
        body: &[u8],
        verifier: &HmacVerifier,
    ) -> Result<VerifiedDelivery, WebhookError> {
        verifier.verify(body, &self.signature)?;
        Ok(VerifiedDelivery { meta: self.meta })
    }
}

/// A delivery whose signature matched: its headers and body come from someone
/// who holds the store's secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedDelivery {
    meta: DeliveryMeta,
}

impl VerifiedDelivery {
    /// What the (now authenticated) headers say.
    pub fn meta(&self) -> &DeliveryMeta {
        &self.meta
    }

    /// Takes the meta out.
    pub fn into_meta(self) -> DeliveryMeta {
        self.meta
    }

    /// A delivery verified earlier, read back from the receiver's own
    /// storage, to be parsed again (a receiver that stores the raw body at
    /// once and normalises it later, or again after an upgrade).
    ///
    /// Only for bodies whose signature was checked before they were stored:
    /// anything else must go through [`UnverifiedDelivery::verify`].
    pub fn reloaded(meta: DeliveryMeta) -> Self {
        Self { meta }
    }
}

/// A platform's reachability check (WooCommerce sends `webhook_id=N` when a
/// webhook is created). Answer 200; it is not an event.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Ping {
    /// The platform.
    pub platform: PlatformId,
    /// The platform's subscription id, when the ping names it.
    pub subscription_id: Option<String>,
}

impl Ping {
    /// A ping.
    pub fn new(platform: PlatformId, subscription_id: Option<String>) -> Self {
        Self {
            platform,
            subscription_id,
        }
    }
}

/// What an incoming request is, from its headers alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    /// A ping: answer 200, store nothing.
    Ping(Ping),
    /// A delivery to verify.
    Delivery(UnverifiedDelivery),
}

/// Turns a platform's webhook deliveries into [`CatalogEvent`]s.
///
/// Implemented once per platform crate; object safe.
pub trait WebhookSource: Send + Sync + Debug {
    /// The platform.
    fn platform(&self) -> PlatformId;

    /// Reads an untrusted request: ping or delivery, which store, which topic,
    /// which signature. Must not trust or store anything; the body is only
    /// looked at to recognise pings and to derive a content-based event id
    /// where the platform has no reliable one.
    ///
    /// # Errors
    /// [`WebhookError::MissingHeader`] or [`WebhookError::InvalidHeader`] for
    /// requests that are not deliveries of this platform.
    fn inspect(&self, headers: &dyn HeaderLookup, body: &[u8]) -> Result<Inbound, WebhookError>;

    /// Parses a verified body into an event.
    ///
    /// # Errors
    /// [`PayloadError`] when the body is not what the topic should carry.
    fn parse(
        &self,
        delivery: &VerifiedDelivery,
        body: &[u8],
        received_at: DateTime<Utc>,
    ) -> Result<CatalogEvent, PayloadError>;

    /// Like [`WebhookSource::parse`], for callers that keep the body bytes
    /// themselves (a receiver storing the raw body): the event's `raw_body`
    /// is left empty and its product's `raw` is `Null`, which lets a platform
    /// skip building copies of the payload. Everything else, errors included,
    /// is what [`WebhookSource::parse`] returns.
    ///
    /// # Errors
    /// As [`WebhookSource::parse`].
    fn parse_lean(
        &self,
        delivery: &VerifiedDelivery,
        body: &[u8],
        received_at: DateTime<Utc>,
    ) -> Result<CatalogEvent, PayloadError> {
        let mut event = self.parse(delivery, body, received_at)?;
        event.raw_body = String::new();
        if let Some(product) = &mut event.product {
            product.raw = serde_json::Value::Null;
        }
        Ok(event)
    }

    /// What a receiver needs before it stores a verified body and answers:
    /// the id of the product the delivery is about (`None` for topics that
    /// carry no product), read as cheaply as the platform allows. The
    /// receiver normalises the stored body later with
    /// [`WebhookSource::parse_lean`] (see [`VerifiedDelivery::reloaded`]).
    ///
    /// Whenever [`WebhookSource::parse`] succeeds, this succeeds with the
    /// same `product_id`; it fails at least on bodies that are not JSON. It
    /// may accept a body that `parse` then rejects (a price that is not a
    /// number, say): that surfaces when the stored body is normalised.
    ///
    /// The default runs the full parse; platforms override it with a skim.
    ///
    /// # Errors
    /// [`PayloadError`] when the body is not what the topic should carry.
    fn triage(
        &self,
        delivery: &VerifiedDelivery,
        body: &[u8],
    ) -> Result<Option<String>, PayloadError> {
        Ok(self
            .parse_lean(delivery, body, DateTime::<Utc>::UNIX_EPOCH)?
            .product_id)
    }
}

/// Checks [`WebhookSource::triage`]'s contract for one verified body: when
/// [`WebhookSource::parse`] succeeds, `triage` succeeds with the same
/// `product_id`; when `triage` accepts a body `parse` rejects, the body is
/// at least JSON. For platform crates' tests and fuzz targets.
///
/// # Errors
/// What broke the contract, in words.
pub fn check_triage(
    source: &dyn WebhookSource,
    delivery: &VerifiedDelivery,
    body: &[u8],
) -> Result<(), String> {
    let parsed = source.parse(delivery, body, DateTime::<Utc>::UNIX_EPOCH);
    match (parsed, source.triage(delivery, body)) {
        (Ok(event), Ok(id)) if event.product_id == id => Ok(()),
        (Ok(event), Ok(id)) => Err(format!(
            "triage read product id {id:?}, parse {:?}",
            event.product_id
        )),
        (Ok(_), Err(e)) => Err(format!("parse succeeded, triage failed: {e}")),
        (Err(_), Ok(_)) if serde_json::from_slice::<serde::de::IgnoredAny>(body).is_err() => {
            Err("triage accepted a body that is not JSON".to_owned())
        }
        (Err(_), _) => Ok(()),
    }
}

/// The outcome of [`receive`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Received {
    /// A ping.
    Ping(Ping),
    /// A verified, parsed event.
    Event(Box<CatalogEvent>),
    /// A verified delivery whose body could not be parsed: keep it for inspection.
    Unparseable {
        /// The verified delivery.
        delivery: VerifiedDelivery,
        /// Why it could not be parsed.
        error: PayloadError,
    },
}

/// Runs inspect, verify and parse in order, with the secrets `verifier_for`
/// gives for the claimed store (`None`: the store is unknown, which is a
/// [`WebhookError::SignatureMismatch`]: we cannot authenticate it).
///
/// # Errors
/// Any [`WebhookError`] from inspection or verification.
pub fn receive<'v>(
    source: &dyn WebhookSource,
    headers: &dyn HeaderLookup,
    body: &[u8],
    verifier_for: &dyn Fn(&str) -> Option<&'v HmacVerifier>,
    received_at: DateTime<Utc>,
) -> Result<Received, WebhookError> {
    let delivery = match source.inspect(headers, body)? {
        Inbound::Ping(ping) => return Ok(Received::Ping(ping)),
        Inbound::Delivery(d) => d,
    };
    let verifier = verifier_for(&delivery.meta.store).ok_or(WebhookError::SignatureMismatch)?;
    let verified = delivery.verify(body, verifier)?;
    Ok(match source.parse(&verified, body, received_at) {
        Ok(event) => Received::Event(Box::new(event)),
        Err(error) => Received::Unparseable {
            delivery: verified,
            error,
        },
    })
}
