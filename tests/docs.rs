//! The docs stay true: every setting is in the README's reference, every example config loads.

#[test]
fn every_setting_is_documented() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let missing: Vec<&str> = deploy_guard::config::SETTINGS
        .iter()
        .map(|(p, _)| *p)
        .filter(|p| !readme.contains(&format!("`{p}`")))
        .collect();
    assert!(missing.is_empty(), "README lacks {missing:?}");
}

#[test]
fn every_example_config_is_valid() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/examples");
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "yml") {
            let text = std::fs::read_to_string(&p).unwrap();
            deploy_guard::config::Config::from_yaml(&text, &[]).unwrap_or_else(|e| panic!("{}: {e:#}", p.display()));
            n += 1;
        }
    }
    assert!(n >= 2);
}
