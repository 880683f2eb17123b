//! HOTP (RFC 4226) and TOTP (RFC 6238): code generation and checking, secrets, otpauth URIs.
//!
//! The arithmetic comes from `totp-rs`; the comparison with the presented code is ours, in
//! constant time ([`codes_equal`]), and tells which time step a code matched: the step is
//! what replay protection (RFC 6238 §5.2) records.
//! Everything here is pure: time is always a parameter.

use std::fmt;

use totp_rs::{Builder, Totp};

use crate::clock::UnixTime;
use crate::domain::OtpCode;

/// RFC 4226 §4 R6: "The length of the shared secret MUST be at least 128 bits."
pub const MIN_RECOMMENDED_SECRET_BYTES: usize = 16;
/// Shorter than the seed's sample secret `base32secret3232` (80 bits): refused outright.
pub const MIN_ACCEPTED_SECRET_BYTES: usize = 10;
/// New secrets are 160 bits, as RFC 4226 §4 recommends.
pub const NEW_SECRET_BYTES: usize = 20;

/// A shared secret's raw bytes. Never printed: its `Debug` says only how long it is; wiped
/// from memory when dropped.
#[derive(Clone, PartialEq, Eq, Hash, zeroize::Zeroize, zeroize::ZeroizeOnDrop)]
pub struct SecretBytes(Vec<u8>);

impl SecretBytes {
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    /// A fresh random secret of [`NEW_SECRET_BYTES`] from the operating system's CSPRNG.
    pub fn generate() -> Self {
        let mut bytes = vec![0u8; NEW_SECRET_BYTES];
        rand::fill(&mut bytes[..]);
        Self(bytes)
    }

    /// Decodes base32 the way pyotp does: case-insensitive, spaces and `=` padding ignored.
    /// (totp-rs alone refuses lower case, which would reject the seed's `base32secret3232`.)
    pub fn from_base32(raw: &str) -> Result<Self, String> {
        let cleaned: String = raw
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '=' && *c != '-')
            .map(|c| c.to_ascii_uppercase())
            .collect();
        if cleaned.is_empty() {
            return Err("is empty".into());
        }
        let mut spec = data_encoding::BASE32_NOPAD.specification();
        spec.check_trailing_bits = false; // Python's b32decode ignores them too
        let decoded = spec
            .encoding()
            .map_err(|_| "base32 decoder unavailable".to_string())?
            .decode(cleaned.as_bytes())
            .map_err(|_| "is not valid base32 (letters A-Z and digits 2-7)".to_string())?;
        if decoded.len() < MIN_ACCEPTED_SECRET_BYTES {
            return Err(format!(
                "is {} bits long; at least {} bits are required (RFC 4226 asks for 128)",
                decoded.len() * 8,
                MIN_ACCEPTED_SECRET_BYTES * 8
            ));
        }
        Ok(Self(decoded))
    }

    pub fn to_base32(&self) -> String {
        data_encoding::BASE32_NOPAD.encode(&self.0)
    }

    pub fn bits(&self) -> usize {
        self.0.len() * 8
    }

    pub fn is_below_rfc_minimum(&self) -> bool {
        self.0.len() < MIN_RECOMMENDED_SECRET_BYTES
    }

    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Where this secret is published, if it is one of the examples that documentation and
    /// test suites print (anyone can compute its codes).
    pub fn publicly_known(&self) -> Option<&'static str> {
        PUBLISHED_SECRETS
            .iter()
            .find(|(base32, _)| Self::from_base32(base32).is_ok_and(|s| s == *self))
            .map(|(_, what)| *what)
    }
}

/// Secrets printed in documentation and test suites, with where.
const PUBLISHED_SECRETS: &[(&str, &str)] = &[
    ("base32secret3232", "pyotp's documentation example, also the Flask design's sample .env"),
    ("JBSWY3DPEHPK3PXP", "the Key Uri Format's example"),
    ("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP", "an example of this project's documentation and tests"),
    ("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ", "the RFC 4226 and RFC 6238 test seed"),
    ("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQGEZA", "the RFC 6238 SHA-256 test seed"),
    (
        "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQGEZDGNA",
        "the RFC 6238 SHA-512 test seed",
    ),
];

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretBytes(<{} bits redacted>)", self.bits())
    }
}

/// The HMAC hash function of a TOTP secret (RFC 6238 §1.2 allows SHA-1, SHA-256, SHA-512).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Sha1,
    Sha256,
    Sha512,
}

impl Algorithm {
    pub fn parse(raw: &str) -> Result<Self, String> {
        match raw.trim().to_ascii_uppercase().replace('-', "").as_str() {
            "SHA1" => Ok(Self::Sha1),
            "SHA256" => Ok(Self::Sha256),
            "SHA512" => Ok(Self::Sha512),
            _ => Err(format!("unknown algorithm '{}': use SHA1, SHA256 or SHA512", raw.trim())),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sha1 => "SHA1",
            Self::Sha256 => "SHA256",
            Self::Sha512 => "SHA512",
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Number of digits of a code: RFC 4226 §5.3 allows 6 to 8.
pub fn parse_digits(raw: &str) -> Result<u8, String> {
    match raw.trim().parse::<u8>() {
        Ok(d @ 6..=8) => Ok(d),
        _ => Err(format!("'{}' is not 6, 7 or 8", raw.trim())),
    }
}

/// How a user's codes are made: the parameters an authenticator app is configured with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OtpParams {
    pub algorithm: Algorithm,
    pub digits: u8,
    pub period: u64,
}

impl Default for OtpParams {
    fn default() -> Self {
        Self { algorithm: Algorithm::Sha1, digits: 6, period: 30 }
    }
}

fn totp(secret: &SecretBytes, params: OtpParams, window: u16) -> Totp {
    builder(secret, params, window).build_noncompliant()
}

fn builder(secret: &SecretBytes, params: OtpParams, window: u16) -> Builder {
    let algorithm = match params.algorithm {
        Algorithm::Sha1 => totp_rs::Algorithm::SHA1,
        Algorithm::Sha256 => totp_rs::Algorithm::SHA256,
        Algorithm::Sha512 => totp_rs::Algorithm::SHA512,
    };
    // `build_noncompliant` because legacy 80-bit secrets must keep working; digits (6..=8)
    // and period (>= 1) are validated where they are parsed, so nothing here can panic.
    Builder::new()
        .with_algorithm(algorithm)
        .with_digits(params.digits)
        .with_step_duration(params.period.max(1))
        .with_skew(window)
        .with_secret(secret.expose())
}

/// The TOTP code for the time step that contains `time` (RFC 6238 §4.2).
pub fn totp_code(secret: &SecretBytes, params: OtpParams, time: UnixTime) -> String {
    totp(secret, params, 0).generate(time).to_string()
}

/// The HOTP code for a counter (RFC 4226 §5.3): TOTP is HOTP with counter = time / period.
pub fn hotp_code(secret: &SecretBytes, algorithm: Algorithm, digits: u8, counter: u64) -> String {
    let params = OtpParams { algorithm, digits, period: 1 };
    totp(secret, params, 0).generate(counter).to_string()
}

/// The time step whose code `code` is, searching `window` steps on each side of `now`'s
/// step (RFC 6238 §5.2), or `None`.
pub fn matching_step(
    secret: &SecretBytes,
    params: OtpParams,
    code: &OtpCode,
    now: UnixTime,
    window: u16,
) -> Option<u64> {
    matching_step_near(secret, params, code, now, window, 0)
}

/// The time step whose code `code` is, searching `window` steps on each side of `now`'s
/// step moved by `drift_steps` (the authenticator's learned clock offset, RFC 6238 §6).
///
/// Every step of the window is computed and compared, and each comparison is
/// [`codes_equal`]'s, so the time taken does not depend on how much of the code was right
/// (tests/api/timing.rs measures it). Only the code's length, which is public, shortens it.
pub fn matching_step_near(
    secret: &SecretBytes,
    params: OtpParams,
    code: &OtpCode,
    now: UnixTime,
    window: u16,
    drift_steps: i64,
) -> Option<u64> {
    let period = params.period.max(1);
    let centre = (now / period).saturating_add_signed(drift_steps);
    let totp = totp(secret, params, 0);
    let mut matched = None;
    for step in centre.saturating_sub(u64::from(window))..=centre.saturating_add(u64::from(window)) {
        let expected = totp.generate(step.saturating_mul(period)).to_string();
        if codes_equal(&expected, code.as_str()) && matched.is_none() {
            matched = Some(step);
        }
    }
    matched
}

/// The counter whose HOTP code `code` is, among `counter..=counter + lookahead`
/// (RFC 4226 §7.4's look-ahead window), or `None`; every counter is computed and compared.
pub fn matching_counter(
    secret: &SecretBytes,
    algorithm: Algorithm,
    digits: u8,
    code: &OtpCode,
    counter: u64,
    lookahead: u32,
) -> Option<u64> {
    let mut matched = None;
    for c in counter..=counter.saturating_add(u64::from(lookahead)) {
        if codes_equal(&hotp_code(secret, algorithm, digits, c), code.as_str()) && matched.is_none() {
            matched = Some(c);
        }
    }
    matched
}

/// Resynchronisation (RFC 4226 §7.4): the counter of the second of two consecutive codes,
/// searching `from..from + window`, or `None`.
pub fn resync_counter(
    secret: &SecretBytes,
    algorithm: Algorithm,
    digits: u8,
    codes: [&OtpCode; 2],
    from: u64,
    window: u32,
) -> Option<u64> {
    let mut previous = hotp_code(secret, algorithm, digits, from);
    for c in from.saturating_add(1)..=from.saturating_add(u64::from(window)) {
        let code = hotp_code(secret, algorithm, digits, c);
        if codes_equal(&previous, codes[0].as_str()) && codes_equal(&code, codes[1].as_str()) {
            return Some(c);
        }
        previous = code;
    }
    None
}

/// The TOTP counterpart: the step of the second of two codes of consecutive steps, within
/// `window` steps on each side of `now`'s, or `None`. The nearest pair wins.
pub fn resync_step(
    secret: &SecretBytes,
    params: OtpParams,
    codes: [&OtpCode; 2],
    now: UnixTime,
    window: u32,
) -> Option<u64> {
    let period = params.period.max(1);
    let origin = now / period;
    let totp = totp(secret, params, 0);
    let code_at = |step: u64| totp.generate(step.saturating_mul(period)).to_string();
    let pair_at = |step: u64| {
        step > 0 && codes_equal(&code_at(step - 1), codes[0].as_str()) && codes_equal(&code_at(step), codes[1].as_str())
    };
    (0..=u64::from(window)).find_map(|distance| {
        [origin.checked_add(distance), origin.checked_sub(distance)].into_iter().flatten().find(|s| pair_at(*s))
    })
}

/// Whether a presented code is the expected one, in a time that depends only on their
/// lengths (`subtle`'s constant-time comparison: every byte is compared, no early exit).
pub fn codes_equal(expected: &str, presented: &str) -> bool {
    use subtle::ConstantTimeEq;
    expected.as_bytes().ct_eq(presented.as_bytes()).into()
}

/// The `otpauth://totp/...` URI that authenticator apps read from a QR code
/// (the Key Uri Format of Google Authenticator).
pub fn otpauth_uri(issuer: &str, account: &str, secret: &SecretBytes, params: OtpParams) -> Result<String, String> {
    builder(secret, params, 0)
        .with_issuer(Some(issuer.replace(':', "")))
        .with_account_name(account.replace(':', ""))
        .build_noncompliant()
        .to_url()
        .map_err(|e| e.to_string())
}

/// The `otpauth://hotp/...?counter=N` URI of an HOTP authenticator. totp-rs writes only
/// TOTP URIs; the HOTP one is that URI (its escaping included) with the scheme's type
/// changed, the `period` dropped and the `counter` added, as the Key Uri Format says.
pub fn hotp_uri(
    issuer: &str,
    account: &str,
    secret: &SecretBytes,
    algorithm: Algorithm,
    digits: u8,
    counter: u64,
) -> Result<String, String> {
    let totp_uri = otpauth_uri(issuer, account, secret, OtpParams { algorithm, digits, period: 30 })?;
    let rest = totp_uri.strip_prefix("otpauth://totp/").ok_or("unexpected otpauth URI")?;
    let (label, query) = rest.split_once('?').ok_or("unexpected otpauth URI")?;
    let query: Vec<&str> = query.split('&').filter(|p| !p.starts_with("period=")).collect();
    Ok(format!("otpauth://hotp/{label}?{}&counter={counter}", query.join("&")))
}

/// A random numeric code of `digits` digits for delivery by email or Telegram, uniformly
/// distributed and zero-padded.
pub fn random_code(digits: u8) -> String {
    let modulus = 10u32.pow(u32::from(digits.clamp(6, 8)));
    let n: u32 = rand::random_range(0..modulus);
    format!("{n:0width$}", width = usize::from(digits.clamp(6, 8)))
}

#[cfg(test)]
pub(crate) mod proptests;

#[cfg(test)]
mod tests {
    use super::*;

    fn ascii_seed(len: usize) -> SecretBytes {
        SecretBytes::new(b"1234567890".iter().cycle().take(len).copied().collect())
    }

    /// RFC 4226 Appendix D: secret "12345678901234567890", counters 0..=9, 6 digits.
    #[test]
    fn rfc4226_appendix_d_vectors() {
        let expected =
            ["755224", "287082", "359152", "969429", "338314", "254676", "287922", "162583", "399871", "520489"];
        let secret = ascii_seed(20);
        for (counter, want) in expected.iter().enumerate() {
            assert_eq!(hotp_code(&secret, Algorithm::Sha1, 6, counter as u64), *want, "counter {counter}");
        }
    }

    /// RFC 6238 Appendix B: 8 digits, 30 s, seeds of 20/32/64 bytes for SHA1/SHA256/SHA512.
    #[test]
    fn rfc6238_appendix_b_vectors() {
        let table: [(u64, &str, &str, &str); 6] = [
            (59, "94287082", "46119246", "90693936"),
            (1111111109, "07081804", "68084774", "25091201"),
            (1111111111, "14050471", "67062674", "99943326"),
            (1234567890, "89005924", "91819424", "93441116"),
            (2000000000, "69279037", "90698825", "38618901"),
            (20000000000, "65353130", "77737706", "47863826"),
        ];
        for (time, sha1, sha256, sha512) in table {
            for (algorithm, seed_len, want) in
                [(Algorithm::Sha1, 20, sha1), (Algorithm::Sha256, 32, sha256), (Algorithm::Sha512, 64, sha512)]
            {
                let params = OtpParams { algorithm, digits: 8, period: 30 };
                let secret = ascii_seed(seed_len);
                assert_eq!(totp_code(&secret, params, time), want, "{algorithm} at {time}");
                let code = OtpCode::parse(want).unwrap();
                assert_eq!(matching_step(&secret, params, &code, time, 0), Some(time / 30));
            }
        }
    }

    /// Codes computed by Python's pyotp (tests/fixtures/pyotp_vectors.py made the file), among
    /// them the seed's `base32secret3232` at stated timestamps, e.g. t=0 -> 260182.
    #[test]
    fn codes_agree_with_pyotp() {
        let fixture = include_str!("../tests/fixtures/pyotp.tsv");
        let mut checked = 0;
        for line in fixture.lines().skip(1) {
            let f: Vec<&str> = line.split('\t').collect();
            let secret = SecretBytes::from_base32(f[0]).unwrap();
            let params = OtpParams {
                algorithm: Algorithm::parse(f[1]).unwrap(),
                digits: f[2].parse().unwrap(),
                period: f[3].parse().unwrap(),
            };
            let time: u64 = f[4].parse().unwrap();
            assert_eq!(totp_code(&secret, params, time), f[5], "{line}");
            checked += 1;
        }
        assert_eq!(checked, 72);
        let seed = SecretBytes::from_base32("base32secret3232").unwrap();
        assert_eq!(totp_code(&seed, OtpParams::default(), 1_234_567_890), "357655");
    }

    #[test]
    fn window_accepts_neighbouring_steps_only() {
        let secret = SecretBytes::from_base32("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP").unwrap();
        let params = OtpParams::default();
        let t = 1_700_000_000;
        let code = OtpCode::parse(&totp_code(&secret, params, t)).unwrap();
        assert_eq!(matching_step(&secret, params, &code, t + 30, 1), Some(t / 30));
        assert_eq!(matching_step(&secret, params, &code, t - 30, 1), Some(t / 30));
        assert_eq!(matching_step(&secret, params, &code, t + 60, 1), None);
        assert_eq!(matching_step(&secret, params, &code, t + 30, 0), None);
        assert_eq!(matching_step(&secret, params, &code, t + 60, 2), Some(t / 30));
    }

    #[test]
    fn a_code_of_the_wrong_length_never_matches() {
        let secret = SecretBytes::generate();
        let params = OtpParams { digits: 8, ..OtpParams::default() };
        let six = OtpCode::parse(&totp_code(&secret, OtpParams::default(), 1000)).unwrap();
        assert_eq!(matching_step(&secret, params, &six, 1000, 1), None);
    }

    #[test]
    fn base32_is_read_like_pyotp() {
        let lower = SecretBytes::from_base32("base32secret3232").unwrap();
        assert_eq!(lower.bits(), 80);
        assert!(lower.is_below_rfc_minimum());
        assert_eq!(SecretBytes::from_base32("BASE 32SE CRET 3232==").unwrap(), lower);
        assert!(SecretBytes::from_base32("not base32!").is_err());
        assert!(SecretBytes::from_base32("").is_err());
        assert!(SecretBytes::from_base32("ABCDEFGH").is_err(), "40 bits is too short");
        let err = SecretBytes::from_base32("0189!!!!").unwrap_err();
        assert!(!err.contains("0189"), "errors never echo the secret");
    }

    #[test]
    fn generated_secrets_are_160_bits_and_distinct() {
        let a = SecretBytes::generate();
        assert_eq!(a.bits(), 160);
        assert_ne!(a, SecretBytes::generate());
        assert!(!format!("{a:?}").contains(&a.to_base32()));
    }

    #[test]
    fn otpauth_uri_names_issuer_account_and_parameters() {
        let secret = SecretBytes::from_base32("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP").unwrap();
        let params = OtpParams { algorithm: Algorithm::Sha256, digits: 8, period: 30 };
        let uri = otpauth_uri("ACME MFA", "dair", &secret, params).unwrap();
        assert!(uri.starts_with("otpauth://totp/ACME%20MFA:dair?"), "{uri}");
        assert!(uri.contains("secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"));
        assert!(uri.contains("digits=8"));
        assert!(uri.contains("algorithm=SHA256"));
        assert!(uri.contains("issuer=ACME%20MFA"));
    }

    fn code(s: &str) -> OtpCode {
        OtpCode::parse(s).unwrap()
    }

    #[test]
    fn hotp_lookahead_and_resync_find_the_rfc4226_counters() {
        let secret = ascii_seed(20);
        // Appendix D: counter 3 is 969429, 4 is 338314, 5 is 254676.
        assert_eq!(matching_counter(&secret, Algorithm::Sha1, 6, &code("338314"), 0, 10), Some(4));
        assert_eq!(matching_counter(&secret, Algorithm::Sha1, 6, &code("338314"), 0, 3), None, "past the window");
        assert_eq!(matching_counter(&secret, Algorithm::Sha1, 6, &code("969429"), 4, 10), None, "before the counter");
        let pair = [&code("338314"), &code("254676")];
        assert_eq!(resync_counter(&secret, Algorithm::Sha1, 6, pair, 0, 1000), Some(5));
        assert_eq!(resync_counter(&secret, Algorithm::Sha1, 6, pair, 0, 4), None);
        let not_consecutive = [&code("969429"), &code("254676")];
        assert_eq!(resync_counter(&secret, Algorithm::Sha1, 6, not_consecutive, 0, 1000), None);
    }

    #[test]
    fn drift_moves_the_window() {
        let secret = SecretBytes::generate();
        let params = OtpParams::default();
        let t = 1_700_000_010;
        let ahead = code(&totp_code(&secret, params, t + 90));
        assert_eq!(matching_step_near(&secret, params, &ahead, t, 1, 0), None);
        assert_eq!(matching_step_near(&secret, params, &ahead, t, 1, 3), Some(t / 30 + 3));
        assert_eq!(matching_step_near(&secret, params, &ahead, t, 1, 2), Some(t / 30 + 3));
        let now = code(&totp_code(&secret, params, t));
        assert_eq!(matching_step_near(&secret, params, &now, t, 1, 3), None, "centred on the drift, not widened");
        let pair = [&code(&totp_code(&secret, params, t - 600)), &code(&totp_code(&secret, params, t - 570))];
        assert_eq!(resync_step(&secret, params, pair, t, 1000), Some((t - 570) / 30));
        assert_eq!(resync_step(&secret, params, pair, t, 10), None);
    }

    #[test]
    fn hotp_uris_carry_the_counter() {
        let secret = SecretBytes::from_base32("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP").unwrap();
        let uri = hotp_uri("ACME MFA", "dair", &secret, Algorithm::Sha1, 6, 7).unwrap();
        assert!(uri.starts_with("otpauth://hotp/ACME%20MFA:dair?"), "{uri}");
        assert!(uri.contains("secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"));
        assert!(uri.ends_with("&counter=7"), "{uri}");
        assert!(!uri.contains("period="), "{uri}");
    }

    #[test]
    fn random_codes_have_the_requested_digits() {
        for digits in 6..=8 {
            let code = random_code(digits);
            assert_eq!(code.len(), usize::from(digits));
            assert!(code.bytes().all(|b| b.is_ascii_digit()));
        }
    }
}
