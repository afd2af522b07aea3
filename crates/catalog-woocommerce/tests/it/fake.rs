//! An in-process fake WooCommerce store (wc/v3 subset) for tests and the
//! benchmark: products ordered by id with `per_page`/`page`/`offset`,
//! variations, the currency setting, and real authentication checks
//! (Basic, query string, OAuth 1.0a signatures recomputed independently).
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::result_large_err
)]

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use wiremock::{Request, Respond, ResponseTemplate};

pub const KEY: &str = "ck_fake_0123456789abcdef";
pub const SECRET: &str = "cs_fake_SUPERSECRET_4567";

/// Which credential form the fake store accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accept {
    /// HTTPS behaviour: query-string keys, else HTTP Basic.
    Https,
    /// Plain HTTP behaviour: OAuth 1.0a only.
    OAuth1,
}

type Hook = Box<dyn Fn(usize, &FakeStore) + Send + Sync>;

pub struct FakeStore {
    pub accept: Accept,
    pub products: Mutex<Vec<Value>>,
    pub variations: Mutex<HashMap<u64, Vec<Value>>>,
    pub currency: String,
    pub delay: Option<Duration>,
    pub requests: AtomicUsize,
    pub list_requests: AtomicUsize,
    pub nonces: Mutex<HashSet<String>>,
    pub in_flight: AtomicUsize,
    pub max_in_flight: AtomicUsize,
    /// Answer this many authenticated requests with 503 first.
    pub fail_next: AtomicUsize,
    /// Called after each list request is answered (index, store).
    pub after_list: Mutex<Option<Hook>>,
    /// Sent as the product list's `X-WP-Total` instead of the true count
    /// (a proxy or plugin that lies).
    pub list_total: Mutex<Option<String>>,
    /// Leave `X-WP-TotalPages` out of variation pages (a proxy dropped it).
    pub hide_variation_pages: std::sync::atomic::AtomicBool,
    /// List products in a fixed order of the store's own, whatever
    /// `orderby` says (a plugin that imposes a manual product order).
    pub own_order: std::sync::atomic::AtomicBool,
    /// Answer every product list with its first page, whatever `offset` or
    /// `page` say (a cache that ignores the query string).
    pub first_page_only: std::sync::atomic::AtomicBool,
    /// Answer every variation page with the first, claiming a million
    /// pages (a cache that ignores the query string, a lying header).
    pub repeat_variation_page: std::sync::atomic::AtomicBool,
}

impl FakeStore {
    pub fn new(accept: Accept) -> Self {
        Self {
            accept,
            products: Mutex::new(Vec::new()),
            variations: Mutex::new(HashMap::new()),
            currency: "EUR".into(),
            delay: None,
            requests: AtomicUsize::new(0),
            list_requests: AtomicUsize::new(0),
            nonces: Mutex::new(HashSet::new()),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            fail_next: AtomicUsize::new(0),
            after_list: Mutex::new(None),
            list_total: Mutex::new(None),
            hide_variation_pages: std::sync::atomic::AtomicBool::new(false),
            own_order: std::sync::atomic::AtomicBool::new(false),
            first_page_only: std::sync::atomic::AtomicBool::new(false),
            repeat_variation_page: std::sync::atomic::AtomicBool::new(false),
        }
    }

    pub fn with_delay(mut self, d: Duration) -> Self {
        self.delay = Some(d);
        self
    }

    /// Adds a simple product.
    pub fn add_simple(&self, id: u64, price: &str) {
        self.insert(simple_product(id, price));
    }

    /// Adds a variable product with `n` variations (ids `id*1000+1..`).
    pub fn add_variable(&self, id: u64, n: u64) {
        let var_ids: Vec<u64> = (1..=n).map(|i| id * 1000 + i).collect();
        let mut p = simple_product(id, "");
        p["type"] = json!("variable");
        p["regular_price"] = json!("");
        p["variations"] = json!(var_ids);
        p["attributes"] = json!([{"id":0,"name":"Size","position":0,"visible":true,"variation":true,
            "options": var_ids.iter().map(|v| format!("S{v}")).collect::<Vec<_>>()}]);
        self.insert(p);
        let vars = var_ids
            .iter()
            .map(|v| {
                json!({"id": v, "parent_id": id, "sku": format!("SKU-{v}"), "price": format!("{}.50", v % 100),
                       "regular_price": format!("{}.50", v % 100), "sale_price": "", "stock_quantity": 3,
                       "weight": "", "attributes": [{"id":0,"name":"Size","option": format!("S{v}")}]})
            })
            .collect();
        self.variations.lock().unwrap().insert(id, vars);
    }

    pub fn insert(&self, p: Value) {
        let mut ps = self.products.lock().unwrap();
        ps.push(p);
        ps.sort_by_key(|p| p["id"].as_u64());
    }

    pub fn remove(&self, id: u64) {
        self.products
            .lock()
            .unwrap()
            .retain(|p| p["id"].as_u64() != Some(id));
    }

    pub fn responder(self: &Arc<Self>) -> FakeResponder {
        FakeResponder(Arc::clone(self))
    }

    fn check_auth(&self, req: &Request) -> Result<(), ResponseTemplate> {
        let query: Vec<(String, String)> = req
            .url
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let q = |name: &str| {
            query
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        match self.accept {
            Accept::Https => {
                let (key, secret) =
                    if let (Some(k), Some(s)) = (q("consumer_key"), q("consumer_secret")) {
                        (k, s)
                    } else if let Some(h) = req
                        .headers
                        .get("authorization")
                        .and_then(|h| h.to_str().ok())
                    {
                        let decoded = h
                            .strip_prefix("Basic ")
                            .and_then(|b| STANDARD.decode(b).ok())
                            .and_then(|b| String::from_utf8(b).ok())
                            .unwrap_or_default();
                        let (k, s) = decoded.split_once(':').unwrap_or(("", ""));
                        (k.to_owned(), s.to_owned())
                    } else {
                        return Err(cannot_view());
                    };
                if key != KEY {
                    return Err(cannot_view());
                }
                if secret != SECRET {
                    return Err(wp_error(
                        401,
                        "woocommerce_rest_authentication_error",
                        "Consumer secret is invalid.",
                    ));
                }
                Ok(())
            }
            Accept::OAuth1 => {
                let missing: Vec<&str> = [
                    "oauth_consumer_key",
                    "oauth_timestamp",
                    "oauth_nonce",
                    "oauth_signature",
                    "oauth_signature_method",
                ]
                .into_iter()
                .filter(|n| q(n).is_none_or(|v| v.is_empty()))
                .collect();
                if missing.len() == 5 {
                    return Err(cannot_view());
                }
                if !missing.is_empty() {
                    return Err(wp_error(
                        401,
                        "woocommerce_rest_authentication_missing_parameter",
                        &format!("Missing OAuth parameters {}", missing.join(", ")),
                    ));
                }
                if q("oauth_consumer_key").as_deref() != Some(KEY) {
                    return Err(wp_error(
                        401,
                        "woocommerce_rest_authentication_error",
                        "Consumer key is invalid.",
                    ));
                }
                let method = q("oauth_signature_method").unwrap_or_default();
                if method != "HMAC-SHA256" && method != "HMAC-SHA1" {
                    return Err(wp_error(
                        401,
                        "woocommerce_rest_authentication_error",
                        "Invalid signature - signature method is invalid.",
                    ));
                }
                // WooCommerce rebuilds the URL from its home_url; this fake's
                // home is whatever host the client addressed.
                let host = req
                    .headers
                    .get("host")
                    .and_then(|h| h.to_str().ok())
                    .unwrap_or("localhost");
                let mut home = url::Url::parse(&format!("http://{host}")).unwrap();
                home.set_path(req.url.path());
                let expected = php_oauth_signature(req.method.as_str(), &home, &query, SECRET);
                if Some(expected) != q("oauth_signature") {
                    return Err(wp_error(
                        401,
                        "woocommerce_rest_authentication_error",
                        "Invalid signature - provided signature does not match.",
                    ));
                }
                let ts: i64 = q("oauth_timestamp")
                    .and_then(|t| t.parse().ok())
                    .unwrap_or(0);
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_secs() as i64;
                if (now - ts).abs() > 15 * 60 {
                    return Err(wp_error(
                        401,
                        "woocommerce_rest_authentication_error",
                        "Invalid timestamp.",
                    ));
                }
                if !self
                    .nonces
                    .lock()
                    .unwrap()
                    .insert(q("oauth_nonce").unwrap_or_default())
                {
                    return Err(wp_error(
                        401,
                        "woocommerce_rest_authentication_error",
                        "Invalid nonce - nonce has already been used.",
                    ));
                }
                Ok(())
            }
        }
    }

    fn route(&self, req: &Request) -> ResponseTemplate {
        if let Err(resp) = self.check_auth(req) {
            return resp;
        }
        if self
            .fail_next
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return wp_error(503, "service_unavailable", "Try again");
        }
        let Some(route) = req.url.path().strip_prefix("/wp-json/wc/v3/") else {
            return wp_error(
                404,
                "rest_no_route",
                "No route was found matching the URL and request method",
            );
        };
        let params: HashMap<String, String> = req
            .url
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let segments: Vec<&str> = route.split('/').collect();
        match segments.as_slice() {
            ["settings", "general", "woocommerce_currency"] => ResponseTemplate::new(200)
                .set_body_json(json!({"id":"woocommerce_currency","label":"Currency","type":"select","default":"USD","value": self.currency})),
            ["products"] => {
                let n = self.list_requests.fetch_add(1, Ordering::SeqCst);
                let resp = {
                    let ps = self.products.lock().unwrap();
                    let mut sorted: Vec<&Value> = ps.iter().collect();
                    if params.get("orderby").map(String::as_str) != Some("id") {
                        // Default order is date desc: unstable for our purpose.
                        sorted.reverse();
                    } else if params.get("order").map(String::as_str) != Some("asc") {
                        sorted.reverse();
                    }
                    if self.own_order.load(Ordering::SeqCst) {
                        // A "menu order" of the merchant's: ids by their last digit.
                        sorted.sort_by_key(|p| {
                            let id = p["id"].as_u64().unwrap_or(0);
                            (id % 10, id)
                        });
                    }
                    let mut params = params;
                    if self.first_page_only.load(Ordering::SeqCst) {
                        params.remove("offset");
                        params.remove("page");
                    }
                    match paginate(&sorted, &params) {
                        Ok((items, total, pages)) => {
                            let total = self
                                .list_total
                                .lock()
                                .unwrap()
                                .clone()
                                .unwrap_or_else(|| total.to_string());
                            ResponseTemplate::new(200)
                                .insert_header("X-WP-Total", total)
                                .insert_header("X-WP-TotalPages", pages.to_string())
                                .set_body_json(items)
                        }
                        Err(r) => r,
                    }
                };
                if let Some(hook) = self.after_list.lock().unwrap().as_ref() {
                    hook(n, self);
                }
                resp
            }
            ["products", id] => {
                let id: u64 = id.parse().unwrap_or(0);
                let ps = self.products.lock().unwrap();
                match ps.iter().find(|p| p["id"].as_u64() == Some(id)) {
                    Some(p) => ResponseTemplate::new(200).set_body_json(p.clone()),
                    None => wp_error(404, "woocommerce_rest_product_invalid_id", "Invalid ID."),
                }
            }
            ["products", id, "variations"] => {
                let id: u64 = id.parse().unwrap_or(0);
                let vars = self.variations.lock().unwrap();
                match vars.get(&id) {
                    Some(vs) => {
                        let refs: Vec<&Value> = vs.iter().collect();
                        let repeat = self.repeat_variation_page.load(Ordering::SeqCst);
                        let mut params = params;
                        if repeat {
                            params.insert("page".into(), "1".into());
                        }
                        match paginate(&refs, &params) {
                            Ok((items, total, pages)) => {
                                let pages = if repeat { 1_000_000 } else { pages };
                                let r = ResponseTemplate::new(200)
                                    .insert_header("X-WP-Total", total.to_string());
                                if self.hide_variation_pages.load(Ordering::SeqCst) {
                                    r.set_body_json(items)
                                } else {
                                    r.insert_header("X-WP-TotalPages", pages.to_string())
                                        .set_body_json(items)
                                }
                            }
                            Err(r) => r,
                        }
                    }
                    None => wp_error(404, "woocommerce_rest_product_invalid_id", "Invalid ID."),
                }
            }
            _ => wp_error(404, "rest_no_route", "No route was found matching the URL and request method"),
        }
    }
}

/// WordPress paging: `per_page` 1..=100 (default 10), `offset` overrides `page`.
fn paginate(
    all: &[&Value],
    params: &HashMap<String, String>,
) -> Result<(Vec<Value>, usize, usize), ResponseTemplate> {
    let per_page: usize = params
        .get("per_page")
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    if !(1..=100).contains(&per_page) {
        return Err(wp_error(
            400,
            "rest_invalid_param",
            "Invalid parameter(s): per_page",
        ));
    }
    let page: usize = params
        .get("page")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
        .max(1);
    let offset: usize = params
        .get("offset")
        .and_then(|v| v.parse().ok())
        .unwrap_or((page - 1) * per_page);
    let total = all.len();
    let pages = total.div_ceil(per_page);
    let items = all
        .iter()
        .skip(offset)
        .take(per_page)
        .map(|v| (*v).clone())
        .collect();
    Ok((items, total, pages))
}

pub struct FakeResponder(pub Arc<FakeStore>);

impl Respond for FakeResponder {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let store = &self.0;
        store.requests.fetch_add(1, Ordering::SeqCst);
        let now = store.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        store.max_in_flight.fetch_max(now, Ordering::SeqCst);
        let resp = store.route(req);
        store.in_flight.fetch_sub(1, Ordering::SeqCst);
        match store.delay {
            Some(d) => resp.set_delay(d),
            None => resp,
        }
    }
}

pub fn wp_error(status: u16, code: &str, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(status)
        .set_body_json(json!({"code": code, "message": message, "data": {"status": status}}))
}

fn cannot_view() -> ResponseTemplate {
    wp_error(
        401,
        "woocommerce_rest_cannot_view",
        "Sorry, you cannot list resources.",
    )
}

/// `rawurlencode`.
fn rawurlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// WooCommerce's `check_oauth_signature`, transcribed: sort by key (strcmp),
/// normalise keys and values with rawurlencode, join each `k=v` encoded once
/// more with `%26`, base = METHOD&rawurlencode(url)&query, key = secret&.
pub fn php_oauth_signature(
    method: &str,
    url: &url::Url,
    query: &[(String, String)],
    secret: &str,
) -> String {
    let mut params: Vec<(String, String)> = query
        .iter()
        .filter(|(k, _)| k != "oauth_signature")
        .cloned()
        .collect();
    params.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let joined: Vec<String> = params
        .iter()
        .map(|(k, v)| rawurlencode(&format!("{}={}", rawurlencode(k), rawurlencode(v))))
        .collect();
    let mut base_url = url.clone();
    base_url.set_query(None);
    let to_sign = format!(
        "{}&{}&{}",
        method.to_uppercase(),
        rawurlencode(base_url.as_str()),
        joined.join("%26")
    );
    let algo = query
        .iter()
        .find(|(k, _)| k == "oauth_signature_method")
        .map(|(_, v)| v.as_str());
    let key = format!("{secret}&");
    if algo == Some("HMAC-SHA1") {
        unimplemented!("the client signs with HMAC-SHA256");
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(to_sign.as_bytes());
    STANDARD.encode(mac.finalize().into_bytes())
}

/// A simple product shaped like the docs sample 794.
pub fn simple_product(id: u64, price: &str) -> Value {
    let mut p: Value =
        serde_json::from_str(include_str!("../fixtures/product-794.docs-sample.json")).unwrap();
    p["id"] = json!(id);
    p["name"] = json!(format!("Product {id}"));
    p["slug"] = json!(format!("product-{id}"));
    p["price"] = json!(price);
    p["regular_price"] = json!(price);
    p["_links"]["self"][0]["href"] =
        json!(format!("https://example.com/wp-json/wc/v3/products/{id}"));
    p
}
