//! The webhook secret as WooCommerce signs with it.
//!
//! WooCommerce signs with `wp_specialchars_decode($secret, ENT_QUOTES)`
//! (`WC_Webhook::generate_signature`, since PR #22722): a secret holding
//! `&`, `<`, `>` or quotes is stored HTML-encoded (`a&amp;b`) and decoded
//! before use. An operator who copies the stored form (from the database,
//! or a REST read of the webhook) configures a secret WooCommerce never
//! signs with, and every delivery fails verification. [`signing_secrets`]
//! accepts both forms.
//!
//! Surrounding whitespace likewise: the admin screen saves a secret through
//! `sanitize_text_field`, which trims it, so a secret pasted into the
//! environment with a newline would fail every delivery; but a secret
//! generated over REST (`wp_generate_password(50, true, true)`, whose
//! characters include the space) is used as generated, and may begin or end
//! with one. Both the secret as configured and its trimmed form are taken.

use secrecy::{ExposeSecret, SecretString};

/// Each configured secret, followed by its decoded form, its trimmed form
/// and the trimmed form decoded, each when it differs from those before
/// (see the module docs): a verifier built from these accepts deliveries
/// signed with any of them.
pub fn signing_secrets(configured: impl IntoIterator<Item = SecretString>) -> Vec<SecretString> {
    let mut out: Vec<SecretString> = Vec::new();
    for secret in configured {
        let text = secret.expose_secret();
        let trimmed = text.trim();
        let forms = [
            wp_specialchars_decode(text),
            trimmed.to_owned(),
            wp_specialchars_decode(trimmed),
        ];
        let mut seen: Vec<String> = vec![text.to_owned()];
        out.push(secret);
        for form in forms {
            if !form.is_empty() && !seen.contains(&form) {
                seen.push(form.clone());
                out.push(SecretString::from(form));
            }
        }
    }
    out
}

/// WordPress's `wp_specialchars_decode($text, ENT_QUOTES)`: one pass, left
/// to right (`&amp;lt;` becomes `&lt;`), over the entities it knows: `&amp;`
/// `&lt;` `&gt;` `&quot;`, and the numeric forms of `"` `'` `&` `<` `>`
/// (decimal with any leading zeros; hexadecimal for `"` `'` `&`, `x` and the
/// digits in either case).
pub fn wp_specialchars_decode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        match entity(rest) {
            Some((decoded, len)) => {
                out.push(decoded);
                rest = &rest[len..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The entity at the start of `text` (which starts with `&`): the character
/// and the entity's length in bytes.
fn entity(text: &str) -> Option<(char, usize)> {
    let end = text.find(';')?;
    let name = &text[1..end];
    let decoded = match name {
        "amp" => '&',
        "lt" => '<',
        "gt" => '>',
        "quot" => '"',
        _ => {
            let number = name.strip_prefix('#')?;
            if let Some(hex) = number.strip_prefix(['x', 'X']) {
                match hex.trim_start_matches('0').to_ascii_lowercase().as_str() {
                    "22" => '"',
                    "27" => '\'',
                    "26" => '&',
                    _ => return None,
                }
            } else {
                match number.trim_start_matches('0') {
                    "34" => '"',
                    "39" => '\'',
                    "38" => '&',
                    "60" => '<',
                    "62" => '>',
                    _ => return None,
                }
            }
        }
    };
    Some((decoded, end + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_what_wordpress_decodes() {
        assert_eq!(wp_specialchars_decode("plain"), "plain");
        assert_eq!(
            wp_specialchars_decode("a&amp;b&lt;c&gt;d&quot;e&#039;f"),
            "a&b<c>d\"e'f"
        );
        assert_eq!(
            wp_specialchars_decode("&#39;&#x27;&#X0027;&#34;&#x22;"),
            "'''\"\""
        );
        assert_eq!(wp_specialchars_decode("&#038;&#x26;&#060;&#062;"), "&&<>");
        // One pass; unknown entities and stray ampersands stay.
        assert_eq!(wp_specialchars_decode("&amp;lt;"), "&lt;");
        assert_eq!(
            wp_specialchars_decode("&copy;&#65;&x;& &"),
            "&copy;&#65;&x;& &"
        );
        assert_eq!(wp_specialchars_decode("&#x3c;"), "&#x3c;");
        assert_eq!(wp_specialchars_decode("é&amp;ü"), "é&ü");
    }

    #[test]
    fn both_forms_are_accepted() {
        let secrets =
            signing_secrets([SecretString::from("ab&lt;cd"), SecretString::from("plain")]);
        let exposed: Vec<&str> = secrets.iter().map(ExposeSecret::expose_secret).collect();
        assert_eq!(exposed, ["ab&lt;cd", "ab<cd", "plain"]);
    }

    #[test]
    fn a_secret_with_surrounding_whitespace_is_also_taken_trimmed() {
        let secrets = signing_secrets([
            SecretString::from("woo-secret\n"),
            SecretString::from(" a&amp;b "),
        ]);
        let exposed: Vec<&str> = secrets.iter().map(ExposeSecret::expose_secret).collect();
        assert_eq!(
            exposed,
            [
                "woo-secret\n",
                "woo-secret",
                " a&amp;b ",
                " a&b ",
                "a&amp;b",
                "a&b"
            ]
        );
    }
}
