//! Users defined in the environment: `<NAME>_SECRET`, with `<NAME>_EMAIL` and
//! `<NAME>_TELEGRAM_ID`, as in the Flask design.

use super::parse::Reader;
use super::settings::EnvUser;
use crate::domain::{EmailAddress, TelegramChat, Username};
use crate::otp::SecretBytes;

/// Finds `<NAME>_SECRET` variables and their `<NAME>_EMAIL` / `<NAME>_TELEGRAM_ID`.
pub(super) fn read(r: &mut Reader, warnings: &mut Vec<String>) -> Vec<EnvUser> {
    let env = r.env;
    let mut users = Vec::new();
    let names: Vec<String> =
        env.keys().filter_map(|k| k.strip_suffix("_SECRET")).filter(|n| !n.is_empty()).map(String::from).collect();
    for name in names {
        let var = format!("{name}_SECRET");
        let Some(raw_secret) = env.get(&var) else {
            continue;
        };
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
                 compatibility, but re-enroll the user with `mfa user add` (160 bits) when you can",
                secret.bits()
            ));
        }
        let email = r.optional_named(&format!("{name}_EMAIL"), EmailAddress::parse);
        let telegram = r.optional_named(&format!("{name}_TELEGRAM_ID"), TelegramChat::parse);
        users.push(EnvUser { username, var, secret, email, telegram });
    }
    users
}
