//! Chaos: taskman in front of a separate `taskman backend` process, under a steady mixed load
//! of reads and writes from real MCP clients. The backend is killed, then restarted on the
//! same port and data. Checked: the breaker opens within the configured volume of failures
//! (seen in `/metrics`); stored reads keep being answered, marked stale; writes fail fast
//! with a clear tool error; `/mcp` never answers 5xx and nothing panics; the breaker closes
//! within the reset timeout plus one probe; every acknowledged create is in the database
//! exactly once and none that was reported as not made is.
//!
//! Run with `-- --nocapture` to see the counts.
#![allow(clippy::print_stderr)]

mod support;

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use rmcp::{
    RoleClient, ServiceExt,
    model::{CallToolRequestParams, CallToolResult},
    service::{Peer, RunningService},
    transport::StreamableHttpClientTransport,
};
use serde_json::{Value, json};
use support::Taskman;

const VOLUME_THRESHOLD: usize = 10;
const ERROR_THRESHOLD_PERCENT: usize = 50;
const RESET_TIMEOUT: Duration = Duration::from_secs(4);
const READERS: usize = 3;
const WRITERS: usize = 2;
/// A failed write must be answered at least this fast at the 99th percentile.
const FAST_FAIL_P99: Duration = Duration::from_millis(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    ListTasks,
    GetTask,
    ListProjects,
    CreateTask,
}

impl Kind {
    fn is_read(self) -> bool {
        self != Kind::CreateTask
    }
}

#[derive(Debug, Clone)]
enum Outcome {
    Fresh,
    Stale,
    ToolError(String),
    /// The MCP request itself failed (an HTTP error status, a broken connection).
    Transport(String),
}

#[derive(Debug, Clone)]
struct Call {
    kind: Kind,
    /// For creates: the unique title sent.
    title: Option<String>,
    started: Instant,
    took: Duration,
    outcome: Outcome,
}

async fn connect(url: &str) -> RunningService<RoleClient, ()> {
    ().serve(StreamableHttpClientTransport::from_uri(url.to_owned()))
        .await
        .expect("MCP client connects")
}

async fn call(
    peer: &Peer<RoleClient>,
    tool: &'static str,
    args: Value,
) -> Result<CallToolResult, String> {
    let Value::Object(arguments) = args else {
        panic!("arguments must be an object")
    };
    peer.call_tool(CallToolRequestParams::new(tool).with_arguments(arguments))
        .await
        .map_err(|err| err.to_string())
}

fn text(result: &CallToolResult) -> String {
    result
        .content
        .first()
        .and_then(|c| c.as_text())
        .map(|t| t.text.clone())
        .unwrap_or_default()
}

fn outcome_of(result: Result<CallToolResult, String>) -> Outcome {
    match result {
        Err(err) => Outcome::Transport(err),
        Ok(result) if result.is_error == Some(true) => Outcome::ToolError(text(&result)),
        Ok(result) => {
            let stale = result
                .structured_content
                .as_ref()
                .and_then(|value| value.get("stale"))
                .and_then(Value::as_bool)
                .unwrap_or(false);
            if stale {
                Outcome::Stale
            } else {
                Outcome::Fresh
            }
        }
    }
}

/// `taskman_circuit_breaker_state{breaker="backend",key=KEY,state=STATE}` is 1.
fn breaker_in(metrics: &str, key: &str, state: &str) -> bool {
    let series = format!(
        r#"taskman_circuit_breaker_state{{breaker="backend",key="{key}",state="{state}"}} 1"#
    );
    metrics.lines().any(|line| line == series)
}

async fn scrape(http: &reqwest::Client, url: &str) -> String {
    http.get(url).send().await.unwrap().text().await.unwrap()
}

/// Polls `/metrics` until `create_task`'s breaker is in `state`; the moment it was seen.
async fn wait_for_breaker(
    http: &reqwest::Client,
    url: &str,
    state: &str,
    within: Duration,
) -> Instant {
    let started = Instant::now();
    loop {
        let metrics = scrape(http, url).await;
        if breaker_in(&metrics, "create_task", state) {
            return Instant::now();
        }
        assert!(
            started.elapsed() < within,
            "the create_task breaker was not {state} within {within:?}:\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Every task in the backend, by paging through `GET /tasks`.
async fn all_tasks(http: &reqwest::Client, endpoint: &str) -> Vec<Value> {
    let mut tasks = Vec::new();
    loop {
        let page: Value = http
            .get(format!("{endpoint}/tasks?limit=100&offset={}", tasks.len()))
            .send()
            .await
            .expect("backend answers")
            .json()
            .await
            .expect("a page");
        let items = page["items"]
            .as_array()
            .cloned()
            .unwrap_or_else(|| panic!("no items in {page}"));
        let total = page["total"].as_u64().expect("total") as usize;
        let empty = items.is_empty();
        tasks.extend(items);
        if tasks.len() >= total || empty {
            return tasks;
        }
    }
}

fn scratch_dir() -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let dir = std::env::temp_dir().join(format!("taskman-chaos-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_killed_and_restarted_under_load() {
    let dir = scratch_dir();
    let db = dir.join("tasks.db");
    let db = db.to_str().unwrap().to_owned();
    // Release builds: the test measures how fast writes fail.
    let binary = support::taskman_release_bin();
    let backend = Taskman::start_binary(
        binary.clone(),
        &["backend", "--port", "0", "--db", &db],
        &[],
    );
    let port = backend.addr.port().to_string();
    let endpoint = format!("http://{}/api/v1", backend.addr);
    let volume = VOLUME_THRESHOLD.to_string();
    let error_threshold = ERROR_THRESHOLD_PERCENT.to_string();
    let reset = RESET_TIMEOUT.as_millis().to_string();
    let server = Taskman::start_binary(
        binary.clone(),
        &[],
        &[
            ("TASKMAN_HTTP_PORT", "0"),
            ("TASK_MANAGER_API_ENDPOINT", &endpoint),
            ("CIRCUIT_BREAKER_VOLUME_THRESHOLD", &volume),
            ("CIRCUIT_BREAKER_ERROR_THRESHOLD", &error_threshold),
            ("CIRCUIT_BREAKER_RESET_TIMEOUT_MS", &reset),
            ("FALLBACK_CACHE_TTL_MS", "60000"),
            ("TASK_MANAGER_API_TIMEOUT_MS", "2000"),
        ],
    );
    let http = reqwest::Client::new();
    let metrics_url = format!("{}/metrics", server.base_url());

    // Something to read: a project and a few tasks, made before the load starts.
    let seeder = connect(&server.mcp_url()).await;
    let project = call(seeder.peer(), "create_project", json!({"name": "chaos"}))
        .await
        .unwrap();
    assert_ne!(project.is_error, Some(true), "{project:?}");
    let mut seeded = Vec::new();
    for n in 0..3 {
        let task = call(
            seeder.peer(),
            "create_task",
            json!({"title": format!("seed {n}")}),
        )
        .await
        .unwrap()
        .structured_content
        .unwrap();
        seeded.push(task["id"].as_str().unwrap().to_owned());
    }
    seeder.cancel().await.ok();
    let seeded = Arc::new(seeded);

    let stop = Arc::new(AtomicBool::new(false));
    let calls: Arc<Mutex<Vec<Call>>> = Arc::default();
    let mut workers = Vec::new();
    for worker in 0..READERS + WRITERS {
        let (stop, calls, seeded, url) = (
            stop.clone(),
            calls.clone(),
            seeded.clone(),
            server.mcp_url(),
        );
        workers.push(tokio::spawn(async move {
            let client = connect(&url).await;
            let peer = client.peer();
            let mut n = 0usize;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let kind = if worker >= READERS {
                    Kind::CreateTask
                } else {
                    [Kind::ListTasks, Kind::GetTask, Kind::ListProjects][n % 3]
                };
                let title = (kind == Kind::CreateTask).then(|| format!("chaos {worker}-{n}"));
                let started = Instant::now();
                let result = match kind {
                    Kind::ListTasks => call(peer, "list_tasks", json!({})).await,
                    Kind::GetTask => {
                        call(peer, "get_task", json!({"id": seeded[n % seeded.len()]})).await
                    }
                    Kind::ListProjects => call(peer, "list_projects", json!({})).await,
                    Kind::CreateTask => {
                        call(
                            peer,
                            "create_task",
                            json!({"title": title.clone().unwrap()}),
                        )
                        .await
                    }
                };
                let took = started.elapsed();
                calls.lock().unwrap().push(Call {
                    kind,
                    title,
                    started,
                    took,
                    outcome: outcome_of(result),
                });
                // A steady load, not a flood: the machine also runs the backend and the server.
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            client.cancel().await.ok();
        }));
    }

    // Phase 1: the backend is up.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // Phase 2: the backend is killed. Watch /metrics until the create breaker opens.
    let killed = Instant::now();
    drop(backend); // SIGKILL, then wait: connections are refused from here on
    let opened = wait_for_breaker(&http, &metrics_url, "open", Duration::from_secs(10)).await;
    // The outage goes on for a while, shorter than the reset timeout.
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let metrics_during_outage = scrape(&http, &metrics_url).await;

    // Phase 3: the backend comes back on the same port, with the same data.
    let backend = Taskman::start_binary(
        binary.clone(),
        &["backend", "--port", &port, "--db", &db],
        &[],
    );
    let restarted = Instant::now();
    let closed = wait_for_breaker(
        &http,
        &metrics_url,
        "closed",
        RESET_TIMEOUT + Duration::from_secs(10),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        tokio::time::timeout(Duration::from_secs(10), worker)
            .await
            .expect("workers stop")
            .expect("worker did not panic");
    }

    let calls = calls.lock().unwrap().clone();
    let during_outage =
        |call: &&Call| call.started >= killed && call.started + call.took <= restarted;

    // No MCP request failed at the HTTP level, and the server never answered /mcp with a 5xx.
    let transport: Vec<&String> = calls
        .iter()
        .filter_map(|call| match &call.outcome {
            Outcome::Transport(err) => Some(err),
            _ => None,
        })
        .collect();
    assert!(transport.is_empty(), "MCP requests failed: {transport:?}");
    let metrics = scrape(&http, &metrics_url).await;
    let mcp_5xx: Vec<&str> = metrics
        .lines()
        .filter(|line| {
            line.starts_with("taskman_http_requests_total{")
                && line.contains(r#"route="/mcp""#)
                && line.contains(r#"status="5"#)
        })
        .collect();
    assert!(mcp_5xx.is_empty(), "/mcp answered 5xx: {mcp_5xx:?}");
    // Retries happened (reads of unstored answers while the backend was down), and each is
    // counted per operation as well as by the retry layer itself.
    let sum_of = |family: &str| -> f64 {
        metrics
            .lines()
            .filter(|line| line.starts_with(family))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    let retries_by_operation = sum_of("taskman_backend_api_retries_total{");
    let retries_sent = sum_of("taskman_retry_retries_total{");
    assert!(retries_sent > 0.0, "no retries in\n{metrics}");
    assert_eq!(retries_by_operation, retries_sent, "{metrics}");
    assert!(
        !server.raw_logs().contains("panicked"),
        "taskman panicked:\n{}",
        server.raw_logs()
    );

    // Before the kill, everything worked.
    let before: Vec<_> = calls
        .iter()
        .filter(|call| call.started + call.took < killed)
        .collect();
    assert!(
        before.len() > 50,
        "too little load before the kill: {}",
        before.len()
    );
    assert!(
        before
            .iter()
            .all(|call| matches!(call.outcome, Outcome::Fresh)),
        "{:?}",
        before
            .iter()
            .find(|call| !matches!(call.outcome, Outcome::Fresh))
    );

    // The breaker opened within the configured volume of failures: the creates that failed
    // at the backend (not rejected by the open breaker) before it opened.
    let creates_failed_at_backend = calls
        .iter()
        .filter(|call| call.kind == Kind::CreateTask && call.started >= killed)
        .filter(|call| {
            matches!(&call.outcome, Outcome::ToolError(message) if !message.contains("circuit breaker"))
        })
        .filter(|call| call.started < opened)
        .count();
    assert!(
        creates_failed_at_backend <= VOLUME_THRESHOLD,
        "the breaker opened only after {creates_failed_at_backend} failed creates"
    );
    assert!(breaker_in(&metrics_during_outage, "create_task", "open"));

    // During the outage: stored reads are answered stale; the others fail with a clear error.
    let reads: Vec<_> = calls
        .iter()
        .filter(during_outage)
        .filter(|call| call.kind.is_read())
        .collect();
    let stale = reads
        .iter()
        .filter(|call| matches!(call.outcome, Outcome::Stale))
        .count();
    let read_errors: Vec<&String> = reads
        .iter()
        .filter_map(|call| match &call.outcome {
            Outcome::ToolError(message) => Some(message),
            _ => None,
        })
        .collect();
    assert!(
        reads
            .iter()
            .all(|call| !matches!(call.outcome, Outcome::Fresh)),
        "a read was answered fresh with the backend down"
    );
    for message in &read_errors {
        assert!(message.contains("task backend unavailable"), "{message}");
    }
    // Projects are never written during the run, so their listing, stored before the kill,
    // must be served on every read.
    let project_reads: Vec<_> = reads
        .iter()
        .filter(|call| call.kind == Kind::ListProjects)
        .collect();
    assert!(!project_reads.is_empty());
    assert!(
        project_reads
            .iter()
            .all(|call| matches!(call.outcome, Outcome::Stale)),
        "{:?}",
        project_reads
            .iter()
            .find(|call| !matches!(call.outcome, Outcome::Stale))
    );

    // Writes fail fast, with a tool error that says what happened to the change.
    let writes: Vec<_> = calls
        .iter()
        .filter(during_outage)
        .filter(|call| call.kind == Kind::CreateTask)
        .collect();
    assert!(
        writes.len() > 50,
        "too few writes in the outage: {}",
        writes.len()
    );
    for write in &writes {
        let Outcome::ToolError(message) = &write.outcome else {
            panic!("a create succeeded with the backend down: {write:?}")
        };
        assert!(
            message.contains("task backend unavailable")
                && (message.contains("nothing was changed")
                    || message.contains("may or may not have been made")),
            "{message}"
        );
    }
    let mut write_times: Vec<Duration> = writes.iter().map(|call| call.took).collect();
    write_times.sort();
    let write_p99 = percentile(&write_times, 99.0);
    let write_p50 = percentile(&write_times, 50.0);
    let rejected_by_breaker = writes
        .iter()
        .filter(|call| matches!(&call.outcome, Outcome::ToolError(m) if m.contains("circuit breaker for create_task is open")))
        .count();
    let mut fresh_times: Vec<Duration> = before.iter().map(|call| call.took).collect();
    fresh_times.sort();
    eprintln!(
        "before the kill: p50 {:?} p99 {:?}; failed writes p50 {write_p50:?} p99 {write_p99:?}, slowest {:?}",
        percentile(&fresh_times, 50.0),
        percentile(&fresh_times, 99.0),
        write_times.last()
    );
    assert!(
        write_p99 <= FAST_FAIL_P99,
        "failed writes took {write_p99:?} at p99 (p50 {write_p50:?})"
    );

    // Recovery: the breaker closed within the reset timeout plus one probe, counted from
    // when it opened or, if later, from when the backend was back.
    let probe_allowance = Duration::from_millis(1000);
    let earliest_close = (opened + RESET_TIMEOUT).max(restarted);
    assert!(
        closed <= earliest_close + probe_allowance,
        "the breaker closed {:?} after it could have",
        closed.saturating_duration_since(earliest_close)
    );
    let after: Vec<_> = calls
        .iter()
        .filter(|call| call.started >= closed + Duration::from_millis(100))
        .collect();
    assert!(!after.is_empty());
    assert!(
        after
            .iter()
            .all(|call| matches!(call.outcome, Outcome::Fresh)),
        "{:?}",
        after
            .iter()
            .find(|call| !matches!(call.outcome, Outcome::Fresh))
    );

    // Every acknowledged create is in the database exactly once; none reported as not made is.
    let tasks = all_tasks(&http, &format!("http://127.0.0.1:{port}/api/v1")).await;
    let mut found: HashMap<String, usize> = HashMap::new();
    for task in &tasks {
        *found
            .entry(task["title"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    let (mut acknowledged, mut not_made, mut unknown, mut unknown_found) = (0, 0, 0, 0);
    for create in calls.iter().filter(|call| call.kind == Kind::CreateTask) {
        let title = create.title.as_ref().unwrap();
        let count = found.get(title).copied().unwrap_or(0);
        match &create.outcome {
            Outcome::Fresh => {
                acknowledged += 1;
                assert_eq!(
                    count, 1,
                    "acknowledged create {title:?} is there {count} times"
                );
            }
            Outcome::ToolError(message) if message.contains("nothing was changed") => {
                not_made += 1;
                assert_eq!(count, 0, "create {title:?} was reported as not made");
            }
            Outcome::ToolError(_) => {
                unknown += 1;
                assert!(count <= 1, "create {title:?} is there {count} times");
                unknown_found += count;
            }
            other => panic!("unexpected outcome of a create: {other:?}"),
        }
    }
    drop(backend);
    let _ = std::fs::remove_dir_all(&dir);

    eprintln!(
        "chaos: {} calls; before the kill {} (all fresh)\n\
         outage: {} reads, {stale} served stale, {} failed (not stored); \
         {} writes failed ({rejected_by_breaker} by the open breaker), p50 {write_p50:?}, p99 {write_p99:?}\n\
         breaker: opened {:?} after the kill after {creates_failed_at_backend} failed creates; \
         backend back {:?} after the kill; closed {:?} after it opened (reset timeout {RESET_TIMEOUT:?})\n\
         retries sent: {retries_sent}; /mcp 5xx: {}; transport errors: {}\n\
         creates: {acknowledged} acknowledged (each found once), {not_made} reported not made (none found), \
         {unknown} outcome unknown ({unknown_found} found)",
        calls.len(),
        before.len(),
        reads.len(),
        read_errors.len(),
        writes.len(),
        opened - killed,
        restarted - killed,
        closed - opened,
        mcp_5xx.len(),
        transport.len(),
    );
}
