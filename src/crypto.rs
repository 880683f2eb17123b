//! Keys derived from `SECRET_KEY`, and what they protect:
//! - TOTP secrets at rest, sealed with AES-256-GCM (random 96-bit nonce per seal, the
//!   username as associated data so a sealed secret cannot be moved to another user);
//! - one-time codes sent by `/request-otp`, stored only as HMAC-SHA256(username, code);
//! - a key check value kept in the database, so a changed `SECRET_KEY` is caught at
//!   start-up instead of failing every verification.
//!
//! The three keys come from HKDF-SHA256 (RFC 5869) over the configured key. Without a
//! configured key a random 256-bit one is generated once into `data/secret.key` (mode 0600).

use std::io::Write;
use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::domain::Username;
use crate::otp::SecretBytes;

const SEAL_VERSION: u8 = 1;
const NONCE_LEN: usize = 12;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot derive the encryption keys from the configured key")]
    Derive,
    #[error("cannot read or create the key file {path}: {source}")]
    KeyFile { path: String, source: std::io::Error },
    #[error("the key file {path} must hold 64 hex characters")]
    BadKeyFile { path: String },
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

impl Keys {
    /// Derives the keys from the configured key, or from the key file (created if missing).
    pub fn load(configured: Option<&str>, key_file: &Path) -> Result<Self, KeyError> {
        match configured {
            Some(key) => Self::derive(key.as_bytes(), KeyOrigin::Configured),
            None => {
                let (bytes, origin) = read_or_create_key_file(key_file)?;
                Self::derive(&bytes, origin)
            }
        }
    }

    pub fn derive(master: &[u8], origin: KeyOrigin) -> Result<Self, KeyError> {
        let hk = Hkdf::<Sha256>::new(Some(b"mfa-server/v1"), master);
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

    /// The secret encrypted for `user`: version, nonce, ciphertext and tag. (AES-GCM only
    /// fails for messages of gigabytes; the error is still one, never an empty ciphertext.)
    pub fn seal_secret(&self, user: &Username, secret: &SecretBytes) -> Result<Vec<u8>, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::fill(&mut nonce);
        let payload = Payload { msg: secret.expose(), aad: user.as_str().as_bytes() };
        let ciphertext = self.seal.encrypt(&Nonce::from(nonce), payload).map_err(|_| SealError)?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + ciphertext.len());
        out.push(SEAL_VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ciphertext);
        Ok(out)
    }

    pub fn open_secret(&self, user: &Username, sealed: &[u8]) -> Result<SecretBytes, UnsealError> {
        let (&version, rest) = sealed.split_first().ok_or(UnsealError)?;
        if version != SEAL_VERSION || rest.len() < NONCE_LEN {
            return Err(UnsealError);
        }
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| UnsealError)?;
        let payload = Payload { msg: ciphertext, aad: user.as_str().as_bytes() };
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

    /// The stored form of a sent code. The username is mixed in so equal codes of two users
    /// hash differently.
    pub fn hash_code(&self, user: &Username, code: &str) -> Result<Vec<u8>, KeyError> {
        // HMAC takes keys of any length, so this never fails; if it did, no hash would do.
        let mut mac =
            <Hmac<Sha256> as KeyInit>::new_from_slice(self.code_mac.as_slice()).map_err(|_| KeyError::Derive)?;
        mac.update(user.as_str().as_bytes());
        mac.update(&[0]);
        mac.update(code.as_bytes());
        Ok(mac.finalize().into_bytes().to_vec())
    }
}

/// The associated data of a sealed sent code: its purpose, then the user.
fn code_aad(user: &Username) -> Vec<u8> {
    [&b"sent code\0"[..], user.as_str().as_bytes()].concat()
}

fn read_or_create_key_file(path: &Path) -> Result<(Vec<u8>, KeyOrigin), KeyError> {
    let shown = path.display().to_string();
    let io_err = |source| KeyError::KeyFile { path: shown.clone(), source };
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let bytes = data_encoding::HEXLOWER_PERMISSIVE
                .decode(text.trim().as_bytes())
                .ok()
                .filter(|b| b.len() == 32)
                .ok_or_else(|| KeyError::BadKeyFile { path: shown.clone() })?;
            Ok((bytes, KeyOrigin::ExistingFile))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent() {
                crate::files::ensure_private_dir(dir).map_err(io_err)?;
            }
            let mut key = [0u8; 32];
            rand::fill(&mut key);
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            match options.open(path) {
                Ok(mut file) => {
                    let written = file
                        .write_all(data_encoding::HEXLOWER.encode(&key).as_bytes())
                        .and_then(|()| file.write_all(b"\n"))
                        .and_then(|()| file.sync_all());
                    if let Err(e) = written {
                        // A full disk: leave no half-written key behind to fail the next start
                        // (if even that fails, the next start says the file is bad).
                        let _ = std::fs::remove_file(path);
                        return Err(io_err(e));
                    }
                    Ok((key.to_vec(), KeyOrigin::GeneratedFile))
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
        let keys = Keys::derive(b"a key", KeyOrigin::Configured).unwrap();
        let secret = SecretBytes::generate();
        let sealed = keys.seal_secret(&user("dair"), &secret).unwrap();
        assert!(!sealed.windows(secret.expose().len()).any(|w| w == secret.expose()));
        assert_eq!(keys.open_secret(&user("dair"), &sealed).unwrap(), secret);
        assert!(keys.open_secret(&user("bob"), &sealed).is_err());
        assert!(
            Keys::derive(b"another key", KeyOrigin::Configured).unwrap().open_secret(&user("dair"), &sealed).is_err()
        );
        assert_ne!(sealed, keys.seal_secret(&user("dair"), &secret).unwrap(), "nonces are fresh");
    }

    #[test]
    fn any_flipped_bit_is_detected() {
        let keys = Keys::derive(b"k", KeyOrigin::Configured).unwrap();
        let sealed = keys.seal_secret(&user("dair"), &SecretBytes::generate()).unwrap();
        for i in 0..sealed.len() * 8 {
            let mut bad = sealed.clone();
            bad[i / 8] ^= 1 << (i % 8);
            assert!(keys.open_secret(&user("dair"), &bad).is_err(), "bit {i}");
        }
        assert!(keys.open_secret(&user("dair"), &[]).is_err());
    }

    #[test]
    fn code_hashes_depend_on_key_user_and_code() {
        let keys = Keys::derive(b"k", KeyOrigin::Configured).unwrap();
        let h = keys.hash_code(&user("dair"), "123456").unwrap();
        assert_eq!(h, keys.hash_code(&user("dair"), "123456").unwrap());
        assert_ne!(h, keys.hash_code(&user("bob"), "123456").unwrap());
        assert_ne!(h, keys.hash_code(&user("dair"), "123457").unwrap());
        assert_ne!(h, Keys::derive(b"k2", KeyOrigin::Configured).unwrap().hash_code(&user("dair"), "123456").unwrap());
        assert_ne!(keys.check_value(), Keys::derive(b"k2", KeyOrigin::Configured).unwrap().check_value());
    }

    #[test]
    fn key_file_is_created_once_with_owner_only_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/secret.key");
        let first = Keys::load(None, &path).unwrap();
        assert_eq!(first.origin, KeyOrigin::GeneratedFile);
        let second = Keys::load(None, &path).unwrap();
        assert_eq!(second.origin, KeyOrigin::ExistingFile);
        assert_eq!(first.check_value(), second.check_value());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(&path, "short").unwrap();
        assert!(matches!(Keys::load(None, &path), Err(KeyError::BadKeyFile { .. })));
    }

    #[test]
    fn sealed_codes_round_trip_for_their_user_only() {
        let keys = Keys::derive(b"k", KeyOrigin::Configured).unwrap();
        let alice = Username::parse("alice").unwrap();
        let sealed = keys.seal_code(&alice, "123456").unwrap();
        assert_eq!(keys.open_code(&alice, &sealed).unwrap().as_str(), "123456");
        assert!(keys.open_code(&Username::parse("bob").unwrap(), &sealed).is_err());
        let as_secret = keys.seal_secret(&alice, &SecretBytes::new(b"123456".to_vec())).unwrap();
        assert!(keys.open_code(&alice, &as_secret).is_err(), "a sealed secret is not a sealed code");
        assert!(!sealed.windows(6).any(|w| w == b"123456"));
    }
}
