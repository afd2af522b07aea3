//! Keeping credentials out of logs and error messages.

/// A connection URL with its password hidden, fit for logs and errors:
/// `postgres://app:s3cret@db:5432/catalog?password=x` becomes
/// `postgres://app:[redacted]@db:5432/catalog?password=[redacted]`.
///
/// Works on anything shaped like `scheme://[user[:password]@]host...` without
/// parsing it strictly, so a malformed URL is redacted too; several
/// comma-separated URLs (a NATS server list) are each redacted.
pub fn redact_url(url: &str) -> String {
    url.split(',').map(redact_one).collect::<Vec<_>>().join(",")
}

fn redact_one(url: &str) -> String {
    let (scheme, rest) = match url.find("://") {
        Some(i) => url.split_at(i + 3),
        None => ("", url),
    };
    // User info ends at the last '@' before any query or fragment, so a
    // password holding an unescaped '/' or '@' is still hidden whole.
    let query_start = rest.find(['?', '#']).unwrap_or(rest.len());
    let (authority, tail) = match rest[..query_start].rfind('@') {
        Some(at) => {
            let (userinfo, tail) = rest.split_at(at);
            let shown = match userinfo.find(':') {
                Some(colon) => format!("{}:[redacted]", &userinfo[..colon]),
                // `nats://TOKEN@host` carries a token, not a user name.
                None if scheme.starts_with("nats") || scheme.starts_with("tls") => {
                    "[redacted]".to_owned()
                }
                None => userinfo.to_owned(),
            };
            (shown, tail)
        }
        None => (String::new(), rest),
    };
    format!("{scheme}{authority}{}", redact_query(tail))
}

/// Hides the values of query parameters that carry secrets.
fn redact_query(tail: &str) -> String {
    let Some(q) = tail.find('?') else {
        return tail.to_owned();
    };
    let (path, query) = tail.split_at(q + 1);
    let (query, fragment) = match query.find('#') {
        Some(h) => query.split_at(h),
        None => (query, ""),
    };
    let params: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((k, _)) if is_secret_key(k) => format!("{k}=[redacted]"),
            _ => pair.to_owned(),
        })
        .collect();
    format!("{path}{}{fragment}", params.join("&"))
}

fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    [
        "password",
        "pass",
        "token",
        "secret",
        "sslpassword",
        "nkey",
        "jwt",
    ]
    .iter()
    .any(|s| k == *s)
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn passwords_are_hidden() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db:5432/catalog"),
            "postgres://app:[redacted]@db:5432/catalog"
        );
        assert_eq!(
            redact_url("postgres://app:p%40ss@db/c?sslmode=disable&password=x#f"),
            "postgres://app:[redacted]@db/c?sslmode=disable&password=[redacted]#f"
        );
        assert_eq!(
            redact_url("postgresql://app@db/catalog"),
            "postgresql://app@db/catalog"
        );
        assert_eq!(
            redact_url("postgres://db/catalog?user=a&PASSWORD=b"),
            "postgres://db/catalog?user=a&PASSWORD=[redacted]"
        );
        // A password containing '@' or '/' before the host.
        assert_eq!(
            redact_url("postgres://u:a@b/c@db/c"),
            "postgres://u:[redacted]@db/c"
        );
        assert_eq!(
            redact_url("nats://tok3n@n1:4222,nats://u:pw@n2:4222"),
            "nats://[redacted]@n1:4222,nats://u:[redacted]@n2:4222"
        );
        assert_eq!(redact_url("nats://127.0.0.1:4222"), "nats://127.0.0.1:4222");
    }
}
