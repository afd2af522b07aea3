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

/// A TOML parse error without its excerpt of the file: `toml` quotes the
/// offending line (`2 | webhook_secret = "..."`), which may hold a secret, and
/// start-up errors go to the log. The position and the message stay.
pub fn strip_source_excerpt(message: &str) -> String {
    message
        .lines()
        .filter(|line| {
            let rest = line
                .trim_start()
                .trim_start_matches(|c: char| c.is_ascii_digit());
            !rest.trim_start().starts_with('|')
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A deserialisation error with the refused string values hidden: serde
/// quotes them (`invalid type: string "...", expected a sequence`), and one
/// may be a secret put where a list was expected. Key names (`"server.host"`
/// in "missing configuration field", backticked elsewhere) stay.
pub fn redact_quoted_values(message: &str) -> String {
    let shown = hide_quoted_strings(message);
    let shown = hide_backticked_values(&shown);
    hide_variant_name(&shown)
}

/// `string "..."`, as serde writes a refused string (`{:?}`).
fn hide_quoted_strings(message: &str) -> String {
    const MARK: &str = "string \"";
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find(MARK) {
        out.push_str(&rest[..at + MARK.len()]);
        rest = &rest[at + MARK.len()..];
        // serde writes the value with `{:?}`: skip to the unescaped quote.
        let mut escaped = false;
        let end = rest
            .char_indices()
            .find(|&(_, c)| {
                let close = c == '"' && !escaped;
                escaped = c == '\\' && !escaped;
                close
            })
            .map_or(rest.len(), |(i, _)| i);
        out.push_str("[redacted]");
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// `config` names a refused enum value unquoted: `enum Durability does not
/// have variant constructor VALUE for key ...`.
fn hide_variant_name(message: &str) -> String {
    const MARK: &str = "variant constructor ";
    let Some(at) = message.find(MARK) else {
        return message.to_owned();
    };
    let start = at + MARK.len();
    let end = message[start..]
        .find(" for key")
        .map_or(message.len(), |i| start + i);
    format!("{}[redacted]{}", &message[..start], &message[end..])
}

/// ``integer `1234` `` and the like, as serde writes other refused values (a
/// kind, then the value in backticks); keys (``for key `server.port` ``) stay.
fn hide_backticked_values(message: &str) -> String {
    const KINDS: [&str; 6] = [
        "integer `",
        "floating point `",
        "boolean `",
        "character `",
        "unit variant `",
        "string `",
    ];
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some((at, kind)) = KINDS
        .iter()
        .filter_map(|k| rest.find(k).map(|i| (i, *k)))
        .min_by_key(|(i, _)| *i)
    {
        out.push_str(&rest[..at + kind.len()]);
        rest = &rest[at + kind.len()..];
        let end = rest.find('`').unwrap_or(rest.len());
        out.push_str("[redacted]");
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
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

/// Hides the values of query parameters, but for those known to carry
/// none: a mistyped `passwrd=` or a parameter this list does not know
/// (`sslpassword`) may hold a secret.
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
            Some((k, _)) if !is_plain_key(k) => format!("{k}=[redacted]"),
            _ => pair.to_owned(),
        })
        .collect();
    format!("{path}{}{fragment}", params.join("&"))
}

/// Query parameters whose values are shown: PostgreSQL's connection
/// settings that are names, paths or numbers.
fn is_plain_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    [
        "sslmode",
        "sslrootcert",
        "sslcert",
        "sslkey",
        "sslnegotiation",
        "application_name",
        "host",
        "hostaddr",
        "port",
        "dbname",
        "user",
        "connect_timeout",
        "target_session_attrs",
        "statement-cache-capacity",
    ]
    .iter()
    .any(|s| k == *s)
}

#[cfg(test)]
mod tests {
    use super::{redact_quoted_values, redact_url, strip_source_excerpt};

    #[test]
    fn a_backticked_value_is_not_repeated_but_the_key_is() {
        let shown = redact_quoted_values(
            "invalid type: integer `99999999999999999999999` as i128, expected u64 for key `server.port`",
        );
        assert!(!shown.contains("9999"), "{shown}");
        assert!(shown.contains("for key `server.port`"), "{shown}");
    }

    #[test]
    fn an_unknown_enum_value_is_not_repeated() {
        let shown = redact_quoted_values(
            "enum Durability does not have variant constructor hunter2-secret for key `database.durability`",
        );
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("for key `database.durability`"), "{shown}");
    }

    #[test]
    fn quoted_values_are_hidden() {
        assert_eq!(
            redact_quoted_values(
                "invalid type: string \"s3\\\"cret\", expected a sequence for key `shopify.secrets`"
            ),
            "invalid type: string \"[redacted]\", expected a sequence for key `shopify.secrets`"
        );
        assert_eq!(
            redact_quoted_values("missing configuration field \"server.host\""),
            "missing configuration field \"server.host\""
        );
        assert_eq!(
            redact_quoted_values("a string \"unterminated"),
            "a string \"[redacted]"
        );
    }

    #[test]
    fn toml_excerpts_are_dropped() {
        let msg = "TOML parse error at line 2, column 27\n  |\n2 | webhook_secret = [\"x= \"s3cret\"\n  |                           ^\nmissing comma between array elements, expected `,`\n in c.toml";
        let out = strip_source_excerpt(msg);
        assert!(!out.contains("s3cret"), "{out}");
        assert!(out.contains("line 2, column 27"), "{out}");
        assert!(out.contains("missing comma"), "{out}");
        assert!(out.contains("c.toml"), "{out}");
    }

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
        // Any parameter not known to be plain: a mistyped name, a key
        // file's password.
        assert_eq!(
            redact_url(
                "postgres://db/c?sslmode=require&sslpassword=k3y&passwrd=typo&application_name=x"
            ),
            "postgres://db/c?sslmode=require&sslpassword=[redacted]&passwrd=[redacted]&application_name=x"
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
