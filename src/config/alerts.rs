//! `SECURITY_ALERTS` and the alert templates, one variable per kind of alert
//! (`ALERT_TEMPLATE_LOCKED_OUT`, ...): what `crate::alerts` sends a user when something
//! happens to their account.
//!
//! A template is the text of the message; a first line `Subject: ...` gives the email's
//! subject (the built-in subject of that kind otherwise). Placeholders: `{issuer}`,
//! `{username}`, `{time}` (when it happened, UTC) in every kind, plus the kind's own (the
//! lock's `{until}` and `{addresses}`, an authenticator's `{name}`, ...). Checked at
//! start-up: an unknown placeholder is refused, naming the ones the kind has. None of them
//! is a code or a secret, and none can be: an alert never carries one.

use super::{Reader, vars};

/// The kinds of alert, each with its variable, its placeholders and its built-in text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AlertKind {
    LockedOut,
    AuthenticatorAdded,
    AuthenticatorConfirmed,
    AuthenticatorRemoved,
    RecoveryCodeUsed,
    RecoveryCodesGenerated,
    Unlocked,
    TelegramLinked,
}

/// The placeholders of every kind.
const COMMON: &[&str] = &["issuer", "username", "time"];

/// Placeholder names that look like what an alert must never carry: refused with a reason.
const NEVER: &[&str] = &["code", "secret", "token", "otp", "password", "recovery_code", "key"];

impl AlertKind {
    pub const ALL: [Self; 8] = [
        Self::LockedOut,
        Self::AuthenticatorAdded,
        Self::AuthenticatorConfirmed,
        Self::AuthenticatorRemoved,
        Self::RecoveryCodeUsed,
        Self::RecoveryCodesGenerated,
        Self::Unlocked,
        Self::TelegramLinked,
    ];

    /// The name in logs, metrics and the throttle's table.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::LockedOut => "locked_out",
            Self::AuthenticatorAdded => "authenticator_added",
            Self::AuthenticatorConfirmed => "authenticator_confirmed",
            Self::AuthenticatorRemoved => "authenticator_removed",
            Self::RecoveryCodeUsed => "recovery_code_used",
            Self::RecoveryCodesGenerated => "recovery_codes_generated",
            Self::Unlocked => "unlocked",
            Self::TelegramLinked => "telegram_linked",
        }
    }

    /// The variable that overrides its template.
    pub fn var(self) -> &'static vars::Var {
        match self {
            Self::LockedOut => &vars::ALERT_TEMPLATE_LOCKED_OUT,
            Self::AuthenticatorAdded => &vars::ALERT_TEMPLATE_AUTHENTICATOR_ADDED,
            Self::AuthenticatorConfirmed => &vars::ALERT_TEMPLATE_AUTHENTICATOR_CONFIRMED,
            Self::AuthenticatorRemoved => &vars::ALERT_TEMPLATE_AUTHENTICATOR_REMOVED,
            Self::RecoveryCodeUsed => &vars::ALERT_TEMPLATE_RECOVERY_CODE_USED,
            Self::RecoveryCodesGenerated => &vars::ALERT_TEMPLATE_RECOVERY_CODES_GENERATED,
            Self::Unlocked => &vars::ALERT_TEMPLATE_UNLOCKED,
            Self::TelegramLinked => &vars::ALERT_TEMPLATE_TELEGRAM_LINKED,
        }
    }

    /// The placeholders of this kind besides [`COMMON`].
    pub fn own_placeholders(self) -> &'static [&'static str] {
        match self {
            Self::LockedOut => &["until", "addresses"],
            Self::AuthenticatorAdded | Self::AuthenticatorConfirmed | Self::AuthenticatorRemoved => &["name"],
            Self::RecoveryCodeUsed => &["remaining"],
            Self::RecoveryCodesGenerated => &["count"],
            Self::Unlocked => &[],
            Self::TelegramLinked => &["chat"],
        }
    }

    fn has(self, placeholder: &str) -> bool {
        COMMON.contains(&placeholder) || self.own_placeholders().contains(&placeholder)
    }

    /// `{issuer}, {username}, {time}, ...`: the placeholders as an error message lists them.
    fn listed(self) -> String {
        COMMON.iter().chain(self.own_placeholders()).map(|p| format!("{{{p}}}")).collect::<Vec<_>>().join(", ")
    }

    /// The built-in template: a subject line, then the text.
    pub fn default_template(self) -> &'static str {
        match self {
            Self::LockedOut => {
                "Subject: {issuer} security alert: sign-in locked\n\
                 {issuer}: sign-in for {username} was locked at {time} after repeated wrong codes, \
                 until {until}. The failed attempts came from: {addresses}.\n\
                 If this was not you, someone may know your password: change it, and tell your administrator."
            }
            Self::AuthenticatorAdded => {
                "Subject: {issuer} security alert: authenticator added\n\
                 {issuer}: an authenticator \"{name}\" was added to {username} at {time}.\n\
                 If this was not you, tell your administrator at once."
            }
            Self::AuthenticatorConfirmed => {
                "Subject: {issuer} security alert: authenticator confirmed\n\
                 {issuer}: the authenticator \"{name}\" of {username} was confirmed at {time} and now signs in.\n\
                 If this was not you, tell your administrator at once."
            }
            Self::AuthenticatorRemoved => {
                "Subject: {issuer} security alert: authenticator removed\n\
                 {issuer}: the authenticator \"{name}\" was removed from {username} at {time}.\n\
                 If this was not you, tell your administrator at once."
            }
            Self::RecoveryCodeUsed => {
                "Subject: {issuer} security alert: recovery code used\n\
                 {issuer}: a recovery code of {username} was used to sign in at {time}; {remaining} remain.\n\
                 If this was not you, tell your administrator at once and generate new recovery codes."
            }
            Self::RecoveryCodesGenerated => {
                "Subject: {issuer} security alert: new recovery codes\n\
                 {issuer}: {count} new recovery codes were generated for {username} at {time}; the old ones \
                 no longer work.\n\
                 If this was not you, tell your administrator at once."
            }
            Self::Unlocked => {
                "Subject: {issuer} security alert: sign-in unlocked\n\
                 {issuer}: an administrator unlocked sign-in for {username} at {time}; failed attempts were reset.\n\
                 If you did not ask for this, tell your administrator."
            }
            Self::TelegramLinked => {
                "Subject: {issuer} security alert: Telegram chat linked\n\
                 {issuer}: the Telegram chat {chat} was linked to {username} at {time}; sign-in codes now go there.\n\
                 If this was not you, tell your administrator at once."
            }
        }
    }
}

/// One kind's template, checked: the subject and the text, each with placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertTemplate {
    subject: String,
    body: String,
}

impl AlertTemplate {
    /// Reads `raw` as a template of `kind`: an optional first line `Subject: ...` (else the
    /// built-in subject), then the text; every placeholder must be one the kind has.
    pub fn parse(kind: AlertKind, raw: &str) -> Result<Self, String> {
        if raw.chars().any(|c| c.is_control() && !matches!(c, '\n' | '\t')) {
            return Err("has a control character other than a line break or a tab".into());
        }
        let (subject, body) = match split_subject(raw) {
            (Some(subject), body) => (subject.to_string(), body),
            (None, body) => match split_subject(kind.default_template()) {
                (Some(subject), _) => (subject.to_string(), body),
                (None, _) => (String::new(), body),
            },
        };
        let body = body.trim_matches('\n').to_string();
        if subject.trim().is_empty() {
            return Err("has an empty Subject: line".into());
        }
        if body.trim().is_empty() {
            return Err("has no text (only a subject)".into());
        }
        for part in [&subject, &body] {
            check_placeholders(kind, part)?;
        }
        Ok(Self { subject: subject.trim().to_string(), body })
    }

    /// The subject and the text with each placeholder replaced by its value (`values`: the
    /// kind's, by name); a value is never expanded again.
    pub fn render(&self, values: &[(&str, &str)]) -> (String, String) {
        (fill(&self.subject, values), fill(&self.body, values))
    }

    pub fn subject(&self) -> &str {
        &self.subject
    }

    pub fn body(&self) -> &str {
        &self.body
    }
}

/// `Subject: X\nrest` → (Some("X"), "rest"); otherwise (None, all of it).
fn split_subject(raw: &str) -> (Option<&str>, &str) {
    let (first, rest) = raw.split_once('\n').unwrap_or((raw, ""));
    match first.strip_prefix("Subject:") {
        Some(subject) => (Some(subject.trim()), rest),
        None => (None, raw),
    }
}

fn check_placeholders(kind: AlertKind, text: &str) -> Result<(), String> {
    let mut rest = text;
    while let Some(start) = rest.find('{') {
        let after = rest.get(start + 1..).unwrap_or("");
        let end = after.find('}').ok_or("has a '{' without a closing '}'")?;
        let name = after.get(..end).unwrap_or("");
        if !kind.has(name) {
            let never = if NEVER.contains(&name.to_ascii_lowercase().as_str()) {
                " (an alert never carries a code or a secret)"
            } else {
                ""
            };
            return Err(format!("unknown placeholder {{{name}}}{never}; this alert has {}", kind.listed()));
        }
        rest = after.get(end + 1..).unwrap_or("");
    }
    Ok(())
}

/// One pass over `template`, so a value that looks like a placeholder stays as it is.
fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len() + 64);
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        out.push_str(rest.get(..start).unwrap_or(""));
        let after = rest.get(start + 1..).unwrap_or("");
        let end = after.find('}').unwrap_or(after.len());
        let name = after.get(..end).unwrap_or("");
        match values.iter().find(|(n, _)| *n == name) {
            Some((_, value)) => out.push_str(value),
            None => out.push_str(rest.get(start..(start + end + 2).min(rest.len())).unwrap_or("")), // as written
        }
        rest = after.get(end + 1..).unwrap_or("");
    }
    out.push_str(rest);
    out
}

/// `SECURITY_ALERTS` and the template of each kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertSettings {
    /// `SECURITY_ALERTS`: `off` sends none.
    pub enabled: bool,
    templates: Vec<(AlertKind, AlertTemplate)>,
}

impl Default for AlertSettings {
    /// On, with the built-in templates.
    fn default() -> Self {
        let templates = AlertKind::ALL
            .iter()
            .filter_map(|&kind| AlertTemplate::parse(kind, kind.default_template()).ok().map(|t| (kind, t)))
            .collect();
        Self { enabled: true, templates }
    }
}

impl AlertSettings {
    /// The template of `kind` (configured, or built in).
    pub fn template(&self, kind: AlertKind) -> Option<&AlertTemplate> {
        self.templates.iter().find(|(k, _)| *k == kind).map(|(_, t)| t)
    }
}

pub(super) fn read(r: &mut Reader) -> Option<AlertSettings> {
    let enabled = r.parse(&vars::SECURITY_ALERTS, |raw| match raw.trim().to_ascii_lowercase().as_str() {
        "on" | "true" | "yes" | "1" => Ok(true),
        "off" | "false" | "no" | "0" => Ok(false),
        other => Err(format!("'{other}' is not on or off")),
    });
    let mut templates = Vec::with_capacity(AlertKind::ALL.len());
    let mut failed = false;
    for kind in AlertKind::ALL {
        // Unset or empty (`ALERT_TEMPLATE_UNLOCKED=` in `.env`): the built-in text.
        let parse =
            |raw: &str| AlertTemplate::parse(kind, if raw.trim().is_empty() { kind.default_template() } else { raw });
        match r.parse(kind.var(), parse) {
            Some(template) => templates.push((kind, template)),
            None => failed = true,
        }
    }
    if failed {
        return None;
    }
    Some(AlertSettings { enabled: enabled?, templates })
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::config::settings_of as settings;

    #[test]
    fn every_built_in_template_parses_names_the_issuer_the_user_and_the_time_and_has_a_subject() {
        for kind in AlertKind::ALL {
            let template = AlertTemplate::parse(kind, kind.default_template()).unwrap();
            for placeholder in COMMON.iter().chain(kind.own_placeholders()) {
                assert!(template.body().contains(&format!("{{{placeholder}}}")), "{kind:?}: {placeholder}");
            }
            assert!(template.subject().starts_with("{issuer} security alert: "), "{kind:?}");
            assert!(template.body().contains("If "), "{kind:?} says what to do if it was not the user");
        }
    }

    #[test]
    fn the_defaults_are_on_with_the_built_in_templates() {
        let s = settings(&[]).unwrap();
        assert!(s.alerts.enabled);
        assert_eq!(s.alerts, AlertSettings::default());
        for kind in AlertKind::ALL {
            assert!(s.alerts.template(kind).is_some(), "{kind:?}");
        }
        assert!(!settings(&[("SECURITY_ALERTS", "off")]).unwrap().alerts.enabled);
        assert!(settings(&[("SECURITY_ALERTS", "ON")]).unwrap().alerts.enabled);
        let err = settings(&[("SECURITY_ALERTS", "sometimes")]).unwrap_err();
        assert_eq!(err.0[0].var, "SECURITY_ALERTS");
        assert!(err.0[0].reason.contains("'sometimes' is not on or off"), "{err}");
    }

    #[test]
    fn renders_every_placeholder_once_without_expanding_values() {
        let t = AlertTemplate::parse(AlertKind::LockedOut, "Subject: {issuer}: {username}\n{until} {addresses} {time}")
            .unwrap();
        let (subject, body) = t.render(&[
            ("issuer", "ACME"),
            ("username", "{until}"),
            ("until", "2027-01-15 08:05:10 UTC"),
            ("addresses", "192.0.2.7"),
            ("time", "2027-01-15 08:00:10 UTC"),
        ]);
        assert_eq!(subject, "ACME: {until}");
        assert_eq!(body, "2027-01-15 08:05:10 UTC 192.0.2.7 2027-01-15 08:00:10 UTC");
    }

    #[test]
    fn an_override_without_a_subject_keeps_the_built_in_one() {
        let t = AlertTemplate::parse(AlertKind::Unlocked, "{username} was unlocked.").unwrap();
        assert_eq!(t.subject(), "{issuer} security alert: sign-in unlocked");
        assert_eq!(t.body(), "{username} was unlocked.");
        let multi =
            AlertTemplate::parse(AlertKind::Unlocked, "Subject:  Hi {username} \n\nLine 1\n\tLine 2\n").unwrap();
        assert_eq!((multi.subject(), multi.body()), ("Hi {username}", "Line 1\n\tLine 2"));
    }

    #[test]
    fn unknown_placeholders_and_codes_are_refused_naming_what_the_kind_has() {
        let err = AlertTemplate::parse(AlertKind::Unlocked, "{username} until {until}").unwrap_err();
        assert_eq!(err, "unknown placeholder {until}; this alert has {issuer}, {username}, {time}");
        for secret in ["{code}", "{secret}", "{SECRET}", "{token}"] {
            let err = AlertTemplate::parse(AlertKind::LockedOut, &format!("x {secret}")).unwrap_err();
            assert!(err.contains("never carries a code or a secret"), "{err}");
        }
        let err = AlertTemplate::parse(AlertKind::RecoveryCodeUsed, "Subject: {code}\nok").unwrap_err();
        assert!(err.contains("{code}") && err.contains("{remaining}"), "the subject is checked too: {err}");
        assert!(AlertTemplate::parse(AlertKind::Unlocked, "{username").is_err());
        assert!(AlertTemplate::parse(AlertKind::Unlocked, "Subject: x\n").unwrap_err().contains("no text"));
        assert!(AlertTemplate::parse(AlertKind::Unlocked, "Subject:\ntext").unwrap_err().contains("empty Subject"));
        assert!(AlertTemplate::parse(AlertKind::Unlocked, "a\u{1b}[2J").unwrap_err().contains("control"));
    }

    #[test]
    fn a_bad_template_stops_start_up_with_its_variable_named() {
        let err = settings(&[
            ("ALERT_TEMPLATE_LOCKED_OUT", "Locked until {until} with code {code}"),
            ("ALERT_TEMPLATE_UNLOCKED", "Unlocked {name}"),
        ])
        .unwrap_err();
        let vars: Vec<&str> = err.0.iter().map(|e| e.var.as_str()).collect();
        assert_eq!(vars, ["ALERT_TEMPLATE_LOCKED_OUT", "ALERT_TEMPLATE_UNLOCKED"], "{err}");
        assert!(err.0[0].reason.contains("unknown placeholder {code}"), "{err}");
        let ok = settings(&[("ALERT_TEMPLATE_LOCKED_OUT", "Subject: Gesperrt\n{username} bis {until}")]).unwrap();
        let t = ok.alerts.template(AlertKind::LockedOut).unwrap();
        assert_eq!((t.subject(), t.body()), ("Gesperrt", "{username} bis {until}"));
    }

    /// docs/configuration.md lists every kind's variable, placeholders and built-in text.
    #[test]
    fn the_documentation_shows_every_built_in_template() {
        let listed: Vec<String> = AlertKind::ALL
            .iter()
            .map(|kind| {
                let own: Vec<String> = kind.own_placeholders().iter().map(|p| format!("{{{p}}}")).collect();
                let own = if own.is_empty() { "none of its own".to_string() } else { own.join(", ") };
                format!("# {} ({own})\n{}\n", kind.var().name, kind.default_template())
            })
            .collect();
        let expected = format!("```text\n{}```", listed.join("\n"));
        let docs = include_str!("../../docs/configuration.md");
        assert!(docs.contains(&expected), "docs/configuration.md should show:\n{expected}\n(end)");
    }

    #[test]
    fn every_kind_has_its_own_variable() {
        let names: Vec<&str> = AlertKind::ALL.iter().map(|k| k.var().name).collect();
        for (kind, name) in AlertKind::ALL.iter().zip(&names) {
            assert_eq!(*name, format!("ALERT_TEMPLATE_{}", kind.as_str().to_ascii_uppercase()));
            assert!(vars::ALL.contains(kind.var()), "{name} is declared in vars::ALL");
        }
    }
}
