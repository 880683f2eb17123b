//! Keys derived from `SECRET_KEY`, and what they protect:
//! - authenticators' secrets at rest, sealed with AES-256-GCM (random 96-bit nonce per
//!   seal, the username and the authenticator's id as associated data, so a sealed secret
//!   cannot be moved to another user or authenticator);
//! - one-time codes sent by `/request-otp` and recovery codes, stored only as
//!   HMAC-SHA256(username, code), each kind under its own label;
//! - a key check value kept in the database, so a changed `SECRET_KEY` is caught at
//!   start-up instead of failing every verification.
//!
//! The three keys come from HKDF-SHA256 (RFC 5869) over a master key. A configured key is
//! stretched into that master key first, with Argon2id (RFC 9106) and a salt of the
//! database's ([`KdfParams`]): a stolen database then costs an Argon2id run per guess of the
//! key, not an HKDF. Without a configured key a random 256-bit one is generated once into
//! `data/secret.key` (mode 0600); that is the master key itself, since 256 random bits
//! cannot be guessed and stretching them would only slow start-up. Databases made before
//! Argon2id ("v1") used HKDF over the configured key directly; `crate::keyring` moves them.

use std::io::Write;
use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::domain::Username;
use crate::otp::SecretBytes;

/// Sealed codes, and secrets sealed before authenticators had ids (bound to the user only).
const SEAL_VERSION: u8 = 1;
/// The first byte of a secret bound to its user only: start-up seals such secrets again,
/// bound to their authenticator too.
pub const USER_BOUND_SEAL: u8 = SEAL_VERSION;
/// Secrets bound to the user and the authenticator.
const SEAL_VERSION_AUTHENTICATOR: u8 = 2;
const NONCE_LEN: usize = 12;

/// The HKDF salt (a domain label) of keys taken from the master key as it is: the key
/// file's, and a configured key's in databases made before Argon2id.
const HKDF_DIRECT: &[u8] = b"mfa-server/v1";
/// The HKDF salt of keys from an Argon2id-stretched key: another domain, so the same
/// `SECRET_KEY` has another check value than under v1.
const HKDF_STRETCHED: &[u8] = b"mfa-server/v2";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot derive the encryption keys from the configured key")]
    Derive,
    #[error("cannot read or create the key file {path}: {source}")]
    KeyFile { path: String, source: std::io::Error },
    #[error("the key file {path} must hold 64 hex characters")]
    BadKeyFile { path: String },
    /// The database's record of how its keys are derived (the `meta` row `kdf`) cannot be
    /// used: damaged, or written by a later version.
    #[error("the database's key derivation record (meta row 'kdf') cannot be used: {0}")]
    StoredKdf(String),
    #[error("cannot allocate the {kib} KiB that Argon2id needs to derive the keys")]
    KdfMemory { kib: u32 },
}

#[derive(Debug, thiserror::Error)]
#[error("a stored secret could not be decrypted (wrong SECRET_KEY or damaged data)")]
pub struct UnsealError;

#[derive(Debug, thiserror::Error)]
#[error("a secret could not be encrypted")]
pub struct SealError;

/// Where the master key came from, for the start-up log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyOrigin {
    Configured,
    ExistingFile,
    GeneratedFile,
}

pub struct Keys {
    /// Wipes its key schedule on drop (aes-gcm's `zeroize` feature).
    seal: Aes256Gcm,
    /// Wiped on drop. Kept as bytes: hmac's keyed state is not wiped when dropped.
    code_mac: zeroize::Zeroizing<[u8; 32]>,
    check: String,
    pub origin: KeyOrigin,
}

// That the cipher wipes its keys, checked by the compiler.
const _: fn() = || {
    fn wiped_on_drop<T: zeroize::ZeroizeOnDrop>() {}
    wiped_on_drop::<Aes256Gcm>();
};

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys").field("origin", &self.origin).finish_non_exhaustive()
    }
}

/// What the keys come from: the configured key, or the key file's 256 bits. Wiped on drop.
pub struct MasterKey {
    bytes: Zeroizing<Vec<u8>>,
    pub origin: KeyOrigin,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasterKey").field("origin", &self.origin).finish_non_exhaustive()
    }
}

impl MasterKey {
    /// The configured key, or the key file (created if missing).
    pub fn load(configured: Option<&str>, key_file: &Path) -> Result<Self, KeyError> {
        match configured {
            Some(key) => Ok(Self::configured(key)),
            None => {
                let (bytes, origin) = read_or_create_key_file(key_file)?;
                Ok(Self { bytes, origin })
            }
        }
    }

    pub fn configured(key: &str) -> Self {
        Self { bytes: Zeroizing::new(key.as_bytes().to_vec()), origin: KeyOrigin::Configured }
    }

    /// A configured key, to be stretched; a key file's is used as it is.
    pub fn is_configured(&self) -> bool {
        self.origin == KeyOrigin::Configured
    }

    pub fn expose(&self) -> &[u8] {
        &self.bytes
    }

    /// The keys of a database that records `kdf` (`None`: a database made before Argon2id).
    /// Argon2id takes a tenth of a second or more: call this off the async runtime.
    pub fn keys(&self, kdf: Option<&KdfParams>) -> Result<Keys, KeyError> {
        match kdf {
            Some(params) => Keys::stretched(&self.bytes, params, self.origin),
            None => Keys::direct(&self.bytes, self.origin),
        }
    }
}

/// Argon2id's costs and salt, as a database records them in its `meta` row `kdf`: a PHC
/// string without the hash, `$argon2id$v=19$m=65536,t=3,p=1$<salt in base64>`. Each
/// database has its own random salt, so one guess of a key cannot be tried against many
/// databases at once; the costs are recorded so that later versions can raise them for
/// new databases while older ones still open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KdfParams {
    /// Memory, in KiB.
    pub m_kib: u32,
    /// Passes over the memory.
    pub t: u32,
    /// Lanes (computed one after the other here: no threads).
    pub p: u32,
    salt: Vec<u8>,
}

impl KdfParams {
    /// The costs of new databases: 64 MiB, 3 passes, 1 lane (RFC 9106 section 4's second
    /// recommendation, with one lane, as this computes lanes one after the other; above
    /// OWASP's 46 MiB, t=1). About 0.15 s in a release build here (docs/SECURITY.md §8).
    pub const M_KIB: u32 = 64 * 1024;
    pub const T: u32 = 3;
    pub const P: u32 = 1;
    /// Bounds on recorded costs, so that a damaged or hostile `meta` row cannot make
    /// start-up allocate without limit or run for hours.
    pub const MAX_M_KIB: u32 = 1024 * 1024;
    pub const MAX_T: u32 = 32;
    pub const MAX_P: u32 = 16;
    pub const SALT_LEN: usize = 16;
    const MAX_SALT_LEN: usize = 64;

    /// The default costs with a fresh random salt: a new database's.
    pub fn generate() -> Self {
        let mut salt = vec![0u8; Self::SALT_LEN];
        rand::fill(salt.as_mut_slice());
        Self { m_kib: Self::M_KIB, t: Self::T, p: Self::P, salt }
    }

    pub fn new(m_kib: u32, t: u32, p: u32, salt: &[u8]) -> Result<Self, KeyError> {
        let params = Self { m_kib, t, p, salt: salt.to_vec() };
        params.check()?;
        Ok(params)
    }

    pub fn salt(&self) -> &[u8] {
        &self.salt
    }

    /// Reads a recorded `$argon2id$v=19$m=..,t=..,p=..$<salt>`, refusing anything else and
    /// costs past the bounds.
    pub fn parse(recorded: &str) -> Result<Self, KeyError> {
        let bad = |what: &str| KeyError::StoredKdf(what.to_string());
        let fields: Vec<&str> = recorded.split('$').collect();
        let ["", algorithm, version, costs, salt] = fields.as_slice() else {
            return Err(bad("expected $argon2id$v=19$m=KIB,t=PASSES,p=LANES$SALT"));
        };
        if *algorithm != "argon2id" {
            return Err(bad("the algorithm is not argon2id"));
        }
        if *version != "v=19" {
            return Err(bad("the Argon2 version is not 19 (0x13)"));
        }
        let mut values = [0u32; 3];
        let names = ["m", "t", "p"];
        let pairs: Vec<&str> = costs.split(',').collect();
        if pairs.len() != names.len() {
            return Err(bad("expected the costs m=KIB,t=PASSES,p=LANES"));
        }
        for ((pair, name), value) in pairs.iter().zip(names).zip(&mut values) {
            let number = pair
                .strip_prefix(name)
                .and_then(|rest| rest.strip_prefix('='))
                .filter(|n| !n.is_empty() && n.len() <= 10 && n.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| bad("expected the costs m=KIB,t=PASSES,p=LANES"))?;
            *value = number.parse().map_err(|_| bad("a cost is out of range"))?;
        }
        let salt = data_encoding::BASE64_NOPAD.decode(salt.as_bytes()).map_err(|_| bad("the salt is not base64"))?;
        let [m_kib, t, p] = values;
        Self::new(m_kib, t, p, &salt)
    }

    fn check(&self) -> Result<(), KeyError> {
        let bad = |what: String| Err(KeyError::StoredKdf(what));
        if self.m_kib > Self::MAX_M_KIB {
            return bad(format!("m={} KiB is above the limit of {} KiB (1 GiB)", self.m_kib, Self::MAX_M_KIB));
        }
        if !(1..=Self::MAX_T).contains(&self.t) {
            return bad(format!("t={} is not between 1 and {}", self.t, Self::MAX_T));
        }
        if !(1..=Self::MAX_P).contains(&self.p) {
            return bad(format!("p={} is not between 1 and {}", self.p, Self::MAX_P));
        }
        if self.m_kib < 8 * self.p {
            return bad(format!("m={} KiB is below Argon2's minimum of 8 KiB per lane", self.m_kib));
        }
        if !(Self::SALT_LEN..=Self::MAX_SALT_LEN).contains(&self.salt.len()) {
            return bad(format!(
                "the salt is {} bytes, not {} to {}",
                self.salt.len(),
                Self::SALT_LEN,
                Self::MAX_SALT_LEN
            ));
        }
        Ok(())
    }

    /// Argon2id of `key` into a 32-byte master key. The 1 KiB blocks are allocated here (so
    /// a failure to allocate is an error, not an abort) and wiped before they are freed:
    /// they hold what the master key is computed from.
    fn stretch(&self, key: &[u8]) -> Result<Zeroizing<[u8; 32]>, KeyError> {
        use argon2::{Algorithm, Argon2, Block, Params, Version};
        let failed = |e: argon2::Error| KeyError::StoredKdf(e.to_string());
        let costs = Params::new(self.m_kib, self.t, self.p, Some(32)).map_err(failed)?;
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, costs);
        let blocks = argon2.params().block_count();
        let mut memory: Zeroizing<Vec<Block>> = Zeroizing::new(Vec::new());
        memory.try_reserve_exact(blocks).map_err(|_| KeyError::KdfMemory { kib: self.m_kib })?;
        memory.resize(blocks, Block::new());
        let mut master = Zeroizing::new([0u8; 32]);
        argon2
            .hash_password_into_with_memory(key, &self.salt, master.as_mut_slice(), memory.as_mut_slice())
            .map_err(failed)?;
        Ok(master)
    }
}

impl std::fmt::Display for KdfParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let salt = data_encoding::BASE64_NOPAD.encode(&self.salt);
        write!(f, "$argon2id$v=19$m={},t={},p={}${salt}", self.m_kib, self.t, self.p)
    }
}

impl Keys {
    /// Keys from a master key as it is (HKDF only): the key file's 256 random bits, or a
    /// configured key in a database made before Argon2id.
    pub fn direct(master: &[u8], origin: KeyOrigin) -> Result<Self, KeyError> {
        Self::expand(HKDF_DIRECT, master, origin)
    }

    /// Keys from a configured key stretched with Argon2id first.
    pub fn stretched(key: &[u8], params: &KdfParams, origin: KeyOrigin) -> Result<Self, KeyError> {
        let master = params.stretch(key)?;
        Self::expand(HKDF_STRETCHED, master.as_slice(), origin)
    }

    fn expand(domain: &[u8], master: &[u8], origin: KeyOrigin) -> Result<Self, KeyError> {
        let hk = Hkdf::<Sha256>::new(Some(domain), master);
        let mut seal_key = zeroize::Zeroizing::new([0u8; 32]);
        let mut code_mac = zeroize::Zeroizing::new([0u8; 32]);
        let mut check = [0u8; 8];
        // HKDF-Expand only fails for outputs over 255 * 32 bytes, never for these; but a
        // failure must not leave a key of zeros.
        for (info, out) in [
            (&b"totp secrets at rest"[..], seal_key.as_mut_slice()),
            (b"sent one-time codes", code_mac.as_mut_slice()),
            (b"key check value", &mut check[..]),
        ] {
            hk.expand(info, out).map_err(|_| KeyError::Derive)?;
        }
        let seal = Aes256Gcm::new(&(*seal_key).into());
        Ok(Self { seal, code_mac, check: data_encoding::HEXLOWER.encode(&check), origin })
    }

    /// A short value that identifies the key without revealing it.
    pub fn check_value(&self) -> &str {
        &self.check
    }

    /// The secret of `user`'s authenticator `authenticator`, encrypted: version, nonce,
    /// ciphertext and tag. (AES-GCM only fails for messages of gigabytes; the error is still
    /// one, never an empty ciphertext.)
    pub fn seal_secret(
        &self,
        user: &Username,
        authenticator: &str,
        secret: &SecretBytes,
    ) -> Result<Vec<u8>, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::fill(&mut nonce);
        let aad = secret_aad(user, authenticator);
        let payload = Payload { msg: secret.expose(), aad: &aad };
        let ciphertext = self.seal.encrypt(&Nonce::from(nonce), payload).map_err(|_| SealError)?;
        Ok([&[SEAL_VERSION_AUTHENTICATOR][..], &nonce, &ciphertext].concat())
    }

    /// Opens a sealed secret: one bound to the user and the authenticator, or one sealed
    /// before authenticators had ids (bound to the user only; see [`Self::is_user_bound`]).
    pub fn open_secret(&self, user: &Username, authenticator: &str, sealed: &[u8]) -> Result<SecretBytes, UnsealError> {
        let (&version, rest) = sealed.split_first().ok_or(UnsealError)?;
        let aad = match version {
            SEAL_VERSION_AUTHENTICATOR => secret_aad(user, authenticator),
            SEAL_VERSION => user.as_str().as_bytes().to_vec(),
            _ => return Err(UnsealError),
        };
        if rest.len() < NONCE_LEN {
            return Err(UnsealError);
        }
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| UnsealError)?;
        let payload = Payload { msg: ciphertext, aad: &aad };
        self.seal.decrypt(&Nonce::from(nonce), payload).map(SecretBytes::new).map_err(|_| UnsealError)
    }

    /// A sent code sealed for `user`, so that a resend can repeat it; bound to the user and
    /// to its use (a sealed code is not a sealed secret).
    pub fn seal_code(&self, user: &Username, code: &str) -> Result<Vec<u8>, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::fill(&mut nonce);
        let aad = code_aad(user);
        let payload = Payload { msg: code.as_bytes(), aad: &aad };
        let ciphertext = self.seal.encrypt(&Nonce::from(nonce), payload).map_err(|_| SealError)?;
        Ok([&[SEAL_VERSION][..], &nonce, &ciphertext].concat())
    }

    pub fn open_code(&self, user: &Username, sealed: &[u8]) -> Result<zeroize::Zeroizing<String>, UnsealError> {
        let (&version, rest) = sealed.split_first().ok_or(UnsealError)?;
        if version != SEAL_VERSION || rest.len() < NONCE_LEN {
            return Err(UnsealError);
        }
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| UnsealError)?;
        let aad = code_aad(user);
        let plain =
            self.seal.decrypt(&Nonce::from(nonce), Payload { msg: ciphertext, aad: &aad }).map_err(|_| UnsealError)?;
        String::from_utf8(plain).map(zeroize::Zeroizing::new).map_err(|_| UnsealError)
    }

    /// A code sealed for one delivery job of `user`: bound to the user, the job and its use.
    pub fn seal_job_code(&self, user: &Username, job: &str, code: &str) -> Result<Vec<u8>, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::fill(&mut nonce);
        let aad = job_aad(user, job);
        let ciphertext = self
            .seal
            .encrypt(&Nonce::from(nonce), Payload { msg: code.as_bytes(), aad: &aad })
            .map_err(|_| SealError)?;
        Ok([&[SEAL_VERSION][..], &nonce, &ciphertext].concat())
    }

    pub fn open_job_code(
        &self,
        user: &Username,
        job: &str,
        sealed: &[u8],
    ) -> Result<zeroize::Zeroizing<String>, UnsealError> {
        let (&version, rest) = sealed.split_first().ok_or(UnsealError)?;
        if version != SEAL_VERSION || rest.len() < NONCE_LEN {
            return Err(UnsealError);
        }
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| UnsealError)?;
        let aad = job_aad(user, job);
        let plain =
            self.seal.decrypt(&Nonce::from(nonce), Payload { msg: ciphertext, aad: &aad }).map_err(|_| UnsealError)?;
        String::from_utf8(plain).map(zeroize::Zeroizing::new).map_err(|_| UnsealError)
    }

    /// The stored form of a sent code. The username is mixed in so equal codes of two users
    /// hash differently.
    pub fn hash_code(&self, user: &Username, code: &str) -> Result<Vec<u8>, KeyError> {
        self.mac(&[], user, code)
    }

    /// The stored form of a recovery code (normalised: see `crate::recovery`), under its
    /// own label, so that it can never equal a sent code's hash.
    pub fn hash_recovery_code(&self, user: &Username, code: &str) -> Result<Vec<u8>, KeyError> {
        self.mac(b"recovery code\0", user, code)
    }

    fn mac(&self, label: &[u8], user: &Username, code: &str) -> Result<Vec<u8>, KeyError> {
        // HMAC takes keys of any length, so this never fails; if it did, no hash would do.
        let mut mac =
            <Hmac<Sha256> as KeyInit>::new_from_slice(self.code_mac.as_slice()).map_err(|_| KeyError::Derive)?;
        mac.update(label);
        mac.update(user.as_str().as_bytes());
        mac.update(&[0]);
        mac.update(code.as_bytes());
        Ok(mac.finalize().into_bytes().to_vec())
    }
}

/// The associated data of a sealed authenticator secret: its purpose, the user, the id.
fn secret_aad(user: &Username, authenticator: &str) -> Vec<u8> {
    [&b"authenticator\0"[..], user.as_str().as_bytes(), b"\0", authenticator.as_bytes()].concat()
}

/// The associated data of a delivery job's sealed code: its purpose, the user, the job.
fn job_aad(user: &Username, job: &str) -> Vec<u8> {
    [&b"delivery job\0"[..], user.as_str().as_bytes(), b"\0", job.as_bytes()].concat()
}

/// The associated data of a sealed sent code: its purpose, then the user.
fn code_aad(user: &Username) -> Vec<u8> {
    [&b"sent code\0"[..], user.as_str().as_bytes()].concat()
}

fn read_or_create_key_file(path: &Path) -> Result<(Zeroizing<Vec<u8>>, KeyOrigin), KeyError> {
    let shown = path.display().to_string();
    let io_err = |source| KeyError::KeyFile { path: shown.clone(), source };
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let text = Zeroizing::new(text);
            let bytes = data_encoding::HEXLOWER_PERMISSIVE
                .decode(text.trim().as_bytes())
                .ok()
                .filter(|b| b.len() == 32)
                .ok_or_else(|| KeyError::BadKeyFile { path: shown.clone() })?;
            Ok((Zeroizing::new(bytes), KeyOrigin::ExistingFile))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent() {
                crate::files::ensure_private_dir(dir).map_err(io_err)?;
            }
            let mut key = Zeroizing::new([0u8; 32]);
            rand::fill(key.as_mut_slice());
            match crate::files::create_private(path) {
                Ok(mut file) => {
                    let written = file
                        .write_all(Zeroizing::new(data_encoding::HEXLOWER.encode(key.as_slice())).as_bytes())
                        .and_then(|()| file.write_all(b"\n"))
                        .and_then(|()| file.sync_all());
                    if let Err(e) = written {
                        // A full disk: leave no half-written key behind to fail the next start
                        // (if even that fails, the next start says the file is bad).
                        let _ = std::fs::remove_file(path);
                        return Err(io_err(e));
                    }
                    Ok((Zeroizing::new(key.to_vec()), KeyOrigin::GeneratedFile))
                }
                // Another process (the CLI, a second server) created it first: use theirs.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => read_or_create_key_file(path),
                Err(e) => Err(io_err(e)),
            }
        }
        Err(e) => Err(io_err(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str) -> Username {
        Username::parse(name).unwrap()
    }

    #[test]
    fn sealed_secrets_round_trip_and_are_bound_to_their_user() {
        let keys = Keys::direct(b"a key", KeyOrigin::Configured).unwrap();
        let secret = SecretBytes::generate();
        let sealed = keys.seal_secret(&user("dair"), "a1", &secret).unwrap();
        assert!(!sealed.windows(secret.expose().len()).any(|w| w == secret.expose()));
        assert_eq!(keys.open_secret(&user("dair"), "a1", &sealed).unwrap(), secret);
        assert!(keys.open_secret(&user("bob"), "a1", &sealed).is_err());
        assert!(
            Keys::direct(b"another key", KeyOrigin::Configured)
                .unwrap()
                .open_secret(&user("dair"), "a1", &sealed)
                .is_err()
        );
        assert_ne!(sealed, keys.seal_secret(&user("dair"), "a1", &secret).unwrap(), "nonces are fresh");
        assert!(keys.open_secret(&user("dair"), "a2", &sealed).is_err(), "bound to the authenticator");
        assert_ne!(sealed[0], USER_BOUND_SEAL);
    }

    #[test]
    fn any_flipped_bit_is_detected() {
        let keys = Keys::direct(b"k", KeyOrigin::Configured).unwrap();
        let sealed = keys.seal_secret(&user("dair"), "a1", &SecretBytes::generate()).unwrap();
        for i in 0..sealed.len() * 8 {
            let mut bad = sealed.clone();
            bad[i / 8] ^= 1 << (i % 8);
            assert!(keys.open_secret(&user("dair"), "a1", &bad).is_err(), "bit {i}");
        }
        assert!(keys.open_secret(&user("dair"), "a1", &[]).is_err());
    }

    #[test]
    fn code_hashes_depend_on_key_user_and_code() {
        let keys = Keys::direct(b"k", KeyOrigin::Configured).unwrap();
        let h = keys.hash_code(&user("dair"), "123456").unwrap();
        assert_eq!(h, keys.hash_code(&user("dair"), "123456").unwrap());
        assert_ne!(h, keys.hash_code(&user("bob"), "123456").unwrap());
        assert_ne!(h, keys.hash_code(&user("dair"), "123457").unwrap());
        assert_ne!(h, Keys::direct(b"k2", KeyOrigin::Configured).unwrap().hash_code(&user("dair"), "123456").unwrap());
        assert_ne!(keys.check_value(), Keys::direct(b"k2", KeyOrigin::Configured).unwrap().check_value());
    }

    #[test]
    fn key_file_is_created_once_with_owner_only_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/secret.key");
        let first = MasterKey::load(None, &path).unwrap();
        assert_eq!(first.origin, KeyOrigin::GeneratedFile);
        let second = MasterKey::load(None, &path).unwrap();
        assert_eq!(second.origin, KeyOrigin::ExistingFile);
        assert_eq!(first.expose(), second.expose());
        assert_eq!(first.expose().len(), 32);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(&path, "short").unwrap();
        assert!(matches!(MasterKey::load(None, &path), Err(KeyError::BadKeyFile { .. })));
    }

    /// The rows the version before Argon2id wrote (tests/fixtures/legacy-v1.json).
    fn legacy() -> serde_json::Value {
        serde_json::from_str(include_str!("../tests/fixtures/legacy-v1.json")).unwrap()
    }

    fn hex(value: &serde_json::Value) -> Vec<u8> {
        data_encoding::HEXLOWER.decode(value.as_str().unwrap().as_bytes()).unwrap()
    }

    /// Known answers of the HKDF-only derivation, as the version before Argon2id computed
    /// them: legacy databases (and every key-file database) must keep opening.
    #[test]
    fn the_direct_derivation_gives_the_check_values_and_opens_the_secrets_of_v1_databases() {
        let v1 = legacy();
        let placeholder = &v1["placeholder_key_check"];
        let keys = Keys::direct(placeholder["secret_key"].as_str().unwrap().as_bytes(), KeyOrigin::Configured);
        assert_eq!(keys.unwrap().check_value(), "76c7c4a00f8e51d9");
        assert_eq!(placeholder["key_check"], "76c7c4a00f8e51d9");

        let configured = MasterKey::configured(v1["secret_key"]["secret_key"].as_str().unwrap());
        let file_key = hex(&v1["key_file"]["key_file"]);
        let from_file = MasterKey { bytes: Zeroizing::new(file_key), origin: KeyOrigin::ExistingFile };
        for (master, db, check) in
            [(configured, &v1["secret_key"], "c20c6077b2d9fb63"), (from_file, &v1["key_file"], "7dcaef5fc6c7361b")]
        {
            let keys = master.keys(None).unwrap();
            assert_eq!(keys.check_value(), check);
            assert_eq!(db["key_check"], check);
            for row in db["users"].as_array().unwrap() {
                let name = user(row["username"].as_str().unwrap());
                let secret = keys.open_secret(&name, "a1", &hex(&row["sealed_secret"])).unwrap();
                assert_eq!(secret.to_base32(), row["totp_secret"].as_str().unwrap());
            }
        }
        let alice = &v1["secret_key"]["sent_codes"][0];
        let keys = Keys::direct(v1["secret_key"]["secret_key"].as_str().unwrap().as_bytes(), KeyOrigin::Configured);
        let code = v1["secret_key"]["sent_code"].as_str().unwrap();
        assert_eq!(keys.unwrap().hash_code(&user("alice"), code).unwrap(), hex(&alice["code_hash"]));
    }

    /// Small costs: what is tested here is the plumbing, not the cost.
    fn cheap(salt: &[u8]) -> KdfParams {
        KdfParams::new(64, 1, 1, salt).unwrap()
    }

    #[test]
    fn stretched_keys_depend_on_key_and_salt_and_differ_from_the_direct_ones() {
        let salt = [7u8; 16];
        let keys = Keys::stretched(b"a key", &cheap(&salt), KeyOrigin::Configured).unwrap();
        let again = Keys::stretched(b"a key", &cheap(&salt), KeyOrigin::Configured).unwrap();
        assert_eq!(keys.check_value(), again.check_value());
        let sealed = keys.seal_secret(&user("dair"), "a1", &SecretBytes::generate()).unwrap();
        assert!(again.open_secret(&user("dair"), "a1", &sealed).is_ok(), "same key and salt: same seal key");

        let others = [
            Keys::stretched(b"a key", &cheap(&[8u8; 16]), KeyOrigin::Configured).unwrap(),
            Keys::stretched(b"a kez", &cheap(&salt), KeyOrigin::Configured).unwrap(),
            Keys::stretched(b"a key", &KdfParams::new(64, 2, 1, &salt).unwrap(), KeyOrigin::Configured).unwrap(),
            Keys::stretched(b"a key", &KdfParams::new(128, 1, 1, &salt).unwrap(), KeyOrigin::Configured).unwrap(),
            Keys::direct(b"a key", KeyOrigin::Configured).unwrap(),
        ];
        for other in &others {
            assert_ne!(other.check_value(), keys.check_value());
            assert!(other.open_secret(&user("dair"), "a1", &sealed).is_err());
            assert_ne!(
                other.hash_code(&user("dair"), "123456").unwrap(),
                keys.hash_code(&user("dair"), "123456").unwrap()
            );
        }
    }

    /// A known answer at the default costs: a new database's derivation must not change
    /// under it. Both values were computed independently: the master key with argon2-cffi's
    /// `hash_secret_raw` (Argon2id, v19, 64 MiB, t=3, p=1, 32 bytes), the check value by
    /// HKDF-SHA256 written out with Python's `hmac`.
    const MASTER_KAT: &str = "6d6d6e9debe7d558e67f49af76225ad388af8b1a3559bf05da4d3d222b19f877";
    const CHECK_KAT: &str = "c189d3b4937c1d76";

    #[test]
    fn the_default_costs_give_the_known_master_key_and_check_value() {
        let salt: Vec<u8> = (0..16).collect();
        let params = KdfParams::new(KdfParams::M_KIB, KdfParams::T, KdfParams::P, &salt).unwrap();
        assert_eq!(params.to_string(), "$argon2id$v=19$m=65536,t=3,p=1$AAECAwQFBgcICQoLDA0ODw");
        let master = params.stretch(b"your-secret-key").unwrap();
        assert_eq!(data_encoding::HEXLOWER.encode(master.as_slice()), MASTER_KAT);
        let keys = MasterKey::configured("your-secret-key").keys(Some(&params)).unwrap();
        assert_eq!(keys.check_value(), CHECK_KAT);
        assert_ne!(keys.check_value(), "76c7c4a00f8e51d9", "the v1 check value of the same key");
    }

    #[test]
    fn recorded_parameters_are_read_back_and_anything_else_is_refused() {
        let generated = KdfParams::generate();
        assert_eq!((generated.m_kib, generated.t, generated.p, generated.salt().len()), (65536, 3, 1, 16));
        assert_eq!(KdfParams::parse(&generated.to_string()).unwrap(), generated);
        assert_ne!(KdfParams::generate().salt(), generated.salt(), "salts are random");
        let raised = KdfParams::parse("$argon2id$v=19$m=262144,t=4,p=2$AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8");
        let raised = raised.unwrap();
        assert_eq!((raised.m_kib, raised.t, raised.p, raised.salt().len()), (262_144, 4, 2, 32));

        let salt = "AAECAwQFBgcICQoLDA0ODw";
        let refused = [
            String::new(),
            "hkdf".into(),
            format!("argon2id$v=19$m=65536,t=3,p=1${salt}"),
            format!("$argon2i$v=19$m=65536,t=3,p=1${salt}"),
            format!("$argon2d$v=19$m=65536,t=3,p=1${salt}"),
            format!("$argon2id$v=16$m=65536,t=3,p=1${salt}"),
            format!("$argon2id$m=65536,t=3,p=1${salt}"),
            "$argon2id$v=19$m=65536,t=3,p=1".into(),
            format!("$argon2id$v=19$m=65536,t=3,p=1${salt}$hash"),
            format!("$argon2id$v=19$t=3,m=65536,p=1${salt}"),
            format!("$argon2id$v=19$m=65536,t=3${salt}"),
            format!("$argon2id$v=19$m=65536,t=3,p=1,x=1${salt}"),
            format!("$argon2id$v=19$m= 65536,t=3,p=1${salt}"),
            format!("$argon2id$v=19$m=+65536,t=3,p=1${salt}"),
            format!("$argon2id$v=19$m=-1,t=3,p=1${salt}"),
            format!("$argon2id$v=19$m=,t=3,p=1${salt}"),
            // 100 GiB, and past u32: refused before anything is allocated
            format!("$argon2id$v=19$m=104857600,t=3,p=1${salt}"),
            format!("$argon2id$v=19$m=1048577,t=3,p=1${salt}"),
            format!("$argon2id$v=19$m=4294967295,t=3,p=1${salt}"),
            format!("$argon2id$v=19$m=99999999999,t=3,p=1${salt}"),
            format!("$argon2id$v=19$m=65536,t=0,p=1${salt}"),
            format!("$argon2id$v=19$m=65536,t=33,p=1${salt}"),
            format!("$argon2id$v=19$m=65536,t=3,p=0${salt}"),
            format!("$argon2id$v=19$m=65536,t=3,p=17${salt}"),
            format!("$argon2id$v=19$m=8,t=3,p=2${salt}"),
            "$argon2id$v=19$m=65536,t=3,p=1$AAECAwQFBgcICQoLDA0O".into(), // 15 bytes
            "$argon2id$v=19$m=65536,t=3,p=1$AAECAwQFBgcICQoLDA0ODw==".into(), // padded
            "$argon2id$v=19$m=65536,t=3,p=1$AAECAwQFBgcICQoLDA0ODx".into(), // trailing bits
            "$argon2id$v=19$m=65536,t=3,p=1$AAECAwQFBgc*CQoLDA0ODw".into(),
        ];
        for recorded in &refused {
            let e = KdfParams::parse(recorded).unwrap_err();
            assert!(matches!(e, KeyError::StoredKdf(_)), "{recorded}: {e}");
        }
        let huge = KdfParams::parse(&format!("$argon2id$v=19$m=104857600,t=3,p=1${salt}")).unwrap_err();
        assert!(huge.to_string().contains("above the limit of 1048576 KiB (1 GiB)"), "{huge}");
        assert!(KdfParams::parse(&format!("$argon2id$v=19$m=1048576,t=1,p=1${salt}")).is_ok(), "1 GiB is allowed");
    }

    #[test]
    fn sealed_codes_round_trip_for_their_user_only() {
        let keys = Keys::direct(b"k", KeyOrigin::Configured).unwrap();
        let alice = Username::parse("alice").unwrap();
        let sealed = keys.seal_code(&alice, "123456").unwrap();
        assert_eq!(keys.open_code(&alice, &sealed).unwrap().as_str(), "123456");
        assert!(keys.open_code(&Username::parse("bob").unwrap(), &sealed).is_err());
        let as_secret = keys.seal_secret(&alice, "a1", &SecretBytes::new(b"123456".to_vec())).unwrap();
        assert!(keys.open_code(&alice, &as_secret).is_err(), "a sealed secret is not a sealed code");
        assert!(!sealed.windows(6).any(|w| w == b"123456"));
    }
}
