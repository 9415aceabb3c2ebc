//! A local stand-in for Neon's API (v2): exactly the endpoints deploy-guard calls, each request
//! checked against Neon's published OpenAPI description (`tests/fixtures/neon/`: its path, its
//! parameters, its body, its bearer key), each answer shaped and checked as the description says,
//! including the operations a call starts and their `running` states. It is backed by the test's
//! real PostgreSQL: a branch is a database copied at that moment (`CREATE DATABASE … TEMPLATE`), a
//! restore renames the primary's database away (the preserved branch) and copies the source
//! under its name (so the primary's connection string stays the same). Faults on demand: 5xx,
//! 429 with `Retry-After`, operations that never finish. History (`parent_timestamp`) is
//! snapshot-grained: where Neon keeps every moment of a branch's WAL, this server keeps copies of
//! the primary taken when a test asks ([`NeonServer::snapshot`]) and branches at a time from the
//! newest copy at or before it; a time before the first copy is outside its history window.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex, OnceLock};

use chrono::Timelike;
use serde_json::{json, Value};

pub const PROJECT: &str = "dg-neon-test";
pub const PRIMARY: &str = "br-primary-000001";
const ROLE_PASSWORD: &str = "npg-test-password";

/// The published description's subset deploy-guard uses.
pub fn spec() -> &'static Value {
    static SPEC: OnceLock<Value> = OnceLock::new();
    SPEC.get_or_init(|| {
        let text = include_str!("../../fixtures/neon/openapi-v2-subset.json");
        serde_json::from_str(text).expect("the committed OpenAPI description is JSON")
    })
}

#[derive(Clone, Debug)]
pub struct Branch {
    pub id: String,
    pub name: String,
    pub parent_id: Option<String>,
    pub parent_lsn: Option<String>,
    /// The local database that holds this branch's data.
    pub db: String,
    pub endpoints: Vec<String>,
    pub created_at: String,
    /// The moment of the parent's history it was branched at (`parent_timestamp`).
    pub parent_timestamp: Option<String>,
}

/// A branch's state kept at a moment: the history `parent_timestamp` reads.
struct Snapshot {
    branch: String,
    at: chrono::DateTime<chrono::Utc>,
    db: String,
}

struct Op {
    id: String,
    branch_id: String,
    action: &'static str,
    /// Until then it is `running` (a call's operations take a moment on Neon too).
    ready_at: std::time::Instant,
}

/// What the next requests get instead of their answer.
#[derive(Default, Clone, Copy)]
pub struct Faults {
    /// This many requests are answered 503.
    pub unavailable: u32,
    /// This many requests are answered 429 with `Retry-After: retry_after`.
    pub rate_limited: u32,
    pub retry_after: u32,
    /// Operations never leave `running`.
    pub never_finish: bool,
    /// A branch restore is refused (409, as while another operation is being set up).
    pub refuse_restore: bool,
}

#[derive(Default)]
struct State {
    branches: Vec<Branch>,
    ops: Vec<Op>,
    history: Vec<Snapshot>,
    next: u32,
    faults: Faults,
}

/// One request as the server saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub status: u16,
    /// How long the server took to answer (its copy of a database, for a branch).
    pub secs: f64,
}

struct Shared {
    key: String,
    /// The database name and role the app's config names on every branch.
    database: String,
    port: u16,
    state: Mutex<State>,
    seen: Mutex<Vec<Seen>>,
    /// Requests or answers that do not match the description: must stay empty.
    violations: Mutex<Vec<String>>,
}

pub struct NeonServer {
    pub url: String,
    pub key: String,
    shared: Arc<Shared>,
}

impl NeonServer {
    /// A project whose primary branch is the test cluster's database `live`.
    pub fn start(live: &str) -> NeonServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://127.0.0.1:{}/api/v2", listener.local_addr().unwrap().port());
        let key = format!("neon-test-key-{}", std::process::id());
        let mut state = State::default();
        state.branches.push(Branch {
            id: PRIMARY.into(),
            name: "main".into(),
            parent_id: None,
            parent_lsn: None,
            db: live.into(),
            endpoints: vec!["ep-primary-000001".into()],
            created_at: now(),
            parent_timestamp: None,
        });
        let shared = Arc::new(Shared {
            key: key.clone(),
            database: live.into(),
            port: super::cluster().port,
            state: Mutex::new(state),
            seen: Mutex::default(),
            violations: Mutex::default(),
        });
        let s = shared.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let s = s.clone();
                std::thread::spawn(move || {
                    if let Err(e) = serve(conn, &s) {
                        s.violations.lock().unwrap().push(format!("connection: {e}"));
                    }
                });
            }
        });
        NeonServer { url, key, shared }
    }

    /// The config lines of `backup:` that point deploy-guard here.
    pub fn config_lines(&self) -> String {
        format!(
            "  provider: neon\n  neon:\n    project_id: {PROJECT}\n    branch_id: {PRIMARY}\n    api_url: {}\n    \
             operation_timeout: 5s\n",
            self.url
        )
    }

    pub fn set_faults(&self, f: Faults) {
        self.shared.state.lock().unwrap().faults = f;
    }

    pub fn branches(&self) -> Vec<Branch> {
        self.shared.state.lock().unwrap().branches.clone()
    }

    pub fn branch_named(&self, prefix: &str) -> Option<Branch> {
        self.branches().into_iter().find(|b| b.name.starts_with(prefix))
    }

    /// Keeps the primary's state now in its history and returns a moment (RFC 3339, whole
    /// seconds) at or after the copy and before anything written once this returns: a
    /// `parent_timestamp` that finds this copy.
    pub fn snapshot(&self) -> String {
        let mut st = self.shared.state.lock().unwrap();
        st.next += 1;
        let db = format!("{}_snap{}", self.shared.database, st.next);
        let from = st.branches.iter().find(|b| b.id == PRIMARY).unwrap().db.clone();
        copy_db(&from, &db).unwrap_or_else(|e| panic!("snapshot of {from}: {e}"));
        let at = chrono::Utc::now();
        st.history.push(Snapshot { branch: PRIMARY.into(), at, db });
        drop(st);
        let named = at.with_nanosecond(0).unwrap() + chrono::Duration::seconds(1);
        while chrono::Utc::now() <= named {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        named.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.shared.seen.lock().unwrap().clone()
    }

    /// Requests and answers that broke the description (none, or the test fails).
    pub fn violations(&self) -> Vec<String> {
        self.shared.violations.lock().unwrap().clone()
    }

    /// Every request validated against the description, and at least one was made.
    pub fn assert_all_valid(&self) {
        let v = self.violations();
        assert!(v.is_empty(), "requests or answers outside Neon's published description:\n{}", v.join("\n"));
    }
}

impl Drop for NeonServer {
    fn drop(&mut self) {
        let st = self.shared.state.lock().unwrap();
        let dbs = st.branches.iter().filter(|b| b.id != PRIMARY).map(|b| &b.db).chain(st.history.iter().map(|h| &h.db));
        for db in dbs {
            let _ = super::cluster().psql("postgres", &format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)"));
        }
    }
}

fn now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

struct Request {
    method: String,
    path: String,
    query: Vec<(String, String)>,
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
}

fn read_request(conn: &mut BufReader<TcpStream>) -> std::io::Result<Request> {
    let mut line = String::new();
    conn.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let target = parts.next().unwrap_or_default().to_string();
    let mut headers = BTreeMap::new();
    loop {
        let mut h = String::new();
        conn.read_line(&mut h)?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let len: usize = headers.get("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    let mut body = vec![0; len];
    conn.read_exact(&mut body)?;
    let (path, q) = target.split_once('?').unwrap_or((&target, ""));
    let query = q
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect();
    Ok(Request { method, path: path.to_string(), query, headers, body })
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let hex = (b[i] == b'%' && i + 2 < b.len())
            .then(|| std::str::from_utf8(&b[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok()))
            .flatten();
        match hex {
            Some(v) => {
                out.push(v);
                i += 3;
            }
            None => {
                out.push(if b[i] == b'+' { b' ' } else { b[i] });
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn serve(conn: TcpStream, s: &Shared) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let req = read_request(&mut reader)?;
    let started = std::time::Instant::now();
    let (status, body, extra) = answer(&req, s);
    let secs = started.elapsed().as_secs_f64();
    s.seen.lock().unwrap().push(Seen { method: req.method.clone(), path: req.path.clone(), status, secs });
    let text = body.map(|b| b.to_string()).unwrap_or_default();
    let mut out = conn;
    write!(
        out,
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n{text}",
        text.len()
    )?;
    out.flush()
}

/// The description's path template this path is, with its parameters.
fn route(path: &str) -> Option<(String, BTreeMap<String, String>)> {
    let rest = path.strip_prefix("/api/v2")?;
    let got: Vec<&str> = rest.split('/').collect();
    for template in spec()["paths"].as_object().unwrap().keys() {
        let want: Vec<&str> = template.split('/').collect();
        if want.len() != got.len() {
            continue;
        }
        let mut params = BTreeMap::new();
        let fits = want.iter().zip(&got).all(|(w, g)| match w.strip_prefix('{').and_then(|w| w.strip_suffix('}')) {
            Some(name) => {
                params.insert(name.to_string(), decode(g));
                true
            }
            None => w == g,
        });
        if fits {
            return Some((template.clone(), params));
        }
    }
    None
}

fn resolve(v: &Value) -> &Value {
    match v.get("$ref").and_then(Value::as_str) {
        Some(r) => resolve(spec().pointer(r.trim_start_matches('#')).expect("a $ref inside the description")),
        None => v,
    }
}

/// The errors of `instance` against the description's schema `name` (`Branch`, …).
pub fn errors_against(name: &str, instance: &Value) -> Vec<String> {
    schema_errors(&json!({"$ref": format!("#/components/schemas/{name}")}), instance)
}

/// The errors of `instance` against `schema` (a part of the description; its `$ref`s resolve
/// into the description's components).
fn schema_errors(schema: &Value, instance: &Value) -> Vec<String> {
    let root = json!({"allOf": [schema], "components": spec()["components"]});
    let validator = jsonschema::draft4::new(&root).expect("the description's schemas compile");
    validator.iter_errors(instance).map(|e| format!("{} at {}", e, e.instance_path())).collect()
}

/// Checks the request against its operation in the description; returns what breaks it.
fn check_request(req: &Request, template: &str, params: &BTreeMap<String, String>) -> Vec<String> {
    let mut bad = Vec::new();
    let item = &spec()["paths"][template];
    let method = req.method.to_ascii_lowercase();
    let Some(op) = item.get(&method) else {
        return vec![format!("{} {template}: no such operation in the description", req.method)];
    };
    let declared: Vec<&Value> = item
        .get("parameters")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .chain(op.get("parameters").and_then(Value::as_array).into_iter().flatten())
        .map(resolve)
        .collect();
    for p in &declared {
        let name = p["name"].as_str().unwrap();
        let value = match p["in"].as_str() {
            Some("path") => params.get(name).cloned(),
            Some("query") => req.query.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()),
            _ => continue,
        };
        match value {
            None if p["required"].as_bool() == Some(true) => bad.push(format!("required parameter {name} missing")),
            None => {}
            Some(v) => {
                let typed = match p["schema"]["type"].as_str() {
                    Some("boolean") => v.parse::<bool>().map(Value::from).unwrap_or(Value::String(v)),
                    Some("integer") => v.parse::<i64>().map(Value::from).unwrap_or(Value::String(v)),
                    _ => Value::String(v),
                };
                for e in schema_errors(&p["schema"], &typed) {
                    bad.push(format!("parameter {name}: {e}"));
                }
            }
        }
    }
    for (k, _) in &req.query {
        if !declared.iter().any(|p| p["in"] == "query" && p["name"] == k.as_str()) {
            bad.push(format!("query parameter {k} is not in the description"));
        }
    }
    match (op.get("requestBody"), req.body.is_empty()) {
        (None, false) => bad.push("a body where the description has none".into()),
        (Some(rb), true) if rb["required"].as_bool() == Some(true) => bad.push("the required body is missing".into()),
        (Some(rb), false) => {
            if req.headers.get("content-type").map(String::as_str) != Some("application/json") {
                bad.push("the body is not sent as application/json".into());
            }
            match serde_json::from_slice::<Value>(&req.body) {
                Ok(body) => bad.extend(
                    schema_errors(&rb["content"]["application/json"]["schema"], &body)
                        .into_iter()
                        .map(|e| format!("body: {e}")),
                ),
                Err(e) => bad.push(format!("the body is not JSON: {e}")),
            }
        }
        _ => {}
    }
    bad.into_iter().map(|b| format!("{} {}: {b}", req.method, req.path)).collect()
}

/// Checks an answer against the description's response for its status.
fn check_answer(method: &str, template: &str, status: u16, body: &Option<Value>) -> Vec<String> {
    let op = &spec()["paths"][template][method.to_ascii_lowercase()];
    let Some(resp) = op["responses"].get(status.to_string()).or_else(|| op["responses"].get("default")) else {
        return vec![format!("{method} {template}: status {status} is not described")];
    };
    let resp = resolve(resp);
    match (resp.pointer("/content/application~1json/schema"), body) {
        (Some(schema), Some(b)) => schema_errors(schema, b)
            .into_iter()
            .map(|e| format!("answer to {method} {template} ({status}): {e}"))
            .collect(),
        (None, None) => Vec::new(),
        (Some(_), None) => vec![format!("answer to {method} {template} ({status}): no body where one is described")],
        (None, Some(_)) => vec![format!("answer to {method} {template} ({status}): a body where none is described")],
    }
}

fn error(status: u16, message: &str) -> (u16, Option<Value>, String) {
    (status, Some(json!({"code": "", "message": message, "request_id": "local"})), String::new())
}

fn answer(req: &Request, s: &Shared) -> (u16, Option<Value>, String) {
    let Some((template, params)) = route(&req.path) else {
        s.violations.lock().unwrap().push(format!("{} {}: not a path of the description", req.method, req.path));
        return error(404, "not found");
    };
    let bad = check_request(req, &template, &params);
    let auth_ok = req.headers.get("authorization").map(String::as_str) == Some(&format!("Bearer {}", s.key));
    if !bad.is_empty() {
        s.violations.lock().unwrap().extend(bad.clone());
        return error(400, &bad.join("; "));
    }
    if req.headers.get("authorization").is_none_or(|a| !a.starts_with("Bearer ")) {
        s.violations.lock().unwrap().push(format!("{} {}: no bearer key", req.method, req.path));
    }
    let out = {
        let mut st = s.state.lock().unwrap();
        if st.faults.unavailable > 0 {
            st.faults.unavailable -= 1;
            drop(st);
            error(503, "service unavailable (injected)")
        } else if st.faults.rate_limited > 0 {
            st.faults.rate_limited -= 1;
            let after = st.faults.retry_after;
            drop(st);
            let (c, b, _) = error(429, "too many requests (injected)");
            (c, b, format!("Retry-After: {after}\r\n"))
        } else if !auth_ok {
            drop(st);
            error(401, "authentication required")
        } else if params.get("project_id").map(String::as_str) != Some(PROJECT) {
            drop(st);
            error(404, "project not found")
        } else {
            drop(st);
            handle(req, &template, &params, s)
        }
    };
    let problems = check_answer(&req.method, &template, out.0, &out.1);
    s.violations.lock().unwrap().extend(problems);
    out
}

fn branch_json(b: &Branch) -> Value {
    let mut v = json!({
        "id": b.id, "project_id": PROJECT, "name": b.name, "current_state": "ready",
        "state_changed_at": b.created_at, "creation_source": "console", "created_at": b.created_at,
        "updated_at": b.created_at, "default": b.id == PRIMARY, "protected": false, "cpu_used_sec": 0,
        "active_time_seconds": 0, "compute_time_seconds": 0, "written_data_bytes": 0, "data_transfer_bytes": 0,
    });
    if let Some(p) = &b.parent_id {
        v["parent_id"] = json!(p);
    }
    if let Some(l) = &b.parent_lsn {
        v["parent_lsn"] = json!(l);
    }
    if let Some(t) = &b.parent_timestamp {
        v["parent_timestamp"] = json!(t);
    }
    v
}

fn endpoint_json(id: &str, branch: &str, kind: &str) -> Value {
    json!({
        "host": format!("{id}.local.test"), "id": id, "project_id": PROJECT, "branch_id": branch,
        "region_id": "local", "autoscaling_limit_min_cu": 0.25, "autoscaling_limit_max_cu": 0.25, "type": kind,
        "current_state": "init", "pooler_enabled": false, "pooler_mode": "transaction", "disabled": false,
        "passwordless_access": false, "creation_source": "console", "created_at": now(), "updated_at": now(),
        "settings": {}, "proxy_host": "local.test", "suspend_timeout_seconds": 0, "provisioner": "k8s-neonvm",
    })
}

fn op_json(op: &Op, status: &str) -> Value {
    json!({
        "id": op.id, "project_id": PROJECT, "branch_id": op.branch_id, "action": op.action, "status": status,
        "failures_count": 0, "created_at": now(), "updated_at": now(), "total_duration_ms": 0,
    })
}

/// Operations a call started: the first running, the rest scheduled.
fn start_ops(st: &mut State, branch: &str, actions: &[&'static str]) -> Vec<Value> {
    actions
        .iter()
        .enumerate()
        .map(|(i, action)| {
            st.next += 1;
            let op = Op {
                id: format!("00000000-0000-4000-8000-{:012}", st.next),
                branch_id: branch.into(),
                action,
                ready_at: std::time::Instant::now() + std::time::Duration::from_millis(300),
            };
            let v = op_json(&op, if i == 0 { "running" } else { "scheduling" });
            st.ops.push(op);
            v
        })
        .collect()
}

fn psql(db: &str, sql: &str) -> Result<String, String> {
    super::cluster().psql(db, sql).map_err(|e| format!("{e:#}"))
}

/// `CREATE DATABASE to TEMPLATE from`, after ending the sessions on `from` (a template must have
/// none); retried when one arrives in between.
fn copy_db(from: &str, to: &str) -> Result<(), String> {
    let mut last = String::new();
    for _ in 0..20 {
        let _ = psql(
            "postgres",
            &format!("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{from}' AND pid <> pg_backend_pid()"),
        );
        match psql("postgres", &format!("CREATE DATABASE \"{to}\" TEMPLATE \"{from}\"")) {
            Ok(_) => return Ok(()),
            Err(e) => last = e,
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    Err(last)
}

/// The database holding `parent`'s state at `t` (the newest snapshot at or before it), else the
/// error Neon answers for a time it has no history of (its `GeneralError`, 400).
fn at_in_history(st: &State, parent: &str, t: &str) -> Result<String, (u16, Option<Value>, String)> {
    let Ok(at) = chrono::DateTime::parse_from_rfc3339(t).map(|t| t.with_timezone(&chrono::Utc)) else {
        return Err(error(400, &format!("parent_timestamp {t:?} is not a date-time")));
    };
    if at > chrono::Utc::now() {
        return Err(error(400, &format!("parent_timestamp {t} is in the future")));
    }
    let kept = st.history.iter().filter(|h| h.branch == parent);
    match kept.filter(|h| h.at <= at).max_by_key(|h| h.at) {
        Some(h) => Ok(h.db.clone()),
        None => {
            Err(error(400, &format!("parent_timestamp {t} is outside the history retention window of branch {parent}")))
        }
    }
}

fn handle(
    req: &Request,
    template: &str,
    params: &BTreeMap<String, String>,
    s: &Shared,
) -> (u16, Option<Value>, String) {
    let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
    let q = |k: &str| req.query.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let mut st = s.state.lock().unwrap();
    let find = |st: &State, id: &str| st.branches.iter().position(|b| b.id == id);
    match (req.method.as_str(), template) {
        ("GET", "/projects/{project_id}/branches/{branch_id}") => match find(&st, &params["branch_id"]) {
            Some(i) => {
                let b = branch_json(&st.branches[i]);
                (
                    200,
                    Some(
                        json!({"branch": b, "annotation": {"object": {"type": "branch", "id": params["branch_id"]}, "value": {}}}),
                    ),
                    String::new(),
                )
            }
            None => error(404, "branch not found"),
        },
        ("GET", "/projects/{project_id}/branches") => {
            let search = q("search").unwrap_or_default();
            let list: Vec<Value> = st
                .branches
                .iter()
                .filter(|b| b.name.contains(&search) || b.id.contains(&search))
                .map(branch_json)
                .collect();
            (200, Some(json!({"branches": list, "annotations": {}})), String::new())
        }
        ("POST", "/projects/{project_id}/branches") => {
            let parent = body["branch"]["parent_id"].as_str().unwrap_or(PRIMARY).to_string();
            let Some(pi) = find(&st, &parent) else { return error(404, "parent branch not found") };
            st.next += 1;
            let n = st.next;
            let id = format!("br-dg-{n:06}");
            let name = body["branch"]["name"].as_str().map(str::to_string).unwrap_or_else(|| id.clone());
            let db = format!("{}_nb{n}", s.database);
            let stamp = body["branch"]["parent_timestamp"].as_str().map(str::to_string);
            let (from, lsn) = match &stamp {
                None => (st.branches[pi].db.clone(), psql("postgres", "SELECT pg_current_wal_lsn()").ok()),
                Some(t) => match at_in_history(&st, &parent, t) {
                    // The description's `format: date-time`, checked here whatever the validator does.
                    Err(e) if chrono::DateTime::parse_from_rfc3339(t).is_err() => {
                        s.violations.lock().unwrap().push(format!("parent_timestamp {t:?} is not a date-time"));
                        return e;
                    }
                    Ok(db) => (db, None),
                    Err(e) => return e,
                },
            };
            if let Err(e) = copy_db(&from, &db) {
                return error(500, &format!("copying the branch: {e}"));
            }
            let mut b = Branch {
                id: id.clone(),
                name,
                parent_id: Some(parent),
                parent_lsn: lsn,
                db,
                endpoints: Vec::new(),
                created_at: now(),
                parent_timestamp: stamp,
            };
            let mut endpoints = Vec::new();
            for e in body["endpoints"].as_array().into_iter().flatten() {
                st.next += 1;
                let ep = format!("ep-dg-{:06}", st.next);
                endpoints.push(endpoint_json(&ep, &id, e["type"].as_str().unwrap_or("read_write")));
                b.endpoints.push(ep);
            }
            let ops = start_ops(
                &mut st,
                &id,
                &["create_timeline", "start_compute"][..1 + usize::from(!endpoints.is_empty())],
            );
            let bj = branch_json(&b);
            st.branches.push(b);
            (
                201,
                Some(json!({"branch": bj, "endpoints": endpoints, "operations": ops, "roles": [], "databases": []})),
                String::new(),
            )
        }
        ("POST", "/projects/{project_id}/endpoints") => {
            let branch = body["endpoint"]["branch_id"].as_str().unwrap_or_default().to_string();
            let Some(i) = find(&st, &branch) else { return error(404, "branch not found") };
            st.next += 1;
            let ep = format!("ep-dg-{:06}", st.next);
            st.branches[i].endpoints.push(ep.clone());
            let ops = start_ops(&mut st, &branch, &["start_compute"]);
            let kind = body["endpoint"]["type"].as_str().unwrap_or("read_write");
            (201, Some(json!({"endpoint": endpoint_json(&ep, &branch, kind), "operations": ops})), String::new())
        }
        ("POST", "/projects/{project_id}/branches/{branch_id}/restore") => {
            let target = params["branch_id"].clone();
            let source = body["source_branch_id"].as_str().unwrap_or_default().to_string();
            let (Some(ti), Some(si)) = (find(&st, &target), find(&st, &source)) else {
                return error(404, "branch not found");
            };
            if st.faults.refuse_restore {
                return error(409, "the branch is being modified (injected)");
            }
            if body.get("source_timestamp").is_some() || body.get("source_lsn").is_some() {
                return error(400, "this local server restores to a branch's head only");
            }
            let live = st.branches[ti].db.clone();
            let from = st.branches[si].db.clone();
            st.next += 1;
            let n = st.next;
            let kept = format!("{}_nb{n}", s.database);
            let _ = psql(
                "postgres",
                &format!("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{live}' AND pid <> pg_backend_pid()"),
            );
            if let Err(e) = psql("postgres", &format!("ALTER DATABASE \"{live}\" RENAME TO \"{kept}\"")) {
                return error(500, &format!("preserving the branch: {e}"));
            }
            if let Err(e) = copy_db(&from, &live) {
                let _ = psql("postgres", &format!("ALTER DATABASE \"{kept}\" RENAME TO \"{live}\""));
                return error(500, &format!("restoring: {e}"));
            }
            if let Some(name) = body["preserve_under_name"].as_str() {
                st.next += 1;
                let id = format!("br-dg-{:06}", st.next);
                let preserved = Branch {
                    id,
                    name: name.into(),
                    parent_id: None,
                    parent_lsn: None,
                    db: kept,
                    endpoints: Vec::new(),
                    created_at: now(),
                    parent_timestamp: None,
                };
                st.branches.push(preserved);
            } else {
                let _ = psql("postgres", &format!("DROP DATABASE \"{kept}\" WITH (FORCE)"));
            }
            let ops = start_ops(&mut st, &target, &["create_timeline", "apply_config"]);
            (200, Some(json!({"branch": branch_json(&st.branches[ti]), "operations": ops})), String::new())
        }
        ("DELETE", "/projects/{project_id}/branches/{branch_id}") => {
            let Some(i) = find(&st, &params["branch_id"]) else { return (204, None, String::new()) };
            if st.branches[i].id == PRIMARY {
                return error(422, "the default branch cannot be deleted");
            }
            let b = st.branches.remove(i);
            let _ = psql("postgres", &format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", b.db));
            let ops = start_ops(&mut st, &b.id, &["delete_timeline"]);
            (200, Some(json!({"branch": branch_json(&b), "operations": ops})), String::new())
        }
        ("GET", "/projects/{project_id}/operations/{operation_id}") => {
            let never = st.faults.never_finish;
            let Some(op) = st.ops.iter().find(|o| o.id == params["operation_id"]) else {
                return error(404, "operation not found");
            };
            let status = if never || std::time::Instant::now() < op.ready_at { "running" } else { "finished" };
            (200, Some(json!({"operation": op_json(op, status)})), String::new())
        }
        ("GET", "/projects/{project_id}/connection_uri") => {
            let branch = q("branch_id").unwrap_or_else(|| PRIMARY.into());
            let Some(i) = find(&st, &branch) else { return error(404, "branch not found") };
            let b = &st.branches[i];
            if let Some(ep) = q("endpoint_id") {
                if !b.endpoints.contains(&ep) {
                    return error(404, "the branch has no such endpoint");
                }
            } else if b.endpoints.is_empty() {
                return error(404, "the branch has no endpoint");
            }
            if q("database_name").as_deref() != Some(s.database.as_str())
                || q("role_name").as_deref() != Some("postgres")
            {
                return error(404, "no such database or role on the branch");
            }
            let uri = format!("postgresql://postgres:{ROLE_PASSWORD}@127.0.0.1:{}/{}", s.port, b.db);
            (200, Some(json!({"uri": uri})), String::new())
        }
        _ => error(405, "not implemented by the local server"),
    }
}
