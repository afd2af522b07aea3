//! The admin API: bearer auth, listing with filters and cursor, detail, replay.

use actix_web::http::StatusCode;
use actix_web::{App, test};
use secrecy::SecretString;
use webhook_server::configure;
use webhook_server::store::EventStore;

use crate::support::*;

const TOKEN: &str = "admin-token-0123456789";

#[actix_web::test]
async fn admin_is_off_without_a_token() {
    let state = state_with(memory(), &single_secret());
    let app = test::init_service(App::new().configure(move |c| configure(c, state))).await;
    let res = test::call_service(
        &app,
        test::TestRequest::get()
            .uri("/admin/events")
            .insert_header(("Authorization", format!("Bearer {TOKEN}")))
            .to_request(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
}

#[actix_web::test]
async fn admin_requires_the_token_and_lists_gets_and_replays() {
    let store = memory();
    let mut s = settings();
    s.admin.token = Some(SecretString::from(TOKEN));
    let state = state_from(&s, store.clone(), &single_secret());
    let app = test::init_service(App::new().configure(move |c| configure(c, state))).await;
    for i in 0..5u64 {
        let topic = if i % 2 == 0 {
            "products/create"
        } else {
            "products/update"
        };
        let res = test::call_service(
            &app,
            delivery(
                "/webhooks/shopify",
                topic,
                &format!("a{i}"),
                &body(i),
                SECRET,
            )
            .to_request(),
        )
        .await;
        assert_eq!(res.status(), StatusCode::OK);
    }
    let get = |uri: &str, auth: Option<&str>| {
        let mut r = test::TestRequest::get().uri(uri);
        if let Some(a) = auth {
            r = r.insert_header(("Authorization", a.to_owned()));
        }
        r.to_request()
    };
    // Missing, wrong, and non-Bearer credentials.
    for auth in [
        None,
        Some("Bearer wrong-token-0123456789"),
        Some(TOKEN),
        Some("Bearer "),
    ] {
        let res = test::call_service(&app, get("/admin/events", auth)).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{auth:?}");
    }
    let bearer = format!("Bearer {TOKEN}");
    let auth = Some(bearer.as_str());
    let res = test::call_service(&app, get("/admin/events?limit=2", auth)).await;
    assert_eq!(res.status(), StatusCode::OK);
    let page: serde_json::Value = serde_json::from_slice(&test::read_body(res).await).unwrap();
    let events = page["events"].as_array().unwrap();
    assert_eq!(events.len(), 2);
    // Newest first.
    assert_eq!(events[0]["product_id"], "4");
    for key in [
        "id",
        "platform",
        "store",
        "topic",
        "event_id",
        "product_id",
        "status",
        "received_at",
        "product",
    ] {
        assert!(events[0].get(key).is_some(), "missing {key}");
    }
    assert!(events[0].get("raw_body").is_none());
    // Times with exactly three fractional digits: they sort as text.
    for e in events {
        let t = e["received_at"].as_str().unwrap();
        assert!(
            t.len() == "2026-11-28T17:18:01.000Z".len()
                && t.ends_with('Z')
                && t.as_bytes()[19] == b'.',
            "{t}"
        );
    }
    let next = page["next"].as_str().unwrap().to_owned();
    let res = test::call_service(
        &app,
        get(&format!("/admin/events?limit=10&cursor={next}"), auth),
    )
    .await;
    let rest: serde_json::Value = serde_json::from_slice(&test::read_body(res).await).unwrap();
    assert_eq!(rest["events"].as_array().unwrap().len(), 3);
    assert!(rest["next"].is_null());
    // Filters.
    let res = test::call_service(
        &app,
        get(
            "/admin/events?topic=product.updated&platform=shopify&status=pending",
            auth,
        ),
    )
    .await;
    let upd: serde_json::Value = serde_json::from_slice(&test::read_body(res).await).unwrap();
    assert_eq!(upd["events"].as_array().unwrap().len(), 2);
    // A product topic in Shopify's spelling or another case is the same
    // filter (it matched nothing).
    for topic in ["products/update", "Product.Updated", " product.updated "] {
        let res = test::call_service(
            &app,
            get(
                &format!("/admin/events?topic={}", topic.replace(' ', "%20")),
                auth,
            ),
        )
        .await;
        let v: serde_json::Value = serde_json::from_slice(&test::read_body(res).await).unwrap();
        assert_eq!(v["events"].as_array().unwrap().len(), 2, "{topic}: {v}");
    }
    let res = test::call_service(&app, get("/admin/events?status=bogus", auth)).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let res = test::call_service(
        &app,
        get(&format!("/admin/events?store={STORE}&limit=1"), auth),
    )
    .await;
    let one: serde_json::Value = serde_json::from_slice(&test::read_body(res).await).unwrap();
    assert_eq!(one["events"].as_array().unwrap().len(), 1);
    // Detail with the raw body.
    let id = events[0]["id"].as_str().unwrap().to_owned();
    let res = test::call_service(&app, get(&format!("/admin/events/{id}"), auth)).await;
    let detail: serde_json::Value = serde_json::from_slice(&test::read_body(res).await).unwrap();
    assert_eq!(detail["raw_body"], body(4));
    let res = test::call_service(&app, get("/admin/events/doesnotexist", auth)).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    // Replay: unauthenticated refused; authenticated puts it back to pending.
    let res = test::call_service(
        &app,
        test::TestRequest::post()
            .uri(&format!("/admin/events/{id}/replay"))
            .to_request(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let replay = |id: &str| {
        test::TestRequest::post()
            .uri(&format!("/admin/events/{id}/replay"))
            .insert_header(("Authorization", bearer.clone()))
            .to_request()
    };
    let claimed = store
        .claim_due("w", std::time::Duration::from_secs(60), 10)
        .await
        .unwrap();
    // While the dispatcher holds the event, a replay would send it twice at
    // once: 409, and the attempt in progress keeps it.
    assert!(claimed.iter().any(|e| e.event.id == id));
    let res = test::call_service(&app, replay(&id)).await;
    assert_eq!(res.status(), StatusCode::CONFLICT);
    let answer: serde_json::Value = serde_json::from_slice(&test::read_body(res).await).unwrap();
    assert_eq!(answer["error"], "in_flight");
    for e in &claimed {
        store
            .complete(
                &e.event.id,
                "w",
                webhook_server::store::DispatchOutcome::Delivered,
            )
            .await
            .unwrap();
    }
    // A finished event has no next attempt to show; a pending one has.
    let next_attempt = |v: serde_json::Value| v["next_attempt_at"].clone();
    let res = test::call_service(&app, get(&format!("/admin/events/{id}"), auth)).await;
    let delivered: serde_json::Value = serde_json::from_slice(&test::read_body(res).await).unwrap();
    assert_eq!(delivered["status"], "delivered");
    assert_eq!(next_attempt(delivered), serde_json::Value::Null);
    let res = test::call_service(&app, replay(&id)).await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    assert_eq!(
        store.get(&id).await.unwrap().unwrap().status(),
        webhook_server::store::EventStatus::Pending
    );
    let res = test::call_service(&app, get(&format!("/admin/events/{id}"), auth)).await;
    let pending: serde_json::Value = serde_json::from_slice(&test::read_body(res).await).unwrap();
    assert!(next_attempt(pending).is_string());
    // HEAD reads as GET; another method on an admin route is 405 naming
    // the ones it takes (after the token check: without it, 401 as above).
    let with_token = |method: actix_web::http::Method, uri: &str| {
        with_method(method, uri)
            .insert_header(("Authorization", bearer.clone()))
            .to_request()
    };
    use actix_web::http::Method;
    let res = test::call_service(&app, with_token(Method::HEAD, "/admin/events")).await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = test::call_service(
        &app,
        with_token(Method::HEAD, &format!("/admin/events/{id}")),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    for (method, uri, allow) in [
        (Method::POST, "/admin/events".to_owned(), "GET, HEAD"),
        (Method::DELETE, format!("/admin/events/{id}"), "GET, HEAD"),
        (Method::GET, format!("/admin/events/{id}/replay"), "POST"),
    ] {
        let res = test::call_service(&app, with_token(method.clone(), &uri)).await;
        assert_eq!(
            res.status(),
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {uri}"
        );
        assert_eq!(res.headers().get("allow").unwrap(), allow, "{method} {uri}");
    }
}

/// Query values the API cannot use are refused with its JSON error, and a
/// store filter matches however the store's host is written.
#[actix_web::test]
async fn list_parameters_are_checked_and_store_filters_normalised() {
    let mut s = settings();
    s.admin.token = Some(SecretString::from(TOKEN));
    let state = state_from(&s, memory(), &single_secret());
    let app = test::init_service(App::new().configure(move |c| configure(c, state))).await;
    let res = test::call_service(
        &app,
        delivery(
            "/webhooks/shopify",
            "products/create",
            "q1",
            &body(1),
            SECRET,
        )
        .to_request(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let bearer = format!("Bearer {TOKEN}");
    let get = |uri: &str| {
        test::TestRequest::get()
            .uri(uri)
            .insert_header(("Authorization", bearer.clone()))
            .to_request()
    };
    // Each refusal names what to fix (an outside audit got a bare
    // `bad_request` for all of them); a misspelt parameter is refused, not
    // ignored (it would list every event).
    for (q, names) in [
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("limit=-1", "limit"),
        ("limit=abc", "limit"),
        ("cursor=0", "cursor"),
        ("cursor=-5", "cursor"),
        ("cursor=x", "cursor"),
        ("cursor=01", "cursor"),
        ("cursor=%2B5", "cursor"),
        ("cursor=10000000000000000000", "cursor"),
        ("limit=1&limit=2", "limit"),
        ("platform=bogus", "platform"),
        ("status=bogus", "status"),
        ("staus=dead", "staus"),
        ("LIMIT=5", "LIMIT"),
    ] {
        let res = test::call_service(&app, get(&format!("/admin/events?{q}"))).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{q}");
        let body: serde_json::Value = serde_json::from_slice(&test::read_body(res).await)
            .unwrap_or_else(|e| panic!("{q}: not JSON: {e}"));
        assert_eq!(body["error"], "bad_request", "{q}: {body}");
        let message = body["message"].as_str().unwrap_or_default();
        assert!(message.contains(names), "{q}: {body}");
        assert!(!message.contains("field"), "{q}: serde's wording: {body}");
    }
    // The single-event routes take no parameters: one is refused, named.
    let res = test::call_service(&app, get("/admin/events?limit=1")).await;
    let page: serde_json::Value = serde_json::from_slice(&test::read_body(res).await).unwrap();
    let id = page["events"][0]["id"].as_str().unwrap().to_owned();
    for (method, uri) in [
        ("GET", format!("/admin/events/{id}?include_body=false")),
        ("POST", format!("/admin/events/{id}/replay?force=true")),
    ] {
        let req = test::TestRequest::default()
            .method(actix_web::http::Method::from_bytes(method.as_bytes()).unwrap())
            .uri(&uri)
            .insert_header(("Authorization", bearer.clone()))
            .to_request();
        let res = test::call_service(&app, req).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{uri}");
        let body: serde_json::Value = serde_json::from_slice(&test::read_body(res).await).unwrap();
        let message = body["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("unknown query parameter")
                && message.contains(if method == "GET" {
                    "include_body"
                } else {
                    "force"
                }),
            "{uri}: {body}"
        );
    }
    let res = test::call_service(&app, get(&format!("/admin/events/{id}"))).await;
    assert_eq!(res.status(), StatusCode::OK, "without parameters");
    // Empty values are as good as absent (a form's empty field).
    for q in [
        "limit=1",
        "limit=500",
        "cursor=1",
        // Past the largest sequence number: from the newest.
        "cursor=9999999999999999999",
        "platform=shopify",
        "limit=&cursor=",
    ] {
        let res = test::call_service(&app, get(&format!("/admin/events?{q}"))).await;
        assert_eq!(res.status(), StatusCode::OK, "{q}");
    }
    // Empty filters match everything, as if absent.
    let res = test::call_service(&app, get("/admin/events?platform=&store=&topic=&status=")).await;
    let page: serde_json::Value = serde_json::from_slice(&test::read_body(res).await).unwrap();
    assert_eq!(page["events"].as_array().unwrap().len(), 1, "{page}");
    let upper = STORE.to_ascii_uppercase();
    let res = test::call_service(&app, get(&format!("/admin/events?store={upper}/"))).await;
    let page: serde_json::Value = serde_json::from_slice(&test::read_body(res).await).unwrap();
    assert_eq!(page["events"].as_array().unwrap().len(), 1, "{page}");
}
