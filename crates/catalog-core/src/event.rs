//! The event model: a verified, parsed webhook delivery.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{DedupKey, PlatformId, Product};

/// What happened to a product: an open enum that keeps unknown topics.
///
/// Serialised as `"product.created"`, `"product.updated"`, `"product.deleted"`,
/// `"product.restored"`; any other topic is kept as the platform wrote it
/// (`"orders/create"`), in [`Topic::Other`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Topic {
    /// A product was created.
    ProductCreated,
    /// A product (or one of its variants) was updated.
    ProductUpdated,
    /// A product was deleted (WooCommerce: moved to the trash).
    ProductDeleted,
    /// A product was restored from the trash.
    ProductRestored,
    /// Any other topic, verbatim. Never one of the canonical names above:
    /// the text is what gets stored and serialised, and it reads back
    /// (with [`Topic::from_canonical`] and serde) as the canonical topic.
    /// Build it from a platform's header with [`Topic::from_canonical`],
    /// which keeps that true.
    Other(String),
}

impl Topic {
    /// The canonical text of the topic.
    pub fn as_str(&self) -> &str {
        match self {
            Self::ProductCreated => "product.created",
            Self::ProductUpdated => "product.updated",
            Self::ProductDeleted => "product.deleted",
            Self::ProductRestored => "product.restored",
            Self::Other(raw) => raw,
        }
    }

    /// Reads the canonical text back (as written by [`Topic::as_str`]).
    pub fn from_canonical(s: &str) -> Self {
        match s {
            "product.created" => Self::ProductCreated,
            "product.updated" => Self::ProductUpdated,
            "product.deleted" => Self::ProductDeleted,
            "product.restored" => Self::ProductRestored,
            other => Self::Other(other.to_owned()),
        }
    }

    /// The short action name used in routes: `create`, `update`, `delete`,
    /// `restore`; `None` for other topics.
    pub fn action(&self) -> Option<&'static str> {
        match self {
            Self::ProductCreated => Some("create"),
            Self::ProductUpdated => Some("update"),
            Self::ProductDeleted => Some("delete"),
            Self::ProductRestored => Some("restore"),
            Self::Other(_) => None,
        }
    }

    /// The topic for a route action (`create`, `update`, `delete`, `restore`).
    pub fn from_action(action: &str) -> Option<Self> {
        match action {
            "create" => Some(Self::ProductCreated),
            "update" => Some(Self::ProductUpdated),
            "delete" => Some(Self::ProductDeleted),
            "restore" => Some(Self::ProductRestored),
            _ => None,
        }
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Topic {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Topic {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Self::from_canonical(&String::deserialize(deserializer)?))
    }
}

/// The key a platform's deliveries are deduplicated by, within one store.
///
/// Each platform crate documents how it derives it (Shopify: topic and
/// `X-Shopify-Event-Id`; WooCommerce: a digest of the delivery).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EventId(String);

impl EventId {
    /// Wraps a key.
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A verified and parsed webhook delivery, normalised across platforms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CatalogEvent {
    /// The platform that sent it.
    pub platform: PlatformId,
    /// The store, as the platform identifies it (shop domain, site URL).
    pub store: String,
    /// What happened.
    pub topic: Topic,
    /// The topic exactly as the platform sent it (`products/update`, `product.updated`).
    pub raw_topic: String,
    /// The deduplication key (see [`EventId`]).
    pub event_id: EventId,
    /// The platform's id of this delivery attempt, when it sends one.
    #[serde(default)]
    pub delivery_id: Option<String>,
    /// When the platform says it triggered the delivery.
    #[serde(default)]
    pub triggered_at: Option<DateTime<Utc>>,
    /// When we received it.
    pub received_at: DateTime<Utc>,
    /// The platform's id of the product concerned.
    #[serde(default)]
    pub product_id: Option<String>,
    /// The normalised product, when the payload carries one (not for deletes).
    #[serde(default)]
    pub product: Option<Product>,
    /// The body exactly as received.
    pub raw_body: String,
}

impl CatalogEvent {
    /// The key this event is deduplicated by.
    pub fn dedup_key(&self) -> DedupKey {
        DedupKey::new(
            self.platform.clone(),
            self.store.clone(),
            self.event_id.clone(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_round_trip_and_keep_unknown() {
        for t in [
            Topic::ProductCreated,
            Topic::ProductUpdated,
            Topic::ProductDeleted,
            Topic::ProductRestored,
            Topic::Other("orders/create".into()),
        ] {
            let json = serde_json::to_string(&t).unwrap();
            assert_eq!(serde_json::from_str::<Topic>(&json).unwrap(), t);
            if let Some(action) = t.action() {
                assert_eq!(Topic::from_action(action), Some(t.clone()));
            }
        }
        assert_eq!(Topic::from_action("explode"), None);
    }
}
