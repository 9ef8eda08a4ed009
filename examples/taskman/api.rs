//! The resources of the Task Manager REST API v1 (`shared/spec/backend-api.md`), as they
//! travel on the wire. The embedded backend writes them and the backend client reads them,
//! so both sides agree on one definition; the MCP tools return them as structured content.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Where a task is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Todo,
    InProgress,
    Done,
}

impl Status {
    pub const ALL: [&'static str; 3] = ["todo", "in_progress", "done"];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Todo => "todo",
            Status::InProgress => "in_progress",
            Status::Done => "done",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "todo" => Some(Status::Todo),
            "in_progress" => Some(Status::InProgress),
            "done" => Some(Status::Done),
            _ => None,
        }
    }
}

/// How urgent a task is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    Low,
    Medium,
    High,
    Urgent,
}

impl Priority {
    pub const ALL: [&'static str; 4] = ["low", "medium", "high", "urgent"];

    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Low => "low",
            Priority::Medium => "medium",
            Priority::High => "high",
            Priority::Urgent => "urgent",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "low" => Some(Priority::Low),
            "medium" => Some(Priority::Medium),
            "high" => Some(Priority::High),
            "urgent" => Some(Priority::Urgent),
            _ => None,
        }
    }
}

/// A task as the backend stores it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Task {
    /// Server-assigned opaque identifier.
    pub id: String,
    pub title: String,
    pub description: Option<String>,
    pub status: Status,
    pub priority: Priority,
    /// The project the task belongs to, if any.
    pub project_id: Option<String>,
    pub tags: Vec<String>,
    /// Due date as `YYYY-MM-DD`.
    pub due_date: Option<String>,
    /// RFC 3339 UTC timestamp.
    pub created_at: String,
    /// RFC 3339 UTC timestamp.
    pub updated_at: String,
    /// RFC 3339 UTC timestamp, set while the status is `done`.
    pub completed_at: Option<String>,
}

/// A project groups tasks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Project {
    /// Server-assigned opaque identifier.
    pub id: String,
    /// Unique (case-insensitive) name.
    pub name: String,
    pub description: Option<String>,
    /// RFC 3339 UTC timestamp.
    pub created_at: String,
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub total: u64,
    pub limit: u64,
    pub offset: u64,
}

/// The body of every non-2xx answer: `{"error":{...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ApiError,
}

/// What went wrong, written for a person.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiError {
    /// One of `not_found`, `bad_request`, `validation`, `conflict`, `internal`, `unavailable`.
    pub code: String,
    pub message: String,
    /// The one field at fault, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// Limits from the contract, shared by the backend's validation and the MCP input schemas.
pub mod limits {
    pub const TITLE_MAX: usize = 200;
    pub const TASK_DESCRIPTION_MAX: usize = 10_000;
    pub const TAGS_MAX: usize = 20;
    pub const TAG_MAX: usize = 50;
    pub const PROJECT_NAME_MAX: usize = 100;
    pub const PROJECT_DESCRIPTION_MAX: usize = 2_000;
    pub const PAGE_LIMIT_MAX: u64 = 100;
    pub const PAGE_LIMIT_DEFAULT: u64 = 50;
    pub const IDEMPOTENCY_KEY_MAX: usize = 128;
}
