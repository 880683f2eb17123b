//! What a bad configuration is reported as: every problem, each naming its variable.

use std::fmt;

use crate::telemetry::printable;

/// One bad variable. The reason never contains a secret's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub var: String,
    pub reason: String,
}

impl ConfigError {
    /// What every configuration error must be: it names a variable and says what is wrong.
    /// The catch-all `configuration` entry (a value failed without saying why) is a bug.
    pub fn is_clear(&self) -> bool {
        !self.var.trim().is_empty() && self.var != "configuration" && !self.reason.trim().is_empty()
    }
}

/// Every problem found in the configuration, so an operator can fix them in one go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    pub(crate) fn one(var: &str, reason: impl Into<String>) -> Self {
        Self(vec![ConfigError { var: var.into(), reason: reason.into() }])
    }
}

/// A reason may quote the bad value: its control characters are escaped, so that each
/// problem stays one line of the terminal or the log.
const MAX_REASON_CHARS: usize = 2_000;

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", printable(&self.var, 200), printable(&self.reason, MAX_REASON_CHARS))
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.as_slice() {
            [one] => write!(f, "invalid configuration: {one}"),
            many => {
                write!(f, "invalid configuration ({} problems):", many.len())?;
                for e in many {
                    write!(f, "\n  {e}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for ConfigErrors {}
