//! Appends each message as one JSON line to a file (`data/notifications.log` by default), so
//! a developer can run the whole flow without a mail server. The file is created with mode
//! 0600: it holds live codes.

use std::io::Write;
use std::path::PathBuf;

use async_trait::async_trait;

use super::{Delivery, DeliveryError, FailureKind, Notifier, Why};
use crate::clock::{Clock, SystemClock};
use crate::domain::Channel;

/// One line of the file. Fields are declared in the order they are written.
#[derive(serde::Serialize)]
struct Line<'a> {
    channel: Channel,
    message: &'a str,
    recipient: &'a str,
    subject: &'a str,
    time: u64,
}

#[derive(Debug)]
pub struct FileNotifier {
    path: PathBuf,
    /// Serialises writers in this process so lines never interleave.
    lock: tokio::sync::Mutex<()>,
}

impl FileNotifier {
    pub fn new(path: PathBuf) -> Self {
        Self { path, lock: tokio::sync::Mutex::new(()) }
    }

    pub fn path(&self) -> &std::path::Path {
        &self.path
    }
}

#[async_trait]
impl Notifier for FileNotifier {
    fn name(&self) -> &'static str {
        "file"
    }

    async fn deliver(&self, delivery: &Delivery) -> Result<u32, DeliveryError> {
        let line = Line {
            channel: delivery.channel,
            message: &delivery.message,
            recipient: &delivery.recipient,
            subject: &delivery.subject,
            time: SystemClock.now(),
        };
        let line = serde_json::to_string(&line).map_err(|e| DeliveryError {
            kind: FailureKind::Permanent,
            why: Why::plain(format!("cannot encode the message: {e}")),
            attempts: 0,
        })?;
        let path = self.path.clone();
        let _guard = self.lock.lock().await;
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            if let Some(dir) = path.parent() {
                crate::files::ensure_private_dir(dir)?;
            }
            let mut options = std::fs::OpenOptions::new();
            options.create(true).append(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options.open(&path)?;
            file.write_all(format!("{line}\n").as_bytes())?;
            file.sync_data()
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|written| written.map_err(|e| e.to_string()))
        .map(|()| 1)
        .map_err(|e| DeliveryError {
            kind: FailureKind::Permanent,
            why: Why::with_upstream("cannot write the notifications file", &format!("{}: {e}", self.path.display())),
            attempts: 1,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn appends_one_json_line_per_delivery() {
        let dir = tempfile::tempdir().unwrap();
        let notifier = FileNotifier::new(dir.path().join("data/notifications.log"));
        for recipient in ["a@example.com", "b@example.com"] {
            let d = Delivery {
                channel: Channel::Email,
                recipient: recipient.into(),
                subject: "s".into(),
                message: "code 123456".into(),
            };
            notifier.deliver(&d).await.unwrap();
        }
        let text = std::fs::read_to_string(notifier.path()).unwrap();
        let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1]["recipient"], "b@example.com");
        assert_eq!(lines[0]["channel"], "email");
        assert_eq!(lines[0]["message"], "code 123456");
    }
}
