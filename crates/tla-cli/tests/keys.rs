//! `tla keys create|list|revoke` on a data directory.

use std::process::Command;

fn tla(data: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tla"))
        .arg("keys")
        .args(args)
        .arg("--data")
        .arg(data)
        .output()
        .unwrap()
}

#[test]
fn create_list_revoke_and_refuse_unknown_scopes() {
    let data = std::env::temp_dir().join(format!("tla-keys-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let out = tla(
        &data,
        &[
            "create",
            "--scopes",
            "decide,ingest",
            "--label",
            "ad server",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let (id, secret) = tla_server::auth::parse_token(&token).expect("a well-formed token");
    let store = tla_store::Store::open(&data).unwrap();
    let stored = store.key(id).unwrap().unwrap();
    assert_eq!(stored.scopes, ["decide", "ingest"]);
    assert!(
        tla_server::auth::secret_matches(secret, &stored.hash),
        "only the hash is stored"
    );
    drop(store);

    let list = String::from_utf8(tla(&data, &["list"]).stdout).unwrap();
    assert!(
        list.contains(id) && list.contains("decide,ingest") && list.contains("active"),
        "{list}"
    );
    assert!(!list.contains(secret), "list never shows secrets");

    assert!(tla(&data, &["revoke", id]).status.success());
    let list = String::from_utf8(tla(&data, &["list"]).stdout).unwrap();
    assert!(list.contains("revoked"), "{list}");

    let out = tla(&data, &["revoke", "ffffffffffff"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no key with id"));
    let out = tla(&data, &["create", "--scopes", "write"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("accepted: admin, decide, ingest, read, correct")
    );
    std::fs::remove_dir_all(&data).unwrap();
}
