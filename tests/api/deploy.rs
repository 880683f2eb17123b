//! The deployment files as the tools that read them see them: the systemd unit through
//! `systemd-analyze`, the alert rules through `promtool`, the dashboard against the metrics,
//! docker-compose.yml through `docker-compose config` (no Docker engine needed).

use std::process::Command;

use serde_json::json;

use crate::helpers::TestApp;
use crate::support::telegram::{BotApi, Scripted};

/// `deploy/mfa.service` with its `ExecStart` pointed at the binary this test suite built.
fn unit_file(dir: &std::path::Path) -> std::path::PathBuf {
    let unit = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/mfa.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/local/bin/mfa serve"), "the documented install path");
    let path = dir.join("mfa.service");
    std::fs::write(&path, unit.replace("/usr/local/bin/mfa", env!("CARGO_BIN_EXE_mfa"))).unwrap();
    path
}

/// systemd reads the unit without a warning (a misspelt option or value is only warned
/// about, so the output must be empty), and rates its exposure "OK" (at most 2.0 of 10).
#[test]
fn the_systemd_unit_is_valid_and_hardened() {
    if Command::new("systemd-analyze").arg("--version").output().is_err() {
        panic!("systemd-analyze is needed (Debian's systemd package; scripts/test installs it)");
    }
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_file(dir.path());
    let verify = Command::new("systemd-analyze").arg("verify").arg(&unit).output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&verify.stdout), String::from_utf8_lossy(&verify.stderr));
    assert!(verify.status.success() && said.trim().is_empty(), "systemd-analyze verify:\n{said}");

    let security = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--threshold=20", "--no-pager"])
        .arg(&unit)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&security.stdout);
    assert!(security.status.success(), "exposure above 2.0:\n{report}");
    assert!(report.contains("Overall exposure level for mfa.service"), "{report}");
}

/// The Prometheus rules (deploy/prometheus/mfa-alerts.yml) load in promtool, the Grafana
/// dashboard (deploy/grafana/mfa-dashboard.json) parses, and every metric either names is
/// one the two services export, with the suffix its type gives it.
#[tokio::test]
async fn the_alert_rules_and_the_dashboard_name_only_metrics_the_services_export() {
    let root = env!("CARGO_MANIFEST_DIR");
    let rules_path = format!("{root}/deploy/prometheus/mfa-alerts.yml");
    let checked = Command::new("promtool")
        .args(["check", "rules", &rules_path])
        .output()
        .unwrap_or_else(|e| panic!("promtool is needed (Debian's prometheus; scripts/test installs it): {e}"));
    let said = format!("{}{}", String::from_utf8_lossy(&checked.stdout), String::from_utf8_lossy(&checked.stderr));
    assert!(checked.status.success() && said.contains("SUCCESS"), "promtool check rules:\n{said}");

    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{root}/deploy/grafana/mfa-dashboard.json")).unwrap())
            .expect("the dashboard is JSON");
    let exprs: Vec<&str> = dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|p| p["targets"].as_array().expect("each panel has targets"))
        .map(|t| t["expr"].as_str().expect("each target has an expr"))
        .collect();
    assert!(exprs.len() >= 10, "{exprs:?}");

    // A metric with labels is exported once it has a value: some traffic first, a retry,
    // a sent code and a security alert among it.
    let bot = BotApi::start().await;
    bot.script([Scripted::Error(500, "Internal Server Error")]);
    let app = TestApp::builder().envs(bot.env()).start().await;
    app.enroll("dair", None, Some("42")).await;
    assert_eq!(app.post_json("/request-otp", json!({"username": "dair"})).await.status, 200);
    assert_eq!(app.verify("dair", "000000").await.status, 401);
    app.users().new_recovery_codes(&mfa::domain::Username::parse("dair").unwrap()).await.unwrap();
    crate::helpers::until_async("the security alert counted", || async {
        let text = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
        text.contains("mfa_security_alerts_total{").then_some(())
    })
    .await;
    let mut exported = std::collections::BTreeMap::new();
    for addr in [app.addr, app.notify_addr.unwrap()] {
        let text = app.client.get(format!("http://{addr}/metrics")).send().await.unwrap().text().await.unwrap();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                exported.insert(name.to_string(), kind.to_string());
            }
        }
    }
    let rules = std::fs::read_to_string(&rules_path).unwrap();
    let mut used: Vec<String> = std::iter::once(rules.as_str())
        .chain(exprs.iter().copied())
        .flat_map(|text| text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')))
        .filter(|token| ["mfa_", "notify_", "http_"].iter().any(|p| token.starts_with(p)))
        .map(String::from)
        .collect();
    used.sort();
    used.dedup();
    assert!(used.len() >= 8, "{used:?}");
    for name in &used {
        let (base, kind) =
            [("_total", "counter"), ("_bucket", "histogram"), ("_sum", "histogram"), ("_count", "histogram")]
                .iter()
                .find_map(|(suffix, kind)| name.strip_suffix(suffix).map(|base| (base, Some(*kind))))
                .unwrap_or((name.as_str(), None));
        let actual = exported.get(base).unwrap_or_else(|| panic!("{name}: no such metric; exported: {exported:?}"));
        if let Some(kind) = kind {
            assert_eq!(actual, kind, "{name} is a {actual}");
        } else {
            assert_eq!(actual, "gauge", "{name}: a {actual} needs its suffix");
        }
    }
}

/// The key the compose tests put in `.env`.
const COMPOSE_KEY: &str = "0f3c9a7e51d24b86a1e09c7d3b5f8e2a";

/// The seed's `.env` (its placeholder `FLASK_SECRET_KEY` among it) without its sample users,
/// which a server beyond loopback refuses, and with the variables docker-compose.yml requires.
fn compose_dotenv() -> String {
    let seed = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/seed.env")).unwrap();
    assert!(seed.contains("FLASK_SECRET_KEY=your-secret-key"), "{seed}");
    let mut dotenv: String = seed.lines().filter(|l| !l.contains("_SECRET=")).map(|l| format!("{l}\n")).collect();
    dotenv.push_str(&format!(
        "SECRET_KEY={COMPOSE_KEY}\nPOSTGRES_PASSWORD=db-password-51c0\n\
         MFA_API_KEYS=api-key-7b2e94d0c1a3f856\nNOTIFY_API_TOKEN=notify-token-3d8a61f0b9c2\n"
    ));
    dotenv
}

/// `docker-compose config` on a copy of docker-compose.yml beside this `.env` (which compose
/// both interpolates and, as `env_file`, puts into the containers): the rendered file as
/// JSON, or what compose said when it refused.
fn compose_config(dotenv: &str) -> Result<serde_json::Value, String> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(concat!(env!("CARGO_MANIFEST_DIR"), "/docker-compose.yml"), dir.path().join("docker-compose.yml"))
        .unwrap();
    std::fs::write(dir.path().join(".env"), dotenv).unwrap();
    let mut compose = Command::new("docker-compose");
    compose.args(["-f", "docker-compose.yml", "config"]).current_dir(dir.path()).env_clear();
    for var in ["PATH", "HOME"] {
        if let Some(value) = std::env::var_os(var) {
            compose.env(var, value);
        }
    }
    let rendered = compose.output().unwrap_or_else(|e| {
        panic!("docker-compose is needed (Debian's docker-compose; scripts/test installs it): {e}")
    });
    if !rendered.status.success() {
        return Err(String::from_utf8_lossy(&rendered.stderr).into_owned());
    }
    // docker-compose 1.x prints YAML only: the test virtualenv's PyYAML reads it (the
    // `python3` on PATH may be another Python than the one docker-compose runs on).
    let python = std::env::var("MFA_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let mut to_json = Command::new(&python)
        .args(["-c", "import json, sys, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{python} is needed, with PyYAML (scripts/test installs it): {e}"));
    std::io::Write::write_all(&mut to_json.stdin.take().unwrap(), &rendered.stdout).unwrap();
    let json = to_json.wait_with_output().unwrap();
    assert!(json.status.success(), "{python} -c 'import yaml' failed: PyYAML is needed (scripts/test installs it)");
    Ok(serde_json::from_slice(&json.stdout).expect("the rendered compose file as JSON"))
}

/// A service's environment in the container: the image's `ENV` (Dockerfile), then what
/// compose renders (`env_file`, overridden by `environment`).
fn container_env(service: &serde_json::Value) -> Vec<(String, String)> {
    let dockerfile = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Dockerfile")).unwrap();
    let mut env = Vec::new();
    for line in dockerfile.lines().skip_while(|l| !l.starts_with("ENV ")) {
        let words = line.trim_start_matches("ENV ").trim_end_matches('\\');
        env.extend(words.split_whitespace().map(|w| {
            let (k, v) = w.split_once('=').expect("ENV NAME=VALUE");
            (k.to_string(), v.to_string())
        }));
        if !line.ends_with('\\') {
            break;
        }
    }
    assert!(env.iter().any(|(k, _)| k == "MFA_DATA_DIR"), "the Dockerfile's ENV: {env:?}");
    let rendered = service["environment"].as_object().expect("an environment");
    env.extend(rendered.iter().map(|(k, v)| (k.clone(), v.as_str().expect("a string").to_string())));
    env
}

/// The built `mfa` with exactly this environment, in `empty` (a directory without `.env`,
/// as the image's working directory is).
fn mfa_in_container(env: &[(String, String)], empty: &std::path::Path) -> tokio::process::Command {
    let mut mfa = tokio::process::Command::new(env!("CARGO_BIN_EXE_mfa"));
    mfa.env_clear().envs(env.iter().map(|(k, v)| (k, v))).current_dir(empty).kill_on_drop(true);
    mfa
}

/// docker-compose.yml as compose renders it: every service has a health check and the two
/// data directories are named volumes; the MFA server gets `SECRET_KEY` (the same key in
/// every new container, which would otherwise generate its own and refuse the database)
/// with the seed's placeholder `FLASK_SECRET_KEY` emptied, the notifier no key at all; and
/// compose refuses to start without each required variable, the database password among
/// them. Each service's environment is one `mfa check-config` accepts.
#[tokio::test]
async fn the_compose_file_requires_the_key_and_the_passwords_and_checks_every_service() {
    let dotenv = compose_dotenv();
    let config = compose_config(&dotenv).unwrap_or_else(|e| panic!("docker-compose config:\n{e}"));
    let services = &config["services"];
    for name in ["postgres", "notifier", "mfa"] {
        let test = services[name]["healthcheck"]["test"].as_array();
        assert!(test.is_some_and(|t| t.len() > 1 && t[0] == "CMD"), "{name} has no health check: {config:#}");
    }
    let volume = |service: &str, target: &str| {
        services[service]["volumes"].as_array().into_iter().flatten().any(|v| v.as_str() == Some(target))
    };
    assert!(volume("mfa", "mfadata:/var/lib/mfa/data:rw"), "{config:#}");
    assert!(volume("postgres", "pgdata:/var/lib/postgresql/data:rw"), "{config:#}");
    assert!(config["volumes"]["mfadata"].is_object() && config["volumes"]["pgdata"].is_object(), "{config:#}");

    let mfa = &services["mfa"]["environment"];
    assert_eq!(mfa["SECRET_KEY"], COMPOSE_KEY, "{config:#}");
    assert_eq!(mfa["FLASK_SECRET_KEY"], "", "the seed's placeholder must not reach the server: {config:#}");
    let notifier = &services["notifier"]["environment"];
    assert!(["SECRET_KEY", "FLASK_SECRET_KEY"].iter().all(|k| notifier[k] == ""), "{config:#}");
    assert_eq!(services["postgres"]["environment"]["POSTGRES_PASSWORD"], "db-password-51c0", "{config:#}");
    assert_eq!(mfa["DATABASE_URL"], "postgres://mfa:db-password-51c0@postgres:5432/mfa", "{config:#}");

    assert_eq!(services["postgres"]["healthcheck"]["test"][1], "pg_isready", "{config:#}");

    let empty = tempfile::tempdir().unwrap();
    for name in ["mfa", "notifier"] {
        let env = container_env(&services[name]);
        let checked = mfa_in_container(&env, empty.path()).arg("check-config").output().await.unwrap();
        let said = String::from_utf8_lossy(&checked.stdout);
        assert!(checked.status.success(), "{name}: {said}{}", String::from_utf8_lossy(&checked.stderr));
        let key = said.lines().find(|l| l.trim_start().starts_with("SECRET_KEY ")).expect("a SECRET_KEY row");
        assert_eq!(key.contains("(set)"), name == "mfa", "{name}: {said}");
    }

    let file = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docker-compose.yml")).unwrap();
    for var in ["SECRET_KEY", "POSTGRES_PASSWORD", "MFA_API_KEYS", "NOTIFY_API_TOKEN"] {
        // Every use is required: a default in one service (`${POSTGRES_PASSWORD:-mfa}` for
        // PostgreSQL alone) would not stop compose while another use still requires it.
        let uses = file.matches(&format!("${{{var}")).count();
        assert!(uses > 0 && file.matches(&format!("${{{var}:?")).count() == uses, "{var} has a default: {file}");
        let without: String =
            dotenv.lines().filter(|l| !l.starts_with(&format!("{var}="))).map(|l| l.to_owned() + "\n").collect();
        for dotenv in [without.clone(), format!("{without}{var}=\n")] {
            let refused = compose_config(&dotenv).expect_err(var);
            assert!(refused.contains(&format!("add {var} to .env")), "without {var}:\n{refused}");
        }
    }
}

/// The compose health checks of the two `mfa` services, run as the container would (the
/// built binary, the service's environment), against running services: healthy; and against
/// a port nothing listens on: unhealthy. Each checks the port its service listens on.
#[tokio::test]
async fn the_compose_health_checks_pass_against_the_services_and_fail_without_them() {
    let config = compose_config(&compose_dotenv()).unwrap_or_else(|e| panic!("docker-compose config:\n{e}"));
    let app = TestApp::builder().start().await;
    let empty = tempfile::tempdir().unwrap();
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    for (name, bind_var, running) in
        [("mfa", "MFA_BIND", app.addr), ("notifier", "NOTIFY_BIND", app.notify_addr.unwrap())]
    {
        let service = &config["services"][name];
        let test: Vec<&str> = service["healthcheck"]["test"]
            .as_array()
            .unwrap_or_else(|| panic!("{name}: no health check"))
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert_eq!(test[..3], ["CMD", "mfa", "healthcheck"], "{name}: {test:?}");
        let env = container_env(service);
        let bind = env.iter().rev().find(|(k, _)| k == bind_var).map(|(_, v)| v.clone()).unwrap();
        let port = bind.rsplit_once(':').unwrap().1;
        let in_container = format!("127.0.0.1:{port}");
        let url = test.iter().find(|a| a.starts_with("http://")).expect("a --url");
        assert!(url.starts_with(&format!("http://{in_container}/")), "{name} listens on {bind}, checked at {url}");
        for (addr, healthy) in [(running, true), (closed, false)] {
            let args: Vec<String> = test[2..].iter().map(|a| a.replace(&in_container, &addr.to_string())).collect();
            let checked = mfa_in_container(&env, empty.path()).args(&args).output().await.unwrap();
            let said =
                format!("{}{}", String::from_utf8_lossy(&checked.stdout), String::from_utf8_lossy(&checked.stderr));
            assert_eq!(checked.status.success(), healthy, "{name}: mfa {args:?}:\n{said}");
            assert!(healthy || said.contains("is not reachable"), "{name}: mfa {args:?}:\n{said}");
        }
    }
}
