//! Generators of outside input, shared by the property tests of every module. They build
//! text only, so any module's tests can use them.

use proptest::prelude::*;

/// Any string at all: control characters, other scripts, lone combining marks, NULs.
pub(crate) fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![any::<String>(), "[ -~]{0,40}", "\\PC{0,40}"]
}

pub(crate) fn valid_username() -> impl Strategy<Value = String> {
    "[a-z0-9][a-z0-9._@+-]{0,63}"
}

/// `s` with each ASCII letter's case chosen by `upper`.
pub(crate) fn mangle_case(s: &str, upper: &[bool]) -> String {
    s.chars().zip(upper.iter().cycle()).map(|(c, up)| if *up { c.to_ascii_uppercase() } else { c }).collect()
}

/// Email addresses of the usual shape: dot-atom local part, a domain of LDH labels.
pub(crate) fn valid_email() -> impl Strategy<Value = String> {
    "[a-z0-9_%+-]{1,12}(\\.[a-z0-9_+-]{1,8}){0,2}@[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?(\\.[a-z]{2,8}){1,3}"
}
