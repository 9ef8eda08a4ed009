//! The embedded taskman backend's request parsing (`examples/taskman/contract.rs`, compiled in
//! as a module) on arbitrary input: the bytes as a JSON body (`POST /tasks`,
//! `PATCH /tasks/{id}`, `POST /projects`; non-objects are skipped, as the backend refuses
//! them before these run), as a query string (`GET /tasks`, the listings' `limit`/`offset`)
//! and as an `Idempotency-Key` header.
//!
//! Checked: nothing panics; what is accepted keeps the contract's bounds; every rejection has
//! a short message without raw control characters (inputs are echoed only quoted and cut).
#![no_main]

use axum::http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

#[allow(dead_code)]
#[path = "../../examples/taskman/api.rs"]
mod api;
#[allow(dead_code)]
#[path = "../../examples/taskman/contract.rs"]
mod contract;

use api::limits;
use contract::Invalid;

fn check_invalid(invalid: &Invalid) {
    let message = &invalid.message;
    assert!(message.len() <= 1024, "message of {} bytes", message.len());
    assert!(!message.chars().any(char::is_control), "{message:?}");
    // The field is echoed too (as `"field"` in the error body): bounded and without control
    // characters, like the message.
    let field = &invalid.field;
    assert!(field.len() <= 256, "field of {} bytes", field.len());
    assert!(!field.chars().any(char::is_control), "{field:?}");
}

fn chars(text: &str) -> usize {
    text.chars().count()
}

fn check_tags(tags: &[String]) {
    assert!(tags.len() <= limits::TAGS_MAX);
    for (i, tag) in tags.iter().enumerate() {
        assert!((1..=limits::TAG_MAX).contains(&chars(tag)), "{tag:?}");
        assert!(!tags[..i].contains(tag), "duplicate {tag:?}");
    }
}

fn check_date(date: &str) {
    let b = date.as_bytes();
    assert!(b.len() == 10 && b[4] == b'-' && b[7] == b'-', "{date:?}");
}

fn check_title(title: &str, max: usize) {
    assert_eq!(title, title.trim());
    assert!((1..=max).contains(&chars(title)), "{title:?}");
}

fn check_page(page: contract::PageRequest) {
    assert!((1..=limits::PAGE_LIMIT_MAX).contains(&page.limit));
    assert!(i64::try_from(page.offset).is_ok());
}

fn body(map: &serde_json::Map<String, Value>) {
    match contract::new_task(map) {
        Ok(task) => {
            check_title(&task.title, limits::TITLE_MAX);
            if let Some(d) = &task.description {
                assert!(chars(d) <= limits::TASK_DESCRIPTION_MAX);
            }
            check_tags(&task.tags);
            if let Some(d) = &task.due_date {
                check_date(d);
            }
        }
        Err(invalid) => check_invalid(&invalid),
    }
    match contract::task_patch(map) {
        Ok(patch) => {
            if let Some(t) = &patch.title {
                check_title(t, limits::TITLE_MAX);
            }
            if let Some(Some(d)) = &patch.description {
                assert!(chars(d) <= limits::TASK_DESCRIPTION_MAX);
            }
            if let Some(tags) = &patch.tags {
                check_tags(tags);
            }
            if let Some(Some(d)) = &patch.due_date {
                check_date(d);
            }
        }
        Err(invalid) => check_invalid(&invalid),
    }
    match contract::new_project(map) {
        Ok(project) => {
            check_title(&project.name, limits::PROJECT_NAME_MAX);
            if let Some(d) = &project.description {
                assert!(chars(d) <= limits::PROJECT_DESCRIPTION_MAX);
            }
        }
        Err(invalid) => check_invalid(&invalid),
    }
}

fn query(text: &str) {
    let pairs: Vec<(String, String)> = text
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((name, value)) => (name.to_owned(), value.to_owned()),
            None => (pair.to_owned(), String::new()),
        })
        .collect();
    match contract::task_filter(&pairs) {
        Ok(filter) => {
            check_page(filter.page);
            if let Some(tag) = &filter.tag {
                assert!((1..=limits::TAG_MAX).contains(&chars(tag)));
            }
            if let Some(d) = &filter.due_before {
                check_date(d);
            }
            if let Some(p) = &filter.project_id {
                assert!(!p.is_empty());
            }
        }
        Err(invalid) => check_invalid(&invalid),
    }
    match contract::page_request(&pairs) {
        Ok(page) => check_page(page),
        Err(invalid) => check_invalid(&invalid),
    }
}

fn idempotency_key(data: &[u8]) {
    let Ok(value) = HeaderValue::from_bytes(data) else {
        return;
    };
    let mut headers = HeaderMap::new();
    headers.insert(contract::IDEMPOTENCY_KEY_HEADER, value);
    let expected = (1..=limits::IDEMPOTENCY_KEY_MAX).contains(&data.len())
        && data.iter().all(|b| (0x21..=0x7e).contains(b));
    match contract::idempotency_key(&headers) {
        Ok(key) => {
            assert!(expected, "{data:?}");
            assert_eq!(key.as_deref().map(str::as_bytes), Some(data));
        }
        Err(invalid) => {
            assert!(!expected, "{data:?}");
            check_invalid(&invalid);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(data) {
        body(&map);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        query(text);
    }
    idempotency_key(data);
});
