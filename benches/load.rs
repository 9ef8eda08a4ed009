//! Load benchmark of the whole taskman server: stateless 2025-11-25 `tools/call` requests of
//! `list_tasks` and of `create_task` (a POST each, no handshake) at a fixed concurrency,
//! against taskman with every layer on and with every layer off, interleaved.
//!
//! ```text
//! cargo bench --bench load                       # 32 concurrent, 4 rounds of 4 s per case
//! LOAD_ROUNDS=6 LOAD_SECONDS=10 cargo bench --bench load
//! ```
//!
//! It builds the example in release mode and, for each tool, runs `LOAD_ROUNDS` rounds (default
//! 4). A round starts a fresh "all off" and a fresh "all on" taskman side by side on loopback,
//! each with an in-memory store (and, for "on", a loopback OTLP sink that accepts every span),
//! creates 100 tasks in each (`list_tasks` counts them all, so both stacks get the same store),
//! warms each up with the tool for `LOAD_WARMUP_SECONDS` (default 1; opens every connection),
//! then drives them one at a time, in alternating slices of `LOAD_SLICE_SECONDS` (default 0.5)
//! in the order off, on, on, off, off, on, …, at `LOAD_CONCURRENCY` (default 32), until each has
//! had `LOAD_SECONDS` (default 4). On a shared machine the speed drifts from second to second;
//! slices this short put both stacks under the same conditions, so a round's ratio is far
//! steadier than two whole measurements one after the other (an "A/A" run, both stacks all
//! off, reads 1.005 ± 0.014 over 8 rounds where the absolute rate varied from 4,100 to 6,000
//! requests/s). The idle stack waits between its slices; its spans still queued for export
//! may be sent during the other's slice, at most one batch of 512 per slice.
//!
//! The table (markdown, for the README) gives per case the **median** over the rounds of
//! throughput, p50 and p99 latency, and the errors summed; the `on ÷ off` row is the median
//! of the rounds' ratios (each round's two stacks shared the same conditions, so the ratio
//! within a round is what is compared, not the medians across rounds). Each round's results are also printed on stderr, with the
//! per-round ratios and their mean and 95 % interval at the end. Total time: 2 tools ×
//! `LOAD_ROUNDS` × (2 × (`LOAD_SECONDS` + `LOAD_WARMUP_SECONDS`) + ~0.5 s start and seeding)
//! ≈ 85 s with the defaults, plus the build.
//!
//! Each slice also reads taskman's CPU time (and this process's: the load client and the
//! OTLP sink) from `/proc`, and the summary gives the median CPU µs per request: it says
//! which side the cost is on.
//!
//! For experiments: `LOAD_TOOLS=list_tasks` measures one tool only; `LOAD_ON_ENV="K=V,…"`
//! changes the "on" stack (e.g. `OTEL_SAMPLE_RATE=0`, `FALLBACK_CACHE_ENABLED=false`);
//! `LOAD_TASKMAN=path` uses that binary instead of building one (e.g. one built with frame
//! pointers); each taskman's pid is printed on stderr when its warm-up ends, for
//! `perf record -p` (it then runs only in its own slices).
//!
//! The client runs on the same machine: on 2 cores the numbers are for the whole system, so
//! check that nothing else is running: the header line gives the CPU the other processes
//! used during the measurements (from `/proc/stat`; the load average counts the benchmark
//! itself). To tell a 3 % difference, use `LOAD_ROUNDS=8` or more and read the interval.
//!
//! "Every layer" is metrics, tracing (every span sampled and exported), circuit breakers,
//! fallback cache and retries (`METRICS_ENABLED`, `TRACING_ENABLED`, `OTEL_SAMPLE_RATE=1`,
//! `CIRCUIT_BREAKER_ENABLED`, `FALLBACK_CACHE_ENABLED`, `RETRY_ENABLED`).
#![allow(clippy::print_stdout, clippy::print_stderr)]

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

/// The taskman binary: `LOAD_TASKMAN` if set (e.g. a build with frame pointers, for
/// profiling), else the release build of the example, built now.
fn build_taskman() -> std::path::PathBuf {
    if let Some(binary) = std::env::var_os("LOAD_TASKMAN") {
        return binary.into();
    }
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
/// span export rather than for a dead collector. It reads each body, as a collector does: a
/// server that answers without reading a large body closes the connection, and the exporter
/// would then connect again for every batch.
async fn otlp_sink() -> String {
    let app = axum::Router::new()
        .route(
            "/v1/traces",
            axum::routing::post(|body: axum::body::Bytes| async move {
                std::hint::black_box(body.len());
                ""
            }),
        )
        .layer(axum::extract::DefaultBodyLimit::max(64 << 20));
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

fn client(concurrency: usize) -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()
        .unwrap()
}

async fn drive(
    http: &reqwest::Client,
    addr: SocketAddr,
    tool: &'static str,
    concurrency: usize,
    duration: Duration,
) -> Outcome {
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
    tokio::time::sleep(duration).await;
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

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// The mean and the half-width of its 95 % confidence interval (Student's t), so that a
/// ratio is never quoted more precisely than the rounds allow.
fn mean_with_interval(values: &[f64]) -> (f64, f64) {
    let n = values.len();
    let mean = values.iter().sum::<f64>() / n as f64;
    if n < 2 {
        return (mean, f64::NAN);
    }
    let variance = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    // Two-sided 97.5 % quantiles of Student's t for 1..=30 degrees of freedom.
    const T: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
        2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
        2.052, 2.048, 2.045, 2.042,
    ];
    let t = T.get(n - 2).copied().unwrap_or(1.96);
    (mean, t * (variance / n as f64).sqrt())
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The 1-minute load average, to note with the numbers.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| {
            let fields: Vec<&str> = s.split_whitespace().take(3).collect();
            (fields.len() == 3).then(|| fields.join(" "))
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

/// CPU time (user + system, all threads) a process has used so far, from `/proc`: taskman's
/// CPU per request is steadier than throughput when something else shares the machine.
/// `None` where there is no `/proc`.
fn cpu_time(pid: &str) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, in USER_HZ (100 on Linux) ticks.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

/// CPU time the whole machine has been busy so far (all cores, from `/proc/stat`).
fn busy_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let ticks: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .map_while(|t| t.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal …: all but idle and iowait.
    let busy: u64 = ticks.iter().sum::<u64>() - ticks.get(3)? - ticks.get(4).unwrap_or(&0);
    Some(Duration::from_millis(busy * 10))
}

/// One measurement: throughput, p50 and p99 (ms), errors, CPU µs per request of taskman and
/// of this process (the load client and the OTLP sink), and how much CPU the rest of the
/// machine used meanwhile (in cores: 0 on a quiet machine; compare it with the 2 cores).
#[derive(Clone, Copy)]
struct Sample {
    rate: f64,
    p50: f64,
    p99: f64,
    errors: usize,
    server_cpu: f64,
    client_cpu: f64,
    others: f64,
}

/// Tasks created before each measurement (list_tasks lists the first 20 of them).
const SEED_TASKS: usize = 100;

/// Creates `count` tasks, 4 at a time.
async fn seed(http: &reqwest::Client, addr: SocketAddr, count: usize) {
    let url = format!("http://{addr}/mcp");
    let workers: Vec<_> = (0..4)
        .map(|worker| {
            let (http, url) = (http.clone(), url.clone());
            tokio::spawn(async move {
                for n in (worker..count).step_by(4) {
                    let body = json!({"jsonrpc": "2.0", "id": n, "method": "tools/call",
                        "params": {"name": "create_task", "arguments": {"title": format!("seed {n}")}}});
                    let response = http
                        .post(&url)
                        .header("accept", "application/json, text/event-stream")
                        .header("mcp-protocol-version", "2025-11-25")
                        .json(&body)
                        .send()
                        .await
                        .expect("seeding taskman");
                    assert!(response.status().is_success(), "seeding taskman: {}", response.status());
                    response.bytes().await.expect("seeding taskman");
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.unwrap();
    }
}

/// How a round drives each stack: at `concurrency`, for `seconds` in slices of `slice`
/// seconds, after `warmup` seconds.
#[derive(Clone, Copy)]
struct Pace {
    concurrency: usize,
    seconds: f64,
    slice: f64,
    warmup: f64,
}

/// One running stack under test: its server, its own client (and so its own connection
/// pool), and what its slices have added up so far.
struct Stack {
    server: Server,
    http: reqwest::Client,
    pid: String,
    requests: usize,
    errors: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
    cpu: Duration,
    client_cpu: Duration,
}

impl Stack {
    async fn start(
        binary: &std::path::Path,
        env: &[(&str, String)],
        tool: &'static str,
        pace: Pace,
    ) -> Self {
        let server = start(binary, env);
        let http = client(pace.concurrency);
        // The same store for both stacks: list_tasks counts every task, so its cost depends
        // on how many there are. Then every connection opened and the tool's path warm.
        seed(&http, server.addr, SEED_TASKS).await;
        drive(
            &http,
            server.addr,
            tool,
            pace.concurrency,
            Duration::from_secs_f64(pace.warmup),
        )
        .await;
        let pid = server.child.id().to_string();
        // For `perf record -p`: both stacks run from now on, each only in its own slices.
        eprintln!("load: measuring taskman pid {pid}");
        Stack {
            server,
            http,
            pid,
            requests: 0,
            errors: 0,
            elapsed: Duration::ZERO,
            latencies: Vec::new(),
            cpu: Duration::ZERO,
            client_cpu: Duration::ZERO,
        }
    }

    /// Drives this stack alone for one slice and adds up what it did.
    async fn slice(&mut self, tool: &'static str, pace: Pace) {
        let before = (cpu_time(&self.pid), cpu_time("self"));
        let outcome = drive(
            &self.http,
            self.server.addr,
            tool,
            pace.concurrency,
            Duration::from_secs_f64(pace.slice),
        )
        .await;
        if let (Some(before), Some(after)) = (before.0, cpu_time(&self.pid)) {
            self.cpu += after - before;
        }
        if let (Some(before), Some(after)) = (before.1, cpu_time("self")) {
            self.client_cpu += after - before;
        }
        self.requests += outcome.requests;
        self.errors += outcome.errors;
        self.elapsed += outcome.elapsed;
        self.latencies.extend(outcome.latencies);
    }

    fn sample(mut self, others: f64) -> Sample {
        self.latencies.sort();
        let per_request = |cpu: Duration| cpu.as_secs_f64() * 1e6 / self.requests.max(1) as f64;
        Sample {
            rate: self.requests as f64 / self.elapsed.as_secs_f64(),
            p50: percentile(&self.latencies, 0.50),
            p99: percentile(&self.latencies, 0.99),
            errors: self.errors,
            server_cpu: per_request(self.cpu),
            client_cpu: per_request(self.client_cpu),
            others,
        }
    }
}

/// One round: a fresh "all off" and a fresh "all on" taskman side by side, each seeded and
/// warmed up, then driven one at a time in alternating slices (off, on, on, off, off, on, …)
/// until each has had `pace.seconds`. Slices of a fraction of a second put both stacks under the
/// same moment-to-moment conditions of a shared machine, which whole rounds of seconds do not.
fn measure_round(
    runtime: &tokio::runtime::Runtime,
    binary: &std::path::Path,
    envs: [&[(&str, String)]; 2],
    tool: &'static str,
    pace: Pace,
) -> [Sample; 2] {
    runtime.block_on(async {
        let mut stacks = [
            Stack::start(binary, envs[0], tool, pace).await,
            Stack::start(binary, envs[1], tool, pace).await,
        ];
        let slices = (pace.seconds / pace.slice).ceil().max(2.0) as usize;
        let busy_before = busy_time();
        for n in 0..slices {
            // Pairs in ABBA order: each stack goes first as often as second.
            let order = if n % 2 == 0 { [0, 1] } else { [1, 0] };
            for case in order {
                stacks[case].slice(tool, pace).await;
            }
        }
        let own = stacks
            .iter()
            .map(|s| s.cpu + s.client_cpu)
            .sum::<Duration>();
        let wall = stacks.iter().map(|s| s.elapsed).sum::<Duration>();
        let others = match (busy_before, busy_time()) {
            (Some(b0), Some(b1)) => {
                (b1 - b0).saturating_sub(own).as_secs_f64() / wall.as_secs_f64()
            }
            _ => f64::NAN,
        };
        let [off, on] = stacks;
        [off.sample(others), on.sample(others)]
    })
}

/// An environment variable name that lives as long as the run.
fn leak(name: &str) -> &'static str {
    Box::leak(name.to_owned().into_boxed_str())
}

fn main() {
    // `cargo test --benches` runs benches with `--bench`-less arguments: stay quick there.
    if std::env::args().any(|arg| arg == "--test" || arg == "--list") {
        return;
    }
    let concurrency: usize = env_or("LOAD_CONCURRENCY", 32);
    let seconds: f64 = env_or("LOAD_SECONDS", 4.0);
    let warmup: f64 = env_or("LOAD_WARMUP_SECONDS", 1.0);
    let rounds: usize = env_or("LOAD_ROUNDS", 4_usize).max(1);
    let slice: f64 = env_or("LOAD_SLICE_SECONDS", 0.5_f64).max(0.05);
    let pace = Pace {
        concurrency,
        seconds,
        slice,
        warmup,
    };
    let tools: Vec<&'static str> = match std::env::var("LOAD_TOOLS") {
        Ok(list) => ["list_tasks", "create_task"]
            .into_iter()
            .filter(|tool| list.split(',').any(|t| t.trim() == *tool))
            .collect(),
        Err(_) => vec!["list_tasks", "create_task"],
    };
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
        ("RETRY_ENABLED", "true".to_owned()),
    ];
    // Experiments: `LOAD_ON_ENV="OTEL_SAMPLE_RATE=0,FALLBACK_CACHE_ENABLED=false"` changes
    // the "on" stack (later settings win).
    let extra = std::env::var("LOAD_ON_ENV").unwrap_or_default();
    let mut on = on;
    for pair in extra.split(',').filter(|p| !p.trim().is_empty()) {
        if let Some((key, value)) = pair.split_once('=') {
            on.push((leak(key.trim()), value.trim().to_owned()));
        }
    }
    let off = vec![
        ("METRICS_ENABLED", "false".to_owned()),
        ("TRACING_ENABLED", "false".to_owned()),
        ("CIRCUIT_BREAKER_ENABLED", "false".to_owned()),
        ("FALLBACK_CACHE_ENABLED", "false".to_owned()),
        ("RETRY_ENABLED", "false".to_owned()),
    ];
    let load_before = load_average();
    let started = Instant::now();
    let mut rows = Vec::new();
    let mut round_ratios = Vec::new();
    for &tool in &tools {
        // samples[0]: all off, samples[1]: all on.
        let mut samples: [Vec<Sample>; 2] = [Vec::new(), Vec::new()];
        for round in 0..rounds {
            let pair = measure_round(&runtime, &binary, [&off, &on], tool, pace);
            for (case, sample) in pair.into_iter().enumerate() {
                eprintln!(
                    "load: {tool} round {}/{rounds} {}: {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms, \
                     {} errors; CPU per request: taskman {:.0} µs, client {:.0} µs; other \
                     processes {:.2} cores",
                    round + 1,
                    ["all off", "all on"][case],
                    sample.rate,
                    sample.p50,
                    sample.p99,
                    sample.errors,
                    sample.server_cpu,
                    sample.client_cpu,
                    sample.others,
                );
                samples[case].push(sample);
            }
        }
        let ratios: Vec<f64> = samples[1]
            .iter()
            .zip(&samples[0])
            .map(|(on, off)| on.rate / off.rate)
            .collect();
        round_ratios.push((tool, ratios));
        rows.push((tool, samples));
    }
    let elapsed = started.elapsed().as_secs_f64();

    let others: Vec<f64> = rows
        .iter()
        .flat_map(|(_, samples)| samples.iter().flatten().map(|s| s.others))
        .collect();
    let others_max = others.iter().copied().fold(f64::NAN, f64::max);
    println!(
        "taskman load: {concurrency} concurrent stateless 2025-11-25 tools/call; median of \
         {rounds} rounds of {seconds} s per case in alternating {slice} s slices (after {warmup} s \
         warm-up); other \
         processes used {:.2} cores (median; max {others_max:.2}) during the measurements; load \
         average {load_before} before, {} after; {elapsed:.0} s",
        median(&others),
        load_average()
    );
    println!();
    println!("| tool | layers | requests/s | p50 ms | p99 ms | errors |");
    println!("|---|---|---|---|---|---|");
    for ((tool, samples), (_, ratios)) in rows.iter().zip(&round_ratios) {
        for (case, name) in ["all off", "all on"].into_iter().enumerate() {
            let of =
                |f: fn(&Sample) -> f64| median(&samples[case].iter().map(f).collect::<Vec<_>>());
            println!(
                "| {tool} | {name} | {:.0} | {:.2} | {:.2} | {} |",
                of(|s| s.rate),
                of(|s| s.p50),
                of(|s| s.p99),
                samples[case].iter().map(|s| s.errors).sum::<usize>()
            );
        }
        // A round's two stacks ran under the same conditions: its ratio is the measurement.
        println!("| {tool} | on ÷ off | {:.3} | | | |", median(ratios));
    }
    println!();
    for ((tool, ratios), (_, samples)) in round_ratios.iter().zip(&rows) {
        let shown: Vec<String> = ratios.iter().map(|r| format!("{r:.3}")).collect();
        let cpu = |case: usize, f: fn(&Sample) -> f64| {
            median(&samples[case].iter().map(f).collect::<Vec<_>>())
        };
        let (mean, half_width) = mean_with_interval(ratios);
        println!(
            "{tool}: on ÷ off per round {} (median {:.3}, mean {mean:.3} ± {half_width:.3} at \
             95 %); CPU per request (medians): taskman {:.0} → {:.0} µs, client {:.0} → {:.0} µs",
            shown.join(", "),
            median(ratios),
            cpu(0, |s| s.server_cpu),
            cpu(1, |s| s.server_cpu),
            cpu(0, |s| s.client_cpu),
            cpu(1, |s| s.client_cpu),
        );
    }
}
