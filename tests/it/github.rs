//! Reporting on GitHub, against a local HTTP server that records every request (octocrab pointed
//! at it with GITHUB_API_URL): exact endpoints and bodies, comment upsert, API errors.

use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use crate::common;
use common::{App, SHA};

#[derive(Clone, Debug)]
pub(crate) struct Req {
    pub method: String,
    pub path: String,
    pub body: Value,
    auth: String,
}

#[derive(Default)]
pub(crate) struct Fake {
    pub requests: Vec<Req>,
    pub comments: Vec<Value>,
    /// Answer every request with this status instead.
    pub fail_with: Option<u16>,
    /// What `GET deployments` lists.
    pub deployments: Vec<Value>,
    /// Pull request 7: its labels' names and its files (`filename`, `status`).
    pub labels: Vec<String>,
    pub pr_files: Vec<Value>,
}

/// GitHub's API as far as deploy-guard uses it.
fn answer(f: &mut Fake, r: &Req) -> (u16, Value) {
    if let Some(code) = f.fail_with {
        return (code, json!({"message": "Bad credentials", "documentation_url": "https://docs.github.com"}));
    }
    let p = r.path.split('?').next().unwrap();
    match (r.method.as_str(), p) {
        ("GET", "/repos/acme/shop/deployments") => (200, Value::Array(f.deployments.clone())),
        ("GET", "/repos/acme/shop/deployments/5/statuses") => (200, json!([{"state": "failure"}])),
        ("GET", "/repos/acme/shop/deployments/4/statuses") => (200, json!([{"state": "success"}])),
        ("POST", "/repos/acme/shop/deployments") => (201, json!({"id": 42})),
        ("POST", "/repos/acme/shop/deployments/42/statuses") => (201, json!({"id": 1})),
        ("GET", p) if p.ends_with("/pulls") => (200, json!([{"number": 7}])),
        ("GET", "/repos/acme/shop/issues/7/comments") => (200, Value::Array(f.comments.clone())),
        ("GET", "/repos/acme/shop/issues/7/labels") => {
            (200, f.labels.iter().map(|l| json!({"name": l})).collect::<Value>())
        }
        ("GET", "/repos/acme/shop/pulls/7/files") => (200, Value::Array(f.pr_files.clone())),
        ("POST", "/repos/acme/shop/issues/7/comments") => {
            let id = 1000 + f.comments.len();
            let c = json!({"id": id, "body": r.body["body"], "html_url": format!("https://github.com/acme/shop/pull/7#issuecomment-{id}")});
            f.comments.push(c.clone());
            (201, c)
        }
        ("PATCH", p) if p.starts_with("/repos/acme/shop/issues/comments/") => {
            let id: u64 = p.rsplit('/').next().unwrap().parse().unwrap();
            for c in &mut f.comments {
                if c["id"] == id {
                    c["body"] = r.body["body"].clone();
                }
            }
            (200, json!({"id": id, "html_url": format!("https://github.com/acme/shop/pull/7#issuecomment-{id}")}))
        }
        ("POST", "/repos/acme/shop/issues") => {
            (201, json!({"number": 9, "html_url": "https://github.com/acme/shop/issues/9"}))
        }
        _ => (404, json!({"message": "Not Found"})),
    }
}

pub(crate) async fn serve(fake: Arc<Mutex<Fake>>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let fake = fake.clone();
            tokio::spawn(async move {
                let (r, mut w) = stream.into_split();
                let mut r = BufReader::new(r);
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let mut parts = line.split_whitespace();
                    let (method, path) =
                        (parts.next().unwrap_or("").to_string(), parts.next().unwrap_or("").to_string());
                    let (mut len, mut auth) = (0usize, String::new());
                    loop {
                        let mut h = String::new();
                        r.read_line(&mut h).await.unwrap();
                        if h == "\r\n" || h.is_empty() {
                            break;
                        }
                        let (k, v) = h.split_once(':').unwrap_or((&h, ""));
                        match k.to_ascii_lowercase().as_str() {
                            "content-length" => len = v.trim().parse().unwrap_or(0),
                            "authorization" => auth = v.trim().to_string(),
                            _ => {}
                        }
                    }
                    let mut body = vec![0u8; len];
                    r.read_exact(&mut body).await.unwrap();
                    let req = Req { method, path, body: serde_json::from_slice(&body).unwrap_or(Value::Null), auth };
                    let (code, resp) = {
                        let mut f = fake.lock().unwrap();
                        f.requests.push(req.clone());
                        answer(&mut f, &req)
                    };
                    let text = resp.to_string();
                    let head = format!(
                        "HTTP/1.1 {code} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                        text.len()
                    );
                    if w.write_all(format!("{head}{text}").as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    url
}

pub(crate) const TOKEN: &str = "ghs_test_token_value_123";

/// Runs a deploy on a blocking thread: the fake server's tasks must keep running meanwhile.
async fn run(app: &App, url: &str, tag: &str) -> std::process::Output {
    let (config, url, tag) = (app.config.clone(), url.to_string(), tag.to_string());
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(common::bin())
            .args(["deploy", "--sha", SHA, "--tag", &tag, "--json", "--config"])
            .arg(&config)
            .env("GITHUB_TOKEN", TOKEN)
            .env("GITHUB_REPOSITORY", "acme/shop")
            .env("GITHUB_API_URL", &url)
            .env_remove("GITHUB_STEP_SUMMARY")
            .env_remove("GITHUB_OUTPUT")
            .env_remove("GITHUB_ACTIONS")
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

pub(crate) fn calls(f: &Fake) -> Vec<String> {
    f.requests.iter().map(|r| format!("{} {}", r.method, r.path.split('?').next().unwrap())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolled_back_deploy_is_reported_on_github() {
    let fake = Arc::new(Mutex::new(Fake::default()));
    let url = serve(fake.clone()).await;
    let app = App::new("gh_rollback", &["v2-crash"]);
    let out = run(&app, &url, "v2-crash").await;
    assert_eq!(out.status.code(), Some(1), "{}", common::stderr(&out));
    assert!(!common::stderr(&out).contains(TOKEN) && !common::stdout(&out).contains(TOKEN), "token leaked");
    let f = fake.lock().unwrap();
    assert_eq!(
        calls(&f),
        vec![
            "GET /repos/acme/shop/deployments",
            "POST /repos/acme/shop/deployments",
            "POST /repos/acme/shop/deployments/42/statuses",
            "POST /repos/acme/shop/deployments/42/statuses",
            format!("GET /repos/acme/shop/commits/{SHA}/pulls").as_str(),
            "GET /repos/acme/shop/issues/7/comments",
            "POST /repos/acme/shop/issues/7/comments",
            "POST /repos/acme/shop/issues",
        ]
    );
    assert!(f.requests.iter().all(|r| r.auth == format!("Bearer {TOKEN}")), "{:?}", f.requests[0].auth);
    let d = &f.requests[1].body;
    assert_eq!(
        (d["ref"].as_str(), d["environment"].as_str(), d["payload"]["tag"].as_str()),
        (Some(SHA), Some("production"), Some("v2-crash"))
    );
    assert_eq!(d["required_contexts"], json!([]));
    assert_eq!(f.requests[2].body["state"], "in_progress");
    assert_eq!(f.requests[3].body["state"], "failure");
    let comment = f.requests[6].body["body"].as_str().unwrap();
    assert!(comment.starts_with("<!-- deploy-guard:gh_rollback_") && comment.contains("**rolled-back**"), "{comment}");
    let issue = &f.requests[7].body;
    assert!(issue["title"].as_str().unwrap().starts_with("Incident: "), "{issue}");
    assert_eq!(issue["labels"], json!(["incident", "deploy-guard"]));
    let body = issue["body"].as_str().unwrap();
    for part in [
        "## Timeline (UTC)",
        "## What failed",
        "## Impact",
        "No data was lost",
        "## Resolution",
        "## Prevention",
        "github.incident_logs: true",
    ] {
        assert!(body.contains(part), "incident body lacks {part:?}:\n{body}");
    }
    // App logs go to a possibly public issue only when `github.incident_logs` says so.
    assert!(!body.contains("TypeError"), "app logs in the incident without github.incident_logs:\n{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_comment_is_updated_not_duplicated() {
    let fake = Arc::new(Mutex::new(Fake::default()));
    let url = serve(fake.clone()).await;
    let app = App::new("gh_upsert", &["v2", "v2-crash"]);
    assert_eq!(run(&app, &url, "v2-crash").await.status.code(), Some(1));
    assert_eq!(run(&app, &url, "v2").await.status.code(), Some(0));
    let f = fake.lock().unwrap();
    let c = calls(&f);
    assert_eq!(c.iter().filter(|c| *c == "POST /repos/acme/shop/issues/7/comments").count(), 1, "{c:?}");
    assert_eq!(c.iter().filter(|c| *c == "PATCH /repos/acme/shop/issues/comments/1000").count(), 1, "{c:?}");
    assert_eq!(f.comments.len(), 1);
    assert!(f.comments[0]["body"].as_str().unwrap().contains("**deployed**"));
    // A deploy that went well opens no incident.
    assert_eq!(c.iter().filter(|c| *c == "POST /repos/acme/shop/issues").count(), 1, "{c:?}");
    let last_status = f.requests.iter().rev().find(|r| r.path.ends_with("/statuses")).unwrap();
    assert_eq!(last_status.body["state"], "success");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_errors_are_reported_without_failing_the_deploy() {
    for code in [401u16, 404, 502] {
        let fake = Arc::new(Mutex::new(Fake { fail_with: Some(code), ..Default::default() }));
        let url = serve(fake.clone()).await;
        let app = App::new("gh_errors", &["v2"]);
        let out = run(&app, &url, "v2").await;
        assert_eq!(out.status.code(), Some(0), "{code}: {}", common::stderr(&out));
        let r = common::json(&out);
        let notes = r["notes"].to_string();
        assert!(notes.contains(&format!("GitHub answered {code}")), "{code}: {notes}");
        assert_eq!(app.tag(), "v2");
    }
    // Nor the rollback: an unreachable-in-effect API while a release is rolled back.
    let fake = Arc::new(Mutex::new(Fake { fail_with: Some(502), ..Default::default() }));
    let url = serve(fake.clone()).await;
    let app = App::new("gh_errors_rb", &["v2-crash"]);
    let out = run(&app, &url, "v2-crash").await;
    assert_eq!(out.status.code(), Some(1), "{}", common::stderr(&out));
    assert_eq!(common::json(&out)["path"], "revert");
    assert_eq!(app.tag(), "v1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_successful_deployment_names_the_previous_tag_when_the_host_cannot() {
    let fake = Arc::new(Mutex::new(Fake {
        deployments: vec![
            json!({"id": 5, "payload": {"tag": "v1-broken"}}),
            json!({"id": 4, "payload": {"tag": "v1"}}),
        ],
        ..Default::default()
    }));
    let url = serve(fake.clone()).await;
    let app = App::new("gh_previous", &["v2-crash"]);
    app.edit_config(|t| t.replace("current_tag: ./app.sh current-tag", "current_tag: \"true\""));
    let out = run(&app, &url, "v2-crash").await;
    assert_eq!(out.status.code(), Some(1), "{}", common::stderr(&out));
    let r = common::json(&out);
    assert_eq!(r["previous_tag"], "v1", "the newest *successful* deployment's tag");
    assert_eq!(app.tag(), "v1");
}
