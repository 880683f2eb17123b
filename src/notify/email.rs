//! The email channel: lettre's async SMTP transport over rustls, built once at start-up so
//! its connection pool is reused across messages.
//!
//! Security follows the port unless `EMAIL_SMTP_SECURITY` says otherwise: 465 is TLS from
//! the first byte, 587 is STARTTLS (required, never silently skipped), anything else plain.
//! Certificates are verified against Mozilla's roots plus `EMAIL_SMTP_CA_FILE`.

use std::sync::atomic::{AtomicU8, Ordering};

use lettre::message::header::ContentType;
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::retry::{AttemptError, RetryPolicy, with_retries};
use super::wire::Reachability;
use super::{Delivery, DeliveryError, Why};
use crate::config::{EmailSettings, SmtpSecurity};

pub struct EmailChannel {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    sender: Mailbox,
    /// The sender's domain, for Message-IDs (not the machine's host name).
    domain: String,
    policy: RetryPolicy,
    reachability: AtomicU8,
}

impl EmailChannel {
    pub fn new(settings: &EmailSettings, retry_base: std::time::Duration) -> Result<Self, String> {
        let tls_parameters = || -> Result<TlsParameters, String> {
            let mut builder = TlsParameters::builder(settings.server.clone());
            if let Some(path) = &settings.ca_file {
                let pem = std::fs::read(path).map_err(|e| format!("EMAIL_SMTP_CA_FILE: {}: {e}", path.display()))?;
                let cert = Certificate::from_pem(&pem)
                    .map_err(|e| format!("EMAIL_SMTP_CA_FILE: {} is not a PEM certificate: {e}", path.display()))?;
                builder = builder.add_root_certificate(cert);
            }
            builder.build().map_err(|e| format!("EMAIL_SMTP_SERVER: TLS setup failed: {e}"))
        };
        let tls = match settings.security {
            SmtpSecurity::Tls => Tls::Wrapper(tls_parameters()?),
            SmtpSecurity::StartTls => Tls::Required(tls_parameters()?),
            SmtpSecurity::None => Tls::None,
        };
        // Greeting with the sender's domain, not the machine's short host name (lettre's
        // default), which relays with reject_non_fqdn_helo_hostname refuse with 504.
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(settings.server.clone())
            .port(settings.port)
            .tls(tls)
            .timeout(Some(settings.timeout))
            .hello_name(ClientId::Domain(settings.helo_name.clone()));
        if let Some(password) = &settings.password {
            builder = builder.credentials(Credentials::new(settings.username.clone(), password.expose().to_string()));
        }
        let address = settings
            .sender
            .as_str()
            .parse()
            .map_err(|e| format!("EMAIL_SENDER: '{}' is not a usable address: {e}", settings.sender.as_str()))?;
        Ok(Self {
            transport: builder.build(),
            sender: Mailbox::new(settings.sender_name.clone(), address),
            domain: settings.sender.domain().to_string(),
            policy: RetryPolicy::for_email(settings, retry_base),
            reachability: AtomicU8::new(Reachability::Unknown as u8),
        })
    }

    pub fn reachability(&self) -> Reachability {
        match self.reachability.load(Ordering::Relaxed) {
            1 => Reachability::Reachable,
            2 => Reachability::Unreachable,
            _ => Reachability::Unknown,
        }
    }

    fn record(&self, r: Reachability) {
        self.reachability.store(r as u8, Ordering::Relaxed);
    }

    /// Subject, text body and the same text as HTML, with Date and Message-ID.
    pub fn build_message(&self, delivery: &Delivery) -> Result<Message, String> {
        let to: Mailbox = delivery.recipient.parse().map_err(|e| format!("bad recipient address: {e}"))?;
        let html = format!(
            "<!DOCTYPE html>\n<html><body><p style=\"font-family: sans-serif; font-size: 16px\">{}</p></body></html>\n",
            escape_html(&delivery.message)
        );
        Message::builder()
            .from(self.sender.clone())
            .to(to)
            .subject(delivery.subject.clone())
            .message_id(Some(format!("<{:032x}@{}>", rand::random::<u128>(), self.domain)))
            .multipart(
                MultiPart::alternative()
                    .singlepart(SinglePart::builder().header(ContentType::TEXT_PLAIN).body(delivery.message.clone()))
                    .singlepart(SinglePart::builder().header(ContentType::TEXT_HTML).body(html)),
            )
            .map_err(|e| format!("cannot build the message: {e}"))
    }

    async fn attempt(&self, message: &Message) -> Result<(), AttemptError> {
        match self.transport.send(message.clone()).await {
            Ok(_) => {
                self.record(Reachability::Reachable);
                Ok(())
            }
            Err(e) => {
                let (reachability, failure) = classify(&e);
                self.record(reachability);
                Err(failure)
            }
        }
    }

    /// Checks the relay without sending anything: connect, greeting, STARTTLS or TLS and
    /// AUTH, then `NOOP` (lettre's `test_connection`), within one attempt's timeout.
    pub async fn check(&self) -> Result<(), Why> {
        match tokio::time::timeout(self.policy.attempt_timeout, self.transport.test_connection()).await {
            Ok(Ok(true)) => {
                self.record(Reachability::Reachable);
                Ok(())
            }
            Ok(Ok(false)) => Err(Why::plain("the SMTP server did not answer NOOP")),
            Ok(Err(e)) => {
                let (reachability, failure) = classify(&e);
                self.record(reachability);
                Err(failure.why())
            }
            Err(_) => {
                self.record(Reachability::Unreachable);
                Err(Why::plain(format!("no answer within {:.1} s", self.policy.attempt_timeout.as_secs_f64())))
            }
        }
    }

    pub async fn deliver(&self, delivery: &Delivery) -> Result<u32, DeliveryError> {
        let message = self.build_message(delivery).map_err(|detail| DeliveryError {
            kind: super::FailureKind::Permanent,
            why: Why::plain(detail),
            attempts: 0,
        })?;
        let result = with_retries(self.policy, || self.attempt(&message)).await;
        if result.as_ref().is_err_and(|e| e.why.public.starts_with("no answer within")) {
            self.record(Reachability::Unreachable);
        }
        result
    }
}

/// SMTP replies that refuse the recipient itself (RFC 5321 §4.2.2): mailbox unavailable,
/// user not local, mailbox name not allowed.
const REFUSED_RECIPIENT: [&str; 3] = ["550", "551", "553"];

/// Sorts lettre's errors into retry-or-not, the way Vaultwarden's mailer does: SMTP 4xx,
/// timeouts and connection failures are transient; 5xx, TLS and client errors are not.
/// The server's own words (its reply, a host name) go only to the log.
fn classify(e: &lettre::transport::smtp::Error) -> (Reachability, AttemptError) {
    let said = e.to_string();
    let code = e.status().map(|c| c.to_string()).unwrap_or_default();
    if e.is_permanent() && REFUSED_RECIPIENT.contains(&code.as_str()) {
        let why = Why::upstream_reason(&format!("the SMTP server refused the recipient ({code})"), &said);
        (Reachability::Reachable, AttemptError::rejected(why))
    } else if e.is_permanent() {
        let why = Why::with_upstream(format!("the SMTP server refused the message ({code})"), &said);
        (Reachability::Reachable, AttemptError::permanent(why))
    } else if e.is_transient() {
        let why = Why::with_upstream(format!("the SMTP server deferred the message ({code})"), &said);
        (Reachability::Reachable, AttemptError::transient(why))
    } else if e.is_tls() || is_tls_failure(e) {
        let why = Why::with_upstream("TLS with the SMTP server failed", &said).and(
            " (check EMAIL_SMTP_SECURITY against the port: 465 is tls, 587 is starttls; and the certificate, \
             EMAIL_SMTP_CA_FILE)",
        );
        (Reachability::Reachable, AttemptError::permanent(why))
    } else if e.is_client() {
        (Reachability::Reachable, AttemptError::permanent(Why::with_upstream("SMTP client error", &said)))
    } else if e.is_timeout() {
        (Reachability::Unreachable, AttemptError::transient(Why::with_upstream("the SMTP server timed out", &said)))
    } else {
        (Reachability::Unreachable, AttemptError::transient(Why::with_upstream("cannot reach the SMTP server", &said)))
    }
}

/// A failed TLS handshake (an untrusted or wrong certificate) reaches us as a connection
/// error wrapping a rustls error; retrying cannot fix it.
fn is_tls_failure(e: &lettre::transport::smtp::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(err) = source {
        if err.downcast_ref::<rustls::Error>().is_some()
            || err
                .downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .is_some_and(|inner| inner.is::<rustls::Error>())
        {
            return true;
        }
        source = err.source();
    }
    false
}

fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\n' => out.push_str("<br>"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_is_escaped() {
        assert_eq!(escape_html("<b>a & 'b'</b>\nx"), "&lt;b&gt;a &amp; &#39;b&#39;&lt;/b&gt;<br>x");
    }

    proptest::proptest! {
        /// Every address our check accepts can be sent to: lettre parses it as a recipient
        /// (otherwise `/send` would answer 502 to a request it accepted).
        #[test]
        fn every_accepted_address_is_one_lettre_can_send_to(
            local in "[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]{1,30}(\\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]{1,30}){0,2}",
            labels in proptest::collection::vec("[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?", 2..5),
        ) {
            let raw = format!("{local}@{}", labels.join("."));
            if let Ok(address) = crate::domain::EmailAddress::parse(&raw) {
                proptest::prop_assert!(address.as_str().parse::<Mailbox>().is_ok(), "{raw}");
            }
        }
    }
}
