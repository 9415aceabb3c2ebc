//! A TCP relay that counts the bytes crossing it each way: what "the link" carried.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

pub struct CountingRelay {
    pub port: u16,
    /// Bytes from the client to the server (runner → target).
    to_server: Arc<AtomicU64>,
    /// Bytes from the server to the client (target → runner).
    to_client: Arc<AtomicU64>,
}

fn pump(mut from: TcpStream, mut to: TcpStream, n: Arc<AtomicU64>) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(k) => {
                if to.write_all(&buf[..k]).is_err() {
                    break;
                }
                n.fetch_add(k as u64, Ordering::Relaxed);
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

impl CountingRelay {
    /// Relays 127.0.0.1:`port` (a free one) to 127.0.0.1:`to`.
    pub fn start(to: u16) -> CountingRelay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (to_server, to_client) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let (up, down) = (to_server.clone(), to_client.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect(("127.0.0.1", to)) else { continue };
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let (up, down) = (up.clone(), down.clone());
                std::thread::spawn(move || pump(client, server, up));
                std::thread::spawn(move || pump(s2, c2, down));
            }
        });
        CountingRelay { port, to_server, to_client }
    }

    /// (runner → target, target → runner) bytes so far.
    pub fn counts(&self) -> (u64, u64) {
        (self.to_server.load(Ordering::Relaxed), self.to_client.load(Ordering::Relaxed))
    }
}
