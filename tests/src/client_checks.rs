//! The client apps' own config checks, run on a file: `sing-box check`,
//! `mihomo -t`, `v2ray -test`. A check fails on an error exit and on a
//! deprecation warning. Binaries: [`crate::clients`] finds them.

use std::path::Path;
use std::process::{Command, Stdio};

/// `sing-box check` on the config in `file`.
pub fn sing_box_check(bin: &Path, file: &Path) -> Result<(), String> {
    checked(Command::new(bin).arg("check").arg("-c").arg(file))
}

/// `mihomo -t` on the config in `file`, with `home` as Mihomo's directory
/// (give it a `Country.mmdb`: offline, Mihomo would try to download one).
pub fn mihomo_test(bin: &Path, home: &Path, file: &Path) -> Result<(), String> {
    checked(
        Command::new(bin)
            .arg("-t")
            .arg("-d")
            .arg(home)
            .arg("-f")
            .arg(file),
    )
}

/// `v2ray -test` (`xray run -test`) on the config in `file`.
pub fn v2ray_test(bin: &Path, file: &Path) -> Result<(), String> {
    let mut command = Command::new(bin);
    if xray_core_client::testing::binary_flavor(bin) == xray_core_client::Flavor::Xray {
        command.arg("run");
    }
    checked(command.arg("-test").arg("-config").arg(file))
}

/// Runs a config check: it fails on an error exit, and on a deprecation
/// warning too (what the next client version refuses); the failure is
/// the app's output.
fn checked(command: &mut Command) -> Result<(), String> {
    let out = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {command:?}: {e}"))?;
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() && !text.to_ascii_lowercase().contains("deprecat") {
        Ok(())
    } else {
        Err(text)
    }
}
