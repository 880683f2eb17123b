//! Users defined in the environment: `<NAME>_SECRET`, with `<NAME>_EMAIL` and
//! `<NAME>_TELEGRAM_ID`, as in the Flask design.

use super::parse::Reader;
use super::settings::EnvUser;
use super::vars;
use crate::domain::{EmailAddress, TelegramChat, Username};
use crate::otp::SecretBytes;

/// Which `<NAME>_SECRET` variables of the process environment are users (`MFA_ENV_USERS`).
enum FromEnvironment {
    Every,
    Named(Vec<String>),
}

impl FromEnvironment {
    fn parse(raw: &str) -> Result<Self, String> {
        if raw.trim() == "*" {
            return Ok(Self::Every);
        }
        let names: Vec<String> =
            raw.split(',').map(|n| n.trim().to_ascii_lowercase()).filter(|n| !n.is_empty()).collect();
        match names.iter().find(|n| Username::parse(n).is_err()) {
            Some(bad) => Err(format!("'{bad}' is not a username (give names such as `dair,bob`, or `*`)")),
            None => Ok(Self::Named(names)),
        }
    }

    fn admits(&self, name: &str) -> bool {
        match self {
            Self::Every => true,
            Self::Named(names) => names.iter().any(|n| n.eq_ignore_ascii_case(name)),
        }
    }
}

/// Finds `<NAME>_SECRET` variables and their `<NAME>_EMAIL` / `<NAME>_TELEGRAM_ID`.
///
/// In `.env` each one is a user, as in the Flask design. The process environment also holds
/// other programs' secrets (`GITHUB_CLIENT_SECRET` in a container), so there a
/// `<NAME>_SECRET` is a user only when `MFA_ENV_USERS` names it (or is `*`); the others are
/// left alone and listed in one warning.
pub(super) fn read(r: &mut Reader, warnings: &mut Vec<String>, exposed: bool) -> Vec<EnvUser> {
    let env = r.env;
    let from_environment = r.optional(&vars::MFA_ENV_USERS, FromEnvironment::parse);
    let mut users: Vec<EnvUser> = Vec::new();
    let mut left_alone = Vec::new();
    let names: Vec<String> =
        env.keys().filter_map(|k| k.strip_suffix("_SECRET")).filter(|n| !n.is_empty()).map(String::from).collect();
    for name in names {
        let var = format!("{name}_SECRET");
        let Some(raw_secret) = env.get(&var) else {
            continue;
        };
        if !env.in_dotenv(&var) && !from_environment.as_ref().is_some_and(|f| f.admits(&name)) {
            left_alone.push(var);
            continue;
        }
        let username = match Username::parse(&name) {
            Ok(u) => u,
            Err(e) => {
                r.fail(&var, format!("'{name}' does not make a valid username: {e}"));
                continue;
            }
        };
        let secret = match SecretBytes::from_base32(raw_secret) {
            Ok(s) => s,
            Err(e) => {
                r.fail(&var, format!("the secret {e}"));
                continue;
            }
        };
        if secret.is_below_rfc_minimum() {
            warnings.push(format!(
                "user '{username}' ({var}) has a {}-bit secret, below RFC 4226's 128-bit minimum; it is accepted for \
                 compatibility. To give it 160 bits, put a new secret in {var} (`python3 -c 'import base64, os; \
                 print(base64.b32encode(os.urandom(20)).decode())'` makes one) and add it to the user's app again; \
                 or remove {var} and run `mfa user add {username}`, which stores the user in the database and prints \
                 its QR code",
                secret.bits()
            ));
        }
        let enroll = format!(
            "remove {var} and run `mfa user add {username}` (it generates a secret and prints its QR code), or put \
             a secret of your own in {var}"
        );
        let mut problems = Vec::new();
        if let Some(what) = secret.publicly_known() {
            problems.push(format!(
                "user '{username}' ({var}) has a publicly known secret ({what}): anyone can compute its codes"
            ));
        }
        if let Some(twin) = users.iter().find(|u| u.secret == secret) {
            problems.push(format!(
                "users '{}' and '{username}' ({} and {var}) have the same secret: a code of one is a code of the other",
                twin.username, twin.var
            ));
        }
        for problem in problems {
            if exposed {
                r.fail(&var, format!("{problem}; MFA_BIND is reachable from other machines: {enroll}"));
            } else {
                warnings.push(format!("{problem}. Fine for a trial on loopback; before anything else: {enroll}"));
            }
        }
        let email = r.optional_named(&format!("{name}_EMAIL"), EmailAddress::parse);
        let telegram = r.optional_named(&format!("{name}_TELEGRAM_ID"), TelegramChat::parse);
        users.push(EnvUser { username, var, secret, email, telegram });
    }
    if let Some(FromEnvironment::Named(names)) = &from_environment {
        for name in names {
            let var = format!("{}_SECRET", name.to_ascii_uppercase());
            if env.get(&var).is_none() {
                r.fail(vars::MFA_ENV_USERS.name, format!("names '{name}', but {var} is not set"));
            }
        }
    }
    if !left_alone.is_empty() {
        warnings.push(format!(
            "not read as users (they are in the process environment, not in .env): {}; to make one a user, name it \
             in MFA_ENV_USERS",
            left_alone.join(", ")
        ));
    }
    users
}
