//! The reverse-proxy examples (`deploy/nginx/mfa.conf`, `deploy/caddy/Caddyfile`) in a real
//! nginx and a real Caddy on loopback, through TLS: the rate limit keys on the client the
//! proxy saw, whatever the client writes in `X-Forwarded-For`, and the public name the
//! proxy passes gets through the `Host` check. Clients come from distinct loopback
//! addresses (127.0.0.2, .3, …), so the proxy sees distinct `$remote_addr`s.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use tempfile::TempDir;

use crate::helpers::TestApp;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
/// The public name in both examples.
const NAME: &str = "mfa.example.com";

/// A proxy running in a directory of its own; killed (and reaped) when dropped, so a
/// failing test leaves no process behind.
struct Proxy {
    child: Child,
    addr: SocketAddr,
    /// The CA that signed the proxy's certificate for [`NAME`].
    ca: Vec<u8>,
    dir: TempDir,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proxy {
    /// Waits (at most 10 s) until the proxy accepts connections.
    async fn ready(mut self, log: &str) -> Self {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("the proxy exited ({status}):\n{}", self.log(log));
            }
            if tokio::net::TcpStream::connect(self.addr).await.is_ok() {
                return self;
            }
            assert!(
                Instant::now() < deadline,
                "the proxy did not listen on {} within 10 s:\n{}",
                self.addr,
                self.log(log)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default()
    }

    /// A client that connects from `127.0.0.n`, trusts only the test CA and finds [`NAME`]
    /// at the proxy.
    fn client(&self, n: u8) -> reqwest::Client {
        let _ = rustls::crypto::ring::default_provider().install_default();
        reqwest::Client::builder()
            .local_address(IpAddr::from([127, 0, 0, n]))
            .resolve(NAME, self.addr)
            .tls_certs_only([reqwest::Certificate::from_pem(&self.ca).unwrap()])
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap()
    }

    /// `POST /verify` for an unknown user through the proxy: 404 when let through, 429 when
    /// the client's quota is spent, 421 when the server refuses the name. `forwarded` is a
    /// client's own `X-Forwarded-For`.
    async fn verify(&self, client: &reqwest::Client, forwarded: Option<&str>) -> u16 {
        let mut request = client
            .post(format!("https://{NAME}:{}/verify", self.addr.port()))
            .json(&json!({"username": "nobody", "token": "123456"}));
        if let Some(forwarded) = forwarded {
            request = request.header("x-forwarded-for", forwarded);
        }
        request.send().await.unwrap().status().as_u16()
    }
}

fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

fn run(command: &mut Command) {
    let out = command.output().unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(out.status.success(), "{command:?}:\n{}", String::from_utf8_lossy(&out.stderr));
}

/// A throw-away CA and a certificate it signed for [`NAME`] (`cert.pem`, `key.pem` in `dir`),
/// made with the openssl command; the CA's certificate in PEM.
fn certificate(dir: &Path) -> Vec<u8> {
    let openssl = |args: &str| run(Command::new("openssl").args(args.split_whitespace()).current_dir(dir));
    let key = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    openssl(&format!("req -x509 {key} -keyout ca.key -out ca.pem -days 2 -subj /CN=mfa-test-CA"));
    openssl(&format!("req {key} -keyout key.pem -out cert.csr -subj /CN={NAME}"));
    std::fs::write(dir.join("ext.cnf"), format!("subjectAltName=DNS:{NAME}\nbasicConstraints=CA:FALSE\n")).unwrap();
    openssl("x509 -req -in cert.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile ext.cnf -out cert.pem");
    std::fs::read(dir.join("ca.pem")).unwrap()
}

/// `text` with `from` (which must be there, once) replaced: an edit of the example that
/// this test no longer matches fails here instead of testing something else.
fn replace_once(text: &str, from: &str, to: &str) -> String {
    assert_eq!(text.matches(from).count(), 1, "the example has `{from}` once:\n{text}");
    text.replacen(from, to, 1)
}

/// `deploy/nginx/mfa.conf` in a real nginx (foreground, one process, everything in a temp
/// directory) in front of `app`, listening on a free loopback port.
async fn nginx(app: &TestApp) -> Proxy {
    // In /usr/sbin, which is not on every user's PATH.
    let program = ["nginx", "/usr/sbin/nginx"]
        .into_iter()
        .find(|program| Command::new(program).arg("-v").output().is_ok())
        .expect("nginx is needed (Debian's nginx; scripts/test installs it)");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let ca = certificate(dir.path());
    let addr = free_port();
    let mut site = std::fs::read_to_string(format!("{ROOT}/deploy/nginx/mfa.conf")).unwrap();
    site = replace_once(&site, "    listen 443 ssl;\n", &format!("    listen {addr} ssl;\n"));
    site = replace_once(&site, "    listen [::]:443 ssl;\n", "");
    site = replace_once(&site, "/etc/ssl/mfa/fullchain.pem;", &format!("{d}/cert.pem;"));
    site = replace_once(&site, "/etc/ssl/mfa/privkey.pem;", &format!("{d}/key.pem;"));
    site = replace_once(&site, "proxy_pass http://127.0.0.1:6000;", &format!("proxy_pass http://{};", app.addr));
    std::fs::write(dir.path().join("mfa.conf"), site).unwrap();
    // One process without workers: nothing to switch to user nobody when run as root, and
    // one PID to kill.
    let main = format!(
        "daemon off;\nmaster_process off;\npid {d}/nginx.pid;\nerror_log {d}/error.log info;\n\
         events {{ worker_connections 64; }}\n\
         http {{\n    access_log {d}/access.log;\n    client_body_temp_path {d}/body;\n    proxy_temp_path {d}/proxy;\n    \
         fastcgi_temp_path {d}/fastcgi;\n    uwsgi_temp_path {d}/uwsgi;\n    scgi_temp_path {d}/scgi;\n    \
         include {d}/mfa.conf;\n}}\n"
    );
    std::fs::write(dir.path().join("nginx.conf"), main).unwrap();
    let child = Command::new(program)
        .arg("-p")
        .arg(dir.path())
        .arg("-e")
        .arg(dir.path().join("error.log"))
        .arg("-c")
        .arg(dir.path().join("nginx.conf"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("stderr.log")).unwrap())
        .spawn()
        .unwrap();
    Proxy { child, addr, ca, dir }.ready("error.log").await
}

#[tokio::test]
async fn through_nginx_each_client_has_its_own_quota_and_cannot_forge_another() {
    let app = TestApp::builder()
        .envs(&[("RATE_LIMIT", "1 per minute"), ("TRUSTED_PROXIES", "127.0.0.1"), ("ALLOWED_HOSTS", NAME)])
        .start()
        .await;
    let nginx = nginx(&app).await;
    let (a, b, c) = (nginx.client(2), nginx.client(3), nginx.client(4));

    assert_eq!(nginx.verify(&a, None).await, 404, "a's first request, with the public name as Host");
    assert_eq!(nginx.verify(&a, None).await, 429, "a's second");
    assert_eq!(nginx.verify(&a, Some("1.2.3.4")).await, 429, "nginx appends 127.0.0.2 to a forged header");
    assert_eq!(nginx.verify(&b, Some("127.0.0.2")).await, 404, "b is 127.0.0.3, whatever it claims");
    assert_eq!(nginx.verify(&b, None).await, 429);
    assert_eq!(nginx.verify(&c, None).await, 404);
    // nginx writes a request's access line after its answer has gone out.
    let saw_both = |log: &str| log.contains("127.0.0.2 ") && log.contains("127.0.0.4 ");
    crate::helpers::until_async("nginx's access lines", || async { saw_both(&nginx.log("access.log")).then_some(()) })
        .await;
}

#[tokio::test]
async fn through_nginx_without_trusted_proxies_all_clients_share_the_proxys_quota() {
    let app = TestApp::builder().envs(&[("RATE_LIMIT", "1 per minute"), ("ALLOWED_HOSTS", NAME)]).start().await;
    let nginx = nginx(&app).await;
    assert_eq!(nginx.verify(&nginx.client(2), None).await, 404);
    assert_eq!(nginx.verify(&nginx.client(3), None).await, 429, "every request comes from 127.0.0.1");
}

#[tokio::test]
async fn through_nginx_the_public_name_must_be_in_allowed_hosts() {
    let app = TestApp::builder().envs(&[("TRUSTED_PROXIES", "127.0.0.1")]).start().await;
    let nginx = nginx(&app).await;
    assert_eq!(nginx.verify(&nginx.client(2), None).await, 421, "nginx passes Host: {NAME}");
}

/// The Caddyfile as Caddy reads it (`caddy validate`), then in a real Caddy (TLS with the
/// test's certificate instead of ACME, no admin endpoint, its state in a temp directory).
#[tokio::test]
async fn the_caddy_example_is_valid_and_the_limit_keys_on_the_client_caddy_saw() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let caddy = |args: &[&str]| {
        let mut command = Command::new("caddy");
        command.args(args).env("HOME", dir.path()).env("XDG_DATA_HOME", dir.path()).env("XDG_CONFIG_HOME", dir.path());
        command
    };
    let example = format!("{ROOT}/deploy/caddy/Caddyfile");
    let validated = caddy(&["validate", "--config", &example, "--adapter", "caddyfile"])
        .output()
        .unwrap_or_else(|e| panic!("caddy is needed (Debian's caddy; scripts/test installs it): {e}"));
    let said = format!("{}{}", String::from_utf8_lossy(&validated.stdout), String::from_utf8_lossy(&validated.stderr));
    assert!(validated.status.success() && said.contains("Valid configuration"), "caddy validate:\n{said}");
    assert!(!said.contains("not formatted"), "run caddy fmt --overwrite on it:\n{said}");

    let app = TestApp::builder()
        .envs(&[("RATE_LIMIT", "1 per minute"), ("TRUSTED_PROXIES", "127.0.0.1"), ("ALLOWED_HOSTS", NAME)])
        .start()
        .await;
    let ca = certificate(dir.path());
    let addr = free_port();
    let mut site = std::fs::read_to_string(&example).unwrap();
    site = replace_once(
        &site,
        &format!("{NAME} {{\n"),
        &format!(
            "{{\n\tadmin off\n\tauto_https off\n\tstorage file_system {d}/caddy\n}}\n\n\
             https://{NAME}:{} {{\n\tbind 127.0.0.1\n\ttls {d}/cert.pem {d}/key.pem\n",
            addr.port()
        ),
    );
    site = replace_once(&site, "reverse_proxy 127.0.0.1:6000\n", &format!("reverse_proxy {}\n", app.addr));
    std::fs::write(dir.path().join("Caddyfile"), site).unwrap();
    let child = caddy(&["run", "--config", &format!("{d}/Caddyfile"), "--adapter", "caddyfile"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("caddy.log")).unwrap())
        .spawn()
        .unwrap();
    let caddy = Proxy { child, addr, ca, dir }.ready("caddy.log").await;
    let (a, b) = (caddy.client(2), caddy.client(3));

    assert_eq!(caddy.verify(&a, None).await, 404, "a's first request, with the public name as Host");
    assert_eq!(caddy.verify(&a, Some("1.2.3.4")).await, 429, "Caddy replaces a forged header");
    assert_eq!(caddy.verify(&b, Some("127.0.0.2")).await, 404, "b is 127.0.0.3, whatever it claims");
    assert_eq!(caddy.verify(&b, None).await, 429);
}

/// docs/operations.md shows both examples as they are in deploy/.
#[test]
fn the_operations_guide_shows_the_tested_examples() {
    let guide = std::fs::read_to_string(format!("{ROOT}/docs/operations.md")).unwrap();
    for (file, lang) in [("deploy/nginx/mfa.conf", "nginx"), ("deploy/caddy/Caddyfile", "caddyfile")] {
        let text = std::fs::read_to_string(format!("{ROOT}/{file}")).unwrap();
        assert!(guide.contains(&format!("```{lang}\n{text}```\n")), "docs/operations.md shows {file} as it is");
    }
}
