//! Runs the built `taskman` example as a child process, the way an operator would.
#![allow(dead_code, unreachable_pub)]

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    path::PathBuf,
    process::{Child, Command, ExitStatus, Stdio},
    sync::{Arc, Mutex, OnceLock},
    time::{Duration, Instant},
};

/// How long a child may take to print its "listening" line.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Path of the built example. It is (re)built once per test binary, with the features this
/// test binary was built with, so that a filtered `cargo test --test X` never runs a stale one.
pub fn taskman_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let features: Vec<&str> = [
            ("request-id", cfg!(feature = "request-id")),
            ("metrics", cfg!(feature = "metrics")),
            ("trace", cfg!(feature = "trace")),
            ("otlp", cfg!(feature = "otlp")),
            ("circuit-breaker", cfg!(feature = "circuit-breaker")),
            ("fallback-cache", cfg!(feature = "fallback-cache")),
            ("retry", cfg!(feature = "retry")),
            ("limit", cfg!(feature = "limit")),
            ("stack", cfg!(feature = "stack")),
        ]
        .into_iter()
        .filter_map(|(name, on)| on.then_some(name))
        .collect();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let output = Command::new(cargo)
            .args([
                "build",
                "--quiet",
                "--example",
                "taskman",
                "--features",
                &features.join(","),
            ])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .expect("run cargo build --example taskman");
        assert!(
            output.status.success(),
            "cargo build --example taskman failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        // Test binaries live in target/<profile>/deps; examples in target/<profile>/examples.
        let exe = std::env::current_exe().expect("current_exe");
        let profile_dir = exe
            .parent()
            .and_then(|deps| deps.parent())
            .expect("target/<profile>");
        profile_dir
            .join("examples")
            .join(format!("taskman{}", std::env::consts::EXE_SUFFIX))
    })
    .clone()
}

/// Path of the example built in release mode, for tests that measure latency: a debug build
/// is several times slower and its timings say little about the server.
pub fn taskman_release_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let output = Command::new(cargo)
            .args(["build", "--quiet", "--release", "--example", "taskman"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .expect("run cargo build --release --example taskman");
        assert!(
            output.status.success(),
            "cargo build --release --example taskman failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let exe = std::env::current_exe().expect("current_exe");
        let target = exe
            .parent()
            .and_then(|deps| deps.parent())
            .and_then(|profile| profile.parent())
            .expect("target");
        target
            .join("release")
            .join("examples")
            .join(format!("taskman{}", std::env::consts::EXE_SUFFIX))
    })
    .clone()
}

/// A `Command` for taskman with a clean environment: no setting leaks in from the developer's
/// shell, logs are JSON so that tests can read them.
pub fn taskman_command(args: &[&str], env: &[(&str, &str)]) -> Command {
    command_for(taskman_bin(), args, env)
}

/// Like [`taskman_command`], for a given binary.
pub fn command_for(binary: PathBuf, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(binary);
    command
        .args(args)
        .env_clear()
        .env("LOG_FORMAT", "json")
        .env("LOG_LEVEL", "info");
    for (key, value) in env {
        command.env(key, value);
    }
    command
}

/// A running taskman process whose stderr is collected line by line.
pub struct Taskman {
    child: Child,
    pub addr: SocketAddr,
    logs: Arc<Mutex<Vec<String>>>,
}

impl Taskman {
    /// Starts `taskman ARGS` on an OS-chosen port and waits for it to listen.
    pub fn start(args: &[&str], env: &[(&str, &str)]) -> Taskman {
        Taskman::start_binary(taskman_bin(), args, env)
    }

    /// Like [`Taskman::start`], for a given binary.
    pub fn start_binary(binary: PathBuf, args: &[&str], env: &[(&str, &str)]) -> Taskman {
        let mut command = command_for(binary, args, env);
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("spawn taskman");
        let stderr = child.stderr.take().expect("stderr");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        {
            let logs = logs.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    if let Some(addr) = listening_addr(&line) {
                        let _ = addr_tx.send(addr);
                    }
                    logs.lock().unwrap().push(line);
                }
            });
        }
        let addr = match addr_rx.recv_timeout(START_TIMEOUT) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "taskman did not start; its log:\n{}",
                    logs.lock().unwrap().join("\n")
                );
            }
        };
        Taskman { child, addr, logs }
    }

    /// Starts the MCP server with an in-memory embedded backend.
    pub fn start_server(extra_env: &[(&str, &str)]) -> Taskman {
        let mut env = vec![("TASKMAN_HTTP_PORT", "0"), ("TASKMAN_DB_PATH", ":memory:")];
        env.extend_from_slice(extra_env);
        Taskman::start(&[], &env)
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn mcp_url(&self) -> String {
        format!("http://{}/mcp", self.addr)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Every log line so far, each a JSON object.
    pub fn logs(&self) -> Vec<serde_json::Value> {
        self.logs
            .lock()
            .unwrap()
            .iter()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    pub fn raw_logs(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    /// Sends a signal by name, e.g. "TERM".
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Waits for the process to exit, killing it after `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                // Let the reader thread drain the last lines.
                std::thread::sleep(Duration::from_millis(100));
                return status;
            }
            if started.elapsed() > timeout {
                let _ = self.child.kill();
                panic!(
                    "taskman did not exit within {timeout:?}; its log:\n{}",
                    self.raw_logs()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Taskman {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The address of a JSON log line `{"message":"listening","addr":"127.0.0.1:PORT",...}`.
fn listening_addr(line: &str) -> Option<SocketAddr> {
    let value: serde_json::Value = serde_json::from_str(line).ok()?;
    if value.get("message")?.as_str()? != "listening" {
        return None;
    }
    value.get("addr")?.as_str()?.parse().ok()
}
