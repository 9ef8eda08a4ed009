//! The contract's rules: turns untrusted JSON bodies, query strings and headers into typed
//! requests. The embedded backend enforces them; the MCP tools check their arguments with the
//! same rules before calling any backend, so a bad argument never costs a round trip and gets
//! the same message wherever it is caught.
//!
//! Every rejection names the input at fault, the rule, and what was actually received, so a
//! person (or an LLM driving the MCP tools) can fix the request without reading the spec.
//! Bodies are walked as `serde_json::Value`s rather than derived structs: that is what tells
//! an absent field from an explicit `null`, and it keeps the messages in our own words.

use std::collections::BTreeMap;

use axum::http::HeaderMap;
use serde_json::{Map, Value};
use time::{Date, Month};

use crate::api::{Priority, Status, limits};

/// The one input at fault and why.
#[derive(Debug)]
pub(crate) struct Invalid {
    pub(crate) field: String,
    pub(crate) message: String,
}

impl Invalid {
    fn new(field: &str, message: String) -> Invalid {
        // An unknown field's name is the client's text: echo it bounded and escaped, like
        // any other value (found by the `backend_json` fuzz target).
        let plain = field.len() <= 64 && !field.chars().any(char::is_control);
        Invalid {
            field: if plain {
                field.to_owned()
            } else {
                quoted(field)
            },
            message,
        }
    }
}

/// The body of POST /tasks, with defaults applied.
#[derive(Debug)]
pub(crate) struct NewTask {
    pub(crate) title: String,
    pub(crate) description: Option<String>,
    pub(crate) status: Status,
    pub(crate) priority: Priority,
    pub(crate) project_id: Option<String>,
    pub(crate) tags: Vec<String>,
    pub(crate) due_date: Option<String>,
}

/// The body of PATCH /tasks/{id}: `None` leaves a field alone; for nullable fields
/// `Some(None)` clears it.
#[derive(Debug)]
pub(crate) struct TaskPatch {
    pub(crate) title: Option<String>,
    pub(crate) description: Option<Option<String>>,
    pub(crate) status: Option<Status>,
    pub(crate) priority: Option<Priority>,
    pub(crate) project_id: Option<Option<String>>,
    pub(crate) tags: Option<Vec<String>>,
    pub(crate) due_date: Option<Option<String>>,
}

/// The body of POST /projects.
#[derive(Debug)]
pub(crate) struct NewProject {
    pub(crate) name: String,
    pub(crate) description: Option<String>,
}

/// `limit` and `offset` of a listing.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PageRequest {
    pub(crate) limit: u64,
    pub(crate) offset: u64,
}

/// The query of GET /tasks.
#[derive(Debug)]
pub(crate) struct TaskFilter {
    pub(crate) status: Option<Status>,
    pub(crate) priority: Option<Priority>,
    pub(crate) project_id: Option<String>,
    pub(crate) tag: Option<String>,
    pub(crate) q: Option<String>,
    pub(crate) due_before: Option<String>,
    pub(crate) page: PageRequest,
}

const TASK_FIELDS: &[&str] = &[
    "title",
    "description",
    "status",
    "priority",
    "project_id",
    "tags",
    "due_date",
];
const PROJECT_FIELDS: &[&str] = &["name", "description"];
const PAGE_PARAMS: &[&str] = &["limit", "offset"];
const TASK_QUERY_PARAMS: &[&str] = &[
    "status",
    "priority",
    "project_id",
    "tag",
    "q",
    "due_before",
    "limit",
    "offset",
];
pub(crate) const IDEMPOTENCY_KEY_HEADER: &str = "Idempotency-Key";

pub(crate) fn new_task(body: &Map<String, Value>) -> Result<NewTask, Invalid> {
    reject_unknown_fields(body, TASK_FIELDS)?;
    Ok(NewTask {
        title: required(body, "title", title)?,
        description: nullable(body, "description", task_description)?.flatten(),
        status: optional(body, "status", status)?.unwrap_or(Status::Todo),
        priority: optional(body, "priority", priority)?.unwrap_or(Priority::Medium),
        project_id: nullable(body, "project_id", project_id)?.flatten(),
        tags: optional(body, "tags", tags)?.unwrap_or_default(),
        due_date: nullable(body, "due_date", due_date)?.flatten(),
    })
}

pub(crate) fn task_patch(body: &Map<String, Value>) -> Result<TaskPatch, Invalid> {
    reject_unknown_fields(body, TASK_FIELDS)?;
    Ok(TaskPatch {
        title: optional(body, "title", title)?,
        description: nullable(body, "description", task_description)?,
        status: optional(body, "status", status)?,
        priority: optional(body, "priority", priority)?,
        project_id: nullable(body, "project_id", project_id)?,
        tags: optional(body, "tags", tags)?,
        due_date: nullable(body, "due_date", due_date)?,
    })
}

pub(crate) fn new_project(body: &Map<String, Value>) -> Result<NewProject, Invalid> {
    reject_unknown_fields(body, PROJECT_FIELDS)?;
    Ok(NewProject {
        name: required(body, "name", project_name)?,
        description: nullable(body, "description", project_description)?.flatten(),
    })
}

fn reject_unknown_fields(body: &Map<String, Value>, allowed: &[&str]) -> Result<(), Invalid> {
    match body.keys().find(|name| !allowed.contains(&name.as_str())) {
        Some(unknown) => Err(Invalid::new(
            unknown,
            format!(
                "unknown field {} (allowed: {})",
                quoted(unknown),
                allowed.join(", ")
            ),
        )),
        None => Ok(()),
    }
}

/// Reads one field with `parse(field, value)`.
type Parser<T> = fn(&str, &Value) -> Result<T, Invalid>;

fn required<T>(body: &Map<String, Value>, field: &str, parse: Parser<T>) -> Result<T, Invalid> {
    match body.get(field) {
        Some(value) => parse(field, value),
        None => Err(Invalid::new(field, format!("{field} is required"))),
    }
}

/// An absent field is `None`; `null` is handed to `parse`, which rejects it.
fn optional<T>(
    body: &Map<String, Value>,
    field: &str,
    parse: Parser<T>,
) -> Result<Option<T>, Invalid> {
    body.get(field).map(|value| parse(field, value)).transpose()
}

/// An absent field is `None`, `null` is `Some(None)`.
fn nullable<T>(
    body: &Map<String, Value>,
    field: &str,
    parse: Parser<T>,
) -> Result<Option<Option<T>>, Invalid> {
    match body.get(field) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(value) => parse(field, value).map(|parsed| Some(Some(parsed))),
    }
}

fn title(field: &str, value: &Value) -> Result<String, Invalid> {
    trimmed_text(field, value, limits::TITLE_MAX)
}

fn project_name(field: &str, value: &Value) -> Result<String, Invalid> {
    trimmed_text(field, value, limits::PROJECT_NAME_MAX)
}

fn task_description(field: &str, value: &Value) -> Result<String, Invalid> {
    text_at_most(field, value, limits::TASK_DESCRIPTION_MAX)
}

fn project_description(field: &str, value: &Value) -> Result<String, Invalid> {
    text_at_most(field, value, limits::PROJECT_DESCRIPTION_MAX)
}

fn project_id(field: &str, value: &Value) -> Result<String, Invalid> {
    string(field, value, "a string or null").map(str::to_owned)
}

fn status(field: &str, value: &Value) -> Result<Status, Invalid> {
    one_of(field, value, &Status::ALL, Status::parse)
}

fn priority(field: &str, value: &Value) -> Result<Priority, Invalid> {
    one_of(field, value, &Priority::ALL, Priority::parse)
}

fn due_date(field: &str, value: &Value) -> Result<String, Invalid> {
    calendar_date(field, string(field, value, "a string or null")?)
}

fn tags(field: &str, value: &Value) -> Result<Vec<String>, Invalid> {
    let Value::Array(items) = value else {
        return Err(Invalid::new(
            field,
            format!("{field} must be an array of strings (got {})", got(value)),
        ));
    };
    if items.len() > limits::TAGS_MAX {
        return Err(Invalid::new(
            field,
            format!(
                "{field} must have at most {} entries (got {})",
                limits::TAGS_MAX,
                items.len()
            ),
        ));
    }
    let mut tags: Vec<String> = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let entry = tag(&format!("{field}[{index}]"), item)
            .map_err(|invalid| Invalid::new(field, invalid.message))?;
        if tags.contains(&entry) {
            return Err(Invalid::new(
                field,
                format!(
                    "{field} must not contain duplicates (got {} more than once)",
                    quoted(&entry)
                ),
            ));
        }
        tags.push(entry);
    }
    Ok(tags)
}

/// One tag: 1..=50 characters, taken as is (tags match exactly, so they are not trimmed).
fn tag(field: &str, value: &Value) -> Result<String, Invalid> {
    let text = string(field, value, "a string")?;
    let length = text.chars().count();
    if (1..=limits::TAG_MAX).contains(&length) {
        Ok(text.to_owned())
    } else {
        Err(Invalid::new(
            field,
            format!(
                "{field} must be 1 to {} characters (got {length})",
                limits::TAG_MAX
            ),
        ))
    }
}

fn string<'v>(field: &str, value: &'v Value, expected: &str) -> Result<&'v str, Invalid> {
    value.as_str().ok_or_else(|| {
        Invalid::new(
            field,
            format!("{field} must be {expected} (got {})", got(value)),
        )
    })
}

/// Trimmed, then 1..=`max` characters; stored trimmed.
fn trimmed_text(field: &str, value: &Value, max: usize) -> Result<String, Invalid> {
    let text = string(field, value, "a string")?.trim();
    let length = text.chars().count();
    if (1..=max).contains(&length) {
        Ok(text.to_owned())
    } else {
        Err(Invalid::new(
            field,
            format!("{field} must be 1 to {max} characters (got {length})"),
        ))
    }
}

fn text_at_most(field: &str, value: &Value, max: usize) -> Result<String, Invalid> {
    let text = string(field, value, "a string or null")?;
    let length = text.chars().count();
    if length <= max {
        Ok(text.to_owned())
    } else {
        Err(Invalid::new(
            field,
            format!("{field} must be at most {max} characters (got {length})"),
        ))
    }
}

fn one_of<T>(
    field: &str,
    value: &Value,
    allowed: &[&str],
    parse: fn(&str) -> Option<T>,
) -> Result<T, Invalid> {
    value.as_str().and_then(parse).ok_or_else(|| {
        Invalid::new(
            field,
            format!(
                "{field} must be one of {} (got {})",
                allowed.join(", "),
                got(value)
            ),
        )
    })
}

/// `YYYY-MM-DD` naming a day that exists (so 2026-02-30 is refused).
fn calendar_date(field: &str, text: &str) -> Result<String, Invalid> {
    parse_date(text).map(|_| text.to_owned()).ok_or_else(|| {
        Invalid::new(
            field,
            format!(
                "{field} must be a real calendar date as YYYY-MM-DD (got {})",
                quoted(text)
            ),
        )
    })
}

fn parse_date(text: &str) -> Option<Date> {
    let bytes = text.as_bytes();
    if bytes.len() != 10 || bytes.get(4) != Some(&b'-') || bytes.get(7) != Some(&b'-') {
        return None;
    }
    let number = |from: usize, to: usize| {
        text.get(from..to)
            .filter(|digits| digits.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|digits| digits.parse::<u16>().ok())
    };
    let year = i32::from(number(0, 4)?);
    let month = Month::try_from(u8::try_from(number(5, 7)?).ok()?).ok()?;
    let day = u8::try_from(number(8, 10)?).ok()?;
    Date::from_calendar_date(year, month, day).ok()
}

/// The JSON type of a value, for messages.
pub(crate) fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// What a value was, for messages: a short quoted excerpt of a string, else its JSON type.
fn got(value: &Value) -> String {
    match value {
        Value::String(text) => quoted(text),
        other => json_type(other).to_owned(),
    }
}

/// `text` in double quotes, escaped, and cut short so that a huge input is not echoed back.
pub(crate) fn quoted(text: &str) -> String {
    const EXCERPT_CHARS: usize = 40;
    match text.char_indices().nth(EXCERPT_CHARS) {
        Some((cut, _)) => format!("{:?}…", &text[..cut]),
        None => format!("{text:?}"),
    }
}

pub(crate) fn task_filter(pairs: &[(String, String)]) -> Result<TaskFilter, Invalid> {
    let params = query_params(pairs, TASK_QUERY_PARAMS)?;
    Ok(TaskFilter {
        status: query_param(&params, "status", status)?,
        priority: query_param(&params, "priority", priority)?,
        project_id: query_param(&params, "project_id", non_empty)?,
        tag: query_param(&params, "tag", tag)?,
        q: query_param(&params, "q", |field, value| {
            string(field, value, "a string").map(str::to_owned)
        })?,
        due_before: query_param(&params, "due_before", due_date)?,
        page: page(&params)?,
    })
}

/// Reads a query parameter with the same parsers (and messages) as body fields.
fn query_param<T>(
    params: &BTreeMap<&str, &str>,
    name: &str,
    parse: Parser<T>,
) -> Result<Option<T>, Invalid> {
    params
        .get(name)
        .map(|value| parse(name, &Value::from(*value)))
        .transpose()
}

pub(crate) fn page_request(pairs: &[(String, String)]) -> Result<PageRequest, Invalid> {
    page(&query_params(pairs, PAGE_PARAMS)?)
}

/// The parameters by name; unknown or repeated names are refused.
fn query_params<'q>(
    pairs: &'q [(String, String)],
    allowed: &[&str],
) -> Result<BTreeMap<&'q str, &'q str>, Invalid> {
    let mut params = BTreeMap::new();
    for (name, value) in pairs {
        if !allowed.contains(&name.as_str()) {
            return Err(Invalid::new(
                name,
                format!(
                    "unknown query parameter {} (allowed: {})",
                    quoted(name),
                    allowed.join(", ")
                ),
            ));
        }
        if params.insert(name.as_str(), value.as_str()).is_some() {
            return Err(Invalid::new(
                name,
                format!("query parameter {name} must be given at most once"),
            ));
        }
    }
    Ok(params)
}

fn page(params: &BTreeMap<&str, &str>) -> Result<PageRequest, Invalid> {
    let limit = match params.get("limit") {
        None => limits::PAGE_LIMIT_DEFAULT,
        Some(text) => decimal(text)
            .filter(|limit| (1..=limits::PAGE_LIMIT_MAX).contains(limit))
            .ok_or_else(|| {
                Invalid::new(
                    "limit",
                    format!(
                        "limit must be an integer from 1 to {} (got {})",
                        limits::PAGE_LIMIT_MAX,
                        quoted(text)
                    ),
                )
            })?,
    };
    let offset = match params.get("offset") {
        None => 0,
        // SQLite takes a signed 64-bit OFFSET.
        Some(text) => decimal(text)
            .filter(|offset| i64::try_from(*offset).is_ok())
            .ok_or_else(|| {
                Invalid::new(
                    "offset",
                    format!(
                        "offset must be an integer from 0 to {} (got {})",
                        i64::MAX,
                        quoted(text)
                    ),
                )
            })?,
    };
    Ok(PageRequest { limit, offset })
}

/// Plain ASCII digits only: no sign, no spaces.
fn decimal(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

fn non_empty(field: &str, value: &Value) -> Result<String, Invalid> {
    match string(field, value, "a string")? {
        "" => Err(Invalid::new(field, format!("{field} must not be empty"))),
        text => Ok(text.to_owned()),
    }
}

/// The `Idempotency-Key` header: absent, or 1..=128 visible ASCII characters.
pub(crate) fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, Invalid> {
    let mut values = headers.get_all(IDEMPOTENCY_KEY_HEADER).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    let extra = values.count();
    if extra > 0 {
        return Err(Invalid::new(
            IDEMPOTENCY_KEY_HEADER,
            format!(
                "{IDEMPOTENCY_KEY_HEADER} must be sent once (got {} values)",
                extra + 1
            ),
        ));
    }
    let bytes = value.as_bytes();
    let rule = format!(
        "{IDEMPOTENCY_KEY_HEADER} must be 1 to {} visible ASCII characters",
        limits::IDEMPOTENCY_KEY_MAX
    );
    if !(1..=limits::IDEMPOTENCY_KEY_MAX).contains(&bytes.len()) {
        return Err(Invalid::new(
            IDEMPOTENCY_KEY_HEADER,
            format!("{rule} (got {} bytes)", bytes.len()),
        ));
    }
    match bytes.iter().position(|b| !(0x21..=0x7e).contains(b)) {
        Some(position) => Err(Invalid::new(
            IDEMPOTENCY_KEY_HEADER,
            format!(
                "{rule} (got byte 0x{:02x} at position {position})",
                bytes[position]
            ),
        )),
        None => Ok(Some(String::from_utf8_lossy(bytes).into_owned())),
    }
}
