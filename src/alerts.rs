//! Security alerts to the user, through the user's own channels (email, Telegram): a
//! lockout (until when, and from which addresses the failures came), an authenticator
//! added, confirmed or removed, a recovery code used (how many remain), new recovery codes,
//! an operator's unlock.
//!
//! - [`Alerts::raise`] never blocks or fails its caller: the alert is sent by a task of its
//!   own, and whatever happens to it is logged and counted (`mfa_security_alerts_total`
//!   by kind and outcome), never answered.
//! - At most one alert of each kind per user per hour ([`ALERT_INTERVAL_SECONDS`]), so that
//!   nobody can use alerts to flood an inbox: the hour is claimed in the database by one
//!   conditional statement (`Store::claim_alert`), which holds across every instance on
//!   one database. An alert that went out on no channel gives its hour back, so the next
//!   alert of that kind can still go; one that went out on at least one channel keeps it.
//! - A user without an email address or Telegram chat gets nothing (and claims nothing).
//! - The text comes from the kind's template (`crate::config::alerts`: built in, or
//!   `ALERT_TEMPLATE_<KIND>`), and never holds a code or a secret: there is no placeholder
//!   for one, and the values an alert has are times, counts, addresses and names.
//! - `SECURITY_ALERTS=off`: [`Alerts::new`] gives the disabled alerts, which send nothing.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tracing::{Instrument, info, warn};

use crate::clock::{Clock, UnixTime};
use crate::config::{AlertKind, Settings};
use crate::domain::{Channel, Username};
use crate::metrics::Metrics;
use crate::notify::{Delivery, Notifier};
use crate::store::Store;

/// At most one alert of a kind per user in this many seconds.
pub const ALERT_INTERVAL_SECONDS: u64 = 3_600;

/// Alerts being sent at once, at most; past it one is dropped (logged and counted), so that
/// a flood of lockouts against a slow notifier cannot pile up tasks without bound.
pub const MAX_IN_FLIGHT: usize = 1_024;

/// Client addresses a lockout alert names, at most (the latest ones).
pub const MAX_FAILED_FROM: usize = 4;

/// Characters of an authenticator's name an alert shows, at most.
const NAME_CHARS: usize = 64;

/// Something that happened to a user's account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Alert {
    /// The user was locked out until `until`, after failures from `addresses`.
    LockedOut {
        until: UnixTime,
        addresses: Vec<String>,
    },
    AuthenticatorAdded {
        name: String,
    },
    AuthenticatorConfirmed {
        name: String,
    },
    AuthenticatorRemoved {
        name: String,
    },
    /// A recovery code was used; `remaining` are left.
    RecoveryCodeUsed {
        remaining: u64,
    },
    /// `count` new recovery codes replaced the old ones.
    RecoveryCodesGenerated {
        count: usize,
    },
    /// An operator cleared the user's failures and lock.
    Unlocked,
    /// A Telegram chat linked itself to the user (`/start <token>`).
    TelegramLinked {
        chat: String,
    },
}

impl Alert {
    /// The kind's name: in logs, metrics and the hourly throttle.
    pub fn kind(&self) -> &'static str {
        self.alert_kind().as_str()
    }

    pub fn alert_kind(&self) -> AlertKind {
        match self {
            Self::LockedOut { .. } => AlertKind::LockedOut,
            Self::AuthenticatorAdded { .. } => AlertKind::AuthenticatorAdded,
            Self::AuthenticatorConfirmed { .. } => AlertKind::AuthenticatorConfirmed,
            Self::AuthenticatorRemoved { .. } => AlertKind::AuthenticatorRemoved,
            Self::RecoveryCodeUsed { .. } => AlertKind::RecoveryCodeUsed,
            Self::RecoveryCodesGenerated { .. } => AlertKind::RecoveryCodesGenerated,
            Self::Unlocked => AlertKind::Unlocked,
            Self::TelegramLinked { .. } => AlertKind::TelegramLinked,
        }
    }

    /// The values of the kind's own placeholders.
    fn values(&self) -> Vec<(&'static str, String)> {
        match self {
            Self::LockedOut { until, addresses } => {
                let from = if addresses.is_empty() { "an unknown address".to_string() } else { addresses.join(", ") };
                vec![("until", utc(*until)), ("addresses", from)]
            }
            Self::AuthenticatorAdded { name }
            | Self::AuthenticatorConfirmed { name }
            | Self::AuthenticatorRemoved { name } => {
                vec![("name", crate::telemetry::printable(name, NAME_CHARS))]
            }
            Self::RecoveryCodeUsed { remaining } => vec![("remaining", remaining.to_string())],
            Self::RecoveryCodesGenerated { count } => vec![("count", count.to_string())],
            Self::Unlocked => Vec::new(),
            Self::TelegramLinked { chat } => vec![("chat", chat.clone())],
        }
    }
}

/// `2027-01-15 08:00:10 UTC`.
pub fn utc(time: UnixTime) -> String {
    // humantime formats up to the last second of year 9999.
    let time = std::time::UNIX_EPOCH + Duration::from_secs(time.min(253_402_300_799));
    let stamp = humantime::format_rfc3339_seconds(time).to_string();
    format!("{} UTC", stamp.replace('T', " ").trim_end_matches('Z'))
}

/// The subject and text of `alert` to `username`, raised at `at`.
pub fn render(settings: &Settings, username: &Username, alert: &Alert, at: UnixTime) -> Option<(String, String)> {
    let template = settings.alerts.template(alert.alert_kind())?;
    let mut values =
        vec![("issuer", settings.issuer.clone()), ("username", username.as_str().to_string()), ("time", utc(at))];
    values.extend(alert.values());
    let values: Vec<(&str, &str)> = values.iter().map(|(name, value)| (*name, value.as_str())).collect();
    Some(template.render(&values))
}

/// The addresses stored with a failure from `client`: the ones of the failures counted so
/// far (`previous`, none when `fresh`: the last failure set a lock, or time forgave them
/// all), without `client`, then `client`; the latest [`MAX_FAILED_FROM`].
pub fn failure_addresses(previous: &[String], fresh: bool, client: IpAddr) -> Vec<String> {
    let client = client.to_string();
    let mut addresses: Vec<String> =
        if fresh { Vec::new() } else { previous.iter().filter(|a| **a != client).cloned().collect() };
    addresses.push(client);
    let excess = addresses.len().saturating_sub(MAX_FAILED_FROM);
    addresses.drain(..excess);
    addresses
}

/// Raises security alerts. Cheap to clone; the default sends nothing.
#[derive(Clone, Default)]
pub struct Alerts {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    store: Arc<dyn Store>,
    notifier: Arc<dyn Notifier>,
    clock: Arc<dyn Clock>,
    settings: Arc<Settings>,
    metrics: Arc<Metrics>,
    /// Alerts raised and not finished yet.
    in_flight: tokio::sync::watch::Sender<usize>,
}

/// One alert in flight: counted down when its task ends, however it ends.
struct InFlight(Arc<Inner>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.send_modify(|n| *n = n.saturating_sub(1));
    }
}

impl std::fmt::Debug for Alerts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Alerts").field("enabled", &self.is_enabled()).finish()
    }
}

impl Alerts {
    /// Alerts through `notifier` (the one that sends codes), throttled in `store`; the
    /// disabled ones with `SECURITY_ALERTS=off`.
    pub fn new(
        store: Arc<dyn Store>,
        notifier: Arc<dyn Notifier>,
        clock: Arc<dyn Clock>,
        settings: Arc<Settings>,
        metrics: Arc<Metrics>,
    ) -> Self {
        if !settings.alerts.enabled {
            return Self::disabled();
        }
        let (in_flight, _) = tokio::sync::watch::channel(0);
        Self { inner: Some(Arc::new(Inner { store, notifier, clock, settings, metrics, in_flight })) }
    }

    /// Alerts that send nothing.
    pub fn disabled() -> Self {
        Self { inner: None }
    }

    pub fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// Sends `alert` to `username`'s channels, in a task of its own: returns at once, and
    /// never fails (what happens is logged and counted). The alert's time is now.
    pub fn raise(&self, username: &Username, alert: Alert) {
        let Some(inner) = &self.inner else { return };
        let kind = alert.kind();
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            warn!(event = "security_alert", kind, outcome = "dropped", "no async runtime to send the alert on");
            return;
        };
        let admitted = inner.in_flight.send_if_modified(|n| {
            let room = *n < MAX_IN_FLIGHT;
            if room {
                *n += 1;
            }
            room
        });
        if !admitted {
            inner.metrics.security_alert(kind, "dropped");
            warn!(event = "security_alert", kind, outcome = "dropped", "{MAX_IN_FLIGHT} alerts are being sent already");
            return;
        }
        let at = inner.clock.now();
        let guard = InFlight(inner.clone());
        let span = tracing::info_span!("security_alert", username = %username, kind);
        let username = username.clone();
        runtime.spawn(
            async move {
                let inner = &guard.0;
                let outcome = inner.send(&username, &alert, at).await;
                inner.metrics.security_alert(kind, outcome);
                drop(guard);
            }
            .instrument(span),
        );
    }

    /// Waits until every alert raised so far is sent or given up (for a command that exits
    /// next, for a shutdown, and for tests).
    pub async fn settled(&self) {
        let Some(inner) = &self.inner else { return };
        let mut in_flight = inner.in_flight.subscribe();
        let _ = in_flight.wait_for(|n| *n == 0).await;
    }

    /// As [`Self::settled`], waiting `limit` at most; false if some were still going.
    pub async fn settled_within(&self, limit: Duration) -> bool {
        let settled = tokio::time::timeout(limit, self.settled()).await.is_ok();
        if !settled {
            warn!(event = "security_alert", "security alerts were still being sent; they may not arrive");
        }
        settled
    }
}

impl Inner {
    /// Sends one alert; its outcome, for the metric.
    async fn send(&self, username: &Username, alert: &Alert, at: UnixTime) -> &'static str {
        let kind = alert.kind();
        let user = match self.store.user(username).await {
            Ok(Some(user)) => user,
            Ok(None) => {
                info!(event = "security_alert", outcome = "no_channel", "the user no longer exists");
                return "no_channel";
            }
            Err(e) => {
                warn!(event = "security_alert", outcome = "error", error = %e, "cannot read the user; not sent");
                return "error";
            }
        };
        let telegram_chat = user.profile.telegram_id.clone();
        let recipients: Vec<(Channel, String)> =
            [user.profile.email.map(|e| (Channel::Email, e)), user.profile.telegram_id.map(|t| (Channel::Telegram, t))]
                .into_iter()
                .flatten()
                .collect();
        if recipients.is_empty() {
            info!(event = "security_alert", outcome = "no_channel", "the user has no email address or Telegram chat");
            return "no_channel";
        }
        let Some((subject, message)) = render(&self.settings, username, alert, at) else {
            warn!(event = "security_alert", outcome = "error", "no template for this kind");
            return "error";
        };
        match self.store.claim_alert(username, kind, at, at.saturating_sub(ALERT_INTERVAL_SECONDS)).await {
            Ok(true) => {}
            Ok(false) => {
                info!(event = "security_alert", outcome = "suppressed", "one of this kind went less than an hour ago");
                return "suppressed";
            }
            Err(e) => {
                // Unthrottled alerts could flood an inbox: without the claim, nothing goes.
                warn!(event = "security_alert", outcome = "error", error = %e, "cannot claim the alert's hour; not sent");
                return "error";
            }
        }

        let mut tasks = tokio::task::JoinSet::new();
        for (channel, recipient) in recipients {
            let delivery = Delivery { channel, recipient, subject: subject.clone(), message: message.clone() };
            let notifier = self.notifier.clone();
            tasks.spawn(async move { (channel, notifier.deliver(&delivery).await) });
        }
        let mut delivered = Vec::new();
        let mut failures = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok((channel, Ok(sent))) => {
                    if let (Some(to), Some(from)) = (sent.moved_to, telegram_chat.as_deref()) {
                        let moved = crate::outbox::follow_moved_chat(self.store.as_ref(), username, from, &to, at);
                        if let Err(e) = moved.await {
                            warn!(event = "security_alert", error = %e, "cannot store the moved Telegram chat");
                        }
                    }
                    delivered.push(channel);
                }
                Ok((channel, Err(e))) => failures.push(format!("{channel}: {e}")),
                Err(e) => failures.push(format!("a delivery task failed: {e}")),
            }
        }
        delivered.sort_by_key(|c| c.as_str());
        failures.sort();
        if delivered.is_empty() {
            // Nothing reached the user: the hour is given back, so the next alert of this
            // kind can still go (a notifier that keeps failing is retried at its pace only).
            if let Err(e) = self.store.release_alert(username, kind, at).await {
                warn!(event = "security_alert", error = %e, "cannot give the alert's hour back");
            }
            warn!(event = "security_alert", outcome = "failed", notifier = self.notifier.name(), failures = ?failures,
                "the alert went out on no channel");
            return "failed";
        }
        if !failures.is_empty() {
            warn!(event = "security_alert", notifier = self.notifier.name(), failures = ?failures,
                "the alert went out on some channels only");
        }
        info!(event = "security_alert", outcome = "sent", channels = ?delivered);
        "sent"
    }
}

#[cfg(test)]
mod tests;
