//! 429 with Retry-After, 5xx with backoff, and what happens when the budget runs out.

use std::time::{Duration, Instant};

use catalog_core::{Catalog, CatalogError};

use crate::fake::{FakeShopify, Fault, Options};
use crate::support::{builder, products};

fn opts() -> Options {
    Options {
        products: products(2, 1, 0),
        ..Options::default()
    }
}

#[tokio::test]
async fn honours_retry_after_on_429() {
    let server = FakeShopify::start(opts()).await;
    server.fake.push_faults([
        Fault::Status(429, Some("0.2")),
        Fault::Status(429, Some("0.2")),
    ]);
    let client = builder(&server)
        .currency("USD".parse().unwrap())
        .build()
        .unwrap();
    let t = Instant::now();
    client.get_product("7000000000000000001").await.unwrap();
    assert!(
        t.elapsed() >= Duration::from_millis(400),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(server.fake.counters().graphql, 3);
}

#[tokio::test]
async fn retries_5xx_with_backoff() {
    let server = FakeShopify::start(opts()).await;
    server.fake.push_faults([
        Fault::Status(503, None),
        Fault::Status(500, None),
        Fault::Status(502, None),
    ]);
    let client = builder(&server)
        .currency("USD".parse().unwrap())
        .build()
        .unwrap();
    let p = client.get_product("7000000000000000001").await.unwrap();
    assert_eq!(p.title, "Product 1");
    assert_eq!(server.fake.counters().graphql, 4);
}

#[tokio::test]
async fn exhausted_budget_reaches_the_caller() {
    let server = FakeShopify::start(opts()).await;
    server.fake.push_faults([
        Fault::Status(429, Some("0.05")),
        Fault::Status(429, Some("0.05")),
    ]);
    let client = builder(&server)
        .currency("USD".parse().unwrap())
        .max_retries(1)
        .build()
        .unwrap();
    let err = client.get_product("7000000000000000001").await.unwrap_err();
    match err {
        CatalogError::RateLimited { retry_after } => {
            assert_eq!(retry_after, Some(Duration::from_millis(50)));
        }
        other => panic!("{other:?}"),
    }

    server
        .fake
        .push_faults([Fault::Status(503, None), Fault::Status(503, None)]);
    let err = client.get_product("7000000000000000001").await.unwrap_err();
    assert!(
        matches!(err, CatalogError::Http { status: 503, .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn client_errors_are_not_retried() {
    let server = FakeShopify::start(opts()).await;
    server.fake.push_faults([Fault::Status(404, None)]);
    let client = builder(&server)
        .currency("USD".parse().unwrap())
        .build()
        .unwrap();
    let err = client.get_product("7000000000000000001").await.unwrap_err();
    assert!(
        matches!(err, CatalogError::Http { status: 404, .. }),
        "{err:?}"
    );
    assert_eq!(server.fake.counters().graphql, 1);
}

#[tokio::test]
async fn transport_errors_do_not_leak_the_url() {
    // Nothing listens on this port.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let client = catalog_shopify::ShopifyClient::builder()
        .store_url(format!("http://127.0.0.1:{port}/secret-path-segment"))
        .access_token("shpat_never_shown")
        .max_retries(1)
        .retry_backoff(Duration::from_millis(1), Duration::from_millis(2))
        .currency("USD".parse().unwrap())
        .build()
        .unwrap();
    let err = client.get_product("1").await.unwrap_err();
    assert!(matches!(err, CatalogError::Transport(_)), "{err:?}");
    let text = format!("{err} {err:?}");
    assert!(!text.contains("secret-path-segment"), "{text}");
    assert!(!text.contains("shpat_never_shown"), "{text}");
}

/// A proxy to `upstream` whose first `cuts` connections each get one answer
/// that announces 5,000 bytes of body, sends a few and closes: the status is
/// 200 and the failure comes only while the body is read.
#[allow(clippy::unwrap_used)]
async fn cutting_proxy(upstream: std::net::SocketAddr, cuts: usize) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut cut = 0;
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                return;
            };
            if cut < cuts {
                cut += 1;
                // Read the whole request first, so that closing does not
                // reset the connection before the client reads the answer.
                let mut request = Vec::new();
                let mut buf = [0u8; 8192];
                loop {
                    let n = conn.read(&mut buf).await.unwrap();
                    request.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&request).to_ascii_lowercase();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let length: usize = text
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .map_or(0, |v| v.trim().parse().unwrap());
                        if request.len() >= end + 4 + length {
                            break;
                        }
                    }
                    assert!(n > 0, "request ended early");
                }
                conn.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 5000\r\n\r\n{\"data\":{\"product\"",
                )
                .await
                .unwrap();
                conn.shutdown().await.unwrap();
                continue;
            }
            tokio::spawn(async move {
                let mut up = tokio::net::TcpStream::connect(upstream).await.unwrap();
                let _ = tokio::io::copy_bidirectional(&mut conn, &mut up).await;
            });
        }
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn a_body_cut_off_midway_is_retried() {
    let server = FakeShopify::start(opts()).await;
    let proxy = cutting_proxy(*server.server.address(), 2).await;
    let client = builder(&server)
        .base_url(proxy)
        .currency("USD".parse().unwrap())
        .build()
        .unwrap();
    let p = client.get_product("7000000000000000001").await.unwrap();
    assert_eq!(p.title, "Product 1");
    // Only the third request got through the proxy.
    assert_eq!(server.fake.counters().graphql, 1);
}

/// Shopify's own failure inside an HTTP 200, as its changelog documents it.
fn internal_error() -> Fault {
    Fault::Reply(
        200,
        serde_json::json!({"errors": [{
            "message": "Internal error. Looks like something went wrong on our end.\nRequest ID: 1b355a21-7117-44c5-8d8b-8948082f40a8 (include this in support requests).",
            "extensions": {"code": "INTERNAL_SERVER_ERROR", "requestId": "1b355a21-7117-44c5-8d8b-8948082f40a8"}
        }]}),
    )
}

#[tokio::test]
async fn internal_server_error_in_a_200_is_retried_then_reported_as_such() {
    let server = FakeShopify::start(opts()).await;
    server
        .fake
        .push_faults([internal_error(), internal_error()]);
    let client = builder(&server)
        .currency("USD".parse().unwrap())
        .build()
        .unwrap();
    let p = client.get_product("7000000000000000001").await.unwrap();
    assert_eq!(p.title, "Product 1");
    assert_eq!(server.fake.counters().graphql, 3);

    server
        .fake
        .push_faults([internal_error(), internal_error()]);
    let client = builder(&server)
        .currency("USD".parse().unwrap())
        .max_retries(1)
        .build()
        .unwrap();
    let err = client.get_product("7000000000000000001").await.unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    match &err {
        CatalogError::Http { code, message, .. } => {
            assert_eq!(code.as_deref(), Some("INTERNAL_SERVER_ERROR"));
            assert!(message.contains("internal error"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn retry_after_as_an_http_date_is_honoured() {
    let server = FakeShopify::start(opts()).await;
    // HTTP dates have whole seconds: two seconds ahead waits 1 to 2 s.
    let at = (chrono::Utc::now() + chrono::TimeDelta::seconds(2))
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string();
    server
        .fake
        .push_faults([Fault::Status(429, Some(Box::leak(at.into_boxed_str())))]);
    let client = builder(&server)
        .currency("USD".parse().unwrap())
        .build()
        .unwrap();
    let t = Instant::now();
    client.get_product("7000000000000000001").await.unwrap();
    assert!(
        t.elapsed() >= Duration::from_millis(900),
        "{:?}",
        t.elapsed()
    );
}

#[tokio::test]
async fn a_retry_after_beyond_two_minutes_ends_the_call_at_once() {
    let server = FakeShopify::start(opts()).await;
    server.fake.push_faults([Fault::Status(429, Some("3600"))]);
    let client = builder(&server)
        .currency("USD".parse().unwrap())
        .build()
        .unwrap();
    let t = Instant::now();
    let err = client.get_product("7000000000000000001").await.unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert!(
        matches!(err, CatalogError::RateLimited { retry_after: Some(d) } if d == Duration::from_secs(3600)),
        "{err:?}"
    );
    assert_eq!(server.fake.counters().graphql, 1);
}

#[tokio::test]
async fn an_error_body_that_echoes_the_token_does_not_carry_it_along() {
    let echo = serde_json::json!({"errors": format!(
        "Bad Request. Request headers: X-Shopify-Access-Token: {}",
        crate::fake::STATIC_TOKEN
    )});
    // Answered at once (400), after the retries (503), and as a refusal (403).
    for status in [400, 503, 403] {
        let server = FakeShopify::start(opts()).await;
        server.fake.push_faults([
            Fault::Reply(status, echo.clone()),
            Fault::Reply(status, echo.clone()),
        ]);
        let client = builder(&server)
            .currency("USD".parse().unwrap())
            .max_retries(1)
            .build()
            .unwrap();
        let err = client.get_product("7000000000000000001").await.unwrap_err();
        let text = format!("{err} {err:?}");
        assert!(text.contains("[redacted]"), "{status}: {text}");
        assert!(
            !text.contains(crate::fake::STATIC_TOKEN),
            "{status}: {text}"
        );
    }
}

/// An answer that never ends is refused at the response ceiling (32 MiB),
/// not read until memory runs out or the timeout, and not retried.
#[tokio::test]
async fn an_endless_response_is_refused_at_the_ceiling() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    // A server that answers every request with a chunked body that never
    // ends (no length declared), counting the bytes it got out.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let uri = format!("http://{}", listener.local_addr().unwrap());
    let sent = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&sent);
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let counter = Arc::clone(&counter);
            tokio::spawn(async move {
                let mut head = [0u8; 8192];
                let _ = socket.read(&mut head).await;
                let _ = socket
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n")
                    .await;
                let chunk = format!("10000\r\n{}\r\n", "1".repeat(0x10000));
                while socket.write_all(chunk.as_bytes()).await.is_ok() {
                    counter.fetch_add(0x10000, Ordering::Relaxed);
                }
            });
        }
    });
    let client = catalog_shopify::ShopifyClient::builder()
        .store_url(crate::support::STORE)
        .base_url(uri)
        .access_token(crate::fake::STATIC_TOKEN)
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let started = Instant::now();
    let err = client.get_product("1").await.unwrap_err();
    assert!(matches!(err, CatalogError::Decode { .. }), "{err:?}");
    assert!(err.to_string().contains("longer than 32768 KiB"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(30));
    // Read up to the ceiling and a little past it (what was in flight),
    // not more: the client hung up.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let sent = sent.load(Ordering::Relaxed);
    assert!(sent < 48 * 1024 * 1024, "{sent} bytes sent");
}
