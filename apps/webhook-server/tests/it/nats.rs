//! The NATS JetStream sink against a real server: the stream is created,
//! the subject is the documented one, and publishing the same event twice
//! leaves one message (JetStream's `Nats-Msg-Id` deduplication).
//!
//! Needs `TEST_NATS_URL` (e.g. `nats://127.0.0.1:4222`, JetStream enabled);
//! each test uses a stream and subject prefix of its own, deleted at the end.
//! Without the variable every test prints why it skips.

use std::sync::atomic::{AtomicU32, Ordering};

use futures::StreamExt as _;
use webhook_server::dispatch::EventHandler;
use webhook_server::dispatch::nats::NatsSink;
use webhook_server::settings::NatsSettings;
use webhook_server::store::{EventStore, MemoryStore, StoredEvent};

use crate::suite::event;

/// A stream and subject prefix of its own, deleted when this goes out of scope.
#[derive(Debug)]
pub(crate) struct TestStream {
    pub(crate) settings: NatsSettings,
}

impl TestStream {
    /// Fresh names, or `None` (with the reason printed) when `TEST_NATS_URL`
    /// is unset.
    pub(crate) fn new(test: &str) -> Option<Self> {
        let Ok(url) = std::env::var("TEST_NATS_URL") else {
            eprintln!(
                "skipping {test}: TEST_NATS_URL is not set (e.g. nats://127.0.0.1:4222 with JetStream)"
            );
            return None;
        };
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let tag = format!(
            "{test}_{}_{nanos:x}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let mut settings = NatsSettings::new(url);
        settings.stream = format!("TEST_{}", tag.to_uppercase());
        settings.subject_prefix = format!("test.{tag}");
        Some(Self { settings })
    }

    /// Messages in the stream.
    pub(crate) async fn messages(&self) -> u64 {
        let client = async_nats::connect(self.settings.url.as_str())
            .await
            .unwrap();
        let js = async_nats::jetstream::new(client);
        let mut stream = js.get_stream(&self.settings.stream).await.unwrap();
        stream.info().await.unwrap().state.messages
    }
}

impl Drop for TestStream {
    fn drop(&mut self) {
        let (url, name) = (self.settings.url.clone(), self.settings.stream.clone());
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                if let Ok(client) = async_nats::connect(url.as_str()).await {
                    let js = async_nats::jetstream::new(client);
                    let _ = js.delete_stream(&name).await;
                }
            });
        })
        .join();
    }
}

async fn stored(event_id: &str, product: &str) -> StoredEvent {
    let store = MemoryStore::new(10, 10);
    let e = event(event_id, Some(product));
    store.insert(e.clone()).await.unwrap();
    store.get(&e.id).await.unwrap().unwrap()
}

#[tokio::test]
async fn publishing_twice_leaves_one_message() {
    let Some(ts) = TestStream::new("dedup") else {
        return;
    };
    let sink = NatsSink::connect(&ts.settings).await.unwrap();
    let e = stored("nats-1", "p1").await;
    let subject = sink.subject(&e);
    assert_eq!(
        subject,
        format!(
            "{}.shopify.s_myshopify_com.product.updated",
            ts.settings.subject_prefix
        )
    );

    // Watch the subject while publishing.
    let client = async_nats::connect(ts.settings.url.as_str()).await.unwrap();
    let mut sub = client.subscribe(subject.clone()).await.unwrap();
    client.flush().await.unwrap();

    sink.handle(&e).await.unwrap();
    sink.handle(&e).await.unwrap();
    assert_eq!(ts.messages().await, 1);

    // The message: our id as Nats-Msg-Id, the normalised payload as JSON.
    let msg = tokio::time::timeout(std::time::Duration::from_secs(5), sub.next())
        .await
        .unwrap()
        .unwrap();
    let headers = msg.headers.unwrap();
    let msg_id: Vec<&str> = headers
        .iter()
        .filter(|(name, _)| name.to_string().eq_ignore_ascii_case("Nats-Msg-Id"))
        .flat_map(|(_, values)| values.iter().map(|v| v.as_str()))
        .collect();
    assert_eq!(msg_id, vec![e.event.id.as_str()], "{headers:?}");
    let payload: serde_json::Value = serde_json::from_slice(&msg.payload).unwrap();
    assert_eq!(payload["id"], e.event.id.as_str());
    assert_eq!(payload["topic"], "product.updated");
    assert_eq!(payload["store"], "s.myshopify.com");

    // Another event is another message.
    sink.handle(&stored("nats-2", "p1").await).await.unwrap();
    assert_eq!(ts.messages().await, 2);
}

#[tokio::test]
async fn a_missing_stream_is_an_error_when_not_created() {
    let Some(ts) = TestStream::new("missing") else {
        return;
    };
    let mut settings = ts.settings.clone();
    settings.create_stream = false;
    let sink = NatsSink::connect(&settings).await.unwrap();
    let err = sink.handle(&stored("nats-3", "p").await).await.unwrap_err();
    assert!(err.to_string().contains("not found"), "{err}");
}

/// An existing stream that does not capture `<subject_prefix>.>` would make
/// every publish fail ("no stream found for given subject"): the sink says
/// which stream and which subjects, created or found.
#[tokio::test]
async fn a_stream_that_does_not_capture_the_prefix_is_named() {
    let Some(ts) = TestStream::new("elsewhere") else {
        return;
    };
    let client = async_nats::connect(ts.settings.url.as_str()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let elsewhere = format!("{}_other.>", ts.settings.subject_prefix);
    js.create_stream(async_nats::jetstream::stream::Config {
        name: ts.settings.stream.clone(),
        subjects: vec![elsewhere.clone()],
        ..Default::default()
    })
    .await
    .unwrap();
    for create in [false, true] {
        let mut settings = ts.settings.clone();
        settings.create_stream = create;
        let sink = NatsSink::connect(&settings).await.unwrap();
        let err = sink
            .handle(&stored("nats-4", "p").await)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("does not capture"),
            "create_stream={create}: {err}"
        );
        assert!(err.contains(&elsewhere), "{err}");
    }
    assert_eq!(ts.messages().await, 0);
}

/// An event over the NATS server's `max_payload` can never be published:
/// the error says so, naming the setting, instead of the client's bare
/// "max payload size exceeded".
#[tokio::test]
async fn an_event_over_max_payload_is_named_as_such() {
    let Some(ts) = TestStream::new("big") else {
        return;
    };
    let sink = NatsSink::connect(&ts.settings).await.unwrap();
    let max = sink.max_payload().expect("the server's INFO arrived");
    let store = MemoryStore::new(10, 10);
    let mut e = event("nats-big", None);
    e.topic = "customers/redact".into();
    e.raw_topic = "customers/redact".into();
    e.raw_body = bytes::Bytes::from(format!("{{\"x\":\"{}\"}}", "a".repeat(max)));
    store.insert(e.clone()).await.unwrap();
    let e = store.get(&e.id).await.unwrap().unwrap();
    let err = sink.handle(&e).await.unwrap_err().to_string();
    assert!(err.contains("max_payload"), "{err}");
}

/// With the server unreachable, the error says so (it read "cannot create
/// or find stream ...: timed out", pointing at the stream).
#[tokio::test]
async fn an_unreachable_server_is_named_as_such() {
    let port = crate::support::free_port();
    let mut settings = NatsSettings::new(format!("nats://127.0.0.1:{port}"));
    settings.timeout_ms = 300;
    let sink = NatsSink::connect(&settings).await.unwrap();
    let err = sink
        .handle(&stored("nats-down", "p").await)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!("not connected to nats://127.0.0.1:{port}")),
        "{err}"
    );
}
