use super::*;
use secrecy::ExposeSecret as _;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn dispatch_run_defaults_and_zero_names_the_key() {
    assert_eq!(Settings::load_from(None, &[]).unwrap().dispatch.run, 16);
    let err = format!(
        "{:#}",
        Settings::load_from(None, &env(&[("CATALOG_DISPATCH__RUN", "0")])).unwrap_err()
    );
    assert!(err.contains("dispatch.run"), "{err}");
}

#[test]
fn retention_defaults_env_and_bounds() {
    let s = Settings::load_from(None, &[]).unwrap();
    assert_eq!(
        (s.retention.delivered_days, s.retention.failed_days),
        (30, 0)
    );
    let now = chrono::Utc::now();
    let policy = s.retention.policy(now);
    assert_eq!(
        policy.delivered_before,
        Some(now - chrono::Duration::days(30))
    );
    assert_eq!(policy.failed_before, None, "failed and dead are kept");
    let off = Settings::load_from(
        None,
        &env(&[
            ("CATALOG_RETENTION__DELIVERED_DAYS", "0"),
            ("CATALOG_RETENTION__FAILED_DAYS", "0"),
        ]),
    )
    .unwrap();
    assert!(!off.retention.enabled());
    assert!(off.retention.policy(now).is_noop());
    let both =
        Settings::load_from(None, &env(&[("CATALOG_RETENTION__FAILED_DAYS", "90")])).unwrap();
    assert_eq!(
        both.retention.policy(now).failed_before,
        Some(now - chrono::Duration::days(90))
    );
    for (key, value) in [
        ("CATALOG_RETENTION__DELIVERED_DAYS", "40000"),
        ("CATALOG_RETENTION__DELIVERED_DAYS", "-1"),
        ("CATALOG_RETENTION__FAILED_DAYS", "a week"),
    ] {
        let err = format!(
            "{:#}",
            Settings::load_from(None, &env(&[(key, value)])).unwrap_err()
        );
        let named = if key.contains("FAILED") {
            "retention.failed_days"
        } else {
            "retention.delivered_days"
        };
        assert!(err.contains(named), "{value}: {err}");
    }
}

#[test]
fn the_example_file_loads() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/example.toml");
    // Its secrets are placeholders, refused as they stand.
    let err = format!("{:#}", Settings::load_from(Some(&path), &[]).unwrap_err());
    assert!(err.contains("secret"), "{err}");
    // With them replaced, it loads.
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("replace-me-", "real-")
        .replace(
            "whsec_replace-me",
            "whsec_dGVzdC1zZWNyZXQtb2YtdGhlLXRlc3RzLTMyYnl0ZXM=",
        );
    let dir = tempfile::tempdir().unwrap();
    let replaced = dir.path().join("example.toml");
    std::fs::write(&replaced, text).unwrap();
    let s = Settings::load_from(Some(&replaced), &[]).unwrap();
    assert_eq!(s.shopify.stores.len(), 2);
    assert_eq!(s.woocommerce.stores.len(), 1);
    assert!(s.dispatch.http.is_some());
    assert_eq!(
        (s.retention.delivered_days, s.retention.failed_days),
        (14, 90)
    );
}

#[test]
fn trusted_proxies_from_the_file_or_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(
        &path,
        "[rate_limit]\ntrusted_proxies = [\"10.0.0.0/8\", \"::1\"]\n",
    )
    .unwrap();
    let from_file = Settings::load_from(Some(&path), &[]).unwrap();
    let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
    let proxies = &from_file.rate_limit.trusted_proxies;
    assert_eq!(
        proxies.client(ip("10.2.3.4"), &["198.51.100.4"]),
        ip("198.51.100.4")
    );
    assert_eq!(
        proxies.client(ip("::1"), &["198.51.100.4"]),
        ip("198.51.100.4")
    );
    let from_env = Settings::load_from(
        None,
        &env(&[("CATALOG_RATE_LIMIT__TRUSTED_PROXIES", "10.0.0.0/8, ::1")]),
    )
    .unwrap();
    assert_eq!(&from_env.rate_limit.trusted_proxies, proxies);
    assert!(
        Settings::load_from(None, &[])
            .unwrap()
            .rate_limit
            .trusted_proxies
            .is_empty()
    );
    // A bad entry stops start-up naming the key and the entry's place.
    let err = Settings::load_from(
        None,
        &env(&[(
            "CATALOG_RATE_LIMIT__TRUSTED_PROXIES",
            "10.0.0.0/8,lb.internal",
        )]),
    )
    .unwrap_err();
    let err = format!("{err:#}");
    assert!(err.contains("rate_limit.trusted_proxies"), "{err}");
    assert!(
        err.contains("entry 2 ") && !err.contains("lb.internal"),
        "{err}"
    );
}

#[test]
fn defaults_parse() {
    let s = Settings::load_from(None, &[]).unwrap();
    assert_eq!(s.server.host, "127.0.0.1");
    assert_eq!(s.server.port, 8050);
    assert_eq!(s.server.body_limit, 1024 * 1024);
    assert!(matches!(s.database.kind().unwrap(), StoreKind::Sqlite(_)));
    assert!(s.admin.token.is_none());
    assert!(!s.shopify.is_configured());
}

#[test]
fn seed_variables_and_catalog_prefix() {
    let s = Settings::load_from(
        None,
        &env(&[
            ("APP_PORT", "9001"),
            ("APP_HOST", "0.0.0.0"),
            ("SHOPIFY_CLIENT_SECRET", "shh"),
            ("WOOCOMMERCE_WEBHOOK_SECRET", "woo"),
            ("CATALOG_DATABASE_URL", "memory://"),
            ("CATALOG_ADMIN_TOKEN", "0123456789abcdef"),
            ("CATALOG_DISPATCH__MAX_ATTEMPTS", "3"),
            ("CATALOG_LOG__FORMAT", "json"),
        ]),
    )
    .unwrap();
    assert_eq!(s.server.port, 9001);
    assert_eq!(s.server.host, "0.0.0.0");
    assert_eq!(
        s.shopify.webhook_secret.as_ref().unwrap().expose_secret(),
        "shh"
    );
    assert!(s.woocommerce.is_configured());
    assert_eq!(s.database.kind().unwrap(), StoreKind::Memory);
    assert!(s.admin.token.is_some());
    assert_eq!(s.dispatch.max_attempts, 3);
    assert_eq!(s.log.format, LogFormat::Json);
}

#[test]
fn webhook_secret_wins_over_client_secret() {
    let s = Settings::load_from(
        None,
        &env(&[
            ("SHOPIFY_CLIENT_SECRET", "client"),
            ("SHOPIFY_WEBHOOK_SECRET", "webhook"),
        ]),
    )
    .unwrap();
    assert_eq!(
        s.shopify.webhook_secret.as_ref().unwrap().expose_secret(),
        "webhook"
    );
}

#[test]
fn a_misspelt_section_or_log_level_stops_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, "[rate_limt]\nenabled = false\n").unwrap();
    let err = format!("{:#}", Settings::load_from(Some(&path), &[]).unwrap_err());
    assert!(err.contains("rate_limt"), "{err}");
    // The same from the environment.
    let err = Settings::load_from(None, &env(&[("CATALOG_DISPACH__LOG", "true")])).unwrap_err();
    assert!(format!("{err:#}").contains("dispach"), "{err:#}");
    for bad in [
        "verbose",
        "inof",
        "info,,==",
        "???[",
        "",
        "webhook_server=loud",
    ] {
        let err = Settings::load_from(None, &env(&[("CATALOG_LOG__LEVEL", bad)])).expect_err(bad);
        let err = format!("{err:#}");
        assert!(
            err.contains("log.level (CATALOG_LOG__LEVEL)"),
            "{bad}: {err}"
        );
    }
    for good in [
        "info",
        "WARN",
        "webhook_server=debug,info",
        "warn,actix_web=off",
        "a[span]=trace",
    ] {
        let s = Settings::load_from(None, &env(&[("CATALOG_LOG__LEVEL", good)]));
        assert!(s.is_ok(), "{good}: {:#}", s.unwrap_err());
    }
}

/// Found by an outside audit: the `config` crate read `true` as 1 in a
/// number (a port of 1; retention of one day instead of 30) and rounded
/// decimals; every number and switch of the settings is read strictly.
#[test]
fn switches_and_decimals_are_not_read_as_numbers() {
    for (var, value, key) in [
        ("APP_PORT", "true", "server.port"),
        (
            "CATALOG_RETENTION__DELIVERED_DAYS",
            "true",
            "retention.delivered_days",
        ),
        ("CATALOG_SERVER__BODY_LIMIT", "200.9", "server.body_limit"),
        ("CATALOG_DISPATCH__LEASE_SECS", "1e3", "dispatch.lease_secs"),
        ("CATALOG_RATE_LIMIT__ENABLED", "no", "rate_limit.enabled"),
        ("CATALOG_DISPATCH__LOG", "0", "dispatch.log"),
    ] {
        let err = match Settings::load_from(None, &env(&[(var, value)])) {
            Ok(_) => panic!("{var}={value} accepted"),
            Err(e) => format!("{e:#}"),
        };
        assert!(
            err.contains(key) && err.contains(var),
            "{var}={value}: {err}"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    for text in [
        "[retention]\ndelivered_days = 0.4\n",
        "[server]\nport = 8061.7\n",
        "[rate_limit]\nenabled = 0\n",
    ] {
        std::fs::write(&path, text).unwrap();
        assert!(
            Settings::load_from(Some(&path), &[]).is_err(),
            "{text} accepted"
        );
    }
}

/// Found by an outside audit: values that started the server into a
/// broken state (a dispatcher panic on a huge backoff or lease, head
/// timeouts off, a sink that fails every attempt, non-finite rates),
/// and refusals that did not name the variable or quoted the value.
#[test]
fn values_that_would_break_the_server_stop_start_up_naming_key_and_variable() {
    let sink = [
        ("CATALOG_DISPATCH__HTTP__URL", "http://127.0.0.1:9/hook"),
        (
            "CATALOG_DISPATCH__HTTP__SECRET",
            "whsec_dGVzdC1zZWNyZXQtb2YtdGhlLXRlc3RzLTMyYnl0ZXM=",
        ),
    ];
    let nats = ("CATALOG_NATS__URL", "nats://127.0.0.1:4222");
    // (variables set, key named, variable named)
    type Case<'a> = (Vec<(&'a str, &'a str)>, &'a str, &'a str);
    let cases: Vec<Case<'_>> = vec![
        // `host = 5` in TOML reaches here as "5": the resolver took it
        // for 0.0.0.5 (an outside audit's case).
        (vec![("APP_HOST", "5")], "server.host", "APP_HOST"),
        (vec![("APP_HOST", "10.0.0.300")], "server.host", "APP_HOST"),
        (
            vec![("CATALOG_SERVER__BODY_LIMIT", "0")],
            "server.body_limit",
            "CATALOG_SERVER__BODY_LIMIT",
        ),
        (
            vec![("CATALOG_SERVER__CLIENT_REQUEST_TIMEOUT_MS", "0")],
            "server.client_request_timeout_ms",
            "CATALOG_SERVER__CLIENT_REQUEST_TIMEOUT_MS",
        ),
        (
            vec![("CATALOG_SERVER__STORE_TIMEOUT_MS", "0")],
            "server.store_timeout_ms",
            "CATALOG_SERVER__STORE_TIMEOUT_MS",
        ),
        (
            vec![("CATALOG_SERVER__WORKERS", "10000")],
            "server.workers",
            "CATALOG_SERVER__WORKERS",
        ),
        (
            vec![
                ("CATALOG_DATABASE_URL", "memory://"),
                ("CATALOG_DATABASE__MEMORY_MAX_EVENTS", "0"),
            ],
            "database.memory_max_events",
            "CATALOG_DATABASE__MEMORY_MAX_EVENTS",
        ),
        (
            vec![
                ("CATALOG_DATABASE_URL", "memory://"),
                ("CATALOG_DATABASE__MEMORY_MAX_KEYS", "0"),
            ],
            "database.memory_max_keys",
            "CATALOG_DATABASE__MEMORY_MAX_KEYS",
        ),
        (
            vec![("CATALOG_LOG__FORMAT", "yaml")],
            "log.format",
            "CATALOG_LOG__FORMAT",
        ),
        (
            vec![("CATALOG_RATE_LIMIT__BURST", "NaN")],
            "rate_limit.burst",
            "CATALOG_RATE_LIMIT__BURST",
        ),
        (
            vec![("CATALOG_RATE_LIMIT__PER_SECOND", "inf")],
            "rate_limit.per_second",
            "CATALOG_RATE_LIMIT__PER_SECOND",
        ),
        (
            vec![("CATALOG_DISPATCH__LEASE_SECS", "18446744073709551615")],
            "dispatch.lease_secs",
            "CATALOG_DISPATCH__LEASE_SECS",
        ),
        (
            vec![("CATALOG_DISPATCH__LEASE_SECS", "0")],
            "dispatch.lease_secs",
            "CATALOG_DISPATCH__LEASE_SECS",
        ),
        (
            vec![("CATALOG_DISPATCH__BACKOFF_MAX_SECS", "10000000000000")],
            "dispatch.backoff_max_secs",
            "CATALOG_DISPATCH__BACKOFF_MAX_SECS",
        ),
        (
            vec![("CATALOG_DISPATCH__BACKOFF_BASE_MS", "10000000000000000")],
            "dispatch.backoff_base_ms",
            "CATALOG_DISPATCH__BACKOFF_BASE_MS",
        ),
        (
            vec![("CATALOG_DISPATCH__FILE", "")],
            "dispatch.file",
            "CATALOG_DISPATCH__FILE",
        ),
        (
            vec![
                sink[0],
                sink[1],
                ("CATALOG_DISPATCH__HTTP__TIMEOUT_MS", "0"),
            ],
            "dispatch.http.timeout_ms",
            "CATALOG_DISPATCH__HTTP__TIMEOUT_MS",
        ),
        (
            vec![("CATALOG_DISPATCH__HTTP__URL", "http://"), sink[1]],
            "dispatch.http.url",
            "CATALOG_DISPATCH__HTTP__URL",
        ),
        (
            vec![("CATALOG_DISPATCH__HTTP__URL", "http://bad host/"), sink[1]],
            "dispatch.http.url",
            "CATALOG_DISPATCH__HTTP__URL",
        ),
        (
            vec![
                nats,
                (
                    "CATALOG_NATS__DUPLICATE_WINDOW_SECS",
                    "18446744073709551615",
                ),
            ],
            "nats.duplicate_window_secs",
            "CATALOG_NATS__DUPLICATE_WINDOW_SECS",
        ),
        (
            vec![nats, ("CATALOG_NATS__DUPLICATE_WINDOW_SECS", "10")],
            "nats.duplicate_window_secs",
            "CATALOG_NATS__DUPLICATE_WINDOW_SECS",
        ),
        (
            // Each under half the lease (60 s), not both together.
            vec![
                sink[0],
                sink[1],
                ("CATALOG_DISPATCH__HTTP__TIMEOUT_MS", "20000"),
                nats,
                ("CATALOG_NATS__TIMEOUT_MS", "15000"),
            ],
            "together must be under half of dispatch.lease_secs",
            "CATALOG_NATS__TIMEOUT_MS",
        ),
        (
            vec![nats, ("CATALOG_NATS__TIMEOUT_MS", "0")],
            "nats.timeout_ms",
            "CATALOG_NATS__TIMEOUT_MS",
        ),
        (
            vec![("CATALOG_SHOPIFY__DEFAULT_CURRENCY", "hunter2secret")],
            "shopify.default_currency",
            "CATALOG_SHOPIFY__DEFAULT_CURRENCY",
        ),
        (
            vec![("CATALOG_ADMIN__TOKEN", "shortsecretx")],
            "admin.token",
            "CATALOG_ADMIN__TOKEN",
        ),
    ];
    for (pairs, key, var) in cases {
        let err = match Settings::load_from(None, &env(&pairs)) {
            Ok(_) => panic!("{pairs:?} accepted"),
            Err(e) => format!("{e:#}"),
        };
        assert!(err.contains(key), "{pairs:?}: {err}");
        assert!(err.contains(var), "{pairs:?}: {err}");
        for (_, value) in &pairs {
            if value.len() >= 8
                && value.chars().any(|c| c.is_ascii_alphabetic())
                && !value.contains("://")
                && !value.starts_with("whsec_")
            {
                assert!(!err.contains(value), "{pairs:?} quoted: {err}");
            }
        }
    }
    // Still accepted: the bounds themselves, and a window of exactly the lease.
    for pairs in [
        vec![("CATALOG_SERVER__WORKERS", "512")],
        vec![("CATALOG_DISPATCH__LEASE_SECS", "86400")],
        vec![("CATALOG_DISPATCH__BACKOFF_MAX_SECS", "604800")],
        vec![nats, ("CATALOG_NATS__DUPLICATE_WINDOW_SECS", "60")],
        // An existing stream keeps its own window; without dispatch
        // nothing is sent; SQLite does not read the memory limits.
        vec![
            nats,
            ("CATALOG_NATS__CREATE_STREAM", "false"),
            ("CATALOG_DISPATCH__LEASE_SECS", "600"),
        ],
        vec![
            nats,
            ("CATALOG_DISPATCH__ENABLED", "false"),
            ("CATALOG_DISPATCH__LEASE_SECS", "600"),
        ],
        vec![("CATALOG_DATABASE__MEMORY_MAX_EVENTS", "0")],
        vec![("CATALOG_LOG__FORMAT", "JSON")],
        vec![("CATALOG_DATABASE__DURABILITY", "Process_Crash")],
    ] {
        assert!(
            Settings::load_from(None, &env(&pairs)).is_ok(),
            "{pairs:?} refused"
        );
    }
}

#[test]
fn a_sink_timeout_past_half_the_lease_stops_start_up() {
    let base = [
        ("CATALOG_DISPATCH__HTTP__URL", "http://127.0.0.1:9/hook"),
        (
            "CATALOG_DISPATCH__HTTP__SECRET",
            "whsec_dGVzdC1zZWNyZXQtb2YtdGhlLXRlc3RzLTMyYnl0ZXM=",
        ),
    ];
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut pairs = base.to_vec();
        pairs.extend_from_slice(extra);
        Settings::load_from(None, &env(&pairs))
    };
    assert!(with(&[]).is_ok(), "the defaults (60 s lease, 10 s timeout)");
    let err = with(&[
        ("CATALOG_DISPATCH__LEASE_SECS", "2"),
        ("CATALOG_DISPATCH__HTTP__TIMEOUT_MS", "5000"),
    ])
    .unwrap_err();
    assert!(
        format!("{err:#}")
            .contains("dispatch.http.timeout_ms (CATALOG_DISPATCH__HTTP__TIMEOUT_MS)"),
        "{err:#}"
    );
    assert!(with(&[("CATALOG_DISPATCH__LEASE_SECS", "21")]).is_ok());
    assert!(with(&[("CATALOG_DISPATCH__LEASE_SECS", "20")]).is_err());
}

#[test]
fn two_entries_for_one_store_stop_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(
        &path,
        r#"
[[woocommerce.stores]]
id = "https://shop.example.com"
secrets = ["old"]

[[woocommerce.stores]]
id = "http://Shop.example.com/"
secrets = ["new"]
"#,
    )
    .unwrap();
    let s = Settings::load_from(Some(&path), &[]).unwrap();
    let Err(err) = crate::platforms::Platforms::from_settings(&s) else {
        panic!("two entries for one store were accepted");
    };
    let err = format!("{err:#}");
    assert!(
        err.contains("woocommerce.stores[1].id names the same store as woocommerce.stores[0].id"),
        "{err}"
    );
    assert!(!err.contains("old") && !err.contains("new"), "{err}");
}

/// A Shopify store written as a URL (`https://a.myshopify.com/`, with
/// a port) is the shop domain deliveries carry: it verifies them, and
/// two spellings of one shop are two entries for one store. (Taken as
/// written, it matched no delivery: every one was refused with 401.)
#[test]
fn a_shopify_store_written_as_a_url_is_its_shop_domain() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    for id in [
        "https://a.myshopify.com/",
        "http://A.myshopify.com",
        "a.myshopify.com:443",
    ] {
        std::fs::write(
            &path,
            format!("[[shopify.stores]]\nid = \"{id}\"\nsecrets = [\"x1\"]\n"),
        )
        .unwrap();
        let s = Settings::load_from(Some(&path), &[]).unwrap();
        let platforms = crate::platforms::Platforms::from_settings(&s).unwrap();
        let shopify = platforms.get("shopify").unwrap();
        assert!(
            shopify.verifiers.for_store("a.myshopify.com").is_ok(),
            "{id}"
        );
    }
    std::fs::write(
        &path,
        "[[shopify.stores]]\nid = \"a.myshopify.com\"\nsecrets = [\"x1\"]\n\
             [[shopify.stores]]\nid = \"https://a.myshopify.com\"\nsecrets = [\"x2\"]\n",
    )
    .unwrap();
    let s = Settings::load_from(Some(&path), &[]).unwrap();
    let Err(err) = crate::platforms::Platforms::from_settings(&s) else {
        panic!("two spellings of one shop were accepted");
    };
    assert!(
        format!("{err:#}").contains("shopify.stores[1].id names the same store"),
        "{err:#}"
    );
    std::fs::write(
        &path,
        "[[shopify.stores]]\nid = \"ftp://a.myshopify.com\"\nsecrets = [\"x1\"]\n",
    )
    .unwrap();
    let s = Settings::load_from(Some(&path), &[]).unwrap();
    let Err(err) = crate::platforms::Platforms::from_settings(&s) else {
        panic!("a store id that is no shop domain was accepted");
    };
    assert!(
        format!("{err:#}").contains("shopify.stores[0].id"),
        "{err:#}"
    );
}

/// Shopify's secrets have no whitespace: one pasted with a newline or a
/// space verifies with the secret itself (every delivery got 401).
#[test]
fn a_shopify_secret_is_read_without_surrounding_whitespace() {
    let body = b"{}";
    let signature = catalog_core::webhook::sign(b"shop-secret", body);
    for env_value in ["shop-secret\n", " shop-secret "] {
        let s = Settings::load_from(None, &env(&[("SHOPIFY_WEBHOOK_SECRET", env_value)])).unwrap();
        let platforms = crate::platforms::Platforms::from_settings(&s).unwrap();
        let verifier = platforms
            .get("shopify")
            .unwrap()
            .verifiers
            .for_store("a.myshopify.com")
            .unwrap();
        assert!(verifier.verify(body, &signature).is_ok(), "{env_value:?}");
    }
}

/// Secrets that cannot be the platform's stop start-up naming the key:
/// the example files' placeholder (copied as is, a secret anyone can
/// read), empty in the file or a `CATALOG_*` variable, or blank.
#[test]
fn placeholder_empty_and_blank_secrets_stop_start_up() {
    for (pairs, key) in [
        (
            vec![("SHOPIFY_WEBHOOK_SECRET", "replace-me")],
            "shopify.webhook_secret",
        ),
        (
            vec![(
                "CATALOG_ADMIN_TOKEN",
                "replace-me-with-32-random-characters",
            )],
            "admin.token",
        ),
        (
            vec![("CATALOG_SHOPIFY__WEBHOOK_SECRET", "")],
            "shopify.webhook_secret",
        ),
        (
            vec![("WOOCOMMERCE_WEBHOOK_SECRET", "   ")],
            "woocommerce.webhook_secret",
        ),
        // The example file's signing secret, and the Standard Webhooks
        // test vector it used to be: keys anyone can read.
        (
            vec![
                ("CATALOG_DISPATCH__HTTP__URL", "http://127.0.0.1:9/hook"),
                ("CATALOG_DISPATCH__HTTP__SECRET", "whsec_replace-me"),
            ],
            "dispatch.http.secret",
        ),
        (
            vec![
                ("CATALOG_DISPATCH__HTTP__URL", "http://127.0.0.1:9/hook"),
                (
                    "CATALOG_DISPATCH__HTTP__SECRET",
                    "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                ),
            ],
            "dispatch.http.secret",
        ),
    ] {
        let err = Settings::load_from(None, &env(&pairs)).unwrap_err();
        let err = format!("{err:#}");
        assert!(err.contains(key), "{pairs:?}: {err}");
        assert!(!err.contains("random-characters"), "{err}");
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(
            &path,
            "[[woocommerce.stores]]\nid = \"shop.example.com\"\nsecrets = [\"ok-secret\", \"Replace-Me\"]\n",
        )
        .unwrap();
    let err = format!("{:#}", Settings::load_from(Some(&path), &[]).unwrap_err());
    assert!(err.contains("woocommerce.stores[0].secrets"), "{err}");
    // An empty seed variable is unset, as before.
    let s = Settings::load_from(None, &env(&[("SHOPIFY_WEBHOOK_SECRET", "")])).unwrap();
    assert!(s.shopify.webhook_secret.is_none());
}

/// Only a Shopify store's `client_secret` verifies its webhooks (Shopify
/// signs with the app's client secret): another platform's API
/// credential must not open its webhook routes.
#[test]
fn only_shopify_takes_a_client_secret_as_webhook_secret() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(
        &path,
        "[[woocommerce.stores]]\nid = \"shop.example.com\"\nclient_secret = \"api-credential\"\n",
    )
    .unwrap();
    let s = Settings::load_from(Some(&path), &[]).unwrap();
    let Err(err) = crate::platforms::Platforms::from_settings(&s) else {
        panic!("a WooCommerce store verified with its client_secret");
    };
    let err = format!("{err:#}");
    assert!(err.contains("woocommerce.stores[0].secrets"), "{err}");
    assert!(!err.contains("client_secret"), "{err}");
    std::fs::write(
        &path,
        "[[shopify.stores]]\nid = \"a.myshopify.com\"\nclient_secret = \"app-secret\"\n",
    )
    .unwrap();
    let s = Settings::load_from(Some(&path), &[]).unwrap();
    assert!(crate::platforms::Platforms::from_settings(&s).is_ok());
}

/// A misspelt key in a platform section or a store entry stops start-up:
/// `[[shopify.store]]` silently dropped the store list, and with it the
/// refusal of stores not listed.
#[test]
fn unknown_keys_in_platform_sections_and_store_entries_stop_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    for (text, key) in [
        (
            "[shopify]\nwebhook_secret = \"plat\"\n[[shopify.store]]\nid = \"a.myshopify.com\"\n",
            "store",
        ),
        (
            "[[woocommerce.stores]]\nid = \"shop.example.com\"\nsecret = \"y\"\n",
            "secret",
        ),
    ] {
        std::fs::write(&path, text).unwrap();
        let err = format!("{:#}", Settings::load_from(Some(&path), &[]).unwrap_err());
        assert!(err.contains(&format!("`{key}`")), "{err}");
    }
}

#[test]
fn file_with_stores_and_bad_values_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(
        &path,
        r#"
[[shopify.stores]]
id = "a.myshopify.com"
secrets = ["new", "old"]

# Keys of the catalog CLI are accepted and ignored.
[[shopify.stores]]
id = "b.myshopify.com"
name = "b"
client_id = "cid"
client_secret = "csecret"
api_version = "2026-01"
"#,
    )
    .unwrap();
    let s = Settings::load_from(Some(&path), &[]).unwrap();
    assert_eq!(s.shopify.stores.len(), 2);
    assert_eq!(s.shopify.stores[0].secrets.len(), 2);
    let verifiers = crate::platforms::Verifiers::from_settings("shopify", &s.shopify).unwrap();
    // The client secret signs b's webhooks.
    assert_eq!(
        verifiers
            .for_store("b.myshopify.com")
            .unwrap()
            .secret_count(),
        1
    );
    assert!(!format!("{s:?}").contains("csecret"));
    // Secrets never show in Debug.
    assert!(!format!("{s:?}").contains("old"));

    let err = Settings::load_from(None, &env(&[("APP_PORT", "eighty")])).unwrap_err();
    assert!(format!("{err:#}").contains("server.port"), "{err:#}");

    std::fs::write(&path, "[server]\nbody_limt = 5\n").unwrap();
    let err = Settings::load_from(Some(&path), &[]).unwrap_err();
    assert!(format!("{err:#}").contains("body_limt"), "{err:#}");

    let err = Settings::load_from(None, &env(&[("CATALOG_ADMIN_TOKEN", "short")])).unwrap_err();
    assert!(format!("{err:#}").contains("admin.token"), "{err:#}");
}

#[test]
fn postgres_url_and_nats_section_from_the_environment() {
    let s = Settings::load_from(
        None,
        &env(&[
            (
                "CATALOG_DATABASE_URL",
                "postgres://app:s3cret@db.internal:5432/catalog",
            ),
            ("CATALOG_DATABASE__SCHEMA", "catalog"),
            ("CATALOG_DATABASE__MAX_CONNECTIONS", "8"),
            ("CATALOG_NATS__URL", "nats://u:natspw@127.0.0.1:4222"),
            ("CATALOG_NATS__SUBJECT_PREFIX", "shop.events"),
            ("CATALOG_NATS__CREATE_STREAM", "false"),
        ]),
    )
    .unwrap();
    assert_eq!(s.database.kind().unwrap(), StoreKind::Postgres);
    assert_eq!(s.database.schema.as_deref(), Some("catalog"));
    assert_eq!(s.database.max_connections, 8);
    let nats = s.nats.as_ref().unwrap();
    assert_eq!(nats.subject_prefix, "shop.events");
    assert_eq!(nats.stream, "CATALOG_EVENTS");
    assert!(!nats.create_stream);
    // Passwords never show in Debug.
    let shown = format!("{s:?}");
    assert!(
        !shown.contains("s3cret") && !shown.contains("natspw"),
        "{shown}"
    );
    assert!(shown.contains("db.internal"), "{shown}");

    let err = Settings::load_from(
        None,
        &env(&[
            ("CATALOG_NATS__URL", "nats://127.0.0.1:4222"),
            ("CATALOG_NATS__SUBJECT_PREFIX", "catalog.>"),
        ]),
    )
    .unwrap_err();
    assert!(
        format!("{err:#}").contains("nats.subject_prefix"),
        "{err:#}"
    );
    let err =
        Settings::load_from(None, &env(&[("CATALOG_DATABASE__SCHEMA", "Bad-Name")])).unwrap_err();
    assert!(format!("{err:#}").contains("database.schema"), "{err:#}");
}
