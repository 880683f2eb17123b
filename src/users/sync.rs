//! Users written in bulk: imported from another system, and `.env` users kept in step with
//! the file at start-up.

use super::{UserError, UserService};
use crate::config::EnvUser;
use crate::domain::{EmailAddress, TelegramChat, Username};
use crate::otp::SecretBytes;
use crate::store::{AuthenticatorStatus, Factor};
use crate::store::{StoreError, UserProfile, UserSource};

/// What `import` did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ImportReport {
    pub imported: u64,
    pub existing: u64,
}

/// What start-up did to bring the database in line with `<NAME>_SECRET` variables.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SyncReport {
    pub added: Vec<String>,
    pub updated: Vec<String>,
    pub removed: Vec<String>,
}

/// Users per transaction when importing.
const IMPORT_BATCH: usize = 1000;

impl UserService {
    /// Imports users from CSV lines `username,base32secret[,email[,telegram_id]]` (blank
    /// lines, `#` comments and a `username,...` header are skipped), for moving users with
    /// their existing secrets from another system. The whole input is checked before
    /// anything is written; an error names the line, never the secret. Names that exist are
    /// left as they are.
    pub async fn import(&self, text: &str) -> Result<ImportReport, UserError> {
        let mut profiles = Vec::new();
        // Which user each secret went to, to refuse a second user with it (a hash set: a
        // million-line import must not compare every pair).
        let mut secrets: std::collections::HashMap<SecretBytes, Username> = std::collections::HashMap::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with("username,") {
                continue;
            }
            let bad = |what: String| UserError::Invalid(format!("line {}: {what}", index + 1));
            let fields: Vec<&str> = line.split(',').map(str::trim).collect();
            let (name, secret) = match fields.as_slice() {
                [name, secret, ..] if fields.len() <= 4 => (*name, *secret),
                _ => return Err(bad("expected username,secret[,email[,telegram_id]]".into())),
            };
            let username = Username::parse(name).map_err(bad)?;
            if self.env_var_of(&username).is_some() {
                return Err(bad(format!("user '{username}' is defined in the environment")));
            }
            let secret = SecretBytes::from_base32(secret).map_err(|e| bad(format!("the secret {e}")))?;
            if let Some(what) = secret.publicly_known() {
                return Err(bad(format!(
                    "the secret of '{username}' is publicly known ({what}): enroll the user instead"
                )));
            }
            if let Some(twin) = secrets.get(&secret) {
                return Err(bad(format!(
                    "'{username}' has the same secret as '{twin}': a code of one would be a code of the other"
                )));
            }
            let optional = |i: usize| fields.get(i).copied().filter(|s| !s.is_empty());
            let email = optional(2).map(EmailAddress::parse).transpose().map_err(bad)?;
            let telegram = optional(3).map(TelegramChat::parse).transpose().map_err(bad)?;
            secrets.insert(secret.clone(), username.clone());
            let first = self.active_totp(&username, &secret, self.settings.otp, self.clock.now())?;
            let profile = UserProfile {
                username,
                email: email.map(|e| e.as_str().to_string()),
                telegram_id: telegram.map(|t| t.as_str().to_string()),
                source: UserSource::Cli,
            };
            profiles.push((profile, first));
        }
        let mut report = ImportReport::default();
        let now = self.clock.now();
        for batch in profiles.chunks(IMPORT_BATCH) {
            let inserted = self.store.insert_users(batch, now).await?;
            report.imported += inserted;
            report.existing += batch.len() as u64 - inserted;
        }
        Ok(report)
    }

    /// Makes the database's `.env` users match the settings: adds new ones, updates changed
    /// ones (a changed secret restarts the replay guard), removes those no longer defined.
    pub async fn sync_env_users(&self) -> Result<SyncReport, UserError> {
        let mut report = SyncReport::default();
        let now = self.clock.now();
        for env_user in &self.settings.users {
            let EnvUser { username, var, secret, email, telegram } = env_user;
            let profile = UserProfile {
                username: username.clone(),
                email: email.as_ref().map(|e| e.as_str().to_string()),
                telegram_id: telegram.as_ref().map(|t| t.as_str().to_string()),
                source: UserSource::Env,
            };
            match self.store.user(username).await? {
                None => {
                    let first = self.active_totp(username, secret, self.settings.otp, now)?;
                    match self.store.insert_user(&profile, &first, now).await {
                        Ok(()) => report.added.push(username.to_string()),
                        Err(StoreError::Conflict) => {} // another instance synced it first
                        Err(e) => return Err(e.into()),
                    }
                }
                Some(current) if current.profile.source != UserSource::Env => {
                    return Err(UserError::Conflict { username: username.clone(), var: var.clone() });
                }
                Some(current) => {
                    // A `.env` user has the one authenticator the file defines.
                    let same = match current.authenticators.as_slice() {
                        [a] => {
                            self.keys.open_secret(username, &a.id, &a.sealed_secret).ok().as_ref() == Some(secret)
                                && matches!(a.factor, Factor::Totp { params, .. } if params == self.settings.otp)
                                && a.status == AuthenticatorStatus::Active
                        }
                        _ => false,
                    };
                    let contact_changed =
                        current.profile.email != profile.email || current.profile.telegram_id != profile.telegram_id;
                    if contact_changed {
                        self.store
                            .update_contact(username, profile.email.as_deref(), profile.telegram_id.as_deref(), now)
                            .await?;
                    }
                    if !same {
                        // A new secret or new parameters: a new authenticator, whose replay
                        // guard starts afresh.
                        let first = self.active_totp(username, secret, self.settings.otp, now)?;
                        self.store.replace_authenticators(username, &first, now).await?;
                    }
                    if contact_changed || !same {
                        report.updated.push(username.to_string());
                    }
                }
            }
        }
        for username in self.store.env_usernames().await? {
            if !self.settings.users.iter().any(|u| u.username == username) {
                self.store.delete_user(&username).await?;
                report.removed.push(username.to_string());
            }
        }
        if report != SyncReport::default() {
            self.recent_locks.forget_all();
        }
        Ok(report)
    }
}
