//! taskman's settings: each is a flag and an environment variable, listed by `--help` and in
//! `.env.example`, and a bad value stops the program with one line and exit code 2.

mod support;

use std::collections::BTreeMap;

use support::taskman_command;

/// Every setting the issue tracker and the TypeScript plan name, which users depend on.
const REQUIRED: [&str; 19] = [
    "TASKMAN_MCP_TRANSPORT",
    "TASKMAN_HTTP_HOST",
    "TASKMAN_HTTP_PORT",
    "TASKMAN_DB_PATH",
    "TASK_MANAGER_API_ENDPOINT",
    "LOG_LEVEL",
    "LOG_FORMAT",
    "METRICS_ENABLED",
    "TRACING_ENABLED",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_DEBUG",
    "OTEL_SAMPLE_RATE",
    "CIRCUIT_BREAKER_ENABLED",
    "CIRCUIT_BREAKER_ERROR_THRESHOLD",
    "CIRCUIT_BREAKER_RESET_TIMEOUT_MS",
    "CIRCUIT_BREAKER_VOLUME_THRESHOLD",
    "FALLBACK_CACHE_ENABLED",
    "FALLBACK_CACHE_MAX_SIZE",
    "FALLBACK_CACHE_TTL_MS",
];

/// `[env: NAME=…]` and `[default: VALUE]` pairs from `--help`, by variable.
fn help_settings(args: &[&str]) -> BTreeMap<String, Option<String>> {
    let output = taskman_command(args, &[]).output().expect("run --help");
    assert!(output.status.success(), "--help failed");
    let help = String::from_utf8(output.stdout).expect("utf-8 help");
    // An option's block runs from its `-` line to the next; clap may wrap it over several lines.
    let mut blocks: Vec<String> = Vec::new();
    for line in help.lines() {
        if line.trim_start().starts_with('-') {
            blocks.push(String::new());
        }
        if let Some(block) = blocks.last_mut() {
            block.push(' ');
            block.push_str(line.trim());
        }
    }
    let mut settings = BTreeMap::new();
    for block in blocks {
        let Some(env) = block.split("[env: ").nth(1) else {
            continue;
        };
        let name = env.split(['=', ']']).next().unwrap().to_owned();
        // The default is the block's last item, and may itself contain `]` (`http://[::1]:*`).
        let default = block
            .split("[default: ")
            .nth(1)
            .map(|d| d.trim_end().strip_suffix(']').unwrap_or(d).to_owned());
        // clap shows an empty default as `""`.
        let default = default.map(|d| if d == "\"\"" { String::new() } else { d });
        settings.insert(name, default);
    }
    settings
}

/// `NAME=VALUE` lines of `.env.example`, commented out (`# NAME=`) or not.
fn env_example() -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/.env.example"))
        .expect(".env.example");
    text.lines()
        .map(|line| line.trim_start_matches('#').trim())
        .filter_map(|line| line.split_once('='))
        .filter(|(name, _)| {
            !name.is_empty() && name.chars().all(|c| c.is_ascii_uppercase() || c == '_')
        })
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect()
}

#[test]
fn help_and_env_example_list_every_setting_with_the_same_defaults() {
    let mut help = help_settings(&["--help"]);
    help.extend(help_settings(&["backend", "--help"]));
    let example = env_example();
    for name in REQUIRED {
        assert!(help.contains_key(name), "--help does not list {name}");
    }
    for (name, default) in &help {
        let listed = example
            .get(name)
            .unwrap_or_else(|| panic!(".env.example does not list {name}"));
        assert_eq!(
            default.as_deref().unwrap_or(""),
            listed,
            "default of {name}: --help vs .env.example"
        );
    }
    for name in example.keys() {
        assert!(
            help.contains_key(name),
            ".env.example lists {name}, which taskman does not read"
        );
    }
}

#[test]
fn each_invalid_value_gives_one_line_naming_it_and_exit_code_2() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "OTEL_SAMPLE_RATE",
            "1.5",
            "OTEL_SAMPLE_RATE must be between 0 and 1, got 1.5",
        ),
        (
            "OTEL_SAMPLE_RATE",
            "-0.1",
            "OTEL_SAMPLE_RATE must be between 0 and 1, got -0.1",
        ),
        (
            "OTEL_SAMPLE_RATE",
            "half",
            "OTEL_SAMPLE_RATE must be between 0 and 1, got half",
        ),
        (
            "TASKMAN_MCP_TRANSPORT",
            "sse",
            "TASKMAN_MCP_TRANSPORT must be one of http, stdio, got sse",
        ),
        (
            "TASKMAN_HTTP_PORT",
            "70000",
            "TASKMAN_HTTP_PORT must be an integer between 0 and 65535, got 70000",
        ),
        (
            "TASKMAN_HTTP_PORT",
            "http",
            "TASKMAN_HTTP_PORT must be an integer between 0 and 65535, got http",
        ),
        (
            "TASKMAN_HTTP_HOST",
            "example.com",
            "TASKMAN_HTTP_HOST must be an IP address such as 127.0.0.1 or ::1, got example.com",
        ),
        (
            "TASKMAN_DB_PATH",
            "",
            "TASKMAN_DB_PATH must be a file path or :memory:, got \"\"",
        ),
        (
            "LOG_LEVEL",
            "verbose",
            "LOG_LEVEL must be one of trace, debug, info, warn, error, got verbose",
        ),
        (
            "LOG_FORMAT",
            "xml",
            "LOG_FORMAT must be one of json, pretty, got xml",
        ),
        (
            "METRICS_ENABLED",
            "maybe",
            "METRICS_ENABLED must be true or false, got maybe",
        ),
        (
            "TRACING_ENABLED",
            "2",
            "TRACING_ENABLED must be true or false, got 2",
        ),
        (
            "OTEL_DEBUG",
            "yes please",
            "OTEL_DEBUG must be true or false, got \"yes please\"",
        ),
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "localhost:4318",
            "OTEL_EXPORTER_OTLP_ENDPOINT must be an http:// URL with a host, such as http://127.0.0.1:4000/api/v1, got localhost:4318",
        ),
        (
            "TASK_MANAGER_API_ENDPOINT",
            "ftp://x/api",
            "TASK_MANAGER_API_ENDPOINT must be an http:// URL with a host, such as http://127.0.0.1:4000/api/v1, got ftp://x/api",
        ),
        (
            "CIRCUIT_BREAKER_ENABLED",
            "on-ish",
            "CIRCUIT_BREAKER_ENABLED must be true or false, got on-ish",
        ),
        (
            "CIRCUIT_BREAKER_ERROR_THRESHOLD",
            "0",
            "CIRCUIT_BREAKER_ERROR_THRESHOLD must be an integer between 1 and 100, got 0",
        ),
        (
            "CIRCUIT_BREAKER_ERROR_THRESHOLD",
            "101",
            "CIRCUIT_BREAKER_ERROR_THRESHOLD must be an integer between 1 and 100, got 101",
        ),
        (
            "CIRCUIT_BREAKER_RESET_TIMEOUT_MS",
            "0",
            "CIRCUIT_BREAKER_RESET_TIMEOUT_MS must be an integer between 1 and 86400000, got 0",
        ),
        (
            "CIRCUIT_BREAKER_VOLUME_THRESHOLD",
            "0",
            "CIRCUIT_BREAKER_VOLUME_THRESHOLD must be an integer between 1 and 4294967295, got 0",
        ),
        (
            "FALLBACK_CACHE_ENABLED",
            "nope",
            "FALLBACK_CACHE_ENABLED must be true or false, got nope",
        ),
        (
            "FALLBACK_CACHE_MAX_SIZE",
            "0",
            "FALLBACK_CACHE_MAX_SIZE must be an integer between 1 and 10000000, got 0",
        ),
        (
            "FALLBACK_CACHE_MAX_SIZE",
            "-5",
            "FALLBACK_CACHE_MAX_SIZE must be an integer between 1 and 10000000, got -5",
        ),
        (
            "FALLBACK_CACHE_TTL_MS",
            "0",
            "FALLBACK_CACHE_TTL_MS must be an integer between 1 and 86400000, got 0",
        ),
        (
            "TASKMAN_SHUTDOWN_TIMEOUT_MS",
            "soon",
            "TASKMAN_SHUTDOWN_TIMEOUT_MS must be an integer between 1 and 86400000, got soon",
        ),
        (
            "TASK_MANAGER_API_TIMEOUT_MS",
            "0",
            "TASK_MANAGER_API_TIMEOUT_MS must be an integer between 1 and 86400000, got 0",
        ),
    ];
    let mut failures = Vec::new();
    for (name, value, expected) in cases {
        let output = taskman_command(&[], &[(name, value)])
            .output()
            .expect("run taskman");
        let stderr = String::from_utf8_lossy(&output.stderr);
        if output.status.code() != Some(2)
            || stderr != format!("{expected}\n")
            || !output.stdout.is_empty()
        {
            failures.push(format!(
                "{name}={value:?}: exit {:?}, stderr {stderr:?}",
                output.status.code()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "wrong answers to invalid settings:\n{}",
        failures.join("\n")
    );
}

#[test]
fn a_flag_is_validated_like_its_variable_and_the_backend_command_too() {
    let output = taskman_command(&["--otel-sample-rate", "1.5"], &[])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        "OTEL_SAMPLE_RATE must be between 0 and 1, got 1.5\n"
    );

    let output = taskman_command(&["backend", "--port", "99999"], &[])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        "TASKMAN_BACKEND_PORT must be an integer between 0 and 65535, got 99999\n"
    );

    // A flag overrides its variable.
    let output = taskman_command(&["--log-level", "loud"], &[("LOG_LEVEL", "info")])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        "LOG_LEVEL must be one of trace, debug, info, warn, error, got loud\n"
    );
}
