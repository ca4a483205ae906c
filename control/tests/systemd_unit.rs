//! packaging/tandemd.service: `systemd-analyze verify` accepts it, and it keeps what tandemd
//! relies on (Type=notify, the watchdog, reload through `tandemctl config apply`, whose exit
//! status says whether the config was refused, the capabilities AF_XDP needs).

use std::path::Path;
use std::process::Command;

#[test]
fn the_unit_verifies_and_keeps_what_tandemd_needs() {
    let unit_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/tandemd.service");
    let unit = std::fs::read_to_string(&unit_path).unwrap();
    for line in [
        "Type=notify",
        "WatchdogSec=10s",
        "ExecReload=/usr/bin/tandemctl --socket /run/tandem/tandemd.sock config apply",
        "UMask=0077",
        "LimitMEMLOCK=infinity",
        "Environment=GLIBC_TUNABLES=glibc.malloc.hugetlb=1:glibc.malloc.top_pad=67108864",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
    ] {
        assert!(unit.lines().any(|l| l == line), "{line} missing");
    }
    let caps = unit
        .lines()
        .find_map(|l| l.strip_prefix("CapabilityBoundingSet="))
        .unwrap();
    for cap in [
        "CAP_NET_ADMIN",
        "CAP_NET_RAW",
        "CAP_BPF",
        "CAP_SYS_ADMIN",
        "CAP_IPC_LOCK",
        "CAP_CHOWN",
    ] {
        assert!(caps.split(' ').any(|c| c == cap), "{cap} not in {caps}");
    }
    assert!(unit.contains("RestrictAddressFamilies=") && unit.contains("AF_XDP"));
    // verify checks that the binaries exist: point them at the one just built.
    let dir = std::env::temp_dir().join(format!("tandem-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let local = dir.join("tandemd.service");
    std::fs::write(
        &local,
        unit.replace("/usr/sbin/tandemd", env!("CARGO_BIN_EXE_tandemd"))
            .replace("/usr/bin/tandemctl", env!("CARGO_BIN_EXE_tandemctl")),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&local)
        .output()
        .expect("systemd-analyze runs (scripts/setup installs systemd)");
    let _ = std::fs::remove_dir_all(&dir);
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && text.trim().is_empty(),
        "systemd-analyze verify: {text}"
    );
}
