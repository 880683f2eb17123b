//! Reading the environment: `.env` entries (python-dotenv's grammar, `super::dotenv`)
//! overlaid by the process environment.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::PathBuf;

use super::dotenv;
use super::error::ConfigErrors;

/// Where a variable's value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Default,
    DotenvFile,
    Environment,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Default => "default",
            Self::DotenvFile => ".env",
            Self::Environment => "environment",
        })
    }
}

/// The raw variables: `.env` entries overlaid by the process environment.
#[derive(Debug, Default, Clone)]
pub struct EnvMap {
    values: BTreeMap<String, (String, Source)>,
    /// Names the `.env` file defines, whatever the environment put on top.
    dotenv_keys: BTreeSet<String>,
    /// Line numbers of `.env` lines that could not be parsed.
    pub bad_dotenv_lines: Vec<usize>,
    /// The `.env` file that was read, if any.
    pub dotenv_path: Option<PathBuf>,
}

impl EnvMap {
    /// Reads `MFA_ENV_FILE` (which must exist) or `./.env` (which may not), then the process
    /// environment on top.
    pub fn load() -> Result<Self, ConfigErrors> {
        let process: Vec<(String, String)> =
            std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))).collect();
        let explicit = process.iter().find(|(k, _)| k == "MFA_ENV_FILE").map(|(_, v)| PathBuf::from(v));
        let path = explicit.clone().unwrap_or_else(|| PathBuf::from(".env"));
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => Some(text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && explicit.is_none() => None,
            Err(e) => {
                return Err(ConfigErrors::one("MFA_ENV_FILE", format!("cannot read {}: {e}", path.display())));
            }
        };
        let mut map = Self::from_dotenv_text(text.as_deref().unwrap_or(""), process);
        map.dotenv_path = text.map(|_| path);
        Ok(map)
    }

    /// The text of a `.env` file under `environment` (which wins, and answers `${NAME}`).
    pub fn from_dotenv_text(text: &str, environment: Vec<(String, String)>) -> Self {
        let lookup = |name: &str| environment.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        let file = dotenv::parse(text, &lookup);
        let mut map = Self::from_pairs(file.entries, environment.iter().cloned());
        map.bad_dotenv_lines = file.bad_lines;
        map
    }

    /// Builds a map from `.env` entries and environment entries; the latter win.
    pub fn from_pairs(
        dotenv: impl IntoIterator<Item = (String, String)>,
        environment: impl IntoIterator<Item = (String, String)>,
    ) -> Self {
        let mut values = BTreeMap::new();
        let mut dotenv_keys = BTreeSet::new();
        for (k, v) in dotenv {
            dotenv_keys.insert(k.clone());
            values.insert(k, (v, Source::DotenvFile));
        }
        for (k, v) in environment {
            values.insert(k, (v, Source::Environment));
        }
        Self { values, dotenv_keys, ..Self::default() }
    }

    /// `key` set as if by the environment (a command-line option that stands for it).
    pub fn set(&mut self, key: &str, value: String) {
        self.values.insert(key.to_string(), (value, Source::Environment));
    }

    /// A variable's value; an empty value counts as unset, as with python-dotenv's `or` idiom.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(|(v, _)| v.as_str()).filter(|v| !v.trim().is_empty())
    }

    pub fn source(&self, key: &str) -> Source {
        match self.values.get(key) {
            Some((v, source)) if !v.trim().is_empty() => *source,
            _ => Source::Default,
        }
    }

    /// Whether the `.env` file names this variable (the environment may override its value).
    pub fn in_dotenv(&self, key: &str) -> bool {
        self.dotenv_keys.contains(key)
    }

    pub(crate) fn keys(&self) -> impl Iterator<Item = &str> {
        self.values.keys().map(String::as_str)
    }
}
