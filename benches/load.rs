//! Load benchmark of the whole taskman server: stateless 2025-11-25 `tools/call` requests of
//! `list_tasks` and of `create_task` (a POST each, no handshake) at a fixed concurrency for a
//! fixed time, against taskman with every layer on and with every layer off, in one run.
//!
//! ```text
//! cargo bench --bench load                      # 32 concurrent requests, 10 s per case
//! LOAD_CONCURRENCY=64 LOAD_SECONDS=20 cargo bench --bench load
//! ```
//!
//! It builds the example in release mode, starts it on loopback with an in-memory store (and,
//! for the "on" case, a loopback OTLP sink that accepts every span), and prints a table of
//! throughput and latency percentiles. The client runs on the same machine: on 2 cores the
//! numbers are for the whole system, which is why both stacks are measured in the same run.
#![allow(clippy::print_stdout)]

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use serde_json::json;

struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn build_taskman() -> std::path::PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let status = Command::new(cargo)
        .args(["build", "--quiet", "--release", "--example", "taskman"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("cargo build --release --example taskman");
    assert!(status.success(), "building taskman failed");
    let exe = std::env::current_exe().expect("current_exe");
    let profile = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/release");
    profile.join("examples").join("taskman")
}

fn start(binary: &std::path::Path, env: &[(&str, String)]) -> Server {
    let mut command = Command::new(binary);
    command
        .env_clear()
        .env("TASKMAN_HTTP_PORT", "0")
        .env("TASKMAN_DB_PATH", ":memory:")
        .env("TASKMAN_MCP_STATELESS", "true")
        .env("TASKMAN_MAX_CONCURRENT_REQUESTS", "10000")
        .env("LOG_FORMAT", "json")
        .env("LOG_LEVEL", "info")
        // Only taskman's own lines (the "listening" line among them): per-request logging
        // is not what this measures.
        .env("RUST_LOG", "warn,taskman=info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = command.spawn().expect("start taskman");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("taskman exited before listening")
            .expect("stderr");
        let Ok(record) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if record["message"] == "listening" {
            break record["addr"]
                .as_str()
                .expect("addr")
                .parse()
                .expect("socket address");
        }
    };
    // Keep draining the log so that taskman never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Server { child, addr }
}

/// A loopback OTLP/HTTP endpoint that accepts every export, so the "on" case pays for real
/// span export rather than for a dead collector.
async fn otlp_sink() -> String {
    let app = axum::Router::new().route("/v1/traces", axum::routing::post(|| async { "" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    endpoint
}

struct Outcome {
    requests: usize,
    errors: usize,
    latencies: Vec<Duration>,
    elapsed: Duration,
}

async fn drive(addr: SocketAddr, tool: &'static str, concurrency: usize, seconds: u64) -> Outcome {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()
        .unwrap();
    let url = format!("http://{addr}/mcp");
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|worker| {
            let (http, url, stop) = (http.clone(), url.clone(), stop.clone());
            tokio::spawn(async move {
                let (mut latencies, mut errors, mut n) = (Vec::new(), 0usize, 0usize);
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let arguments = match tool {
                        "create_task" => json!({"title": format!("load {worker}-{n}")}),
                        _ => json!({"limit": 20}),
                    };
                    let body = json!({"jsonrpc": "2.0", "id": n, "method": "tools/call",
                        "params": {"name": tool, "arguments": arguments}});
                    let sent = Instant::now();
                    let answer = http
                        .post(&url)
                        .header("accept", "application/json, text/event-stream")
                        .header("mcp-protocol-version", "2025-11-25")
                        .json(&body)
                        .send()
                        .await;
                    let ok = match answer {
                        Ok(response) if response.status().is_success() => response
                            .bytes()
                            .await
                            .is_ok_and(|b| !contains(&b, b"\"isError\":true")),
                        _ => false,
                    };
                    latencies.push(sent.elapsed());
                    if !ok {
                        errors += 1;
                    }
                }
                (latencies, errors)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut outcome = Outcome {
        requests: 0,
        errors: 0,
        latencies: Vec::new(),
        elapsed: Duration::ZERO,
    };
    for worker in workers {
        let (latencies, errors) = worker.await.unwrap();
        outcome.requests += latencies.len();
        outcome.errors += errors;
        outcome.latencies.extend(latencies);
    }
    outcome.elapsed = started.elapsed();
    outcome.latencies.sort();
    outcome
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index].as_secs_f64() * 1e3
}

fn main() {
    // `cargo test --benches` runs benches with `--bench`-less arguments: stay quick there.
    if std::env::args().any(|arg| arg == "--test" || arg == "--list") {
        return;
    }
    let concurrency: usize = std::env::var("LOAD_CONCURRENCY")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(32);
    let seconds: u64 = std::env::var("LOAD_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let binary = build_taskman();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let sink = runtime.block_on(otlp_sink());
    let on = vec![
        ("METRICS_ENABLED", "true".to_owned()),
        ("TRACING_ENABLED", "true".to_owned()),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", sink),
        ("OTEL_SAMPLE_RATE", "1".to_owned()),
        ("CIRCUIT_BREAKER_ENABLED", "true".to_owned()),
        ("FALLBACK_CACHE_ENABLED", "true".to_owned()),
    ];
    let off = vec![
        ("METRICS_ENABLED", "false".to_owned()),
        ("TRACING_ENABLED", "false".to_owned()),
        ("CIRCUIT_BREAKER_ENABLED", "false".to_owned()),
        ("FALLBACK_CACHE_ENABLED", "false".to_owned()),
    ];
    println!(
        "taskman load: {concurrency} concurrent stateless 2025-11-25 tools/call, {seconds} s per case"
    );
    println!("| tool | layers | requests/s | p50 ms | p99 ms | errors |");
    println!("|---|---|---|---|---|---|");
    for tool in ["list_tasks", "create_task"] {
        let mut throughput = Vec::new();
        for (name, env) in [("all off", &off), ("all on", &on)] {
            let server = start(&binary, env);
            // Warm up connections and give list_tasks something to list.
            runtime.block_on(drive(server.addr, "create_task", 4, 1));
            let outcome = runtime.block_on(drive(server.addr, tool, concurrency, seconds));
            let rate = outcome.requests as f64 / outcome.elapsed.as_secs_f64();
            throughput.push(rate);
            println!(
                "| {tool} | {name} | {rate:.0} | {:.2} | {:.2} | {} |",
                percentile(&outcome.latencies, 0.50),
                percentile(&outcome.latencies, 0.99),
                outcome.errors
            );
        }
        println!(
            "| {tool} | on ÷ off | {:.3} | | | |",
            throughput[1] / throughput[0]
        );
    }
}
