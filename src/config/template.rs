//! `OTP_MESSAGE_TEMPLATE`: the text of a sent code, with `{code}`, `{expires}` ("5 minutes"),
//! `{issuer}` and `{username}` placeholders. Checked at start-up: it must contain `{code}`
//! and no unknown placeholder.

pub const DEFAULT_TEMPLATE: &str = "Your {issuer} verification code is {code}. It expires in {expires}. If you did not ask for it, ignore this message.";

const PLACEHOLDERS: &[&str] = &["code", "expires", "issuer", "username"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageTemplate(String);

impl MessageTemplate {
    pub fn parse(raw: &str) -> Result<Self, String> {
        if raw.chars().any(|c| c.is_control() && !matches!(c, '\n' | '\t')) {
            return Err("has a control character other than a line break or a tab".into());
        }
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
        // One pass, so a value that looks like a placeholder (an `OTP_ISSUER` of `{username}`)
        // is not expanded again, as chained `replace` calls would.
        let mut out = String::with_capacity(self.0.len() + 64);
        let mut rest = self.0.as_str();
        while let Some(start) = rest.find('{') {
            out.push_str(rest.get(..start).unwrap_or(""));
            let after = rest.get(start + 1..).unwrap_or("");
            let end = after.find('}').unwrap_or(after.len());
            let value = match after.get(..end).unwrap_or("") {
                "code" => code,
                "expires" => &expires,
                "issuer" => issuer,
                "username" => username,
                _ => rest.get(start..(start + end + 2).min(rest.len())).unwrap_or(""), // kept as written
            };
            out.push_str(value);
            rest = after.get(end + 1..).unwrap_or("");
        }
        out.push_str(rest);
        out
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
        // Values are not expanded again.
        assert_eq!(t.render("123456", 300, "{username}", "dair"), "{username}: 123456 for dair, valid 5 minutes");
        assert_eq!(t.render("1", 60, "{code}", "b"), "{code}: 1 for b, valid 1 minute");
    }

    #[test]
    fn rejects_templates_without_code_or_with_unknown_placeholders() {
        assert!(MessageTemplate::parse("no code here").unwrap_err().contains("{code}"));
        assert!(MessageTemplate::parse("{code} {secret}").unwrap_err().contains("{secret}"));
        assert!(MessageTemplate::parse("{code").is_err());
    }
}
