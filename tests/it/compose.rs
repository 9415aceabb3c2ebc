//! The compose runtime over SSH, as data: the exact commands a deploy of examples/compose.yml
//! runs (the end-to-end run with real Docker is in .github/workflows/ci.yml).

#[test]
fn the_plan_for_a_compose_deployment() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/compose.yml")).unwrap();
    let config = deploy_guard::config::Config::from_yaml(&text, &[]).unwrap();
    let w = deploy_guard::world::World::offline(config).unwrap();
    let sha = deploy_guard::model::Sha::parse("abc1234def5678abc1234def5678abc1234def56").unwrap();
    let args = deploy_guard::commands::deploy::DeployArgs {
        sha: &sha,
        tag: "v2.4.0",
        previous_tag: Some("v2.3.1"),
        fallback_previous_tag: None,
        config_arg: "",
        allow_destructive: false,
    };
    let plan = deploy_guard::commands::deploy::plan(&w, &args);
    let rendered = plan.render();
    // Time-stamped backup key: keep the snapshot stable.
    let stable: String = rendered
        .lines()
        .map(|l| if l.contains("pre-deploy-") { "  (backup key line)" } else { l })
        .collect::<Vec<_>>()
        .join("\n");
    insta::assert_snapshot!(stable);
}
