//! The deployment files as the tools that read them see them: the systemd unit through
//! `systemd-analyze`.

use std::process::Command;

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
