//! Over real TCP: the app on a bound port (chunked oversize bodies, trickled
//! bodies, rate limiting), and the real binary killed with SIGKILL mid-burst.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use actix_web::{App, HttpServer};
use webhook_server::configure;
use webhook_server::settings::Settings;

use crate::support::*;

fn start(settings: &Settings) -> (SocketAddr, actix_web::dev::ServerHandle) {
    start_on(settings, memory())
}

/// [`start`] on the given store (to look at what was stored).
fn start_on(
    settings: &Settings,
    store: std::sync::Arc<webhook_server::store::MemoryStore>,
) -> (SocketAddr, actix_web::dev::ServerHandle) {
    let state = state_from(settings, store, &single_secret());
    let server = HttpServer::new(move || App::new().configure(|c| configure(c, state.clone())))
        .workers(1)
        .bind(("127.0.0.1", 0))
        .unwrap();
    let addr = server.addrs()[0];
    let server = server.run();
    let handle = server.handle();
    actix_web::rt::spawn(server);
    (addr, handle)
}

/// Writes raw bytes, then reads the status line (blocking, in a thread).
async fn raw(addr: SocketAddr, parts: Vec<(Vec<u8>, Duration)>) -> String {
    tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        for (bytes, pause) in parts {
            // The server may answer and close before we finish writing.
            if s.write_all(&bytes).is_err() {
                break;
            }
            std::thread::sleep(pause);
        }
        let mut buf = [0u8; 512];
        let n = s.read(&mut buf).unwrap_or(0);
        String::from_utf8_lossy(&buf[..n])
            .lines()
            .next()
            .unwrap_or("")
            .to_owned()
    })
    .await
    .unwrap()
}

fn head(extra: &str, body_len: Option<usize>) -> Vec<u8> {
    let len = body_len
        .map(|n| format!("Content-Length: {n}\r\n"))
        .unwrap_or_default();
    format!(
        "POST /webhooks/shopify/products/create HTTP/1.1\r\nHost: x\r\nX-Shopify-Topic: products/create\r\n\
         X-Shopify-Shop-Domain: {STORE}\r\nX-Shopify-Event-Id: raw\r\nX-Shopify-Hmac-Sha256: AAAA\r\n{len}{extra}\r\n"
    )
    .into_bytes()
}

#[actix_web::test]
async fn chunked_oversize_and_trickled_bodies_over_tcp() {
    let mut s = settings();
    s.server.body_limit = 4096;
    s.server.body_timeout_ms = 300;
    let (addr, handle) = start(&s);

    // No Content-Length, chunked, 8 KiB in 1 KiB chunks: 413 all the same.
    let chunk = format!("400\r\n{}\r\n", "x".repeat(1024));
    let mut parts = vec![(head("Transfer-Encoding: chunked\r\n", None), Duration::ZERO)];
    for _ in 0..8 {
        parts.push((chunk.clone().into_bytes(), Duration::from_millis(5)));
    }
    parts.push((b"0\r\n\r\n".to_vec(), Duration::ZERO));
    let status = raw(addr, parts).await;
    assert!(status.contains("413"), "{status}");

    // A body that trickles in slower than the body timeout: 408.
    let parts = vec![
        (head("", Some(100)), Duration::ZERO),
        (b"{\"id\":".to_vec(), Duration::from_millis(600)),
        (b"1".to_vec(), Duration::ZERO),
    ];
    let status = raw(addr, parts).await;
    assert!(status.contains("408"), "{status}");

    // A valid delivery over the same port works.
    let client = reqwest::Client::new();
    let b = body(77);
    let mut req = client.post(format!("http://{addr}/webhooks/shopify/products/create"));
    for (k, v) in shopify_headers("tcp-1", b.as_bytes(), SECRET) {
        req = req.header(k, v);
    }
    let res = req.body(b.clone()).send().await.unwrap();
    let status = res.status();
    assert_eq!(status, 200, "{}", res.text().await.unwrap_or_default());
    handle.stop(true).await;
}

/// A signed delivery whose client closes its side before the body its
/// Content-Length promised has arrived is cut off (400, nothing stored),
/// not stored as the bytes that came (actix ends the payload at the end of
/// the stream as if whole); a request framed by both Content-Length and
/// chunked Transfer-Encoding is refused and its connection closed
/// (request smuggling, RFC 9112 section 6.1). Both from an outside audit.
#[actix_web::test]
async fn a_short_body_and_a_body_framed_twice_are_refused() {
    let store = memory();
    let (addr, handle) = start_on(&settings(), store.clone());

    let signed_head = |event_id: &str, body: &[u8], framing: &str| {
        let mut head =
            String::from("POST /webhooks/shopify/products/create HTTP/1.1\r\nHost: x\r\n");
        for (k, v) in shopify_headers(event_id, body, SECRET) {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str(framing);
        head.push_str("\r\n");
        head.into_bytes()
    };
    let b = body(5);
    // Signed over the bytes sent, 100 more promised, then the write side
    // closed: the whole answer is read.
    let answer = tokio::task::spawn_blocking({
        let mut request = signed_head(
            "short-1",
            b.as_bytes(),
            &format!("Content-Length: {}\r\n", b.len() + 100),
        );
        request.extend_from_slice(b.as_bytes());
        move || {
            let mut s = TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s.write_all(&request).unwrap();
            s.shutdown(std::net::Shutdown::Write).unwrap();
            let mut answer = String::new();
            let _ = s.read_to_string(&mut answer);
            answer
        }
    })
    .await
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("ended before it was complete"), "{answer}");

    // Both framings: 400, and the connection closed by the server. (A
    // request pipelined behind it, already read, is still answered by
    // actix, which does not stop at `Connection: close`.)
    // Writes `request`, then reads to the end of the stream: the server
    // must close it within 5 s (under the 10 s body timeout, which the
    // answer may not wait for).
    let answer_then_close = |request: Vec<u8>| {
        tokio::task::spawn_blocking(move || {
            let mut s = TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            s.write_all(&request).unwrap();
            let mut answer = String::new();
            s.read_to_string(&mut answer).expect("closed by the server");
            answer
        })
    };
    let chunked = format!("{:x}\r\n{b}\r\n0\r\n\r\n", b.len());
    let mut request = signed_head(
        "twice-1",
        b.as_bytes(),
        &format!(
            "Content-Length: {}\r\nTransfer-Encoding: chunked\r\n",
            chunked.len()
        ),
    );
    request.extend_from_slice(chunked.as_bytes());
    let answer = answer_then_close(request).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("Transfer-Encoding"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );

    // Asking for a WebSocket (actix would read the body to the end of the
    // stream, whatever Content-Length says): 400 at once, connection closed.
    let mut request = signed_head(
        "ws-1",
        b.as_bytes(),
        &format!(
            "Connection: Upgrade\r\nUpgrade: websocket\r\nContent-Length: {}\r\n",
            b.len()
        ),
    );
    request.extend_from_slice(b.as_bytes());
    let answer = answer_then_close(request).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("websocket"), "{answer}");

    // Nothing of any was stored; the same body sent whole is.
    let listed = webhook_server::store::EventStore::list(
        store.as_ref(),
        &webhook_server::store::EventFilter::default(),
        None,
        10,
    )
    .await
    .unwrap();
    assert!(listed.events.is_empty(), "{:?}", listed.events.len());
    let client = reqwest::Client::new();
    let mut req = client.post(format!("http://{addr}/webhooks/shopify/products/create"));
    for (k, v) in shopify_headers("short-1", b.as_bytes(), SECRET) {
        req = req.header(k, v);
    }
    assert_eq!(req.body(b.clone()).send().await.unwrap().status(), 200);
    handle.stop(true).await;
}

#[actix_web::test]
async fn rate_limit_per_client_address() {
    let mut s = settings();
    s.rate_limit.enabled = true;
    s.rate_limit.per_second = 1.0;
    s.rate_limit.burst = 3.0;
    s.admin.token = Some(secrecy::SecretString::from("admin-token-0123456789"));
    let (addr, handle) = start(&s);
    let client = reqwest::Client::new();
    let mut statuses = Vec::new();
    for i in 0..5 {
        let b = body(i);
        let mut req = client.post(format!("http://{addr}/webhooks/shopify/products/create"));
        for (k, v) in shopify_headers(&format!("rl-{i}"), b.as_bytes(), SECRET) {
            req = req.header(k, v);
        }
        let res = req.body(b).send().await.unwrap();
        let closes = res
            .headers()
            .get("connection")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
        statuses.push((res.status().as_u16(), closes));
    }
    // A refused delivery's body is left unread: its connection is closed
    // (an outside audit's client reusing it was cut without a word).
    assert_eq!(
        statuses,
        vec![
            (200, false),
            (200, false),
            (200, false),
            (429, true),
            (429, true)
        ]
    );
    // Health checks are not limited.
    let res = client
        .get(format!("http://{addr}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    // The admin API shares the budget; its 429s are no deliveries.
    let mut admin = Vec::new();
    for _ in 0..3 {
        let res = client
            .get(format!("http://{addr}/admin/events"))
            .bearer_auth("admin-token-0123456789")
            .send()
            .await
            .unwrap();
        // Without a body there is nothing unread: kept alive.
        assert!(res.headers().get("connection").is_none(), "{res:?}");
        admin.push(res.status().as_u16());
    }
    assert!(admin.contains(&429), "{admin:?}");
    let metrics = client
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let limited: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("webhook_deliveries_total") && l.contains("rate_limited"))
        .collect();
    assert_eq!(limited.len(), 1, "{limited:?}");
    assert!(
        limited[0].contains("platform=\"shopify\"") && limited[0].ends_with(" 2"),
        "{limited:?}"
    );
    handle.stop(true).await;
}

#[actix_web::test]
async fn a_path_no_route_has_is_a_json_404() {
    let mut s = settings();
    s.admin.token = Some(secrecy::SecretString::from("admin-token-0123456789"));
    let (addr, handle) = start(&s);
    let client = reqwest::Client::new();
    for (path, auth) in [
        ("/nope", false),
        ("/admin/nope", true),
        ("/webhooks/nope/products/create", false),
    ] {
        let mut req = client.get(format!("http://{addr}{path}"));
        if auth {
            req = req.bearer_auth("admin-token-0123456789");
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), 404, "{path}");
        let v: serde_json::Value = res.json().await.unwrap();
        assert_eq!(v["error"], "not_found", "{path}");
    }
    handle.stop(true).await;
}

/// Behind a reverse proxy every request comes from the proxy: with the proxy
/// trusted, each client named by `X-Forwarded-For` has its own bucket; from
/// an untrusted peer the header changes nothing.
#[actix_web::test]
async fn rate_limit_behind_a_trusted_proxy() {
    async fn send(addr: SocketAddr, n: u64, forwarded_for: Option<&str>) -> u16 {
        let b = body(n);
        let mut req =
            reqwest::Client::new().post(format!("http://{addr}/webhooks/shopify/products/create"));
        for (k, v) in shopify_headers(&format!("xff-{n}"), b.as_bytes(), SECRET) {
            req = req.header(k, v);
        }
        if let Some(xff) = forwarded_for {
            req = req.header("X-Forwarded-For", xff);
        }
        req.body(b).send().await.unwrap().status().as_u16()
    }
    let mut s = settings();
    s.rate_limit.enabled = true;
    s.rate_limit.per_second = 0.01;
    s.rate_limit.burst = 2.0;

    // We reach the server from 127.0.0.1: that is the proxy.
    s.rate_limit.trusted_proxies =
        webhook_server::ratelimit::TrustedProxies::parse(["127.0.0.0/8"]).unwrap();
    let (addr, handle) = start(&s);
    let a = Some("203.0.113.50, 198.51.100.1");
    let b = Some("198.51.100.2");
    let mut statuses = Vec::new();
    for (i, client) in [a, a, a, b, b, b].into_iter().enumerate() {
        statuses.push(send(addr, i as u64, client).await);
    }
    assert_eq!(statuses, vec![200, 200, 429, 200, 200, 429]);
    // The proxy's own bucket (no header) is untouched by its clients'.
    assert_eq!(send(addr, 10, None).await, 200);
    handle.stop(true).await;

    // Not trusted: a client cannot escape its bucket by inventing addresses.
    s.rate_limit.trusted_proxies = webhook_server::ratelimit::TrustedProxies::default();
    let (addr, handle) = start(&s);
    let mut statuses = Vec::new();
    for i in 0..3u64 {
        let xff = format!("198.51.100.{i}");
        statuses.push(send(addr, 20 + i, Some(&xff)).await);
    }
    assert_eq!(statuses, vec![200, 200, 429]);
    handle.stop(true).await;
}

#[cfg(feature = "shopify")]
mod crash {
    //! The real binary with the real Shopify source and a SQLite file.

    use std::collections::HashMap;
    use std::process::{Child, Command, Stdio};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use tokio::sync::Mutex;

    use crate::support::*;

    /// The server process, killed when the test ends however it ends.
    struct Server(Child);

    impl Drop for Server {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    fn spawn(port: u16, db: &std::path::Path) -> Server {
        Server(spawn_child(port, db))
    }

    fn spawn_child(port: u16, db: &std::path::Path) -> Child {
        spawn_with_stderr(port, db, Stdio::null())
    }

    fn spawn_with_stderr(port: u16, db: &std::path::Path, stderr: Stdio) -> Child {
        spawn_with(port, db, &[], stderr)
    }

    /// The binary on `db`, with `extra` settings over the tests' own.
    fn spawn_with(
        port: u16,
        db: &std::path::Path,
        extra: &[(&str, String)],
        stderr: Stdio,
    ) -> Child {
        Command::new(env!("CARGO_BIN_EXE_webhook-server"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("APP_PORT", port.to_string())
            .env("SHOPIFY_WEBHOOK_SECRET", SECRET)
            .env("CATALOG_DATABASE_URL", format!("sqlite://{}", db.display()))
            .env("CATALOG_RATE_LIMIT__ENABLED", "false")
            .env("CATALOG_DISPATCH__LOG", "false")
            .env("CATALOG_LOG__LEVEL", "warn")
            .envs(extra.iter().map(|(k, v)| (*k, v.as_str())))
            .current_dir(db.parent().unwrap())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap()
    }

    async fn wait_ready(port: u16) {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(r) = client
                .get(format!("http://127.0.0.1:{port}/readyz"))
                .send()
                .await
                && r.status() == 200
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("server did not become ready");
    }

    /// Two servers on one SQLite file would both dispatch and both write:
    /// the second is refused at start-up with a message naming the file,
    /// and the first goes on serving.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_second_server_on_the_same_sqlite_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("events.db");
        let port = free_port();
        let _first = spawn(port, &db);
        wait_ready(port).await;

        let second = spawn_with_stderr(free_port(), &db, Stdio::piped());
        let out = tokio::task::spawn_blocking(move || second.wait_with_output())
            .await
            .unwrap()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "second server started: {stderr}");
        assert!(
            stderr.contains(&format!(
                "{} is open in another webhook-server",
                db.display()
            )),
            "{stderr}"
        );
        let ready = reqwest::get(format!("http://127.0.0.1:{port}/readyz"))
            .await
            .unwrap();
        assert_eq!(ready.status(), 200);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sigkill_during_a_burst_loses_no_acknowledged_delivery() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("events.db");
        let port = free_port();
        let mut child = spawn(port, &db);
        wait_ready(port).await;

        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        let acked: Arc<Mutex<Vec<String>>> = Arc::default();
        let b = SAMPLE.to_owned();
        let mut tasks = Vec::new();
        for w in 0..16 {
            let (client, acked, b) = (client.clone(), Arc::clone(&acked), b.clone());
            tasks.push(tokio::spawn(async move {
                for i in 0..10_000 {
                    let id = format!("crash-{w}-{i}");
                    let mut req = client.post(format!(
                        "http://127.0.0.1:{port}/webhooks/shopify/products/create"
                    ));
                    for (k, v) in shopify_headers(&id, b.as_bytes(), SECRET) {
                        req = req.header(k, v);
                    }
                    match req.body(b.clone()).send().await {
                        Ok(r) if r.status() == 200 => acked.lock().await.push(id),
                        Ok(r) => panic!("unexpected status {}", r.status()),
                        Err(_) => return, // the server died
                    }
                }
            }));
        }
        // Let the burst run, then kill the server hard.
        tokio::time::sleep(Duration::from_millis(700)).await;
        child.0.kill().unwrap(); // SIGKILL on Unix
        child.0.wait().unwrap();
        for t in tasks {
            t.await.unwrap();
        }
        let acked = acked.lock().await.clone();
        assert!(
            acked.len() > 50,
            "the burst should have been acknowledged in part: {}",
            acked.len()
        );

        // Restart on the same file; every acknowledged delivery is there once.
        let mut child = spawn(port, &db);
        wait_ready(port).await;
        let conn = rusqlite::Connection::open(&db).unwrap();
        let mut counts: HashMap<String, i64> = HashMap::new();
        let mut stmt = conn
            .prepare("SELECT event_id, COUNT(*) FROM events GROUP BY event_id")
            .unwrap();
        for row in stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
            .unwrap()
        {
            let (k, n) = row.unwrap();
            // The Shopify source keys events as
            // "{topic}:{X-Shopify-Event-Id}:{body digest}", the body being
            // the same for all: counted by topic and Event-Id.
            let (event, _digest) = k.rsplit_once(':').unwrap();
            *counts.entry(event.to_owned()).or_default() += n;
        }
        let mut missing = 0;
        for id in &acked {
            let hits = counts
                .get(&format!("products/create:{id}"))
                .copied()
                .unwrap_or(0);
            if hits != 1 {
                missing += 1;
            }
        }
        assert_eq!(
            missing,
            0,
            "{missing} of {} acknowledged deliveries not stored exactly once",
            acked.len()
        );
        // Redelivering an acknowledged event is a duplicate after the restart.
        let id = &acked[0];
        let mut req = client.post(format!(
            "http://127.0.0.1:{port}/webhooks/shopify/products/create"
        ));
        for (k, v) in shopify_headers(id, b.as_bytes(), SECRET) {
            req = req.header(k, v);
        }
        let v: serde_json::Value = req
            .body(b.clone())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(v["status"], "duplicate");
        // Graceful shutdown: SIGTERM drains and exits cleanly.
        let status = Command::new("kill")
            .args(["-TERM", &child.0.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(exit) = child.0.try_wait().unwrap() {
                assert!(exit.success(), "server exited with {exit}");
                break;
            }
            assert!(Instant::now() < deadline, "server did not stop on SIGTERM");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A request still arriving at SIGTERM is answered before the server
    /// exits, every time. actix-server before 2.10 raced here: a worker
    /// that saw its connection channel close before the stop command
    /// exited at once, dropping its connections unanswered (3 of 6 in a
    /// row, measured); the platform then had to retry.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_request_in_flight_at_sigterm_is_answered() {
        use std::io::{Read as _, Write as _};
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("events.db");
        let body = SAMPLE.as_bytes();
        for attempt in 0..6 {
            let port = free_port();
            let mut server = spawn(port, &db);
            wait_ready(port).await;
            let id = format!("inflight-{attempt}");
            let mut head = format!(
                "POST /webhooks/shopify/products/create HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n",
                body.len()
            );
            for (k, v) in shopify_headers(&id, body, SECRET) {
                head.push_str(&format!("{k}: {v}\r\n"));
            }
            head.push_str("\r\n");
            let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
            conn.set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            // The head and part of the body, then the signal, then the rest.
            conn.write_all(head.as_bytes()).unwrap();
            conn.write_all(&body[..100]).unwrap();
            tokio::time::sleep(Duration::from_millis(300)).await;
            let status = Command::new("kill")
                .args(["-TERM", &server.0.id().to_string()])
                .status()
                .unwrap();
            assert!(status.success());
            tokio::time::sleep(Duration::from_millis(50)).await;
            conn.write_all(&body[100..]).unwrap();
            let mut answer = Vec::new();
            let _ = conn.read_to_end(&mut answer);
            let answer = String::from_utf8_lossy(&answer);
            assert!(
                answer.starts_with("HTTP/1.1 200"),
                "attempt {attempt}: answer {answer:?}"
            );
            assert!(answer.contains("\"stored\""), "attempt {attempt}: {answer}");
            let exit = tokio::task::spawn_blocking(move || server.0.wait())
                .await
                .unwrap()
                .unwrap();
            assert!(exit.success(), "attempt {attempt}: exited with {exit}");
        }
    }

    /// A platform on a kept-alive connection, sending without pause, does
    /// not hold the server for the whole drain budget: after SIGTERM its
    /// next answer closes the connection, the reconnect finds nothing
    /// listening, and the server exits at once rather than cutting requests
    /// off (stored but unanswered) when the budget runs out.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sigterm_closes_kept_alive_connections_instead_of_waiting_for_the_budget() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("events.db");
        let port = free_port();
        let child = spawn_with(
            port,
            &db,
            &[("CATALOG_SERVER__SHUTDOWN_TIMEOUT_SECS", "20".to_owned())],
            Stdio::null(),
        );
        let mut server = Server(child);
        wait_ready(port).await;
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(1)
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        let b = SAMPLE.to_owned();
        let sender = tokio::spawn(async move {
            let (mut acked, mut closing) = (0u32, 0u32);
            for i in 0..1_000_000 {
                let mut req = client.post(format!(
                    "http://127.0.0.1:{port}/webhooks/shopify/products/create"
                ));
                for (k, v) in shopify_headers(&format!("ka-{i}"), b.as_bytes(), SECRET) {
                    req = req.header(k, v);
                }
                match req.body(b.clone()).send().await {
                    Ok(r) => {
                        assert_eq!(r.status(), 200);
                        acked += 1;
                        if r.headers().get("connection").is_some_and(|v| v == "close") {
                            closing += 1;
                        }
                    }
                    Err(_) => break,
                }
            }
            (acked, closing)
        });
        tokio::time::sleep(Duration::from_millis(500)).await;
        let term = Instant::now();
        let status = Command::new("kill")
            .args(["-TERM", &server.0.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        loop {
            if let Some(exit) = server.0.try_wait().unwrap() {
                assert!(exit.success(), "server exited with {exit}");
                break;
            }
            assert!(
                term.elapsed() < Duration::from_secs(10),
                "the server still served its kept-alive client {:?} after SIGTERM",
                term.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Whether an answer said `Connection: close` depends on whether a
        // request was in flight at the signal (an idle connection is closed
        // by the server); either way the client stopped at once.
        let (acked, _closing) = sender.await.unwrap();
        assert!(acked > 0);
    }

    /// SIGTERM stops the dispatcher at once, beside the requests' drain:
    /// with a request trickling its body (holding the HTTP drain for the
    /// whole `shutdown_timeout_secs`) and a backlog of one product going to
    /// a slow sink, at most the delivery in progress and the next of the
    /// run go out after the signal. Before, the dispatcher was told only
    /// once the requests had drained, and went on sending meanwhile; the
    /// two budgets ran one after the other.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sigterm_stops_dispatch_at_once_beside_the_request_drain() {
        use tokio::io::AsyncWriteExt as _;
        use wiremock::{Mock, MockServer, ResponseTemplate, matchers::any};

        const BUDGET_SECS: u64 = 3;
        let sink = MockServer::start().await;
        Mock::given(any())
            .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_millis(400)))
            .mount(&sink)
            .await;
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("events.db");
        let port = free_port();
        let server = Server(spawn_with(
            port,
            &db,
            &[
                ("CATALOG_DISPATCH__LOG", "true".into()),
                (
                    "CATALOG_SERVER__SHUTDOWN_TIMEOUT_SECS",
                    BUDGET_SECS.to_string(),
                ),
                ("CATALOG_SERVER__BODY_TIMEOUT_MS", "60000".into()),
                (
                    "CATALOG_DISPATCH__HTTP__URL",
                    format!("{}/hook", sink.uri()),
                ),
                (
                    "CATALOG_DISPATCH__HTTP__SECRET",
                    "whsec_dGVzdC1zZWNyZXQtb2YtdGhlLXRlc3RzLTMyYnl0ZXM=".into(),
                ),
            ],
            Stdio::null(),
        ));
        wait_ready(port).await;
        // A backlog of one product: sent one by one, in order.
        let b = body(7);
        let client = reqwest::Client::new();
        for i in 0..12 {
            let mut req = client.post(format!(
                "http://127.0.0.1:{port}/webhooks/shopify/products/create"
            ));
            for (k, v) in shopify_headers(&format!("drain-{i}"), b.as_bytes(), SECRET) {
                req = req.header(k, v);
            }
            assert_eq!(req.body(b.clone()).send().await.unwrap().status(), 200);
        }
        // A request that sends half its body and stops.
        let mut trickle = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        trickle
            .write_all(b"POST /webhooks/shopify/products/create HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"id\":")
            .await
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while sink
            .received_requests()
            .await
            .unwrap_or_default()
            .is_empty()
        {
            assert!(Instant::now() < deadline, "nothing dispatched");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let before = sink.received_requests().await.unwrap_or_default().len();
        let status = Command::new("kill")
            .args(["-TERM", &server.0.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(4 * BUDGET_SECS);
        let mut server = server;
        while server.0.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "server did not stop");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let after = sink.received_requests().await.unwrap_or_default().len();
        assert!(
            after - before <= 2,
            "{} deliveries started after SIGTERM ({before} before, {after} in all)",
            after - before
        );
        assert!(after < 12, "the whole backlog went out during the drain");
        drop(trickle);
    }

    /// The resident memory of a process, from `/proc`.
    fn rss_kib(pid: u32) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    /// `Content-Length` is read before the signature is checked: a head
    /// claiming the largest body allowed, then two bytes in two packets,
    /// must cost the server what arrived, not the claimed megabyte (an
    /// outside audit took one release binary to 1.15 GB with 1,000 such
    /// connections, unsigned).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_claimed_body_length_reserves_nothing_before_the_bytes_arrive() {
        use tokio::io::AsyncWriteExt;

        const CONNECTIONS: usize = 200;
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("events.db");
        let port = free_port();
        let server = spawn(port, &db);
        wait_ready(port).await;
        let pid = server.0.id();
        let before = rss_kib(pid);

        let head = format!(
            "POST /webhooks/shopify/products/create HTTP/1.1\r\nHost: x\r\n\
             X-Shopify-Topic: products/create\r\nX-Shopify-Shop-Domain: a.myshopify.com\r\n\
             X-Shopify-Webhook-Id: w\r\nX-Shopify-Hmac-Sha256: AAAA\r\n\
             Content-Length: {}\r\n\r\n{{",
            1024 * 1024
        );
        let mut held = Vec::new();
        for _ in 0..CONNECTIONS {
            let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .unwrap();
            conn.set_nodelay(true).unwrap();
            conn.write_all(head.as_bytes()).await.unwrap();
            held.push(conn);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        for conn in &mut held {
            conn.write_all(b" ").await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let after = rss_kib(pid);
        drop(held);

        let grown_mib = after.saturating_sub(before) / 1024;
        eprintln!("{CONNECTIONS} connections: {before} kB to {after} kB");
        assert!(
            grown_mib < 64,
            "{CONNECTIONS} connections with two body bytes each grew the server by {grown_mib} MiB \
             ({before} kB to {after} kB)"
        );
    }

    /// `Expect: 100-continue` with a body declared over the limit is 413
    /// at once, with no "100 Continue" inviting the upload (an outside audit
    /// got "100 Continue" then 413); under the limit the client is invited
    /// and the delivery stored.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn expect_continue_is_refused_before_an_oversize_upload() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("events.db");
        let port = free_port();
        let _server = spawn(port, &db);
        wait_ready(port).await;

        let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        conn.write_all(
            b"POST /webhooks/shopify/products/create HTTP/1.1\r\nHost: x\r\n\
              Expect: 100-continue\r\nContent-Length: 2000000\r\n\r\n",
        )
        .await
        .unwrap();
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), conn.read_to_end(&mut answer))
            .await
            .expect("the connection stayed open")
            .unwrap();
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
        assert!(!answer.contains("100 Continue"), "{answer}");
        assert!(
            answer.contains(r#"{"error":"payload_too_large"}"#),
            "{answer}"
        );
        let metrics = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with("webhook_deliveries_total{")
                    && l.contains(r#"platform="shopify""#)
                    && l.contains(r#"topic="product.created""#)
                    && l.contains(r#"outcome="too_large""#)
                    && l.ends_with(" 1")),
            "{metrics}"
        );

        let body = body(7);
        let mut head = String::from(
            "POST /webhooks/shopify/products/create HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n",
        );
        for (name, value) in shopify_headers("expect-1", body.as_bytes(), SECRET) {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str(&format!(
            "Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        ));
        let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        conn.write_all(head.as_bytes()).await.unwrap();
        let mut first = [0u8; 25];
        conn.read_exact(&mut first).await.unwrap();
        assert_eq!(&first, b"HTTP/1.1 100 Continue\r\n\r\n");
        conn.write_all(body.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        conn.read_to_end(&mut answer).await.unwrap();
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.contains("stored"), "{answer}");
    }

    /// A file sink write cut short (a full disk; here a file size limit)
    /// leaves no fragment: the attempt takes back what it wrote, and the
    /// retry's line is whole. (An outside audit found the retry's line
    /// glued to the fragment: not JSON, and the event's only copy.)
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_file_sink_line_cut_short_is_taken_back_and_written_whole() {
        if Command::new("prlimit").arg("--version").output().is_err() {
            eprintln!("skipped: prlimit (util-linux) is not installed");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("events.jsonl");
        let earlier = "{\"id\":\"earlier\"}\n".repeat(10);
        std::fs::write(&file, &earlier).unwrap();
        let port = free_port();
        // SIGXFSZ ignored, as a service manager's limit would leave it: a
        // write past the limit then fails with EFBIG, after writing what fits.
        let child = Command::new("sh")
            .args([
                "-c",
                "trap '' XFSZ; exec \"$0\"",
                env!("CARGO_BIN_EXE_webhook-server"),
            ])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("APP_PORT", port.to_string())
            .env("SHOPIFY_WEBHOOK_SECRET", SECRET)
            .env("CATALOG_DATABASE_URL", "memory://")
            .env("CATALOG_RATE_LIMIT__ENABLED", "false")
            .env("CATALOG_DISPATCH__LOG", "false")
            .env("CATALOG_DISPATCH__FILE", &file)
            .env("CATALOG_DISPATCH__BACKOFF_BASE_MS", "300")
            .env("CATALOG_DISPATCH__POLL_INTERVAL_MS", "100")
            .env("CATALOG_LOG__LEVEL", "error")
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let pid = child.id().to_string();
        let _server = Server(child);
        wait_ready(port).await;
        // Room for 200 more bytes: the event's line is longer.
        let limit = (earlier.len() + 200).to_string();
        let prlimit = |value: &str| {
            let status = Command::new("prlimit")
                .args(["--pid", &pid, &format!("--fsize={value}")])
                .status()
                .unwrap();
            assert!(status.success(), "prlimit {value}");
        };
        prlimit(&format!("{limit}:unlimited"));
        let client = reqwest::Client::new();
        let mut req = client.post(format!(
            "http://127.0.0.1:{port}/webhooks/shopify/products/create"
        ));
        for (k, v) in shopify_headers("cut-1", SAMPLE.as_bytes(), SECRET) {
            req = req.header(k, v);
        }
        let res = req.body(SAMPLE).send().await.unwrap();
        assert_eq!(res.status(), 200);
        // Attempts fail at the limit; after each, the file is as before.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(std::fs::read_to_string(&file).unwrap(), earlier);
        prlimit("unlimited");
        let deadline = Instant::now() + Duration::from_secs(20);
        let text = loop {
            let text = std::fs::read_to_string(&file).unwrap();
            if text.len() > earlier.len() || Instant::now() > deadline {
                break text;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        assert_eq!(lines.len(), 11, "{text}");
        assert_eq!(lines[10]["topic"], "product.created");
    }

    /// actix times only a connection's first head: a kept-alive
    /// connection whose next head came a byte at a time was held for good
    /// (an outside audit: 200 of them for 90 s, and a stop that waited out
    /// its whole budget). The server closes it once the request has gone
    /// unanswered for its own limits together (head + body + store + 1 s),
    /// and a kept-alive connection that sends whole requests is not cut.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_trickled_head_on_a_kept_alive_connection_is_cut() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("events.db");
        let port = free_port();
        let limits = [
            (
                "CATALOG_SERVER__CLIENT_REQUEST_TIMEOUT_MS",
                "300".to_owned(),
            ),
            ("CATALOG_SERVER__BODY_TIMEOUT_MS", "300".to_owned()),
            ("CATALOG_SERVER__STORE_TIMEOUT_MS", "400".to_owned()),
        ];
        let _server = Server(spawn_with(port, &db, &limits, Stdio::null()));
        wait_ready(port).await;
        let deadline = Duration::from_millis(300 + 300 + 400 + 1000);

        /// Sends a whole GET /healthz and reads its answer (keep-alive).
        async fn healthz(conn: &mut tokio::net::TcpStream) {
            conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                .await
                .unwrap();
            let mut answer = vec![0u8; 1024];
            let n = conn.read(&mut answer).await.unwrap();
            let answer = String::from_utf8_lossy(&answer[..n]);
            assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
            assert!(
                !answer.to_ascii_lowercase().contains("connection: close"),
                "{answer}"
            );
        }

        // Whole requests, spaced within the keep-alive period, for longer
        // than the deadline in all: one connection serves them all.
        let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let started = Instant::now();
        while started.elapsed() < deadline + Duration::from_millis(500) {
            healthz(&mut conn).await;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }

        // One whole request, then the next head a byte every 100 ms, never
        // finished: the server ends the connection, after the deadline.
        healthz(&mut conn).await;
        let started = Instant::now();
        let head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
        let mut closed = false;
        for b in head {
            if conn.write_all(&[*b]).await.is_err() {
                closed = true;
                break;
            }
            let mut probe = [0u8; 256];
            match tokio::time::timeout(Duration::from_millis(100), conn.read(&mut probe)).await {
                Ok(Ok(0) | Err(_)) => {
                    closed = true;
                    break;
                }
                Ok(Ok(n)) => panic!(
                    "an answer to an unfinished head: {}",
                    String::from_utf8_lossy(&probe[..n])
                ),
                Err(_) => {}
            }
        }
        let took = started.elapsed();
        assert!(closed, "still open after {took:?}");
        assert!(took >= deadline, "cut before the deadline: {took:?}");
        // The server goes on serving, and an idle kept-alive connection is
        // still closed at actix's keep-alive period (5 s): the deadline's
        // timer, set during the request, must not wake the connection
        // after the answer (each wake-up restarted that period: an outside
        // audit saw idle connections held 8.6 s with short limits).
        let mut fresh = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        healthz(&mut fresh).await;
        let idle = Instant::now();
        let mut rest = Vec::new();
        tokio::time::timeout(Duration::from_secs(15), fresh.read_to_end(&mut rest))
            .await
            .expect("an idle connection is closed")
            .unwrap();
        let idle = idle.elapsed();
        assert!(
            idle >= Duration::from_secs(4) && idle < Duration::from_millis(6500),
            "idle connection closed after {idle:?}"
        );
    }
}
