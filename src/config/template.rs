//! `OTP_MESSAGE_TEMPLATE`: the text of a sent code, with `{code}`, `{expires}` ("5 minutes"),
//! `{issuer}` and `{username}` placeholders. Checked at start-up: it must contain `{code}`
//! and no unknown placeholder.

pub const DEFAULT_TEMPLATE: &str = "Your {issuer} verification code is {code}. It expires in {expires}. If you did not ask for it, ignore this message.";

const PLACEHOLDERS: &[&str] = &["code", "expires", "issuer", "username"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageTemplate(String);

impl MessageTemplate {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let mut rest = raw;
        while let Some(start) = rest.find('{') {
            let after = rest.get(start + 1..).unwrap_or("");
            let end = after.find('}').ok_or("has a '{' without a closing '}'")?;
            let name = after.get(..end).unwrap_or("");
            if !PLACEHOLDERS.contains(&name) {
                return Err(format!(
                    "unknown placeholder {{{name}}}; use {{code}}, {{expires}}, {{issuer}}, {{username}}"
                ));
            }
            rest = after.get(end + 1..).unwrap_or("");
        }
        if !raw.contains("{code}") {
            return Err("must contain {code}".into());
        }
        Ok(Self(raw.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn render(&self, code: &str, ttl_seconds: u64, issuer: &str, username: &str) -> String {
        let expires = match ttl_seconds {
            60 => "1 minute".to_string(),
            s if s % 60 == 0 => format!("{} minutes", s / 60),
            s => format!("{s} seconds"),
        };
        self.0
            .replace("{expires}", &expires)
            .replace("{issuer}", issuer)
            .replace("{username}", username)
            .replace("{code}", code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_placeholder() {
        let t = MessageTemplate::parse("{issuer}: {code} for {username}, valid {expires}").unwrap();
        assert_eq!(t.render("123456", 300, "ACME", "dair"), "ACME: 123456 for dair, valid 5 minutes");
        assert_eq!(t.render("1", 60, "A", "b"), "A: 1 for b, valid 1 minute");
        assert_eq!(t.render("1", 90, "A", "b"), "A: 1 for b, valid 90 seconds");
        assert!(MessageTemplate::parse(DEFAULT_TEMPLATE).is_ok());
    }

    #[test]
    fn rejects_templates_without_code_or_with_unknown_placeholders() {
        assert!(MessageTemplate::parse("no code here").unwrap_err().contains("{code}"));
        assert!(MessageTemplate::parse("{code} {secret}").unwrap_err().contains("{secret}"));
        assert!(MessageTemplate::parse("{code").is_err());
    }
}
