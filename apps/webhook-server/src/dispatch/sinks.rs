//! The built-in sinks: a structured log line, a JSON-lines file and HTTP
//! forwarding signed per Standard Webhooks.

use std::fmt;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use serde::Serialize;

use super::standard_webhooks::Signer;
use super::{EventHandler, HandlerError};
use crate::store::StoredEvent;

/// What sinks receive: the normalised event; the raw body only for topics
/// without a product model (see `payload`).
#[derive(Debug, Serialize)]
pub struct EventPayload<'a> {
    /// Our event id.
    pub id: &'a str,
    /// Platform.
    pub platform: &'a str,
    /// Store.
    pub store: &'a str,
    /// Canonical topic.
    pub topic: &'a str,
    /// Topic as sent.
    pub raw_topic: &'a str,
    /// The platform's event key.
    pub event_id: &'a str,
    /// The platform's delivery id.
    pub delivery_id: Option<&'a str>,
    /// Product id.
    pub product_id: Option<&'a str>,
    /// When the platform triggered it.
    #[serde(serialize_with = "crate::timestamp::serialize_option")]
    pub triggered_at: Option<chrono::DateTime<Utc>>,
    /// When we received it.
    #[serde(serialize_with = "crate::timestamp::serialize")]
    pub received_at: chrono::DateTime<Utc>,
    /// The normalised product (`null` for deletes and unreadable deliveries).
    pub product: Option<serde_json::Value>,
    /// The delivery's JSON as the platform sent it, byte for byte (numbers,
    /// key order and escapes kept), for topics other than the product ones
    /// (absent for those): a Shopify `customers/redact` or `shop/redact`
    /// compliance request, a WooCommerce `order.created`. Nothing else
    /// carries what such an event says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<&'a serde_json::value::RawValue>,
}

impl<'a> EventPayload<'a> {
    /// The payload of a stored event.
    ///
    /// # Errors
    /// When the stored product JSON cannot be read.
    pub fn new(e: &'a StoredEvent) -> Result<Self, serde_json::Error> {
        let ev = &e.event;
        Ok(Self {
            id: &ev.id,
            platform: &ev.platform,
            store: &ev.store,
            topic: &ev.topic,
            raw_topic: &ev.raw_topic,
            event_id: &ev.event_id,
            delivery_id: ev.delivery_id.as_deref(),
            product_id: ev.product_id.as_deref(),
            triggered_at: ev.triggered_at,
            received_at: ev.received_at,
            product: ev
                .product
                .as_deref()
                .map(serde_json::from_str)
                .transpose()?,
            payload: if catalog_core::Topic::from_canonical(&ev.topic)
                .action()
                .is_none()
            {
                // Verified, and JSON by triage (a body that is not JSON
                // was stored as failed and is not dispatched). A byte
                // order mark and JSON's whitespace around the value are
                // not part of it; triage read past them too.
                std::str::from_utf8(&ev.raw_body).ok().and_then(|text| {
                    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
                    serde_json::from_str(text.trim_matches([' ', '\t', '\n', '\r'])).ok()
                })
            } else {
                None
            },
        })
    }

    /// The payload as JSON bytes.
    ///
    /// # Errors
    /// As [`EventPayload::new`].
    pub fn to_json(e: &StoredEvent) -> Result<Vec<u8>, HandlerError> {
        let payload = EventPayload::new(e).map_err(|err| HandlerError::new(err.to_string()))?;
        serde_json::to_vec(&payload).map_err(|err| HandlerError::new(err.to_string()))
    }
}

/// Logs one structured line per event (ids only, never the body).
#[derive(Debug, Default, Clone, Copy)]
pub struct LogSink;

#[async_trait::async_trait]
impl EventHandler for LogSink {
    fn name(&self) -> &str {
        "log"
    }

    async fn handle(&self, e: &StoredEvent) -> Result<(), HandlerError> {
        let ev = &e.event;
        tracing::info!(
            target: "catalog_events",
            id = %ev.id,
            platform = %ev.platform,
            store = %ev.store,
            topic = %ev.topic,
            product_id = ev.product_id.as_deref().unwrap_or(""),
            attempt = e.attempts + 1,
            "catalog event"
        );
        Ok(())
    }
}

/// Appends one JSON object per line to a file.
#[derive(Debug, Clone)]
pub struct JsonlSink {
    path: PathBuf,
    // One writer at a time so lines never interleave.
    lock: Arc<Mutex<()>>,
    sync: bool,
}

impl JsonlSink {
    /// A sink appending to `path` (created if missing), without syncing.
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            lock: Arc::new(Mutex::new(())),
            sync: false,
        }
    }

    /// Syncs each line to the disk before the event counts as handed over
    /// (`fdatasync`): the store marks the event delivered after that, and a
    /// line lost to a power cut would be an acknowledged event lost. The
    /// server syncs under `database.durability = "power_loss"`.
    #[must_use]
    pub fn synced(mut self, sync: bool) -> Self {
        self.sync = sync;
        self
    }

    /// Checks that the file can be appended to, creating it (and its
    /// folder) if missing: called at start-up, so that a path under a
    /// regular file, a folder or a read-only place stops the server with
    /// a message instead of failing, then dead-lettering, every event.
    ///
    /// # Errors
    /// The I/O error of creating the folder or opening the file.
    pub fn check(&self) -> std::io::Result<()> {
        append_to(&self.path).map(drop)
    }
}

/// The event's JSON on one line: a `payload` passed on as sent keeps the
/// line breaks of a pretty-printed body, which would split the event over
/// several lines of the file. JSON allows a raw line break only between
/// tokens (inside a string it is always escaped), so each becomes a space
/// and every other byte stays as sent.
fn one_line(mut json: Vec<u8>) -> Vec<u8> {
    for b in &mut json {
        if matches!(*b, b'\n' | b'\r') {
            *b = b' ';
        }
    }
    json
}

/// Opens `path` for appending, creating it and its folder if missing. The
/// file is opened for each event, so a rotated (moved) file is followed by
/// a new one at `path`.
fn append_to(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
}

#[async_trait::async_trait]
impl EventHandler for JsonlSink {
    fn name(&self) -> &str {
        "file"
    }

    async fn handle(&self, e: &StoredEvent) -> Result<(), HandlerError> {
        let mut line = one_line(EventPayload::to_json(e)?);
        line.push(b'\n');
        let path = self.path.clone();
        let lock = Arc::clone(&self.lock);
        let sync = self.sync;
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            let _guard = lock
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let mut f = append_to(&path)?;
            let before = f.metadata()?.len();
            let written = f
                .write_all(&line)
                .and_then(|()| if sync { f.sync_data() } else { Ok(()) });
            if written.is_err() {
                // A line cut short (a full disk, a file size limit) would
                // leave a fragment, and the retry's whole line would follow
                // it on the same line: not JSON, and the only copy. Take
                // back what this attempt wrote; the retry writes it all.
                let _ = f.set_len(before);
            }
            written
        })
        .await
        .map_err(|err| HandlerError::new(format!("file sink task failed: {err}")))?
        .map_err(|err| HandlerError::new(format!("file sink {}: {err}", self.path.display())))
    }
}

/// POSTs each event to a downstream URL with Standard Webhooks headers.
#[derive(Clone)]
pub struct HttpSink {
    url: String,
    signer: Signer,
    client: reqwest::Client,
}

impl fmt::Debug for HttpSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpSink")
            .field("url", &crate::redact::redact_url(&self.url))
            .finish_non_exhaustive()
    }
}

impl HttpSink {
    /// A sink forwarding to `url`.
    ///
    /// # Errors
    /// When the HTTP client cannot be built.
    pub fn new(url: String, signer: Signer, timeout: Duration) -> Result<Self, HandlerError> {
        let client = reqwest::Client::builder()
            // Redirects are not followed: a 301/302 would be re-sent as a
            // GET without the body (and counted delivered on its 200), a
            // 307/308 would post the event to a URL nobody configured. A
            // redirect is a non-2xx answer: a failure, retried, then dead.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .user_agent(concat!(
                "catalog-webhook-server/",
                env!("CARGO_PKG_VERSION")
            ))
            .build()
            .map_err(|e| HandlerError::new(format!("cannot build HTTP client: {e}")))?;
        Ok(Self {
            url,
            signer,
            client,
        })
    }
}

#[async_trait::async_trait]
impl EventHandler for HttpSink {
    fn name(&self) -> &str {
        "http"
    }

    async fn handle(&self, e: &StoredEvent) -> Result<(), HandlerError> {
        let body = EventPayload::to_json(e)?;
        let timestamp = Utc::now().timestamp();
        let signature = self.signer.sign(&e.event.id, timestamp, &body);
        let res = self
            .client
            .post(&self.url)
            .header("content-type", "application/json")
            .header("webhook-id", &e.event.id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body)
            .send()
            .await
            .map_err(|err| {
                let what = if err.is_timeout() {
                    "timed out"
                } else if err.is_connect() {
                    "could not connect"
                } else {
                    "request failed"
                };
                HandlerError::new(format!("http sink: {what}: {}", err.without_url()))
            })?;
        let status = res.status();
        if status.is_success() {
            return Ok(());
        }
        let error = HandlerError::new(format!("http sink: downstream answered {status}"));
        // A downstream shedding load says when to come back (429, 503):
        // retrying sooner would only be refused again.
        let retry_after = res
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| retry_after(v, Utc::now()));
        Err(match retry_after {
            Some(wait) => error.with_retry_after(wait),
            None => error,
        })
    }
}

/// A `Retry-After` value (RFC 9110: seconds, or an HTTP date; decimal
/// seconds taken too, as the platform clients take them) as a wait from
/// `now`; `None` when unreadable.
fn retry_after(value: &str, now: chrono::DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    if value.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && let Ok(secs) = value.parse::<f64>()
    {
        return Duration::try_from_secs_f64(secs).ok();
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    (at.with_timezone(&Utc) - now).to_std().ok()
}

#[cfg(test)]
mod tests {
    use super::retry_after;
    use std::time::Duration;

    #[test]
    fn a_pretty_printed_payload_makes_one_line() {
        let json = br#"{"payload":{
  "id": 6,
  "note": "a\nb"
}}"#
        .to_vec();
        let line = super::one_line(json);
        assert!(!line.contains(&b'\n'));
        let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(v["payload"]["note"], "a\nb");
        assert_eq!(v["payload"]["id"], 6);
    }

    #[test]
    fn credentials_in_the_sink_url_stay_out_of_debug() {
        let signer = super::Signer::new(&secrecy::SecretString::from(
            "whsec_dGVzdC1zZWNyZXQtb2YtdGhlLXRlc3RzLTMyYnl0ZXM=",
        ))
        .unwrap();
        let sink = super::HttpSink::new(
            "https://hook:LEAK_pw@example.com/in?token=LEAK_tk&v=1".into(),
            signer,
            Duration::from_secs(1),
        )
        .unwrap();
        let shown = format!("{sink:?}");
        assert!(!shown.contains("LEAK"), "{shown}");
        assert!(
            // Only parameters known to be plain keep their values.
            shown.contains("example.com/in?token=[redacted]&v=[redacted]"),
            "{shown}"
        );
        let mut settings = crate::settings::Settings::defaults();
        settings.dispatch.http = Some(
            serde_json::from_value(serde_json::json!({
                "url": "https://hook:LEAK_pw@example.com/in?secret=LEAK_s",
                "secret": "whsec_LEAK",
            }))
            .unwrap(),
        );
        let shown = format!("{:?}", settings.dispatch);
        assert!(!shown.contains("LEAK"), "{shown}");
    }

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        let now = chrono::DateTime::parse_from_rfc3339("2015-10-21T07:28:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        assert_eq!(retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(retry_after("2.5", now), Some(Duration::from_millis(2500)));
        assert_eq!(retry_after("1e400", now), None);
        assert_eq!(retry_after("NaN", now), None);
        assert_eq!(
            retry_after("Wed, 21 Oct 2015 07:30:00 GMT", now),
            Some(Duration::from_secs(120))
        );
        // A date past, or nonsense: no wait asked for.
        assert_eq!(retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now), None);
        assert_eq!(retry_after("soon", now), None);
        assert_eq!(retry_after("-5", now), None);
    }
}
