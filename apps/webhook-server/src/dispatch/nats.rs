//! The NATS JetStream sink: publishes each normalised event to a subject and
//! waits for JetStream's acknowledgement before reporting success.
//!
//! Subjects are `<prefix>.<platform>.<store>.<topic>`, for example
//! `catalog.events.shopify.example_myshopify_com.product.created`:
//!
//! - the canonical topic keeps its dots as subject tokens (`product.created`
//!   is two tokens), so `catalog.events.*.*.product.*` selects every product
//!   event and `catalog.events.shopify.>` every Shopify event;
//! - the store becomes one token: a leading `http://` or `https://` is dropped
//!   and every character other than ASCII letters, digits, `-` and `_` (dots,
//!   `*`, `>`, whitespace, `/`, `:` ...) becomes `_`. Distinct stores may share
//!   a token (`a.b` and `a_b`); the payload always carries the exact store.
//!
//! Every message carries `Nats-Msg-Id: <event id>`, so JetStream drops a
//! republished event (a dispatch retried after a lost acknowledgement, or a
//! lease that expired while a replica was publishing) within the stream's
//! duplicate window. Consumers should still be idempotent by event id:
//! dispatch is at least once, and a retry after the window is a new message.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_nats::jetstream::{self, stream};
use async_nats::{ConnectOptions, HeaderMap, ServerAddr};
use secrecy::ExposeSecret;

use super::sinks::EventPayload;
use super::{EventHandler, HandlerError};
use crate::redact::redact_url;
use crate::settings::NatsSettings;
use crate::store::StoredEvent;

/// The header JetStream deduplicates on.
pub const MSG_ID_HEADER: &str = "Nats-Msg-Id";

/// Publishes events to JetStream.
pub struct NatsSink {
    js: jetstream::Context,
    prefix: String,
    stream: String,
    create_stream: bool,
    duplicate_window: Duration,
    timeout: Duration,
    /// The stream was found or created once; no need to ask again.
    ready: AtomicBool,
    shown_url: String,
}

impl fmt::Debug for NatsSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsSink")
            .field("url", &self.shown_url)
            .field("prefix", &self.prefix)
            .field("stream", &self.stream)
            .finish_non_exhaustive()
    }
}

/// One subject token from free text: `-`, `_`, ASCII letters and digits kept,
/// anything else (including `.`, `*`, `>` and whitespace) replaced by `_`.
pub fn subject_token(text: &str) -> String {
    let token: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let token = token.trim_end_matches('_');
    if token.is_empty() {
        "_".to_owned()
    } else {
        token.to_owned()
    }
}

/// The store's subject token (see the module docs).
pub fn store_token(store: &str) -> String {
    let s = store.trim();
    let s = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .unwrap_or(s);
    subject_token(s)
}

/// The subject of an event: `<prefix>.<platform>.<store>.<topic tokens>`.
pub fn subject_for(prefix: &str, platform: &str, store: &str, topic: &str) -> String {
    let topic: Vec<String> = topic.split(['.', '/']).map(subject_token).collect();
    format!(
        "{prefix}.{}.{}.{}",
        subject_token(platform),
        store_token(store),
        topic.join(".")
    )
}

/// Replaces every configured URL in `message` by its redacted form, in case
/// the client quotes the address it failed to reach.
fn scrub(message: String, url: &str) -> String {
    url.split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .fold(message, |m, u| m.replace(u, &redact_url(u)))
}

impl NatsSink {
    /// Connects to NATS and looks up (or creates) the stream.
    ///
    /// The connection is retried in the background when the server is down
    /// at start-up (the sink then fails, and events are retried, until it is
    /// up), so a broker outage never stops webhooks from being received and
    /// stored. The stream is checked once at start-up and, if that fails,
    /// again before the first publish.
    ///
    /// # Errors
    /// When the URL cannot be parsed. Messages never contain credentials.
    pub async fn connect(settings: &NatsSettings) -> Result<Self, HandlerError> {
        let shown_url = redact_url(&settings.url);
        let addrs = settings
            .url
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(|u| {
                ServerAddr::from_str(u).map_err(|e| {
                    HandlerError::new(format!(
                        "nats.url: invalid server address {}: {}",
                        redact_url(u),
                        scrub(e.to_string(), u)
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let timeout = Duration::from_millis(settings.timeout_ms.max(1));
        let mut options = ConnectOptions::new()
            .name("webhook-server")
            .connection_timeout(timeout)
            .retry_on_initial_connect();
        if let Some(token) = &settings.token {
            options = options.token(token.expose_secret().to_owned());
        }
        let client = options.connect(addrs).await.map_err(|e| {
            HandlerError::new(format!(
                "nats: cannot connect to {shown_url}: {}",
                scrub(e.to_string(), &settings.url)
            ))
        })?;
        let mut js = jetstream::new(client);
        js.set_timeout(timeout);
        let sink = Self {
            js,
            prefix: settings.subject_prefix.clone(),
            stream: settings.stream.clone(),
            create_stream: settings.create_stream,
            duplicate_window: Duration::from_secs(settings.duplicate_window_secs.max(1)),
            timeout,
            ready: AtomicBool::new(false),
            shown_url,
        };
        if let Err(e) = sink.ensure_stream().await {
            if sink.js.client().connection_state() == async_nats::connection::State::Connected {
                tracing::warn!(error = %e, "NATS stream not ready yet; will check again before publishing");
            } else {
                tracing::warn!(url = %sink.shown_url, error = %e, "NATS server not reachable yet: deliveries are stored, and dispatch retries until it is");
            }
        }
        Ok(sink)
    }

    /// The NATS server's `max_payload`, once its first `INFO` arrived.
    pub fn max_payload(&self) -> Option<usize> {
        self.js
            .client()
            .try_server_info()
            .map(|info| info.max_payload)
    }

    /// The subject an event is published to.
    pub fn subject(&self, e: &StoredEvent) -> String {
        subject_for(
            &self.prefix,
            &e.event.platform,
            &e.event.store,
            &e.event.topic,
        )
    }

    /// Finds the stream, creating it when configured to.
    ///
    /// # Errors
    /// When the stream does not exist (and may not be created) or NATS does
    /// not answer in time.
    pub async fn ensure_stream(&self) -> Result<(), HandlerError> {
        if self.ready.load(Ordering::Acquire) {
            return Ok(());
        }
        let found = if self.create_stream {
            let config = stream::Config {
                name: self.stream.clone(),
                subjects: vec![format!("{}.>", self.prefix)],
                duplicate_window: self.duplicate_window,
                storage: stream::StorageType::File,
                ..Default::default()
            };
            tokio::time::timeout(self.timeout, self.js.get_or_create_stream(config))
                .await
                .map_err(|_| HandlerError::new("nats: timed out creating the stream"))?
                .map_err(|e| {
                    HandlerError::new(format!(
                        "nats: cannot create or find stream {}: {e}",
                        self.stream
                    ))
                })
        } else {
            tokio::time::timeout(self.timeout, self.js.get_stream(&self.stream))
                .await
                .map_err(|_| HandlerError::new("nats: timed out looking up the stream"))?
                .map_err(|e| {
                    HandlerError::new(format!(
                        "nats: stream {} not found ({e}); create it capturing {}.> or set nats.create_stream = true",
                        self.stream, self.prefix
                    ))
                })
        };
        // An existing stream that does not capture our subjects would make
        // every publish fail ("no stream found for given subject").
        let found = found.and_then(|stream| {
            let subjects = &stream.cached_info().config.subjects;
            if subjects.iter().any(|s| captures_prefix(s, &self.prefix)) {
                Ok(())
            } else {
                Err(HandlerError::new(format!(
                    "nats: stream {} does not capture {}.> (its subjects: {}); add it to the stream or change nats.subject_prefix",
                    self.stream,
                    self.prefix,
                    subjects.join(", ")
                )))
            }
        });
        if found.is_ok() {
            self.ready.store(true, Ordering::Release);
            tracing::info!(stream = %self.stream, url = %self.shown_url, "NATS JetStream stream ready");
        }
        found
    }
}

/// Whether a stream subject filter captures every `<prefix>.…` subject:
/// token by token, `*` matching any one token and a last `>` the rest.
fn captures_prefix(filter: &str, prefix: &str) -> bool {
    let wanted: Vec<&str> = prefix.split('.').collect();
    let tokens: Vec<&str> = filter.split('.').collect();
    let Some((last, leading)) = tokens.split_last() else {
        return false;
    };
    *last == ">"
        && leading.len() <= wanted.len()
        && leading
            .iter()
            .zip(&wanted)
            .all(|(t, w)| *t == "*" || t == w)
}

#[async_trait::async_trait]
impl EventHandler for NatsSink {
    fn name(&self) -> &str {
        "nats"
    }

    async fn handle(&self, e: &StoredEvent) -> Result<(), HandlerError> {
        self.publish(e).await.map_err(|err| {
            // Said as such: a stream lookup timing out is what an
            // unreachable server otherwise looks like ("cannot create or
            // find stream ...: timed out").
            if self.js.client().connection_state() == async_nats::connection::State::Connected {
                err
            } else {
                HandlerError::new(format!(
                    "nats: not connected to {} (the client keeps reconnecting): {err}",
                    self.shown_url
                ))
            }
        })
    }
}

impl NatsSink {
    /// Publishes one event and waits for JetStream's acknowledgement.
    async fn publish(&self, e: &StoredEvent) -> Result<(), HandlerError> {
        self.ensure_stream().await?;
        let payload = EventPayload::to_json(e)?;
        let max_payload = self.js.client().max_payload();
        if payload.len() > max_payload {
            return Err(HandlerError::new(format!(
                "nats: the event is {} bytes, over the NATS server's max_payload of {max_payload} bytes: raise max_payload in the NATS server's configuration (deliveries up to server.body_limit are accepted)",
                payload.len()
            )));
        }
        let subject = self.subject(e);
        let mut headers = HeaderMap::new();
        headers.insert(MSG_ID_HEADER, e.event.id.as_str());
        headers.insert("Content-Type", "application/json");
        let publish = async {
            let ack = self
                .js
                .publish_with_headers(subject, headers, payload.into())
                .await
                .map_err(|err| HandlerError::new(format!("nats publish: {err}")))?;
            ack.await
                .map_err(|err| HandlerError::new(format!("nats publish not acknowledged: {err}")))
        };
        let ack = tokio::time::timeout(self.timeout, publish)
            .await
            .map_err(|_| HandlerError::new("nats publish: no acknowledgement in time"))??;
        if ack.duplicate {
            tracing::debug!(id = %e.event.id, stream = %ack.stream, "JetStream dropped a duplicate publish");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_filters_that_capture_the_prefix() {
        for (filter, yes) in [
            ("catalog.>", true),
            (">", true),
            ("catalog.events.>", true),
            ("*.events.>", true),
            ("catalog.events", false),
            ("catalog.events.*", false),
            ("orders.>", false),
            ("catalog.events.shopify.>", false),
        ] {
            assert_eq!(captures_prefix(filter, "catalog.events"), yes, "{filter}");
        }
    }

    #[test]
    fn subjects_are_safe() {
        assert_eq!(
            subject_for(
                "catalog.events",
                "shopify",
                "example.myshopify.com",
                "product.created"
            ),
            "catalog.events.shopify.example_myshopify_com.product.created"
        );
        assert_eq!(
            subject_for(
                "c",
                "woocommerce",
                "https://shop.example.com/",
                "product.deleted"
            ),
            "c.woocommerce.shop_example_com.product.deleted"
        );
        // Wildcards, whitespace and empty parts never reach the subject.
        assert_eq!(
            subject_for("c", "shopify", " a*b >c\td ", "orders/create"),
            "c.shopify.a_b__c_d.orders.create"
        );
        assert_eq!(subject_for("c", "", "", "x..y"), "c._._.x._.y");
    }

    #[test]
    fn scrub_hides_passwords() {
        let url = "nats://u:pw@h:4222";
        assert_eq!(
            scrub(format!("failed {url}"), url),
            "failed nats://u:[redacted]@h:4222"
        );
    }
}
