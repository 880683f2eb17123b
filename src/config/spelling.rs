//! Misspelt variables: a name in `.env` that is not one of ours but is one or two
//! keystrokes from one (`RATE_LIMT`, `ADMIN_TOKN`, `EMAIL_SMTP_SEVER`), or whose end is that
//! close to a user variable's (`DAIR_SECERT`), would otherwise be ignored in silence.
//! Only `.env` is read this way: the process environment holds many other programs'
//! variables (its `MFA_` and `OTP_` names are checked by `validate`).

use super::vars;

/// The variable `name` was most likely meant to be, if it is not ours but close to ours.
pub fn meant(name: &str) -> Option<String> {
    if vars::is_known(name) || is_user_variable(name) {
        return None;
    }
    let ours = vars::ALL.iter().filter(|v| !v.is_per_user()).map(|v| v.name.to_string());
    let users = user_variables_close_to(name);
    ours.chain(users)
        .map(|candidate| (strsim::damerau_levenshtein(name, &candidate), candidate))
        .filter(|(distance, candidate)| *distance <= allowed_distance(candidate))
        .min()
        .map(|(_, candidate)| candidate)
}

/// The suffixes of the per-user variables: `<NAME>_SECRET` and its companions.
const USER_SUFFIXES: [&str; 3] = ["_SECRET", "_EMAIL", "_TELEGRAM_ID"];

fn is_user_variable(name: &str) -> bool {
    USER_SUFFIXES.iter().any(|suffix| name.strip_suffix(suffix).is_some_and(|user| !user.is_empty()))
}

/// `<NAME>_<SUFFIX>` for each way of cutting `name` into a user name and a last part.
fn user_variables_close_to(name: &str) -> impl Iterator<Item = String> + '_ {
    name.match_indices('_')
        .map(|(at, _)| &name[..at])
        .filter(|user| !user.is_empty())
        .flat_map(|user| USER_SUFFIXES.iter().map(move |suffix| format!("{user}{suffix}")))
}

/// One slip in a short name, two in a longer one: `PORT` is not a misspelt `MFA_BIND`.
fn allowed_distance(candidate: &str) -> usize {
    if candidate.len() <= 8 { 1 } else { 2 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slip_of_one_or_two_keys_names_the_variable_meant() {
        for (typed, intended) in [
            ("RATE_LIMT", "RATE_LIMIT"),
            ("ADMIN_TOKN", "ADMIN_TOKEN"),
            ("EMAIL_SMTP_SEVER", "EMAIL_SMTP_SERVER"),
            ("SECRET_KY", "SECRET_KEY"),
            ("TELEGRAM_TOKEM", "TELEGRAM_TOKEN"),
            ("MFA_BIDN", "MFA_BIND"),
            ("DAIR_SECERT", "DAIR_SECRET"),
            ("DAIR_EMIAL", "DAIR_EMAIL"),
            ("DAIR_TELEGRAMID", "DAIR_TELEGRAM_ID"),
            ("MY_APP_SECRT", "MY_APP_SECRET"),
        ] {
            assert_eq!(meant(typed).as_deref(), Some(intended), "{typed}");
        }
    }

    #[test]
    fn our_variables_and_other_programs_are_left_alone() {
        for name in vars::ALL.iter().filter(|v| !v.is_per_user()).map(|v| v.name) {
            assert_eq!(meant(name), None, "{name}");
        }
        for name in [
            "DAIR_SECRET",
            "DAIR_EMAIL",
            "DAIR_TELEGRAM_ID",
            "POSTGRES_PASSWORD",
            "POSTGRES_USER",
            "COMPOSE_PROJECT_NAME",
            "PORT",
            "HOME",
            "TZ",
            "RUST_BACKTRACE",
            "FLASK_APP",
            "DEBUG",
        ] {
            assert_eq!(meant(name), None, "{name}");
        }
    }

    #[test]
    fn the_example_files_and_the_seeds_env_have_no_misspelt_names() {
        for file in [".env.example", "tests/fixtures/seed.env", "fuzz/seeds/config/everything.env"] {
            let text = std::fs::read_to_string(format!("{}/{file}", env!("CARGO_MANIFEST_DIR"))).unwrap();
            for entry in crate::config::dotenv::parse(&text, &|_| None).entries {
                assert_eq!(meant(&entry.0), None, "{file}: {}", entry.0);
            }
        }
    }
}
