//! A fake Shopify Admin API on wiremock, shared by the integration tests and
//! the `pull` benchmark (which includes this file with `#[path]`).
//!
//! It behaves like the real service where the client's logic depends on it:
//! - `POST /admin/oauth/access_token` grants expiring tokens for the right
//!   client id and secret (JSON body), and the GraphQL endpoint answers 401
//!   to unknown, revoked or expired tokens;
//! - `POST /admin/api/{version}/graphql.json` runs the client's operations
//!   (recognised by operation name) against an in-memory catalog with cursor
//!   pagination on products, variants and media;
//! - every answer carries `extensions.cost`, and with a bucket configured the
//!   server keeps a leaky bucket (refilled at `restore_rate` per second) and
//!   answers `THROTTLED` with HTTP 200 when a query's requested cost exceeds
//!   what is available, refunding `requested - actual` otherwise;
//! - bulk operations go CREATED -> RUNNING -> final status over polls, and the
//!   result file is JSONL with `__parentId` child rows, optionally written with
//!   children *not* directly after their parent;
//! - scripted faults (429 with `Retry-After`, 5xx) can be queued.
//!
//! Cost model (documented in docs/platforms/shopify.md): the requested cost
//! is computed from the query text by Shopify's documented rules
//! (`query_cost.rs`), plus an optional manual cost per product (Shopify may
//! price fields by hand); a query over 1000 points is refused with
//! `MAX_COST_EXCEEDED`, as Shopify does. The actual cost counts the nodes
//! really returned instead of `first`.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

#[path = "query_cost.rs"]
pub(crate) mod query_cost;

pub(crate) const CLIENT_ID: &str = "fake-client-id";
pub(crate) const CLIENT_SECRET: &str = "fake-client-secret";
pub(crate) const STATIC_TOKEN: &str = "shpat_fake_static";

#[derive(Debug, Clone)]
pub(crate) struct FakeVariant {
    pub(crate) id: u64,
    pub(crate) title: String,
    pub(crate) sku: String,
    pub(crate) price: String,
    pub(crate) quantity: i64,
}

#[derive(Debug, Clone)]
pub(crate) struct FakeImage {
    pub(crate) id: u64,
    pub(crate) url: String,
}

#[derive(Debug, Clone)]
pub(crate) struct FakeProduct {
    pub(crate) id: u64,
    pub(crate) title: String,
    pub(crate) tags: Vec<String>,
    pub(crate) variants: Vec<FakeVariant>,
    pub(crate) images: Vec<FakeImage>,
}

impl FakeProduct {
    /// Product `n` with `variants` variants and `images` images.
    pub(crate) fn numbered(n: u64, variants: u64, images: u64) -> Self {
        let id = 7_000_000_000_000_000_000 + n;
        Self {
            id,
            title: format!("Product {n}"),
            tags: vec!["fake".into(), format!("n{n}")],
            variants: (0..variants)
                .map(|v| FakeVariant {
                    id: 8_000_000_000_000_000_000 + n * 1000 + v,
                    title: format!("V{v}"),
                    sku: if v == 0 {
                        String::new()
                    } else {
                        format!("SKU-{n}-{v}")
                    },
                    price: format!("{}.{:02}", 10 + v, n % 100),
                    quantity: (n % 7) as i64,
                })
                .collect(),
            images: (0..images)
                .map(|i| FakeImage {
                    id: 9_000_000_000_000_000_000 + n * 1000 + i,
                    url: format!("https://cdn.example/{n}/{i}.png"),
                })
                .collect(),
        }
    }

    fn gid(&self) -> String {
        format!("gid://shopify/Product/{}", self.id)
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct BucketSpec {
    pub(crate) maximum: f64,
    pub(crate) restore_rate: f64,
    /// Points available at start (defaults to `maximum`).
    pub(crate) initial: Option<f64>,
}

#[derive(Debug, Clone)]
pub(crate) enum Fault {
    /// Answer with this status (and `Retry-After` seconds, when given).
    Status(u16, Option<&'static str>),
    /// Answer with this status and JSON body.
    Reply(u16, Value),
}

#[derive(Debug, Clone)]
pub(crate) struct Options {
    pub(crate) products: Vec<FakeProduct>,
    pub(crate) currency: &'static str,
    pub(crate) bucket: Option<BucketSpec>,
    pub(crate) token_lifetime: Duration,
    pub(crate) grant_delay: Duration,
    /// Polls answered RUNNING before the final status.
    pub(crate) bulk_polls: u32,
    pub(crate) bulk_final_status: &'static str,
    pub(crate) bulk_error_code: Option<&'static str>,
    /// Write each product's children after the *next* product line.
    pub(crate) bulk_children_late: bool,
    /// Answer 401 to every GraphQL request, whatever the token.
    pub(crate) reject_all_tokens: bool,
    /// Points added to a query's requested cost per product it asks for
    /// (Shopify's manual field costs).
    pub(crate) manual_product_cost: f64,
    /// Misbehave on a product's follow-up variant and media pages.
    pub(crate) follow_ups: FollowUps,
    /// Give the first node of every follow-up variant page an
    /// `inventoryQuantity` that is not a number.
    pub(crate) bad_follow_up_variant: bool,
    /// Answer `product: null` to follow-up pages of this product id (deleted
    /// after it was listed).
    pub(crate) vanish_on_follow_up: Option<u64>,
}

/// How the follow-up pages of a product's variants and media end.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum FollowUps {
    /// As Shopify: the last page says so.
    #[default]
    Honest,
    /// Two cursors in turn, each page saying more follows.
    Cycle,
    /// A new cursor every page, never the last.
    Endless,
    /// Every follow-up request answered by a proxy's 502 HTML page.
    Unavailable,
    /// Every follow-up request answered 200 with a maintenance HTML page.
    HtmlPage,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            products: Vec::new(),
            currency: "USD",
            bucket: None,
            token_lifetime: Duration::from_secs(86_399),
            grant_delay: Duration::ZERO,
            bulk_polls: 1,
            bulk_final_status: "COMPLETED",
            bulk_error_code: None,
            bulk_children_late: false,
            reject_all_tokens: false,
            manual_product_cost: 0.0,
            follow_ups: FollowUps::Honest,
            bad_follow_up_variant: false,
            vanish_on_follow_up: None,
        }
    }
}

/// What the server saw, for assertions.
#[derive(Debug, Clone, Default)]
pub(crate) struct Counters {
    pub(crate) grants: u64,
    pub(crate) graphql: u64,
    pub(crate) throttled: u64,
    /// Queries refused with `MAX_COST_EXCEEDED`, and the `first` each asked.
    pub(crate) cost_refused: Vec<u64>,
    /// The requested cost of every query answered, highest.
    pub(crate) highest_cost: f64,
    pub(crate) unauthorized: u64,
    pub(crate) faults: u64,
    pub(crate) ops: HashMap<String, u64>,
    pub(crate) downloads: u64,
    /// Token headers seen on downloads (must be none).
    pub(crate) download_tokens: u64,
}

struct Bucket {
    spec: BucketSpec,
    available: f64,
    at: Instant,
}

struct State {
    opts: Options,
    base_url: String,
    tokens: HashMap<String, Instant>,
    next_token: u64,
    bucket: Option<Bucket>,
    faults: VecDeque<Fault>,
    counters: Counters,
    bulk_ops: HashMap<String, u32>,
}

#[derive(Clone)]
pub(crate) struct FakeShopify {
    state: Arc<Mutex<State>>,
}

pub(crate) struct Running {
    pub(crate) server: MockServer,
    pub(crate) fake: FakeShopify,
}

impl Running {
    pub(crate) fn uri(&self) -> String {
        self.server.uri()
    }
}

impl FakeShopify {
    /// Starts a server with these options.
    pub(crate) async fn start(opts: Options) -> Running {
        let server = MockServer::start().await;
        let now = Instant::now();
        let bucket = opts.bucket.map(|spec| Bucket {
            spec,
            available: spec.initial.unwrap_or(spec.maximum),
            at: now,
        });
        let fake = Self {
            state: Arc::new(Mutex::new(State {
                opts,
                base_url: server.uri(),
                tokens: HashMap::new(),
                next_token: 0,
                bucket,
                faults: VecDeque::new(),
                counters: Counters::default(),
                bulk_ops: HashMap::new(),
            })),
        };
        Mock::given(method("POST"))
            .and(path("/admin/oauth/access_token"))
            .respond_with(fake.clone())
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path_regex(r"^/admin/api/[0-9a-z-]+/graphql\.json$"))
            .respond_with(fake.clone())
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path_regex(r"^/bulk/"))
            .respond_with(fake.clone())
            .mount(&server)
            .await;
        // Anything else is a client bug: say so loudly.
        Mock::given(wiremock::matchers::any())
            .respond_with(
                ResponseTemplate::new(500).set_body_string("fake shopify: unexpected request"),
            )
            .with_priority(u8::MAX)
            .mount(&server)
            .await;
        Running { server, fake }
    }

    pub(crate) fn counters(&self) -> Counters {
        self.state.lock().unwrap().counters.clone()
    }

    pub(crate) fn op_count(&self, op: &str) -> u64 {
        self.counters().ops.get(op).copied().unwrap_or(0)
    }

    /// Queues faults for the next GraphQL requests.
    pub(crate) fn push_faults(&self, faults: impl IntoIterator<Item = Fault>) {
        self.state.lock().unwrap().faults.extend(faults);
    }

    /// Forgets every granted token (as if the app's secret was rotated).
    pub(crate) fn revoke_tokens(&self) {
        self.state.lock().unwrap().tokens.clear();
    }

    /// Sets the bucket's available points now.
    pub(crate) fn set_available(&self, points: f64) {
        let mut s = self.state.lock().unwrap();
        if let Some(b) = s.bucket.as_mut() {
            b.available = points;
            b.at = Instant::now();
        }
    }
}

fn json_response(status: u16, body: &Value) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_raw(body.to_string().into_bytes(), "application/json")
}

impl Respond for FakeShopify {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let mut s = self.state.lock().unwrap();
        let p = req.url.path().to_owned();
        if p == "/admin/oauth/access_token" {
            return s.grant(req);
        }
        if p.starts_with("/bulk/") {
            return s.download(req, &p);
        }
        s.graphql(req)
    }
}

fn operation_name(query: &str) -> &str {
    let q = query.trim_start();
    let rest = q
        .strip_prefix("query")
        .or_else(|| q.strip_prefix("mutation"))
        .unwrap_or("");
    let rest = rest.trim_start();
    let end = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(rest.len());
    &rest[..end]
}

fn u(v: &Value, key: &str) -> u64 {
    v.get(key).and_then(Value::as_u64).unwrap_or(0)
}

fn cursor_index(v: &Value, key: &str) -> usize {
    v.get(key)
        .and_then(Value::as_str)
        .and_then(|c| c.split_once(':'))
        .and_then(|(_, n)| n.parse().ok())
        .unwrap_or(0)
}

fn variant_json(v: &FakeVariant) -> Value {
    json!({
        "id": format!("gid://shopify/ProductVariant/{}", v.id),
        "title": v.title, "sku": v.sku, "barcode": null, "price": v.price,
        "compareAtPrice": null, "inventoryQuantity": v.quantity,
        "selectedOptions": [{"name": "Size", "value": v.title}],
    })
}

fn image_json(i: &FakeImage) -> Value {
    json!({
        "id": format!("gid://shopify/MediaImage/{}", i.id),
        "image": {"url": i.url, "altText": null, "width": 800, "height": 600},
    })
}

/// Product scalar fields, as a paged node or a bulk line carries them.
fn product_fields(p: &FakeProduct) -> Value {
    json!({
        "id": p.gid(), "title": p.title, "handle": format!("product-{}", p.id),
        "descriptionHtml": format!("<p>{}</p>", p.title), "vendor": "Acme",
        "productType": "Shirts", "status": "ACTIVE", "tags": p.tags,
        "createdAt": "2026-01-01T00:00:00Z", "updatedAt": "2026-01-02T00:00:00Z",
        "category": null,
        "options": [{"name": "Size", "optionValues": p.variants.iter().map(|v| json!({"name": v.title})).collect::<Vec<_>>()}],
    })
}

fn slice<T>(items: &[T], start: usize, first: usize) -> (&[T], bool) {
    let start = start.min(items.len());
    let end = (start + first).min(items.len());
    (&items[start..end], end < items.len())
}

fn connection(nodes: &[Value], has_next: bool, prefix: &str, end: usize) -> Value {
    json!({
        "pageInfo": {"hasNextPage": has_next, "endCursor": if nodes.is_empty() { Value::Null } else { json!(format!("{prefix}:{end}")) }},
        "nodes": nodes,
    })
}

/// A product node with the first pages of its connections; returns the node
/// and its actual cost.
fn product_node(p: &FakeProduct, vf: usize, mf: usize) -> (Value, f64) {
    let mut node = product_fields(p);
    let (vs, v_next) = slice(&p.variants, 0, vf);
    let (ms, m_next) = slice(&p.images, 0, mf);
    node["variants"] = connection(
        &vs.iter().map(variant_json).collect::<Vec<_>>(),
        v_next,
        "v",
        vs.len(),
    );
    node["media"] = connection(
        &ms.iter().map(image_json).collect::<Vec<_>>(),
        m_next,
        "m",
        ms.len(),
    );
    let actual = 1.0 + (2 + vs.len()) as f64 + (2 + ms.len()) as f64;
    (node, actual)
}

impl State {
    fn grant(&mut self, req: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
        let ok = body["client_id"] == CLIENT_ID
            && body["client_secret"] == CLIENT_SECRET
            && body["grant_type"] == "client_credentials";
        if !ok {
            return json_response(
                400,
                &json!({"error": "invalid_client", "error_description": "Client authentication failed"}),
            );
        }
        self.counters.grants += 1;
        self.next_token += 1;
        let token = format!("shpat_granted_{}", self.next_token);
        let lifetime = self.opts.token_lifetime;
        self.tokens.insert(token.clone(), Instant::now() + lifetime);
        // `expires_in` in whole seconds, as Shopify sends it; sub-second
        // lifetimes (tests) are rounded up so the client sees at least 1.
        let expires_in = lifetime.as_secs_f64().ceil() as u64;
        json_response(
            200,
            &json!({"access_token": token, "scope": "read_products", "expires_in": expires_in}),
        )
        .set_delay(self.opts.grant_delay)
    }

    fn authorised(&self, req: &Request) -> bool {
        if self.opts.reject_all_tokens {
            return false;
        }
        let Some(token) = req
            .headers
            .get("x-shopify-access-token")
            .and_then(|v| v.to_str().ok())
        else {
            return false;
        };
        token == STATIC_TOKEN
            || self
                .tokens
                .get(token)
                .is_some_and(|expiry| Instant::now() < *expiry)
    }

    fn graphql(&mut self, req: &Request) -> ResponseTemplate {
        self.counters.graphql += 1;
        match self.faults.pop_front() {
            Some(Fault::Status(status, retry_after)) => {
                self.counters.faults += 1;
                let mut r = json_response(status, &json!({"errors": "fake fault"}));
                if let Some(after) = retry_after {
                    r = r.insert_header("Retry-After", after);
                }
                return r;
            }
            Some(Fault::Reply(status, body)) => {
                self.counters.faults += 1;
                return json_response(status, &body);
            }
            None => {}
        }
        if !self.authorised(req) {
            self.counters.unauthorized += 1;
            return json_response(
                401,
                &json!({"errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"}),
            );
        }
        let content_type = req
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !content_type.starts_with("application/json") {
            return json_response(400, &json!({"errors": "expected application/json"}));
        }
        let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
        let query = body["query"].as_str().unwrap_or("");
        let vars = body.get("variables").cloned().unwrap_or(json!({}));
        let op = operation_name(query).to_owned();
        *self.counters.ops.entry(op.clone()).or_default() += 1;
        if matches!(op.as_str(), "ProductVariants" | "ProductMedia") {
            let html = "<html><body><h1>Down for maintenance</h1></body></html>";
            match self.opts.follow_ups {
                FollowUps::Unavailable => {
                    return ResponseTemplate::new(502).set_body_raw(html, "text/html");
                }
                FollowUps::HtmlPage => {
                    return ResponseTemplate::new(200).set_body_raw(html, "text/html");
                }
                _ => {}
            }
        }

        let requested = self.requested_cost(&op, query, &vars);
        if requested > 1000.0 {
            self.counters.cost_refused.push(u(&vars, "first"));
            return json_response(
                200,
                &json!({"errors": [{
                    "message": format!("Query cost is {requested}, which exceeds the single query max cost limit (1000)."),
                    "extensions": {"code": "MAX_COST_EXCEEDED", "cost": requested, "maxCost": 1000,
                        "documentation": "https://shopify.dev/api/usage/rate-limits"},
                }]}),
            );
        }
        self.counters.highest_cost = self.counters.highest_cost.max(requested);
        if let Some(throttled) = self.charge(requested) {
            self.counters.throttled += 1;
            return throttled;
        }
        let (data, actual) = self.execute(&op, &vars);
        let status = self.refund(requested, actual);
        json_response(
            200,
            &json!({
                "data": data,
                "extensions": {"cost": {
                    "requestedQueryCost": requested, "actualQueryCost": actual,
                    "throttleStatus": status,
                }},
            }),
        )
    }

    fn requested_cost(&self, op: &str, query: &str, vars: &Value) -> f64 {
        let manual = self.opts.manual_product_cost;
        match op {
            "ListProducts" => {
                query_cost::requested_cost(query, vars) + manual * u(vars, "first") as f64
            }
            "GetProduct" => query_cost::requested_cost(query, vars) + manual,
            "ProductVariants" | "ProductMedia" => query_cost::requested_cost(query, vars),
            "RunBulkProductExport" => 10.0,
            _ => 1.0,
        }
    }

    fn status_json(&self) -> Value {
        match &self.bucket {
            Some(b) => json!({
                "maximumAvailable": b.spec.maximum,
                "currentlyAvailable": b.available.floor(),
                "restoreRate": b.spec.restore_rate,
            }),
            None => {
                json!({"maximumAvailable": 1.0e9, "currentlyAvailable": 1.0e9, "restoreRate": 1.0e6})
            }
        }
    }

    /// Takes `requested` points, or returns the THROTTLED answer.
    fn charge(&mut self, requested: f64) -> Option<ResponseTemplate> {
        let b = self.bucket.as_mut()?;
        let now = Instant::now();
        b.available = (b.available + now.duration_since(b.at).as_secs_f64() * b.spec.restore_rate)
            .min(b.spec.maximum);
        b.at = now;
        if requested <= b.available {
            b.available -= requested;
            return None;
        }
        Some(json_response(
            200,
            &json!({
                "errors": [{"message": "Throttled", "extensions": {"code": "THROTTLED", "documentation": "https://shopify.dev/api/usage/rate-limits"}}],
                "extensions": {"cost": {"requestedQueryCost": requested, "actualQueryCost": null, "throttleStatus": self.status_json()}},
            }),
        ))
    }

    fn refund(&mut self, requested: f64, actual: f64) -> Value {
        if let Some(b) = self.bucket.as_mut() {
            b.available = (b.available + (requested - actual).max(0.0)).min(b.spec.maximum);
        }
        self.status_json()
    }

    fn find(&self, gid: &str) -> Option<&FakeProduct> {
        self.opts.products.iter().find(|p| p.gid() == gid)
    }

    fn execute(&mut self, op: &str, vars: &Value) -> (Value, f64) {
        let vf = u(vars, "variantsFirst") as usize;
        let mf = u(vars, "mediaFirst") as usize;
        match op {
            "ShopCurrency" => (json!({"shop": {"currencyCode": self.opts.currency}}), 1.0),
            "GetProduct" => match self.find(vars["id"].as_str().unwrap_or("")) {
                Some(p) => {
                    let (node, actual) = product_node(p, vf, mf);
                    (json!({"product": node}), actual)
                }
                None => (json!({"product": null}), 1.0),
            },
            "ListProducts" => {
                let start = cursor_index(vars, "after");
                let first = u(vars, "first") as usize;
                let (page, has_next) = slice(&self.opts.products, start, first);
                let mut actual = 2.0;
                let nodes: Vec<Value> = page
                    .iter()
                    .map(|p| {
                        let (node, cost) = product_node(p, vf, mf);
                        actual += cost;
                        node
                    })
                    .collect();
                let data =
                    json!({"products": connection(&nodes, has_next, "p", start + page.len())});
                (data, actual)
            }
            "ProductVariants" | "ProductMedia" => {
                let Some(p) = self.find(vars["id"].as_str().unwrap_or("")) else {
                    return (json!({"product": null}), 1.0);
                };
                if self.opts.vanish_on_follow_up == Some(p.id) {
                    return (json!({"product": null}), 1.0);
                }
                let start = cursor_index(vars, "after");
                let first = u(vars, "first") as usize;
                let (field, prefix, nodes, has_next) = if op == "ProductVariants" {
                    let (s, n) = slice(&p.variants, start, first);
                    (
                        "variants",
                        "v",
                        s.iter().map(variant_json).collect::<Vec<_>>(),
                        n,
                    )
                } else {
                    let (s, n) = slice(&p.images, start, first);
                    (
                        "media",
                        "m",
                        s.iter().map(image_json).collect::<Vec<_>>(),
                        n,
                    )
                };
                let actual = 3.0 + nodes.len() as f64;
                let (end, has_next) = match self.opts.follow_ups {
                    FollowUps::Honest => (start + nodes.len(), has_next),
                    // After `a` comes `b`, after `b` comes `a` again.
                    FollowUps::Cycle => (
                        if start.is_multiple_of(2) {
                            start + 1
                        } else {
                            start - 1
                        },
                        true,
                    ),
                    FollowUps::Endless => (start + 1, true),
                    FollowUps::Unavailable | FollowUps::HtmlPage => {
                        unreachable!("answered before")
                    }
                };
                let mut nodes = nodes;
                if self.opts.bad_follow_up_variant
                    && op == "ProductVariants"
                    && let Some(first) = nodes.first_mut()
                {
                    first["inventoryQuantity"] = json!("x");
                }
                let nodes = if nodes.is_empty() {
                    // Something to carry the cursor.
                    if op == "ProductVariants" {
                        p.variants.iter().take(1).map(variant_json).collect()
                    } else {
                        p.images.iter().take(1).map(image_json).collect()
                    }
                } else {
                    nodes
                };
                (
                    json!({"product": {field: connection(&nodes, has_next, prefix, end)}}),
                    actual,
                )
            }
            "RunBulkProductExport" => {
                let id = format!("gid://shopify/BulkOperation/{}", self.bulk_ops.len() + 1);
                self.bulk_ops.insert(id.clone(), 0);
                (
                    json!({"bulkOperationRunQuery": {"bulkOperation": {"id": id, "status": "CREATED"}, "userErrors": []}}),
                    10.0,
                )
            }
            "BulkOperationStatus" => {
                let id = vars["id"].as_str().unwrap_or("").to_owned();
                let Some(polls) = self.bulk_ops.get_mut(&id) else {
                    return (json!({"node": null}), 1.0);
                };
                *polls += 1;
                let done = *polls > self.opts.bulk_polls;
                let status = if done {
                    self.opts.bulk_final_status
                } else {
                    "RUNNING"
                };
                let completed = done && status == "COMPLETED";
                let url = (completed && !self.opts.products.is_empty()).then(|| {
                    format!(
                        "{}/bulk/{}.jsonl",
                        self.base_url,
                        id.rsplit('/').next().unwrap_or("0")
                    )
                });
                (
                    json!({"node": {
                        "id": id, "status": status,
                        "errorCode": if done { self.opts.bulk_error_code.map(Value::from).unwrap_or(Value::Null) } else { Value::Null },
                        "objectCount": "0", "url": url, "partialDataUrl": null,
                    }}),
                    1.0,
                )
            }
            other => (json!({"unknownOperation": other}), 1.0),
        }
    }

    fn download(&mut self, req: &Request, _path: &str) -> ResponseTemplate {
        self.counters.downloads += 1;
        if req.headers.contains_key("x-shopify-access-token") {
            self.counters.download_tokens += 1;
        }
        ResponseTemplate::new(200).set_body_raw(bulk_jsonl(&self.opts), "application/jsonl")
    }
}

/// The JSONL a bulk export of these products produces.
pub(crate) fn bulk_jsonl(opts: &Options) -> Vec<u8> {
    let mut out = Vec::new();
    let mut line = |v: Value| {
        out.extend_from_slice(v.to_string().as_bytes());
        out.push(b'\n');
    };
    let children = |p: &FakeProduct| -> Vec<Value> {
        let parent = p.gid();
        let mut rows = Vec::new();
        for v in &p.variants {
            let mut row = variant_json(v);
            row["__parentId"] = json!(parent);
            rows.push(row);
        }
        for i in &p.images {
            let mut row = image_json(i);
            row["__parentId"] = json!(parent);
            rows.push(row);
        }
        // A video: Shopify writes only the parent id for non-image media here.
        rows.push(json!({"__parentId": parent}));
        rows
    };
    let mut delayed: Vec<Value> = Vec::new();
    for p in &opts.products {
        line(product_fields(p));
        if opts.bulk_children_late {
            for row in delayed.drain(..) {
                line(row);
            }
            delayed = children(p);
        } else {
            for row in children(p) {
                line(row);
            }
        }
    }
    for row in delayed {
        line(row);
    }
    out
}
