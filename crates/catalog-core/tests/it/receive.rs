use catalog_core::webhook::{
    DeliveryMeta, HeaderLookup, Headers, HmacVerifier, Inbound, PayloadError, Ping, Received,
    UnverifiedDelivery, VerifiedDelivery, WebhookError, WebhookSource, check_triage, receive,
    required_header, sign,
};
use catalog_core::{CatalogEvent, EventId, PlatformId, Topic};
use chrono::{DateTime, Utc};
use secrecy::SecretString;

/// A minimal platform: `x-topic`, `x-store`, `x-id`, `x-sig`; body `{"id": "..."}`;
/// body `ping` is a ping.
#[derive(Debug)]
struct Toy;

impl WebhookSource for Toy {
    fn platform(&self) -> PlatformId {
        PlatformId::from_static("toy")
    }
    fn inspect(&self, headers: &dyn HeaderLookup, body: &[u8]) -> Result<Inbound, WebhookError> {
        if body == b"ping" {
            return Ok(Inbound::Ping(Ping::new(self.platform(), None)));
        }
        let topic = required_header(headers, "x-topic")?;
        Ok(Inbound::Delivery(UnverifiedDelivery {
            meta: DeliveryMeta::new(
                self.platform(),
                required_header(headers, "x-store")?,
                Topic::from_canonical(topic),
                topic,
                EventId::new(required_header(headers, "x-id")?),
            ),
            signature: required_header(headers, "x-sig")?.to_owned(),
        }))
    }
    fn parse(
        &self,
        delivery: &VerifiedDelivery,
        body: &[u8],
        received_at: DateTime<Utc>,
    ) -> Result<CatalogEvent, PayloadError> {
        #[derive(serde::Deserialize)]
        struct Body {
            id: String,
        }
        let parsed: Body = catalog_core::json::decode(body)?;
        let meta = delivery.meta().clone();
        Ok(CatalogEvent {
            platform: meta.platform,
            store: meta.store,
            topic: meta.topic,
            raw_topic: meta.raw_topic,
            event_id: meta.event_id,
            delivery_id: None,
            triggered_at: None,
            received_at,
            product_id: Some(parsed.id),
            product: None,
            raw_body: String::from_utf8_lossy(body).into_owned(),
        })
    }
}

fn headers(body: &[u8], secret: &[u8]) -> Headers {
    Headers::new()
        .with("X-Topic", "product.updated")
        .with("X-Store", "a")
        .with("X-Id", "e1")
        .with("X-Sig", sign(secret, body))
}

#[test]
fn receive_runs_inspect_verify_parse_in_order() {
    let verifier = HmacVerifier::new([SecretString::from("s3cret")]).unwrap();
    let lookup = |store: &str| (store == "a").then_some(&verifier);
    let body = br#"{"id":"42"}"#;

    let got = receive(&Toy, &headers(body, b"s3cret"), body, &lookup, Utc::now()).unwrap();
    let Received::Event(event) = got else {
        panic!("expected an event, got {got:?}")
    };
    assert_eq!(event.product_id.as_deref(), Some("42"));
    assert_eq!(event.topic, Topic::ProductUpdated);
    assert_eq!(event.dedup_key().event_id.as_str(), "e1");

    // Wrong secret: refused before parsing.
    let err = receive(&Toy, &headers(body, b"nope"), body, &lookup, Utc::now()).unwrap_err();
    assert_eq!(err, WebhookError::SignatureMismatch);
    assert!(err.is_authentication_failure());

    // Unknown store: cannot be authenticated.
    let h = headers(body, b"s3cret").with("X-Store", "b");
    let mut unknown = Headers::new();
    for (n, v) in h.iter().filter(|(n, _)| !n.eq_ignore_ascii_case("x-store")) {
        unknown.insert(n, v);
    }
    unknown.insert("X-Store", "b");
    let err = receive(&Toy, &unknown, body, &lookup, Utc::now()).unwrap_err();
    assert_eq!(err, WebhookError::SignatureMismatch);

    // Missing header: a malformed request, not an authentication failure.
    let err = receive(&Toy, &Headers::new(), body, &lookup, Utc::now()).unwrap_err();
    assert_eq!(err, WebhookError::MissingHeader("x-topic"));
    assert!(!err.is_authentication_failure());
}

#[test]
fn verified_but_unparseable_is_kept_with_the_failing_path() {
    let verifier = HmacVerifier::new([SecretString::from("s3cret")]).unwrap();
    let lookup = |_: &str| Some(&verifier);
    let body = br#"{"id": 42}"#;
    let got = receive(&Toy, &headers(body, b"s3cret"), body, &lookup, Utc::now()).unwrap();
    let Received::Unparseable { delivery, error } = got else {
        panic!("expected unparseable, got {got:?}")
    };
    assert_eq!(delivery.meta().event_id.as_str(), "e1");
    assert_eq!(error.path, "id");
}

#[test]
fn pings_are_not_events() {
    let verifier = HmacVerifier::new([SecretString::from("s")]).unwrap();
    let got = receive(
        &Toy,
        &Headers::new(),
        b"ping",
        &|_| Some(&verifier),
        Utc::now(),
    )
    .unwrap();
    assert!(matches!(got, Received::Ping(_)));
}

/// A platform whose triage reads the wrong field: `check_triage` must say so.
#[derive(Debug)]
struct LyingTriage;

impl WebhookSource for LyingTriage {
    fn platform(&self) -> PlatformId {
        Toy.platform()
    }
    fn inspect(&self, headers: &dyn HeaderLookup, body: &[u8]) -> Result<Inbound, WebhookError> {
        Toy.inspect(headers, body)
    }
    fn parse(
        &self,
        delivery: &VerifiedDelivery,
        body: &[u8],
        received_at: DateTime<Utc>,
    ) -> Result<CatalogEvent, PayloadError> {
        Toy.parse(delivery, body, received_at)
    }
    fn triage(
        &self,
        _delivery: &VerifiedDelivery,
        body: &[u8],
    ) -> Result<Option<String>, PayloadError> {
        // Accepts anything, and reads a constant.
        Ok((!body.is_empty()).then(|| "7".to_owned()))
    }
}

#[test]
fn check_triage_holds_for_the_default_and_catches_a_wrong_one() {
    let verifier = HmacVerifier::new([SecretString::from("s3cret")]).unwrap();
    let verified = |body: &[u8]| {
        let Inbound::Delivery(d) = Toy.inspect(&headers(body, b"s3cret"), body).unwrap() else {
            panic!("not a delivery")
        };
        d.verify(body, &verifier).unwrap()
    };
    for body in [&br#"{"id":"42"}"#[..], b"{}", b"not json"] {
        // The default triage is the full parse: always in agreement.
        assert_eq!(check_triage(&Toy, &verified(body), body), Ok(()));
    }
    let err = check_triage(
        &LyingTriage,
        &verified(br#"{"id":"42"}"#),
        br#"{"id":"42"}"#,
    )
    .unwrap_err();
    assert!(err.contains("\"7\""), "{err}");
    let err = check_triage(&LyingTriage, &verified(b"not json"), b"not json").unwrap_err();
    assert!(err.contains("not JSON"), "{err}");
}
