//! Appends each message as one JSON line to a file (`data/notifications.log` by default), so
//! a developer can run the whole flow without a mail server. The file is created with mode
//! 0600: it holds live codes.
//!
//! A line is on disk (fdatasync) before its delivery is answered, like a code an SMTP
//! server accepted. One writer thread takes every line waiting, appends them in one write
//! and syncs once for all of them (group commit): a sync each, in turn, held
//! `/request-otp` to about one code per fsync (2,600 a second, 3% of the ceiling in
//! bench/run). The file stays open between batches; when it was removed or renamed (a
//! developer clearing it, a log rotation), the next batch opens a new one at the path.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot};

use super::{Delivery, DeliveryError, FailureKind, Notifier, Sent, Why};
use crate::clock::{Clock, SystemClock};
use crate::domain::Channel;

/// Lines per write and sync, at most.
const MAX_BATCH: usize = 1024;

/// One line of the file. Fields are declared in the order they are written.
#[derive(serde::Serialize)]
struct Line<'a> {
    channel: Channel,
    message: &'a str,
    recipient: &'a str,
    subject: &'a str,
    time: u64,
}

/// A line for the writer thread, with where to say it is on disk.
type Append = (String, oneshot::Sender<Result<(), String>>);

#[derive(Debug)]
pub struct FileNotifier {
    path: PathBuf,
    /// The writer thread's queue; the thread ends when the notifier is dropped.
    lines: mpsc::Sender<Append>,
}

impl FileNotifier {
    pub fn new(path: PathBuf) -> Self {
        let (lines, queue) = mpsc::channel(4 * MAX_BATCH);
        let target = path.clone();
        // Should the thread not start, every delivery fails with "the writer has stopped".
        let _ =
            std::thread::Builder::new().name("notifications-file".into()).spawn(move || append_lines(&target, queue));
        Self { path, lines }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[async_trait]
impl Notifier for FileNotifier {
    fn name(&self) -> &'static str {
        "file"
    }

    async fn deliver(&self, delivery: &Delivery) -> Result<Sent, DeliveryError> {
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
        let (written, answer) = oneshot::channel();
        let stopped = || "the writer has stopped".to_string();
        let result = match self.lines.send((line, written)).await {
            Ok(()) => answer.await.unwrap_or_else(|_| Err(stopped())),
            Err(_) => Err(stopped()),
        };
        result.map(|()| Sent::after(1)).map_err(|e| DeliveryError {
            kind: FailureKind::Permanent,
            why: Why::with_upstream("cannot write the notifications file", &format!("{}: {e}", self.path.display())),
            attempts: 1,
        })
    }
}

/// The writer thread: every line waiting (up to [`MAX_BATCH`]) in one write and one sync.
fn append_lines(path: &Path, mut queue: mpsc::Receiver<Append>) {
    let mut file: Option<File> = None;
    while let Some(first) = queue.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH
            && let Ok(line) = queue.try_recv()
        {
            batch.push(line);
        }
        let mut bytes = Vec::with_capacity(batch.iter().map(|(line, _)| line.len() + 1).sum());
        for (line, _) in &batch {
            bytes.extend_from_slice(line.as_bytes());
            bytes.push(b'\n');
        }
        let written = current_file(path, &mut file).and_then(|f| {
            f.write_all(&bytes)?;
            f.sync_data()
        });
        if written.is_err() {
            file = None; // opened afresh for the next batch
        }
        let written = written.map_err(|e| e.to_string());
        for (_, reply) in batch {
            let _ = reply.send(written.clone());
        }
    }
}

/// The open file, if it is still the one at `path`; else a new one there.
fn current_file<'a>(path: &Path, file: &'a mut Option<File>) -> std::io::Result<&'a mut File> {
    if let Some(open) = file.as_ref()
        && !same_file(open, path)
    {
        *file = None;
    }
    match file {
        Some(open) => Ok(open),
        None => Ok(file.insert(open_for_append(path)?)),
    }
}

#[cfg(unix)]
fn same_file(open: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (open.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

#[cfg(not(unix))]
fn same_file(_: &File, path: &Path) -> bool {
    path.exists()
}

fn open_for_append(path: &Path) -> std::io::Result<File> {
    if let Some(dir) = path.parent() {
        crate::files::ensure_private_dir(dir)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
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

    fn delivery(n: usize) -> Delivery {
        Delivery {
            channel: Channel::Telegram,
            recipient: format!("{n}"),
            subject: "s".into(),
            message: format!("code {n:06}"),
        }
    }

    #[tokio::test]
    async fn parallel_deliveries_each_get_one_whole_line() {
        let dir = tempfile::tempdir().unwrap();
        let notifier = std::sync::Arc::new(FileNotifier::new(dir.path().join("notifications.log")));
        let mut tasks = tokio::task::JoinSet::new();
        for n in 0..500 {
            let notifier = notifier.clone();
            tasks.spawn(async move { notifier.deliver(&delivery(n)).await.map(|_| ()) });
        }
        while let Some(done) = tasks.join_next().await {
            done.unwrap().unwrap();
        }
        let text = std::fs::read_to_string(notifier.path()).unwrap();
        let mut seen: Vec<usize> = text
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["recipient"].as_str().unwrap().parse().unwrap()
            })
            .collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..500).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn a_removed_or_renamed_file_is_started_again_at_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notifications.log");
        let notifier = FileNotifier::new(path.clone());
        notifier.deliver(&delivery(1)).await.unwrap();
        std::fs::rename(&path, dir.path().join("notifications.log.1")).unwrap();
        notifier.deliver(&delivery(2)).await.unwrap();
        std::fs::remove_file(&path).unwrap();
        notifier.deliver(&delivery(3)).await.unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 1);
        assert!(text.contains("code 000003"));
        let rotated = std::fs::read_to_string(dir.path().join("notifications.log.1")).unwrap();
        assert!(rotated.contains("code 000001") && !rotated.contains("code 000002"));
    }

    #[tokio::test]
    async fn a_file_that_cannot_be_written_fails_the_delivery_and_the_next_one_tries_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notifications.log");
        std::fs::create_dir(&path).unwrap(); // a directory where the file should be
        let notifier = FileNotifier::new(path.clone());
        let failed = notifier.deliver(&delivery(1)).await.unwrap_err();
        assert_eq!(failed.kind, FailureKind::Permanent);
        std::fs::remove_dir(&path).unwrap();
        notifier.deliver(&delivery(2)).await.unwrap();
        assert!(std::fs::read_to_string(&path).unwrap().contains("code 000002"));
    }
}
