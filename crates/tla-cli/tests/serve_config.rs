//! `tla serve` configuration: a bad config file or environment value is refused with a
//! message that says what is accepted, before anything is opened.

use std::process::Command;

fn tla() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tla"))
}

fn temp(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("tla-serve-config-{}-{name}", std::process::id()))
}

#[test]
fn refuses_unknown_config_keys_wrong_versions_and_bad_environment() {
    let file = temp("bad.toml");
    std::fs::write(&file, "version = 1\nlisten_on = \"127.0.0.1:1\"\n").unwrap();
    let out = tla()
        .args(["serve", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("listen_on") && err.contains("examples/tla.toml"),
        "{err}"
    );

    std::fs::write(&file, "version = 2\n").unwrap();
    let out = tla()
        .args(["serve", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("version = 2 is not accepted; accepted: 1"),
        "{err}"
    );
    std::fs::remove_file(&file).unwrap();

    let data = temp("data");
    let out = tla()
        .args(["serve", "--data"])
        .arg(&data)
        .env("TLA_LISTEN", "nowhere")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("TLA_LISTEN=\"nowhere\" is not an address"),
        "{err}"
    );
    let out = tla()
        .args(["serve", "--data"])
        .arg(&data)
        .env("TLA_ADMIN_KEY", "secret")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("TLA_ADMIN_KEY is not a key of the form"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&data);
}

#[test]
fn the_example_config_file_is_accepted() {
    // `--listen` on the command line beats the file; a port already taken proves the
    // file parsed (the error is about listening, not about the file).
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let data = temp("example-data");
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/tla.toml");
    let out = tla()
        .args(["serve", "--config", example, "--listen", &address, "--data"])
        .arg(&data)
        .env(
            "TLA_ADMIN_KEY",
            "tla_0123456789ab_0123456789abcdef0123456789abcdef",
        )
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(&format!("cannot listen on {address}")),
        "{err}"
    );
    drop(taken);
    let _ = std::fs::remove_dir_all(&data);
}
