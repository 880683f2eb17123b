//! The delivery outbox: every code `/request-otp` sends is written with one job per channel
//! in the same transaction as the code itself, then delivered by whichever process claims
//! the job. The request waits at most `OTP_SEND_WAIT_MS` for the first attempts; a job
//! that is not done by then goes on in the background, and a job queued before a crash or
//! a restart is delivered after it, by this process or another one.
//!
//! - **Claims.** A job is taken with one conditional update that sets a lease
//!   ([`LEASE_SECONDS`]): of several workers (instances on one PostgreSQL) exactly one gets
//!   it, and a worker that dies mid-job leaves it to another once the lease is over. So a
//!   job is delivered at most twice: when a worker dies after the channel took the message
//!   and before it recorded so.
//! - **Retries** of transient failures (the notification service or a channel down, a
//!   timeout) wait [`BACKOFF_BASE_SECONDS`] doubling up to [`BACKOFF_MAX_SECONDS`], with
//!   jitter, for as long as the code is valid. A permanent failure ends the job.
//! - **Abandoned, never sent:** a job whose code expired, was used, or was replaced by a
//!   newer code (the user's newest code no longer has its hash).
//! - **Secrets.** The job holds the code sealed (AES-GCM, bound to the user and the job),
//!   and the sealed code is wiped when the job ends, whichever way.
//! - **Retention.** A job that ended is kept [`KEEP_FINISHED_SECONDS`] (what was sent
//!   where, for an operator's questions), then removed, so the table does not grow with
//!   every code ever sent.

use std::sync::Arc;
use std::time::Duration;

use tracing::{info, warn};

use crate::clock::{Clock, UnixTime};
use crate::config::Settings;
use crate::crypto::Keys;
use crate::domain::{Channel, Username};
use crate::metrics::Metrics;
use crate::notify::{Delivery, FailureKind, Notifier};
use crate::store::{DeliveryJob, JobEnd, Store, StoreError};

/// How long a claim holds a job: longer than the notification service's longest delivery
/// with its retries (about 75 s with the defaults, docs/configuration.md).
pub const LEASE_SECONDS: u64 = 120;
/// The first retry's wait; each next one doubles, with ±50% jitter, up to the maximum.
pub const BACKOFF_BASE_SECONDS: u64 = 2;
pub const BACKOFF_MAX_SECONDS: u64 = 60;
/// How often a worker looks for due jobs.
const POLL: Duration = Duration::from_secs(1);
/// How long a job that ended stays in the table: a week.
pub const KEEP_FINISHED_SECONDS: u64 = 7 * 86_400;
/// How often the jobs past [`KEEP_FINISHED_SECONDS`] are removed, and how many at most per
/// statement (each is one write, so a large backlog never holds the writer long).
const FORGET_EVERY_SECONDS: u64 = 3_600;
const FORGET_BATCH: u32 = 1_000;
/// Jobs a worker takes per look.
const BATCH: u32 = 64;

/// A new job's id: the second it was made, then 64 random bits, in hex (24 characters).
/// Ids in time order make each new job the last row of the table's B-tree, and its end a
/// change to one of the latest pages, instead of a write to a random page of a table that
/// holds every job ever queued (docs/BENCHMARKS.md, finding 14).
fn job_id(now: UnixTime) -> String {
    let mut id = [0; 12];
    id[..4].copy_from_slice(&id_second(now));
    id[4..].copy_from_slice(&rand::random::<[u8; 8]>());
    data_encoding::HEXLOWER.encode(&id)
}

/// The first 4 bytes of the ids of jobs made at `now`.
fn id_second(now: UnixTime) -> [u8; 4] {
    u32::try_from(now).unwrap_or(u32::MAX).to_be_bytes()
}

/// Every id of a job made before `second` sorts below this (and every later one above).
fn ids_made_before(second: UnixTime) -> String {
    data_encoding::HEXLOWER.encode(&id_second(second))
}

/// Stores a Telegram chat's new id after the chat moved (`migrate_to_chat_id`: a group
/// became a supergroup), so the next messages go there at once.
pub async fn follow_moved_chat(
    store: &dyn Store,
    username: &Username,
    from: &str,
    to: &str,
    now: UnixTime,
) -> Result<(), StoreError> {
    if store.move_telegram_chat(username, from, to, now).await? {
        info!(event = "telegram_chat_moved", %username, from, to, "stored the user's new Telegram chat id");
    } else if store.user(username).await?.is_some_and(|u| u.profile.source == crate::store::UserSource::Env) {
        warn!(event = "telegram_chat_moved", %username, from, to,
            "the user's Telegram chat moved; set {}_TELEGRAM_ID={to} in .env", username.as_str().to_uppercase());
    }
    Ok(())
}

/// What one attempt at a job came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    Delivered,
    /// Refused for good on its channel; why, in words the caller may read.
    Failed(String),
    /// Not delivered yet; retried later.
    Retrying,
    /// Its code expired, was used or replaced: never sent.
    Abandoned,
    /// Another worker holds it, or it is finished.
    NotClaimed,
}

/// The outbox of one process: jobs made, attempted, and the worker that retries them.
pub struct Outbox {
    store: Arc<dyn Store>,
    notifier: Arc<dyn Notifier>,
    keys: Arc<Keys>,
    clock: Arc<dyn Clock>,
    settings: Arc<Settings>,
    metrics: Arc<Metrics>,
}

impl Outbox {
    pub fn new(
        store: Arc<dyn Store>,
        notifier: Arc<dyn Notifier>,
        keys: Arc<Keys>,
        clock: Arc<dyn Clock>,
        settings: Arc<Settings>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self { store, notifier, keys, clock, settings, metrics }
    }

    /// A job delivering `code` (whose keyed hash is `code_hash`) to one recipient, the code
    /// sealed to the job. `fallback_after`: a later channel of `OTP_DELIVERY=first`, due
    /// after that many seconds unless the code was delivered first (else the request makes
    /// its first attempt at once).
    #[allow(clippy::too_many_arguments)]
    pub fn job(
        &self,
        username: &Username,
        channel: Channel,
        recipient: &str,
        code: &str,
        code_hash: &[u8],
        expires_at: UnixTime,
        fallback_after: Option<u64>,
    ) -> Result<DeliveryJob, String> {
        let id = job_id(self.clock.now());
        let sealed = self.keys.seal_job_code(username, &id, code).map_err(|e| e.to_string())?;
        Ok(DeliveryJob {
            id,
            username: username.clone(),
            channel,
            recipient: recipient.to_string(),
            code_hash: code_hash.to_vec(),
            sealed_code: Some(sealed),
            expires_at,
            // Its first attempt, made by the request that queues it (see `first_attempt`).
            attempts: u32::from(fallback_after.is_none()),
            created_at: self.clock.now(),
            due_at: self.clock.now().saturating_add(fallback_after.unwrap_or(0)),
            leased: fallback_after.is_none(),
        })
    }

    /// Counts jobs just written with their code.
    pub fn queued(&self, jobs: &[DeliveryJob]) {
        for job in jobs {
            self.metrics.delivery_job(job.channel.as_str(), "queued");
        }
    }

    /// One attempt at job `id`, if this process can claim it.
    pub async fn attempt(&self, id: &str) -> Result<Attempt, StoreError> {
        let now = self.clock.now();
        let Some(job) = self.store.claim_delivery(id, now, now + LEASE_SECONDS).await? else {
            return Ok(Attempt::NotClaimed);
        };
        let channel = job.channel.as_str();
        if let Some(why) = self.stale(&job, now).await? {
            self.store.finish_delivery(id, JobEnd::Abandoned, now, Some(why)).await?;
            self.metrics.delivery_job(channel, if why == "expired" { "abandoned_expired" } else { "abandoned" });
            info!(event = "delivery_job", job = %id, %channel, outcome = "abandoned", reason = why);
            return Ok(Attempt::Abandoned);
        }
        let code = match job.sealed_code.as_deref().map(|s| self.keys.open_job_code(&job.username, id, s)) {
            Some(Ok(code)) => code,
            _ => {
                self.store.finish_delivery(id, JobEnd::Failed, now, Some("its code cannot be opened")).await?;
                self.metrics.delivery_job(channel, "failed_unreadable");
                return Ok(Attempt::Failed("the code could not be read back".into()));
            }
        };
        let (attempt, record) = self.deliver(&job, &code).await;
        record.await?;
        Ok(attempt)
    }

    /// The first attempt at a job this process has just queued (and so holds, with its
    /// code): no claim and no staleness check to make. A delivery is answered as soon as
    /// the channel took it and recorded after, in the background (a crash in between is the
    /// one way a job is sent twice: docs/api.md); any other outcome is recorded before it
    /// is answered, so that a job answered `queued` is free for the next worker at once,
    /// even if this process dies right after.
    pub async fn first_attempt(self: &Arc<Self>, job: DeliveryJob, code: zeroize::Zeroizing<String>) -> Attempt {
        let (attempt, record) = self.deliver(&job, &code).await;
        let recorded = async move {
            if let Err(e) = record.await {
                warn!(event = "delivery_job", error = %e, "a delivery job's outcome could not be recorded");
            }
        };
        if attempt == Attempt::Delivered {
            tokio::spawn(recorded);
        } else {
            recorded.await;
        }
        attempt
    }

    /// Delivers `job` once: what came of it, and the write that records it (to run now or
    /// later).
    async fn deliver(
        &self,
        job: &DeliveryJob,
        code: &str,
    ) -> (Attempt, impl Future<Output = Result<(), StoreError>> + Send + 'static) {
        let s = &self.settings;
        let expires_in = job.expires_at.saturating_sub(self.clock.now());
        let message = s.message_template.render(code, expires_in, &s.issuer, job.username.as_str());
        let delivery = Delivery {
            channel: job.channel,
            recipient: job.recipient.clone(),
            subject: format!("{} verification code", s.issuer),
            message,
        };
        let result = self.notifier.deliver(&delivery).await;
        let moved_to = result.as_ref().ok().and_then(|sent| sent.moved_to.clone());
        let now = self.clock.now();
        let (store, metrics) = (self.store.clone(), self.metrics.clone());
        let (id, channel, attempts, created_at) = (job.id.clone(), job.channel.as_str(), job.attempts, job.created_at);
        let (attempt, end, wait, error, outcome): (Attempt, Option<JobEnd>, u64, Option<String>, &'static str) =
            match result {
                Ok(_) => (Attempt::Delivered, Some(JobEnd::Delivered), 0, None, "delivered"),
                Err(e) if matches!(e.kind, FailureKind::Transient) && job.expires_at > now => {
                    let wait = backoff(attempts);
                    warn!(event = "delivery_job", job = %id, %channel, outcome = "retrying", attempts, retry_in = wait,
                        error = %e);
                    (Attempt::Retrying, None, wait, Some(e.why.public), "retried")
                }
                Err(e) => {
                    let outcome = match e.kind {
                        FailureKind::Rejected => "failed_rejected",
                        FailureKind::NotConfigured => "failed_not_configured",
                        FailureKind::Transient => "abandoned_expired",
                        FailureKind::Permanent => "failed_permanent",
                    };
                    warn!(event = "delivery_job", job = %id, %channel, outcome, attempts, error = %e);
                    if e.kind == FailureKind::Transient {
                        (Attempt::Abandoned, Some(JobEnd::Abandoned), 0, Some(e.why.public), outcome)
                    } else {
                        (Attempt::Failed(e.why.public.clone()), Some(JobEnd::Failed), 0, Some(e.why.public), outcome)
                    }
                }
            };
        if attempt == Attempt::Delivered {
            info!(event = "delivery_job", job = %id, %channel, outcome = "delivered", attempts);
        }
        let (username, code_hash) = (job.username.clone(), job.code_hash.clone());
        let blocked_chat =
            (job.channel == Channel::Telegram && outcome == "failed_rejected").then(|| job.recipient.clone());
        let old_chat = job.recipient.clone();
        let record = async move {
            if let Some(new_chat) = moved_to {
                follow_moved_chat(store.as_ref(), &username, &old_chat, &new_chat, now).await?;
            }
            if let Some(chat) = blocked_chat {
                // The chat refused the bot for good: skipped from now on (and shown).
                store.mark_telegram_blocked(&username, &chat, now).await?;
            }
            match end {
                Some(end) => store.finish_delivery(&id, end, now, error.as_deref()).await?,
                None => store.retry_delivery(&id, now + wait, error.as_deref().unwrap_or_default()).await?,
            }
            if end == Some(JobEnd::Failed) {
                // The next channel (OTP_DELIVERY=first) need not wait for its turn.
                store.hurry_deliveries(&username, &code_hash, now).await?;
            }
            metrics.delivery_job(channel, outcome);
            if end == Some(JobEnd::Delivered) {
                metrics.delivery_latency(now.saturating_sub(created_at));
            }
            Ok(())
        };
        (attempt, record)
    }

    /// Why the job must not be sent any more, if so: its code expired, was used, or is no
    /// longer the user's newest.
    async fn stale(&self, job: &DeliveryJob, now: UnixTime) -> Result<Option<&'static str>, StoreError> {
        if job.expires_at <= now {
            return Ok(Some("expired"));
        }
        let Some(user) = self.store.user(&job.username).await? else { return Ok(Some("the user is gone")) };
        let sent = &user.sent;
        if sent.used_at.is_some() {
            return Ok(Some("used"));
        }
        let newest = sent.current.as_ref().is_some_and(|c| c.hash == job.code_hash);
        if !newest {
            return Ok(Some("replaced by a newer code"));
        }
        // OTP_DELIVERY=first: another channel already delivered this code.
        let delivered = self.store.code_delivered(&job.username, &job.code_hash).await?;
        Ok(delivered.then_some("delivered on another channel"))
    }

    /// Attempts every due job that no worker holds, every second, until `stop`; keeps the
    /// queue-depth gauge.
    pub async fn work(self: Arc<Self>, stop: impl Future<Output = ()>) {
        let mut tick = tokio::time::interval(POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(stop);
        let mut forget_at = self.clock.now();
        loop {
            tokio::select! {
                _ = &mut stop => return,
                _ = tick.tick() => {
                    if let Err(e) = self.round().await {
                        warn!(event = "delivery_job", error = %e, "the outbox could not be read");
                    }
                    if self.clock.now() >= forget_at {
                        forget_at = self.clock.now().saturating_add(FORGET_EVERY_SECONDS);
                        self.forget_finished().await;
                    }
                }
            }
        }
    }

    /// Removes the jobs that ended more than [`KEEP_FINISHED_SECONDS`] ago, a batch at a time.
    async fn forget_finished(&self) {
        let before = self.clock.now().saturating_sub(KEEP_FINISHED_SECONDS);
        let mut forgotten = 0;
        loop {
            match self.store.forget_finished_deliveries(before, &ids_made_before(before), FORGET_BATCH).await {
                Ok(n) => {
                    forgotten += n;
                    if n < u64::from(FORGET_BATCH) {
                        break;
                    }
                }
                Err(e) => {
                    warn!(event = "deliveries_forgotten", error = %e, "old delivery jobs could not be removed");
                    break;
                }
            }
        }
        self.metrics.delivery_jobs_forgotten(forgotten);
        if forgotten > 0 {
            info!(
                event = "deliveries_forgotten",
                count = forgotten,
                "removed delivery jobs that ended over a week ago"
            );
        }
    }

    async fn round(self: &Arc<Self>) -> Result<(), StoreError> {
        let due = self.store.due_deliveries(self.clock.now(), BATCH).await?;
        let mut attempts = tokio::task::JoinSet::new();
        for id in due {
            let outbox = self.clone();
            attempts.spawn(async move { outbox.attempt(&id).await });
        }
        while let Some(done) = attempts.join_next().await {
            if let Ok(Err(e)) = done {
                warn!(event = "delivery_job", error = %e, "a delivery job could not be recorded");
            }
        }
        self.metrics.set_delivery_queue(self.store.queued_deliveries().await?);
        Ok(())
    }
}

/// The wait before retry `n` (1-based attempts made): doubling from the base, capped,
/// ±50% jitter so that jobs failed together do not come back together.
fn backoff(attempts: u32) -> u64 {
    let doubled = BACKOFF_BASE_SECONDS.saturating_mul(1u64 << attempts.saturating_sub(1).min(16));
    let capped = doubled.min(BACKOFF_MAX_SECONDS) as f64;
    (capped * (0.5 + rand::random::<f64>())).round().max(1.0) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids_sort_by_the_second_they_were_made_and_differ_within_it() {
        let ids = [1_796_000_000, 1_796_000_000, 1_796_000_001, 1_796_000_256].map(job_id);
        assert!(ids.iter().all(|id| id.len() == 24 && id.bytes().all(|b| b.is_ascii_hexdigit())), "{ids:?}");
        assert_ne!(ids[0], ids[1]);
        assert!(ids[0].clone().max(ids[1].clone()) < ids[2] && ids[2] < ids[3], "{ids:?}");
        assert!(ids[0].starts_with("6b0cc900"), "{ids:?}");
        let bound = ids_made_before(1_796_000_001);
        assert!(ids[0] < bound && ids[1] < bound && bound < ids[2], "{bound} {ids:?}");
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter() {
        for (attempts, nominal) in [(1u32, 2.0f64), (2, 4.0), (3, 8.0), (6, 60.0), (40, 60.0)] {
            for _ in 0..50 {
                let wait = backoff(attempts) as f64;
                assert!(wait >= (nominal * 0.5).floor() && wait <= (nominal * 1.5).ceil(), "{attempts}: {wait}");
            }
        }
    }
}
