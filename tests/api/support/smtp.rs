//! Starts `smtp_server.py` (aiosmtpd) and reads what it received.
//!
//! The Python comes from `MFA_TEST_PYTHON` (set by `scripts/test`, which installs aiosmtpd
//! and trustme into a virtualenv), else `python3`.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub const SENDER: &str = "mfa@example.com";
pub const LOGIN: &str = "mfa@example.com";
pub const PASSWORD: &str = "smtp-password-7f3a9c";

pub struct SmtpServer {
    _child: Child,
    pub port: u16,
    pub mode: &'static str,
    pub ca_file: Option<PathBuf>,
    auth: bool,
    out: PathBuf,
    _dir: TempDir,
}

impl SmtpServer {
    /// `mode`: plain, starttls or tls. `extra`: more arguments (`--fail-first N`, ...).
    pub async fn start(mode: &'static str, auth: bool, extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("received.jsonl");
        let python = std::env::var("MFA_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/api/support/smtp_server.py");
        let mut cmd = Command::new(&python);
        cmd.arg(script).args(["--mode", mode, "--out"]).arg(&out).arg("--cert-dir").arg(dir.path()).args(extra);
        if auth {
            cmd.args(["--user", LOGIN, "--password", PASSWORD]);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {python}: {e}; run ./scripts/test, which installs aiosmtpd"));
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let ready = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .expect("the SMTP server starts within 20 s")
            .unwrap()
            .unwrap_or_else(|| panic!("the SMTP server exited; is aiosmtpd installed? run ./scripts/test"));
        let fields: Vec<&str> = ready.split(' ').collect();
        assert_eq!(fields[0], "READY", "{ready}");
        let ca_file = (fields[2] != "-").then(|| PathBuf::from(fields[2]));
        Self { _child: child, port: fields[1].parse().unwrap(), mode, ca_file, auth, out, _dir: dir }
    }

    /// The variables that point the email channel at this server.
    pub fn env(&self) -> Vec<(String, String)> {
        let mut vars = vec![
            ("EMAIL_SMTP_SERVER".into(), "127.0.0.1".into()),
            ("EMAIL_SMTP_PORT".into(), self.port.to_string()),
            ("EMAIL_SMTP_SECURITY".into(), if self.mode == "plain" { "none" } else { self.mode }.to_string()),
            ("EMAIL_SENDER".into(), SENDER.into()),
        ];
        if self.auth {
            vars.push(("EMAIL_PASSWORD".into(), PASSWORD.into()));
        }
        if let Some(ca) = &self.ca_file {
            vars.push(("EMAIL_SMTP_CA_FILE".into(), ca.display().to_string()));
        }
        vars
    }

    /// Every message received so far, oldest first.
    pub fn received(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}
