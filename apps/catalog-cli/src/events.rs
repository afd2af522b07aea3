//! `catalog events list|show|replay`: the webhook server's admin API
//! (`GET /admin/events`, `GET /admin/events/{id}`, `POST /admin/events/{id}/replay`).

use std::time::Duration;

use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret as _, SecretString};
use serde_json::Value;

use crate::config::redact_url;
use crate::error::{CliError, Kind, error_chain};
use crate::output::{self, Table};

/// A client of one server's admin API.
#[derive(Debug)]
pub(crate) struct Admin {
    base: String,
    token: SecretString,
    http: reqwest::Client,
}

/// `events list` filters.
#[derive(Debug, Default)]
pub(crate) struct ListFilter {
    /// `shopify` / `woocommerce`.
    pub(crate) platform: Option<String>,
    /// Store id.
    pub(crate) store: Option<String>,
    /// Canonical topic (`product.created`).
    pub(crate) topic: Option<String>,
    /// `pending`, `delivered`, `failed`, `dead`...
    pub(crate) status: Option<String>,
    /// Most events to show.
    pub(crate) limit: u32,
}

impl Admin {
    /// A client for `base` (`http://127.0.0.1:8050`).
    pub(crate) fn new(
        base: &str,
        token: SecretString,
        timeout: Duration,
    ) -> Result<Self, CliError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(5))
            .user_agent(concat!("catalog-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| {
                CliError::new(Kind::Other, "cannot build the HTTP client")
                    .with_detail(error_chain(&e.without_url()))
            })?;
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            token,
            http,
        })
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<Value, CliError> {
        let url = format!("{}{path}", self.base);
        let shown = redact_url(&self.base);
        let mut auth = reqwest::header::HeaderValue::from_str(&format!(
            "Bearer {}",
            self.token.expose_secret().trim()
        ))
        .map_err(|_| {
            CliError::new(
                Kind::Config,
                "the admin token contains characters not allowed in a header: check CATALOG_ADMIN_TOKEN / --token-env",
            )
        })?;
        auth.set_sensitive(true);
        let response = self
            .http
            .request(method, &url)
            .query(query)
            .header(reqwest::header::AUTHORIZATION, auth)
            .send()
            .await
            .map_err(|e| {
                CliError::new(
                    Kind::Unreachable,
                    format!("cannot reach the webhook server at {shown}: is it running? (check --server)"),
                )
                .with_detail(error_chain(&e.without_url()))
            })?;
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        match status {
            s if s.is_success() => serde_json::from_str(&body).map_err(|e| {
                CliError::new(
                    Kind::Remote,
                    format!("the server at {shown} answered something that is not JSON"),
                )
                .with_detail(e.to_string())
            }),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Err(CliError::new(
                Kind::Unauthorized,
                format!(
                    "the webhook server at {shown} refused the admin token (HTTP {}): use the server's CATALOG_ADMIN_TOKEN (or --token-env VAR)",
                    status.as_u16()
                ),
            )),
            StatusCode::NOT_FOUND if path.ends_with("/events") => Err(CliError::new(
                Kind::Remote,
                format!(
                    "the server at {shown} has no admin API (HTTP 404): start it with CATALOG_ADMIN_TOKEN set, or check --server"
                ),
            )),
            StatusCode::NOT_FOUND => Err(CliError::new(
                Kind::NotFound,
                format!(
                    "no event {} on the server at {shown}",
                    path.trim_start_matches("/admin/events/")
                        .trim_end_matches("/replay")
                ),
            )),
            s => {
                // A 400 says what to fix in `message`.
                let why = serde_json::from_str::<Value>(&body)
                    .ok()
                    .and_then(|v| v.get("message")?.as_str().map(|m| format!(": {m}")))
                    .unwrap_or_default();
                Err(CliError::new(
                    Kind::Remote,
                    format!(
                        "the webhook server at {shown} answered HTTP {}{why}",
                        s.as_u16()
                    ),
                )
                .with_detail(body))
            }
        }
    }

    /// `events list`.
    pub(crate) async fn list(&self, f: &ListFilter, json: bool) -> Result<(), CliError> {
        let mut events: Vec<Value> = Vec::new();
        let mut cursor: Option<String> = None;
        let want = usize::try_from(f.limit).unwrap_or(usize::MAX);
        while events.len() < want {
            let mut q: Vec<(&str, String)> = Vec::new();
            for (k, v) in [
                ("platform", &f.platform),
                ("store", &f.store),
                ("topic", &f.topic),
                ("status", &f.status),
            ] {
                if let Some(v) = v {
                    q.push((k, v.clone()));
                }
            }
            q.push(("limit", (want - events.len()).min(500).to_string()));
            if let Some(c) = &cursor {
                q.push(("cursor", c.clone()));
            }
            let page = self.call(Method::GET, "/admin/events", &q).await?;
            let batch = page
                .get("events")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let empty = batch.is_empty();
            events.extend(batch);
            cursor = page.get("next").and_then(Value::as_str).map(str::to_owned);
            if cursor.is_none() || empty {
                break;
            }
        }
        events.truncate(want);
        if json {
            return output::print_json(&events);
        }
        let s = |v: &Value, k: &str| -> String {
            match v.get(k) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => "-".to_owned(),
                Some(other) => other.to_string(),
            }
        };
        let mut t = Table::new(&[
            "ID", "RECEIVED", "PLATFORM", "STORE", "TOPIC", "PRODUCT", "STATUS", "ATTEMPTS",
        ]);
        for e in &events {
            t.row(vec![
                s(e, "id"),
                s(e, "received_at"),
                s(e, "platform"),
                s(e, "store"),
                s(e, "topic"),
                s(e, "product_id"),
                s(e, "status"),
                s(e, "attempts"),
            ]);
        }
        let mut text = t.render();
        text.push_str(&format!("{} events\n", events.len()));
        output::print(&text)
    }

    /// `events show ID`.
    pub(crate) async fn show(&self, id: &str, json: bool) -> Result<(), CliError> {
        let event = self
            .call(Method::GET, &format!("/admin/events/{}", encode(id)), &[])
            .await?;
        if json {
            return output::print_json(&event);
        }
        let mut t = Table::new(&["FIELD", "VALUE"]);
        if let Some(obj) = event.as_object() {
            for (k, v) in obj {
                if matches!(k.as_str(), "product" | "raw_body" | "raw_body_base64") {
                    continue;
                }
                let text = match v {
                    Value::String(s) => s.clone(),
                    Value::Null => "-".to_owned(),
                    other => other.to_string(),
                };
                t.row(vec![k.clone(), text]);
            }
        }
        let mut text = t.render();
        if let Some(Value::String(body)) = event.get("raw_body") {
            text.push_str("\nraw body:\n");
            text.push_str(body);
            text.push('\n');
        }
        output::print(&text)
    }

    /// `events replay ID`.
    pub(crate) async fn replay(&self, id: &str) -> Result<(), CliError> {
        let answer = self
            .call(
                Method::POST,
                &format!("/admin/events/{}/replay", encode(id)),
                &[],
            )
            .await?;
        let status = answer
            .get("status")
            .and_then(Value::as_str)
            .unwrap_or("pending");
        output::print(&format!("event {id} queued for replay (status {status})\n"))
    }
}

/// Percent-encodes a path segment.
fn encode(segment: &str) -> String {
    url::form_urlencoded::byte_serialize(segment.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}
