//! Recovery codes: a set of single-use codes a user keeps on paper for when every
//! authenticator is lost. Only their keyed hashes are stored (`crate::crypto`); `/verify`
//! accepts them (`crate::verify`).

use super::{UserError, UserService};
use crate::alerts::Alert;
use crate::domain::{RecoveryCode, Username};

/// Codes per set. Each has 60 random bits: guessing one of ten, with the lockout's bound
/// on guesses, has odds of about 1 in 10^14 per 1,000 guesses.
pub const CODES_PER_SET: usize = 10;

impl UserService {
    /// Generates a new set of recovery codes, replacing any earlier set; the codes are shown
    /// this once (`.env` users have them too: they are not part of the file).
    pub async fn new_recovery_codes(&self, username: &Username) -> Result<Vec<RecoveryCode>, UserError> {
        let codes: Vec<RecoveryCode> = (0..CODES_PER_SET).map(|_| RecoveryCode::generate()).collect();
        let hashes = codes
            .iter()
            .map(|code| self.keys.hash_recovery_code(username, code.as_str()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| UserError::Internal(e.to_string()))?;
        if !self.store.replace_recovery_codes(username, &hashes, self.clock.now()).await? {
            return Err(UserError::NotFound(username.clone()));
        }
        self.alerts.raise(username, Alert::RecoveryCodesGenerated { count: codes.len() });
        Ok(codes)
    }

    /// How many of the user's recovery codes are unused.
    pub async fn recovery_codes_remaining(&self, username: &Username) -> Result<u64, UserError> {
        self.find(username).await?;
        let codes = self.store.recovery_codes(username).await?;
        Ok(codes.iter().filter(|c| c.used_at.is_none()).count() as u64)
    }
}
