//! Running the binary with a clean environment, and starting fakes.

use std::path::Path;
use std::process::Output;
use std::sync::Arc;

use wiremock::matchers::any;
use wiremock::{Mock, MockServer};

use crate::woo_fake::FakeStore;

/// `catalog` with an empty environment (no `.env`, no seed variables from
/// the machine) in a temporary working directory.
pub(crate) fn catalog(dir: &Path) -> assert_cmd::Command {
    let mut cmd = assert_cmd::Command::cargo_bin("catalog").unwrap();
    cmd.env_clear()
        .current_dir(dir)
        .timeout(std::time::Duration::from_secs(60));
    cmd
}

/// Runs a command off the async runtime, so in-process servers keep serving.
pub(crate) async fn run(mut cmd: assert_cmd::Command) -> Output {
    tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap()
}

/// Text of stdout / stderr.
pub(crate) fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub(crate) fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Starts the fake WooCommerce store.
pub(crate) async fn woo(store: FakeStore) -> (MockServer, Arc<FakeStore>) {
    let server = MockServer::start().await;
    let store = Arc::new(store);
    Mock::given(any())
        .respond_with(store.responder())
        .with_priority(10)
        .mount(&server)
        .await;
    (server, store)
}

/// The seed variables for a WooCommerce store at `url`.
pub(crate) fn woo_env(cmd: &mut assert_cmd::Command, url: &str, key: &str, secret: &str) {
    cmd.env("WOOCOMMERCE_STORE_URL", url)
        .env("WOOCOMMERCE_CONSUMER_KEY", key)
        .env("WOOCOMMERCE_CONSUMER_SECRET", secret);
}

/// Parses JSON lines, asserting each line is whole JSON.
pub(crate) fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad line {l:?}: {e}")))
        .collect()
}
