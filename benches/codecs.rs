//! The codec table (issue "Recovery time", item 2): each codec and level deploy-guard can use,
//! through the product's own encoders, on one plain pg_dump file, next to the command-line tools
//! a person would pipe pg_dump into. Input from the page cache, output discarded: this measures
//! compression alone; `benches/backup-restore.sh` measures whole backups.
//!
//!   pg_dump DB > /tmp/dump.sql
//!   BENCH_DUMP=/tmp/dump.sql cargo bench --bench codecs
//!
//! BENCH_RUNS (default 3) rounds; rows take turns within a round. Prints a markdown table.

#![allow(unsafe_code)] // libc calls measure and signal processes here

use std::process::{Command, Stdio};
use std::time::Instant;

use deploy_guard::model::Codec;
use tokio::io::AsyncReadExt;

/// A row: the product's encoder (codec, level, extra worker threads), or a shell filter.
enum Case {
    Product(Codec, u32, u32),
    Tool(String),
}

struct Row {
    what: String,
    walls: Vec<f64>,
    cpu: Vec<f64>,
    out: u64,
}

fn cpu_seconds() -> f64 {
    // user + sys of this process and its waited-for children.
    let mut self_u: libc::rusage = unsafe { std::mem::zeroed() };
    let mut kids: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe {
        libc::getrusage(libc::RUSAGE_SELF, &mut self_u);
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut kids);
    }
    let t = |r: &libc::rusage| {
        r.ru_utime.tv_sec as f64
            + r.ru_utime.tv_usec as f64 / 1e6
            + r.ru_stime.tv_sec as f64
            + r.ru_stime.tv_usec as f64 / 1e6
    };
    t(&self_u) + t(&kids)
}

async fn in_product(path: &str, codec: Codec, level: u32, workers: u32) -> (f64, f64, u64) {
    let (t, c) = (Instant::now(), cpu_seconds());
    let file = tokio::fs::File::open(path).await.unwrap();
    let mut enc = deploy_guard::backup::codec::encoder_with(codec, file, level, workers);
    let mut buf = vec![0u8; 256 * 1024];
    let mut out = 0u64;
    loop {
        let n = enc.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        out += n as u64;
    }
    (t.elapsed().as_secs_f64(), cpu_seconds() - c, out)
}

fn by_hand(path: &str, tool: &str) -> (f64, f64, u64) {
    let (t, c) = (Instant::now(), cpu_seconds());
    let o = Command::new("sh")
        .arg("-c")
        .arg(format!("{tool} < '{path}' | wc -c"))
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(o.status.success(), "{tool} failed");
    let out = String::from_utf8_lossy(&o.stdout).trim().parse().unwrap();
    (t.elapsed().as_secs_f64(), cpu_seconds() - c, out)
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let path = std::env::var("BENCH_DUMP").expect("BENCH_DUMP=<a plain pg_dump file> (see the doc comment)");
    let runs: usize = std::env::var("BENCH_RUNS").ok().and_then(|r| r.parse().ok()).unwrap_or(3);
    let plain = std::fs::metadata(&path).unwrap().len();
    let have =
        |t: &str| Command::new("sh").arg("-c").arg(format!("command -v {t} >/dev/null")).status().unwrap().success();
    let mut cases: Vec<(String, Case)> = Vec::new();
    cases.push(("`cat` (reading the file, for scale)".into(), Case::Tool("cat".into())));
    for level in [1, 3, 6] {
        cases.push((format!("gzip -{level} (zlib-rs, in deploy-guard)"), Case::Product(Codec::Gzip, level, 0)));
    }
    for level in [1, 2, 3] {
        cases.push((format!("zstd -{level} (in deploy-guard, one thread)"), Case::Product(Codec::Zstd, level, 0)));
        cases.push((format!("zstd -{level} (in deploy-guard, 2 workers)"), Case::Product(Codec::Zstd, level, 2)));
    }
    for tool in ["gzip -1", "gzip -6", "pigz -6", "zstd -1", "zstd -3", "zstd -3 -T0", "lz4"] {
        if have(tool.split_whitespace().next().unwrap()) {
            cases.push((format!("`{tool}` (command line)"), Case::Tool(format!("{tool} -c"))));
        }
    }
    let mut rows: Vec<Row> =
        cases.iter().map(|(w, _)| Row { what: w.clone(), walls: vec![], cpu: vec![], out: 0 }).collect();
    for round in 0..runs {
        eprintln!("round {}/{runs}", round + 1);
        for (i, (_, case)) in cases.iter().enumerate() {
            let (wall, cpu, out) = match case {
                Case::Product(codec, level, workers) => in_product(&path, *codec, *level, *workers).await,
                Case::Tool(tool) => tokio::task::block_in_place(|| by_hand(&path, tool)),
            };
            rows[i].walls.push(wall);
            rows[i].cpu.push(cpu);
            rows[i].out = out;
        }
    }
    let mib = |b: u64| b as f64 / 1048576.0;
    println!("{:.0} MiB of plain SQL ({path}), median of {runs} rounds\n", mib(plain));
    println!("| codec | wall (s) | MiB/s of SQL | CPU (s) | output (MiB) | ratio |");
    println!("|---|---:|---:|---:|---:|---:|");
    for r in &rows {
        let w = median(&r.walls);
        println!(
            "| {} | {:.2} | {:.0} | {:.2} | {:.1} | {:.1} % |",
            r.what,
            w,
            mib(plain) / w,
            median(&r.cpu),
            mib(r.out),
            100.0 * r.out as f64 / plain as f64
        );
    }
}
