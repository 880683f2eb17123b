//! The deployment files as the tools that read them see them: the systemd unit through
//! `systemd-analyze`, the alert rules through `promtool`, the dashboard against the metrics.

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

    // A metric with labels is exported once it has a value: some traffic first, a retry
    // and a sent code among it.
    let bot = BotApi::start().await;
    bot.script([Scripted::Error(500, "Internal Server Error")]);
    let app = TestApp::builder().envs(bot.env()).start().await;
    app.enroll("dair", None, Some("42")).await;
    assert_eq!(app.post_json("/request-otp", json!({"username": "dair"})).await.status, 200);
    assert_eq!(app.verify("dair", "000000").await.status, 401);
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
