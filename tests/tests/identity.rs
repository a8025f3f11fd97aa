//! Goal: an organization's identity works end to end: `node init` creates a
//! key whose DID `did show` prints, and `did resolve` of that DID yields the
//! very same DID document, for two independent organizations.
//! Method: run the real `quorate` binary on two fresh node homes.

use quorate_tests::run_ok;

#[test]
fn init_show_resolve_agree_for_two_organizations() {
    let dir = tempfile::tempdir().unwrap();
    let mut dids = Vec::new();
    for name in ["org-a", "org-b"] {
        let home = dir.path().join(name);
        let home = home.to_str().unwrap();
        let init = run_ok(&["node", "init", "--home", home, "--name", name]);
        let shown = run_ok(&["did", "show", "--home", home]);
        let (did, document) = shown.split_once('\n').expect("DID line then document");
        assert!(init.contains(did), "init printed {init}");
        did.parse::<quorate_did::Did>().expect("a valid did:key");

        let resolved = run_ok(&["did", "resolve", did]);
        assert_eq!(resolved, document, "show and resolve disagree");
        let doc: serde_json::Value = serde_json::from_str(&resolved).unwrap();
        assert_eq!(doc["id"], did);
        assert_eq!(doc["verificationMethod"][0]["controller"], did);
        assert_eq!(
            run_ok(&["did", "show", "--home", home, "--did-only"]).trim(),
            did
        );
        dids.push(did.to_owned());
    }
    assert_ne!(dids[0], dids[1], "each organization gets its own key");
}
