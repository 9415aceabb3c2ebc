//! An HTTP/1.1 proxy on 127.0.0.1 in front of a real server (the S3 test server) that injects
//! faults into the requests a test picks: a 5xx answer instead of forwarding, or the connection
//! reset (RST) part-way through the response body. Each client connection carries one request:
//! the proxy answers with `Connection: close`. Every request is logged with what it got.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Clone, Copy, Debug)]
pub enum Fault {
    /// Answer with this status and an S3 error body; the request is never forwarded.
    Status(u16),
    /// Forward, then reset the connection after this many bytes of the response body.
    ResetAfter(usize),
}

struct Rule {
    method: String,
    path_contains: String,
    times: usize,
    fault: Fault,
}

#[derive(Default)]
struct Shared {
    rules: Mutex<Vec<Rule>>,
    log: Mutex<Vec<String>>,
}

pub struct Proxy {
    pub port: u16,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    /// A proxy to `127.0.0.1:upstream`.
    pub fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (shared.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let s = s.clone();
                std::thread::spawn(move || {
                    let _ = serve(conn, upstream, &s);
                });
            }
        });
        Proxy { port, shared, stop }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The next `times` requests of `method` whose path contains `path_contains` get `fault`.
    pub fn fail(&self, method: &str, path_contains: &str, times: usize, fault: Fault) {
        self.shared.rules.lock().unwrap().push(Rule {
            method: method.into(),
            path_contains: path_contains.into(),
            times,
            fault,
        });
    }

    /// Drops every rule not used up yet.
    pub fn heal(&self) {
        self.shared.rules.lock().unwrap().clear();
    }

    /// `METHOD PATH -> what happened`, one per request, in order.
    pub fn log(&self) -> Vec<String> {
        self.shared.log.lock().unwrap().clone()
    }

    /// The logged requests whose line contains every one of `parts`.
    pub fn count(&self, parts: &[&str]) -> usize {
        self.log().iter().filter(|l| parts.iter().all(|p| l.contains(p))).count()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// A request or response head: its first line and its headers.
type Head = (String, Vec<(String, String)>);

/// Reads a head up to the blank line; none at the end of the stream.
fn read_head(r: &mut impl BufRead) -> std::io::Result<Option<Head>> {
    let mut first = String::new();
    if r.read_line(&mut first)? == 0 {
        return Ok(None);
    }
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        r.read_line(&mut line)?;
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    Ok(Some((first.trim_end().to_string(), headers)))
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

/// Writes `first` and `headers` (hop-by-hop ones replaced by `Connection: close`).
fn write_head(w: &mut impl Write, first: &str, headers: &[(String, String)]) -> std::io::Result<()> {
    let mut out = format!("{first}\r\n");
    for (k, v) in headers {
        if ["connection", "keep-alive", "expect"].contains(&k.to_ascii_lowercase().as_str()) {
            continue;
        }
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("Connection: close\r\n\r\n");
    w.write_all(out.as_bytes())
}

/// Copies the request body (by Content-Length, or chunk by chunk) from `r` to `w`.
fn copy_body(r: &mut impl BufRead, w: &mut impl Write, headers: &[(String, String)]) -> std::io::Result<()> {
    if header(headers, "transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            let mut size = String::new();
            r.read_line(&mut size)?;
            w.write_all(size.as_bytes())?;
            let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16).unwrap_or(0);
            if n == 0 {
                loop {
                    let mut line = String::new();
                    r.read_line(&mut line)?;
                    w.write_all(line.as_bytes())?;
                    if line.trim().is_empty() {
                        return Ok(());
                    }
                }
            }
            let mut chunk = vec![0u8; n + 2];
            r.read_exact(&mut chunk)?;
            w.write_all(&chunk)?;
        }
    }
    let n: u64 = header(headers, "content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    std::io::copy(&mut r.take(n), w)?;
    Ok(())
}

/// Closes `s` with a TCP reset (SO_LINGER 0), as a broken link or a crashed peer does.
fn reset(s: TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger { l_onoff: 1, l_linger: 0 };
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &linger as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
    drop(s);
}

fn serve(client: TcpStream, upstream: u16, shared: &Shared) -> std::io::Result<()> {
    let mut reader = BufReader::new(client.try_clone()?);
    let mut client_w = client;
    let Some((first, headers)) = read_head(&mut reader)? else { return Ok(()) };
    let mut parts = first.split_whitespace();
    let (method, path) = (parts.next().unwrap_or("").to_string(), parts.next().unwrap_or("").to_string());
    let fault = {
        let mut rules = shared.rules.lock().unwrap();
        rules.iter_mut().find(|r| r.times > 0 && r.method == method && path.contains(&r.path_contains)).map(|r| {
            r.times -= 1;
            r.fault
        })
    };
    let log = |what: String| shared.log.lock().unwrap().push(format!("{method} {path} -> {what}"));
    if let Some(Fault::Status(code)) = fault {
        copy_body(&mut reader, &mut std::io::sink(), &headers)?;
        let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>ServiceUnavailable</Code>\
                    <Message>injected by the test proxy</Message></Error>";
        let head = format!(
            "HTTP/1.1 {code} Service Unavailable\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n",
            body.len()
        );
        client_w.write_all(format!("{head}Connection: close\r\n\r\n{body}").as_bytes())?;
        log(format!("{code} (injected)"));
        return Ok(());
    }
    let up = TcpStream::connect(("127.0.0.1", upstream))?;
    let mut up_w = up.try_clone()?;
    write_head(&mut up_w, &first, &headers)?;
    copy_body(&mut reader, &mut up_w, &headers)?;
    let mut up_r = BufReader::new(up);
    let Some((status, resp_headers)) = read_head(&mut up_r)? else {
        log("no answer upstream".into());
        return Ok(());
    };
    write_head(&mut client_w, &status, &resp_headers)?;
    let code = status.split_whitespace().nth(1).unwrap_or("?").to_string();
    match fault {
        Some(Fault::ResetAfter(n)) => {
            std::io::copy(&mut (&mut up_r).take(n as u64), &mut client_w)?;
            client_w.flush()?;
            reset(client_w);
            log(format!("{code}, reset after {n} bytes of the body (injected)"));
        }
        _ => {
            std::io::copy(&mut up_r, &mut client_w)?;
            log(code);
        }
    }
    Ok(())
}
