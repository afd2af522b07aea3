//! Configuration errors found by the `config_loader` fuzz target: every
//! refused file gets an error that names a key or a position.

use webhook_server::settings::Settings;

/// Regression (fuzz input `regression-oversized-integer-no-position.toml`):
/// with `config` 0.15.27 an integer beyond i64 failed with "number too large
/// to fit in target type" and no key or line; the loader now adds them. With
/// the `config` of this lockfile `toml` gives the position itself: either way
/// the error says where.
#[test]
fn an_oversized_integer_error_says_where() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    for (text, line, key) in [
        (
            format!(
                "[server]\nhost = \"0.0.0.0\"\nport = 8050{}\n",
                "2".repeat(80)
            ),
            3,
            "server.port",
        ),
        (
            format!(
                "[shopify]\nwebhook_secret = \"{}\"\n[dispatch]\nmax_attempts = [{}]\n",
                "9".repeat(50),
                "9".repeat(50)
            ),
            4,
            "dispatch.max_attempts",
        ),
        // An outside audit's cases: beyond u64, and beyond i64 only.
        (
            "[server]\nhost = \"0.0.0.0\"\nbody_limit = 99999999999999999999\n".to_owned(),
            3,
            "server.body_limit",
        ),
        (
            "[server]\nshutdown_timeout_secs = 18446744073709551615\n".to_owned(),
            2,
            "server.shutdown_timeout_secs",
        ),
    ] {
        std::fs::write(&path, text).unwrap();
        let err = format!("{:#}", Settings::load_from(Some(&path), &[]).unwrap_err());
        assert!(err.contains(&format!("line {line}")), "{err}");
        assert!(err.contains(&format!("`{key}`")), "{err}");
    }
}

/// A value `toml` refuses (an integer beyond i64) is not repeated in the
/// error: it may be a secret written without quotes (`admin.token`).
#[test]
fn a_refused_secret_value_is_not_repeated() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    let token = "123456789012345678901234567";
    for text in [
        format!("[admin]\ntoken = {token}\n"),
        format!("[shopify]\nwebhook_secret = {token}.5e99999\n"),
    ] {
        std::fs::write(&path, &text).unwrap();
        let err = format!("{:#}", Settings::load_from(Some(&path), &[]).unwrap_err());
        assert!(!err.contains("12345678901234"), "{err}");
        assert!(err.contains("line 2"), "{err}");
    }
}
