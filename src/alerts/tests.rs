use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;

use super::*;
use crate::clock::ManualClock;
use crate::config::EnvMap;
use crate::notify::{DeliveryError, FailureKind, Why};
use crate::otp::OtpParams;
use crate::store::{AuthenticatorRecord, AuthenticatorStatus, Factor, UserProfile, UserSource};

/// 2027-01-15T08:00:10Z.
const START: UnixTime = 1_800_000_010;

/// A notifier that keeps what it was given, or fails every delivery when told to.
#[derive(Default)]
struct Recorder {
    sent: Mutex<Vec<Delivery>>,
    failing: AtomicBool,
}

impl Recorder {
    fn sent(&self) -> Vec<Delivery> {
        self.sent.lock().unwrap().clone()
    }
}

#[async_trait]
impl Notifier for Recorder {
    fn name(&self) -> &'static str {
        "recorder"
    }

    async fn deliver(&self, delivery: &Delivery) -> Result<crate::notify::Sent, DeliveryError> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(DeliveryError { kind: FailureKind::Permanent, why: Why::plain("down"), attempts: 1 });
        }
        self.sent.lock().unwrap().push(delivery.clone());
        Ok(crate::notify::Sent::after(1))
    }
}

struct Kit {
    alerts: Alerts,
    notifier: Arc<Recorder>,
    clock: ManualClock,
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    settings: Arc<Settings>,
    _dir: tempfile::TempDir,
}

impl Kit {
    async fn new(vars: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut all = vec![
            ("MFA_DATA_DIR".to_string(), dir.path().display().to_string()),
            ("OTP_ISSUER".to_string(), "ACME".to_string()),
        ];
        all.extend(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let settings = Arc::new(Settings::from_env(&EnvMap::from_pairs([], all)).unwrap());
        let store = crate::store::open(&settings.database).await.unwrap();
        let notifier = Arc::new(Recorder::default());
        let clock = ManualClock::new(START);
        let metrics = Arc::new(Metrics::mfa());
        let alerts =
            Alerts::new(store.clone(), notifier.clone(), Arc::new(clock.clone()), settings.clone(), metrics.clone());
        Self { alerts, notifier, clock, store, metrics, settings, _dir: dir }
    }

    async fn user(&self, name: &str, email: Option<&str>, telegram: Option<&str>) -> Username {
        let username = Username::parse(name).unwrap();
        let profile = UserProfile {
            username: username.clone(),
            email: email.map(str::to_string),
            telegram_id: telegram.map(str::to_string),
            source: UserSource::Cli,
        };
        let first = AuthenticatorRecord {
            id: "a1".into(),
            name: "default".into(),
            sealed_secret: vec![1, 2, 3],
            factor: Factor::Totp { params: OtpParams::default(), last_step: None, drift_steps: 0 },
            status: AuthenticatorStatus::Active,
            replaces: None,
            created_at: START,
            last_used_at: None,
            expires_at: None,
        };
        self.store.insert_user(&profile, &first, START).await.unwrap();
        username
    }

    async fn raise(&self, username: &Username, alert: Alert) {
        self.alerts.raise(username, alert);
        self.alerts.settled().await;
    }

    fn counted(&self, kind: &str, outcome: &str) -> u64 {
        let text = self.metrics.encode();
        let series = format!("mfa_security_alerts_total{{kind=\"{kind}\",outcome=\"{outcome}\"}} ");
        text.lines().find_map(|l| l.strip_prefix(&series)).map_or(0, |n| n.parse().unwrap())
    }
}

fn lock(until: UnixTime) -> Alert {
    Alert::LockedOut { until, addresses: vec!["192.0.2.7".into(), "2001:db8::1".into()] }
}

#[test]
fn each_alert_names_its_kind() {
    let kinds: Vec<&str> = [
        lock(0),
        Alert::AuthenticatorAdded { name: "phone".into() },
        Alert::AuthenticatorConfirmed { name: "phone".into() },
        Alert::AuthenticatorRemoved { name: "phone".into() },
        Alert::RecoveryCodeUsed { remaining: 7 },
        Alert::RecoveryCodesGenerated { count: 10 },
        Alert::Unlocked,
        Alert::TelegramLinked { chat: "42".into() },
    ]
    .iter()
    .map(Alert::kind)
    .collect();
    assert_eq!(
        kinds,
        [
            "locked_out",
            "authenticator_added",
            "authenticator_confirmed",
            "authenticator_removed",
            "recovery_code_used",
            "recovery_codes_generated",
            "unlocked",
            "telegram_linked"
        ]
    );
    let all: Vec<&str> = AlertKind::ALL.iter().map(|k| k.as_str()).collect();
    assert_eq!(kinds, all, "one alert per kind, in the kinds' order");
}

#[test]
fn times_are_utc_and_never_fail_to_format() {
    assert_eq!(utc(START), "2027-01-15 08:00:10 UTC");
    assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
    assert_eq!(utc(u64::MAX), "9999-12-31 23:59:59 UTC");
}

#[tokio::test]
async fn the_lockout_alert_says_who_what_when_until_and_from_where_and_what_to_do() {
    let kit = Kit::new(&[]).await;
    let alice = Username::parse("alice").unwrap();

    let (subject, text) = render(&kit.settings, &alice, &lock(START + 300), START).unwrap();

    assert_eq!(subject, "ACME security alert: sign-in locked");
    assert!(text.contains("ACME"), "{text}");
    assert!(text.contains("alice"), "{text}");
    assert!(text.contains("at 2027-01-15 08:00:10 UTC"), "{text}");
    assert!(text.contains("until 2027-01-15 08:05:10 UTC"), "{text}");
    assert!(text.contains("192.0.2.7, 2001:db8::1"), "{text}");
    assert!(text.contains("If this was not you"), "{text}");
    let unknown = render(&kit.settings, &alice, &Alert::LockedOut { until: START, addresses: vec![] }, START);
    assert!(unknown.unwrap().1.contains("came from: an unknown address."));
}

#[tokio::test]
async fn the_kinds_not_wired_yet_render_their_values() {
    let kit = Kit::new(&[]).await;
    let bob = Username::parse("bob").unwrap();
    let text = |alert: Alert| render(&kit.settings, &bob, &alert, START).unwrap();

    let (subject, added) = text(Alert::AuthenticatorAdded { name: "Work\nphone".into() });
    assert_eq!(subject, "ACME security alert: authenticator added");
    assert!(added.contains("\"Work\\nphone\" was added to bob at 2027-01-15 08:00:10 UTC"), "{added}");
    assert!(text(Alert::AuthenticatorConfirmed { name: "key".into() }).1.contains("\"key\" of bob was confirmed"));
    assert!(text(Alert::AuthenticatorRemoved { name: "key".into() }).1.contains("\"key\" was removed from bob"));
    let (_, used) = text(Alert::RecoveryCodeUsed { remaining: 3 });
    assert!(used.contains("3 remain"), "{used}");
    let (_, generated) = text(Alert::RecoveryCodesGenerated { count: 10 });
    assert!(generated.contains("10 new recovery codes"), "{generated}");
    let (subject, unlocked) = text(Alert::Unlocked);
    assert_eq!(subject, "ACME security alert: sign-in unlocked");
    assert!(unlocked.contains("an administrator unlocked sign-in for bob"), "{unlocked}");
    let long = text(Alert::AuthenticatorAdded { name: "x".repeat(500) }).1;
    assert!(long.len() < 400, "a long name is cut: {long}");
}

#[tokio::test]
async fn a_configured_template_is_used() {
    let template =
        ("ALERT_TEMPLATE_LOCKED_OUT", "Subject: {issuer}: {username} gesperrt\nGesperrt bis {until} ({addresses}).");
    let kit = Kit::new(&[template]).await;
    let alice = kit.user("alice", Some("alice@example.com"), None).await;

    kit.raise(&alice, lock(START + 300)).await;

    let sent = kit.notifier.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].subject, "ACME: alice gesperrt");
    assert_eq!(sent[0].message, "Gesperrt bis 2027-01-15 08:05:10 UTC (192.0.2.7, 2001:db8::1).");
}

#[test]
fn failure_addresses_are_distinct_the_latest_four_and_start_afresh_after_a_lock() {
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    let list = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(failure_addresses(&[], false, ip("10.0.0.1")), list(&["10.0.0.1"]));
    let two = failure_addresses(&list(&["10.0.0.1"]), false, ip("10.0.0.2"));
    assert_eq!(two, list(&["10.0.0.1", "10.0.0.2"]));
    assert_eq!(failure_addresses(&two, false, ip("10.0.0.1")), list(&["10.0.0.2", "10.0.0.1"]), "moved last, once");
    let four = list(&["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"]);
    assert_eq!(failure_addresses(&four, false, ip("::1")), list(&["10.0.0.2", "10.0.0.3", "10.0.0.4", "::1"]));
    assert_eq!(failure_addresses(&four, true, ip("10.0.0.9")), list(&["10.0.0.9"]), "fresh");
}

#[tokio::test]
async fn one_alert_of_a_kind_per_user_per_hour_on_every_channel() {
    let kit = Kit::new(&[]).await;
    let alice = kit.user("alice", Some("alice@example.com"), Some("42")).await;
    let bob = kit.user("bob", Some("bob@example.com"), None).await;

    kit.raise(&alice, lock(START + 300)).await;
    let first: Vec<(Channel, String)> = kit.notifier.sent().into_iter().map(|d| (d.channel, d.recipient)).collect();
    assert_eq!(first.len(), 2, "both of alice's channels");
    assert!(first.contains(&(Channel::Email, "alice@example.com".into())));
    assert!(first.contains(&(Channel::Telegram, "42".into())));

    kit.clock.advance(ALERT_INTERVAL_SECONDS - 1);
    kit.raise(&alice, lock(START + 4000)).await;
    assert_eq!(kit.notifier.sent().len(), 2, "a second lockout within the hour: no alert");
    assert_eq!(kit.counted("locked_out", "suppressed"), 1);

    kit.raise(&alice, Alert::Unlocked).await;
    kit.raise(&bob, lock(START + 4000)).await;
    assert_eq!(kit.notifier.sent().len(), 5, "another kind, another user: each has its own hour");

    kit.clock.advance(1);
    kit.raise(&alice, lock(START + 4000)).await;
    assert_eq!(kit.notifier.sent().len(), 7, "an hour after the first: one again");
    assert_eq!(kit.counted("locked_out", "sent"), 3);
    assert_eq!(kit.counted("unlocked", "sent"), 1);
}

#[tokio::test]
async fn many_raised_at_once_send_one() {
    let kit = Kit::new(&[]).await;
    let alice = kit.user("alice", Some("alice@example.com"), None).await;
    for _ in 0..20 {
        kit.alerts.raise(&alice, Alert::Unlocked);
    }
    kit.alerts.settled().await;
    assert_eq!(kit.notifier.sent().len(), 1);
    assert_eq!(kit.counted("unlocked", "suppressed"), 19);
}

#[tokio::test]
async fn an_alert_that_reached_no_channel_gives_its_hour_back() {
    let kit = Kit::new(&[]).await;
    let alice = kit.user("alice", Some("alice@example.com"), Some("42")).await;
    kit.notifier.failing.store(true, Ordering::SeqCst);

    kit.raise(&alice, lock(START + 300)).await;

    assert_eq!(kit.counted("locked_out", "failed"), 1);
    kit.notifier.failing.store(false, Ordering::SeqCst);
    kit.clock.advance(60);
    kit.raise(&alice, lock(START + 900)).await;
    assert_eq!(kit.notifier.sent().len(), 2, "the next lockout alert went, on both channels");
    assert_eq!(kit.counted("locked_out", "sent"), 1);
}

#[tokio::test]
async fn a_user_without_a_channel_gets_nothing_and_claims_nothing() {
    let kit = Kit::new(&[]).await;
    let carol = kit.user("carol", None, None).await;

    kit.raise(&carol, Alert::Unlocked).await;

    assert!(kit.notifier.sent().is_empty());
    assert_eq!(kit.counted("unlocked", "no_channel"), 1);
    kit.store.update_contact(&carol, Some("carol@example.com"), None, START).await.unwrap();
    kit.raise(&carol, Alert::Unlocked).await;
    assert_eq!(kit.notifier.sent().len(), 1, "no hour was taken by the alert that could not go");
    kit.raise(&Username::parse("nobody").unwrap(), Alert::Unlocked).await;
    assert_eq!(kit.counted("unlocked", "no_channel"), 2, "a user that is gone");
}

#[tokio::test]
async fn security_alerts_off_sends_nothing() {
    let kit = Kit::new(&[("SECURITY_ALERTS", "off")]).await;
    let alice = kit.user("alice", Some("alice@example.com"), Some("42")).await;

    kit.raise(&alice, lock(START + 300)).await;
    kit.raise(&alice, Alert::Unlocked).await;

    assert!(!kit.alerts.is_enabled());
    assert!(kit.notifier.sent().is_empty());
    assert!(!kit.metrics.encode().contains("mfa_security_alerts_total{"));
}

#[tokio::test]
async fn no_alert_holds_a_code_or_a_secret() {
    let kit = Kit::new(&[]).await;
    let alice = kit.user("alice", Some("alice@example.com"), None).await;
    for alert in [
        lock(START + 300),
        Alert::AuthenticatorAdded { name: "phone".into() },
        Alert::AuthenticatorConfirmed { name: "phone".into() },
        Alert::AuthenticatorRemoved { name: "phone".into() },
        Alert::RecoveryCodeUsed { remaining: 9 },
        Alert::RecoveryCodesGenerated { count: 10 },
        Alert::Unlocked,
    ] {
        kit.raise(&alice, alert).await;
    }
    let sent = kit.notifier.sent();
    assert_eq!(sent.len(), 7);
    for delivery in sent {
        let text = format!("{}\n{}", delivery.subject, delivery.message);
        // A code is a run of 6 to 8 digits; a secret is base32 or the stored bytes.
        let runs = text.split(|c: char| !c.is_ascii_digit()).filter(|run| run.len() >= 6).count();
        assert_eq!(runs, 0, "{text}");
        assert!(!text.contains('{'), "every placeholder was filled: {text}");
    }
}
