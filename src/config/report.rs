//! What `mfa check-config` prints: every variable of the table, its value (secrets
//! masked) and where the value came from, then each user defined in the environment.

use super::env::EnvMap;
use super::settings::{Settings, mask_url_password};
use super::vars::{self, Var};

/// One line of the report: the variable, what it holds, and its source.
pub type ReportRow = (String, String, String);

impl Settings {
    /// Every variable of [`vars::ALL`], in its order, then one row per `.env` user.
    pub fn report(&self, env: &EnvMap) -> Vec<ReportRow> {
        let mut rows: Vec<ReportRow> = vars::ALL
            .iter()
            .filter(|var| !var.is_per_user())
            .map(|var| (var.name.to_string(), shown(var, env.get(var.name)), env.source(var.name).to_string()))
            .collect();
        for user in &self.users {
            let mut contact = Vec::new();
            if let Some(e) = &user.email {
                contact.push(format!("email {}", e.as_str()));
            }
            if let Some(t) = &user.telegram {
                contact.push(format!("telegram {}", t.as_str()));
            }
            let desc = format!(
                "user '{}': secret ******** ({} bits){}",
                user.username,
                user.secret.bits(),
                if contact.is_empty() { String::new() } else { format!(", {}", contact.join(", ")) }
            );
            rows.push((user.var.clone(), desc, env.source(&user.var).to_string()));
        }
        rows
    }
}

/// A variable's value as the report shows it: a secret only as set or not (a URL with its
/// password masked), an unset one as its default.
fn shown(var: &Var, value: Option<&str>) -> String {
    match value {
        Some(url) if var.name == vars::DATABASE_URL.name => mask_url_password(url),
        Some(_) if var.secret => "******** (set)".to_string(),
        Some(value) => value.to_string(),
        None => var.default.map_or_else(|| format!("not set: {}", var.unset.replace('`', "")), str::to_string),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> EnvMap {
        EnvMap::from_pairs(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())), [])
    }

    #[test]
    fn report_masks_secrets() {
        let map = env(&[
            ("SECRET_KEY", "supersecretkeyvalue123"),
            ("DAIR_SECRET", "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"),
            ("DATABASE_URL", "postgres://mfa:db-password-7c1@db/mfa"),
            ("ADMIN_TOKEN", "admin-token-4e2b9c0d17aa"),
        ]);
        let s = Settings::from_env(&map).unwrap();
        let text = format!("{:?}", s.report(&map));
        for secret in ["supersecretkeyvalue123", "JBSWY3DP", "db-password-7c1", "admin-token-4e2b9c0d17aa"] {
            assert!(!text.contains(secret), "{secret}: {text}");
        }
        assert!(text.contains("DAIR_SECRET") && text.contains("postgres://mfa:********@db/mfa"), "{text}");
        assert!(!format!("{s:?}").contains("supersecretkeyvalue123"));
    }

    #[test]
    fn every_variable_is_reported_with_its_value_or_default_and_source() {
        let map = env(&[("RATE_LIMIT", "200 per day")]);
        let rows = Settings::from_env(&map).unwrap().report(&map);
        let row = |name: &str| rows.iter().find(|(var, _, _)| var == name).cloned().unwrap();
        assert_eq!(rows.len(), vars::ALL.iter().filter(|v| !v.is_per_user()).count());
        assert_eq!(row("RATE_LIMIT"), ("RATE_LIMIT".into(), "200 per day".into(), ".env".into()));
        assert_eq!(row("OTP_DIGITS"), ("OTP_DIGITS".into(), "6".into(), "default".into()));
        assert_eq!(row("ADMIN_TOKEN").1, "not set: none");
    }
}
