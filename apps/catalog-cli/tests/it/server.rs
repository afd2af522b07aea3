//! The webhook server, in-process on 127.0.0.1:0 in a thread of its own.

use std::sync::Arc;

use actix_web::{App, HttpServer};
use webhook_server::platforms::Platforms;
use webhook_server::settings::Settings;
use webhook_server::store::MemoryStore;
use webhook_server::{AppState, configure};

/// A running server.
pub(crate) struct Server {
    /// `http://127.0.0.1:PORT`.
    pub(crate) url: String,
}

/// Starts the server with these settings (platforms, secrets, admin token).
pub(crate) fn start(settings: Settings) -> Server {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let platforms = Platforms::from_settings(&settings).unwrap();
            let state = AppState::new(
                &settings,
                platforms,
                Arc::new(MemoryStore::new(10_000, 10_000)),
            );
            let server =
                HttpServer::new(move || App::new().configure(|c| configure(c, state.clone())))
                    .workers(1)
                    .disable_signals()
                    .bind(("127.0.0.1", 0))
                    .unwrap();
            let addr = server.addrs()[0];
            tx.send(addr).unwrap();
            server.run().await.unwrap();
        });
    });
    let addr = rx.recv().unwrap();
    Server {
        url: format!("http://{addr}"),
    }
}

/// Default settings, rate limiting off, with an admin token.
pub(crate) fn settings(admin_token: &str) -> Settings {
    let mut s = Settings::defaults();
    s.rate_limit.enabled = false;
    s.admin.token = Some(admin_token.into());
    s
}
