//! The MCP face of taskman: eight tools over the backend client.
//!
//! Tool names, argument names and result shapes are the interface MCP clients program
//! against. Backend refusals (4xx) and outages come back as tool results with
//! `isError: true` and a message the model can act on; unknown tools and malformed requests
//! are JSON-RPC errors, produced by rmcp.

use std::time::Instant;

use rmcp::{
    ErrorData, Json, RoleServer, ServerHandler,
    handler::server::{router::tool::ToolRouter, tool::ToolCallContext},
    model::{
        CallToolRequestParams, CallToolResponse, Implementation, ServerCapabilities, ServerConfig,
    },
    service::RequestContext,
    tool, tool_handler, tool_router,
};
use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value, json};
use tower_bulwark::request_id::RequestId;
use tracing::Instrument as _;

use crate::{
    api::{Page, Priority, Project, Status, Task},
    client::{BackendClient, ClientError, Fetched, TaskQuery},
    contract,
    observability::ToolMetrics,
    params::Parameters,
    server::RequestSpan,
};

/// The MCP server handler; cheap to clone (one per session or stateless request).
#[derive(Debug, Clone)]
pub struct Taskman {
    client: BackendClient,
    tool_router: ToolRouter<Taskman>,
    metrics: Option<ToolMetrics>,
}

/// The tools' names, the only values the `tool` label of the tool metrics takes (besides
/// "unknown"), whatever names clients send; each with its span name, spelled out so that no
/// call formats one.
pub const TOOLS: [(&str, &str); 8] = [
    ("list_tasks", "tools/call list_tasks"),
    ("get_task", "tools/call get_task"),
    ("create_task", "tools/call create_task"),
    ("update_task", "tools/call update_task"),
    ("complete_task", "tools/call complete_task"),
    ("delete_task", "tools/call delete_task"),
    ("list_projects", "tools/call list_projects"),
    ("create_project", "tools/call create_project"),
];

// ----- arguments ---------------------------------------------------------------------------

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListTasksArgs {
    /// Only tasks with this status.
    pub status: Option<Status>,
    /// Only tasks with this priority.
    pub priority: Option<Priority>,
    /// Only tasks of this project.
    pub project_id: Option<String>,
    /// Only tasks carrying this tag (exact match).
    pub tag: Option<String>,
    /// Case-insensitive text searched in titles and descriptions.
    pub query: Option<String>,
    /// Only tasks due before this date (YYYY-MM-DD).
    #[schemars(regex(pattern = r"^\d{4}-\d{2}-\d{2}$"))]
    pub due_before: Option<String>,
    /// Page size, 1 to 100 (default 50).
    #[schemars(range(min = 1, max = 100))]
    pub limit: Option<u64>,
    /// Number of matching tasks to skip (default 0).
    pub offset: Option<u64>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskIdArgs {
    /// The task's id, as returned by create_task or list_tasks.
    #[schemars(length(min = 1, max = 128))]
    pub id: String,
}

#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTaskArgs {
    /// Short summary, 1 to 200 characters (surrounding spaces are trimmed).
    #[schemars(length(min = 1, max = 200))]
    pub title: String,
    /// Longer details, at most 10,000 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 10000))]
    pub description: Option<String>,
    /// Initial status (default todo).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    /// Priority (default medium).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<Priority>,
    /// Id of an existing project.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_id: Option<String>,
    /// Up to 20 distinct tags of 1 to 50 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 20), inner(length(min = 1, max = 50)))]
    pub tags: Option<Vec<String>>,
    /// Due date (YYYY-MM-DD).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^\d{4}-\d{2}-\d{2}$"))]
    pub due_date: Option<String>,
}

/// Every field but `id` is optional: only the fields given change, and `null` clears
/// description, project_id and due_date.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateTaskArgs {
    /// The task's id.
    #[schemars(length(min = 1, max = 128))]
    pub id: String,
    /// New title, 1 to 200 characters.
    #[schemars(length(min = 1, max = 200))]
    pub title: Option<String>,
    /// New description (at most 10,000 characters), or null to clear it.
    #[serde(default, deserialize_with = "present")]
    #[schemars(length(max = 10000))]
    pub description: Option<Option<String>>,
    /// New status; `done` sets completed_at, leaving `done` clears it.
    pub status: Option<Status>,
    /// New priority.
    pub priority: Option<Priority>,
    /// Move to another project, or null to detach.
    #[serde(default, deserialize_with = "present")]
    pub project_id: Option<Option<String>>,
    /// Replace all tags (up to 20 distinct tags of 1 to 50 characters).
    #[schemars(length(max = 20), inner(length(min = 1, max = 50)))]
    pub tags: Option<Vec<String>>,
    /// New due date (YYYY-MM-DD), or null to clear it.
    #[serde(default, deserialize_with = "present")]
    #[schemars(regex(pattern = r"^\d{4}-\d{2}-\d{2}$"))]
    pub due_date: Option<Option<String>>,
}

/// Tells "absent" (outer `None`, via `#[serde(default)]`) from "null" (`Some(None)`).
fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListProjectsArgs {
    /// Page size, 1 to 100 (default 50).
    #[schemars(range(min = 1, max = 100))]
    pub limit: Option<u64>,
    /// Number of projects to skip (default 0).
    pub offset: Option<u64>,
}

#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateProjectArgs {
    /// Unique name (case-insensitive), 1 to 100 characters.
    #[schemars(length(min = 1, max = 100))]
    pub name: String,
    /// What the project is about, at most 2,000 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2000))]
    pub description: Option<String>,
}

// ----- results -------------------------------------------------------------------------------

/// One page of tasks, in creation order.
#[derive(Debug, Serialize, JsonSchema)]
pub struct TaskList {
    pub tasks: Vec<Task>,
    /// Number of tasks matching the filters, across all pages.
    pub total: u64,
    pub limit: u64,
    pub offset: u64,
    #[serde(flatten)]
    pub freshness: Freshness,
}

/// Present only when the backend failed and the last good answer was served instead.
#[derive(Debug, Default, Serialize, JsonSchema)]
pub struct Freshness {
    /// True when this answer is a stored copy: the backend could not be reached.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stale: Option<bool>,
    /// Age of the stored copy, in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub age_seconds: Option<u64>,
}

impl Freshness {
    fn of<T>(fetched: &Fetched<T>) -> Self {
        match fetched.stale_age {
            Some(age) => Freshness {
                stale: Some(true),
                age_seconds: Some(age.as_secs()),
            },
            None => Freshness::default(),
        }
    }
}

/// A task, marked when it is a stored copy.
#[derive(Debug, Serialize, JsonSchema)]
pub struct TaskAnswer {
    #[serde(flatten)]
    pub task: Task,
    #[serde(flatten)]
    pub freshness: Freshness,
}

/// One page of projects, in creation order.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ProjectList {
    pub projects: Vec<Project>,
    /// Number of projects across all pages.
    pub total: u64,
    pub limit: u64,
    pub offset: u64,
    #[serde(flatten)]
    pub freshness: Freshness,
}

/// Confirms a deletion.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Deleted {
    pub id: String,
    pub deleted: bool,
}

// ----- tools ---------------------------------------------------------------------------------

// Each tool returns `Result<Json<T>, String>` spelled out: rmcp's macro derives the
// outputSchema from that syntax, so a type alias would silently drop it.
#[tool_router]
impl Taskman {
    pub fn new(client: BackendClient, metrics: Option<ToolMetrics>) -> Self {
        Self {
            client,
            tool_router: Self::tool_router(),
            metrics,
        }
    }

    #[tool(
        description = "List tasks, newest last, filtered by status, priority, project, tag, text or due date. Paginated with limit and offset.",
        annotations(title = "List tasks", read_only_hint = true, open_world_hint = false)
    )]
    async fn list_tasks(
        &self,
        Parameters(args): Parameters<ListTasksArgs>,
    ) -> Result<Json<TaskList>, String> {
        let query = TaskQuery {
            status: args.status.map(|s| s.as_str().to_owned()),
            priority: args.priority.map(|p| p.as_str().to_owned()),
            project_id: args.project_id,
            tag: args.tag,
            q: args.query,
            due_before: args.due_before,
            limit: args.limit,
            offset: args.offset,
        };
        check(contract::task_filter(&owned(query.pairs())))?;
        let fetched = self.client.list_tasks(&query).await.map_err(tool_error)?;
        let freshness = Freshness::of(&fetched);
        let Page {
            items,
            total,
            limit,
            offset,
        } = fetched.value;
        Ok(Json(TaskList {
            tasks: items,
            total,
            limit,
            offset,
            freshness,
        }))
    }

    #[tool(
        description = "Get one task by id.",
        annotations(title = "Get task", read_only_hint = true, open_world_hint = false)
    )]
    async fn get_task(
        &self,
        Parameters(args): Parameters<TaskIdArgs>,
    ) -> Result<Json<TaskAnswer>, String> {
        check_id(&args.id)?;
        let fetched = self.client.get_task(&args.id).await.map_err(tool_error)?;
        let freshness = Freshness::of(&fetched);
        Ok(Json(TaskAnswer {
            task: fetched.value,
            freshness,
        }))
    }

    #[tool(
        description = "Create a task. Only the title is required.",
        annotations(
            title = "Create task",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn create_task(
        &self,
        Parameters(args): Parameters<CreateTaskArgs>,
    ) -> Result<Json<Task>, String> {
        let body = object(&args)?;
        check(contract::new_task(&body))?;
        self.client
            .create_task(&Value::Object(body))
            .await
            .map(Json)
            .map_err(tool_error)
    }

    #[tool(
        description = "Change fields of a task. Only the fields given change; null clears description, project_id or due_date.",
        annotations(
            title = "Update task",
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn update_task(
        &self,
        Parameters(args): Parameters<UpdateTaskArgs>,
    ) -> Result<Json<Task>, String> {
        let mut patch = Map::new();
        let mut set = |name: &str, value: Option<Value>| {
            if let Some(value) = value {
                patch.insert(name.to_owned(), value);
            }
        };
        set("title", args.title.map(Value::from));
        set("description", args.description.map(|d| json!(d)));
        set("status", args.status.map(|s| json!(s)));
        set("priority", args.priority.map(|p| json!(p)));
        set("project_id", args.project_id.map(|p| json!(p)));
        set("tags", args.tags.map(|t| json!(t)));
        set("due_date", args.due_date.map(|d| json!(d)));
        if patch.is_empty() {
            return Err("nothing to update: give at least one field besides id".to_owned());
        }
        check_id(&args.id)?;
        check(contract::task_patch(&patch))?;
        self.client
            .update_task(&args.id, &Value::Object(patch))
            .await
            .map(Json)
            .map_err(tool_error)
    }

    #[tool(
        description = "Mark a task as done (sets completed_at).",
        annotations(
            title = "Complete task",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn complete_task(
        &self,
        Parameters(args): Parameters<TaskIdArgs>,
    ) -> Result<Json<Task>, String> {
        check_id(&args.id)?;
        let patch = json!({ "status": Status::Done });
        self.client
            .update_task(&args.id, &patch)
            .await
            .map(Json)
            .map_err(tool_error)
    }

    #[tool(
        description = "Delete a task for good.",
        annotations(
            title = "Delete task",
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn delete_task(
        &self,
        Parameters(args): Parameters<TaskIdArgs>,
    ) -> Result<Json<Deleted>, String> {
        check_id(&args.id)?;
        self.client
            .delete_task(&args.id)
            .await
            .map_err(tool_error)?;
        Ok(Json(Deleted {
            id: args.id,
            deleted: true,
        }))
    }

    #[tool(
        description = "List projects in creation order. Paginated with limit and offset.",
        annotations(
            title = "List projects",
            read_only_hint = true,
            open_world_hint = false
        )
    )]
    async fn list_projects(
        &self,
        Parameters(args): Parameters<ListProjectsArgs>,
    ) -> Result<Json<ProjectList>, String> {
        let page = [("limit", args.limit), ("offset", args.offset)]
            .into_iter()
            .filter_map(|(name, n)| n.map(|n| (name, n.to_string())));
        check(contract::page_request(&owned(page.collect())))?;
        let fetched = self
            .client
            .list_projects(args.limit, args.offset)
            .await
            .map_err(tool_error)?;
        let freshness = Freshness::of(&fetched);
        let Page {
            items,
            total,
            limit,
            offset,
        } = fetched.value;
        Ok(Json(ProjectList {
            projects: items,
            total,
            limit,
            offset,
            freshness,
        }))
    }

    // Names are unique, so repeating the call cannot make a second project: idempotent.
    #[tool(
        description = "Create a project. Names are unique, ignoring case.",
        annotations(
            title = "Create project",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn create_project(
        &self,
        Parameters(args): Parameters<CreateProjectArgs>,
    ) -> Result<Json<Project>, String> {
        let body = object(&args)?;
        check(contract::new_project(&body))?;
        self.client
            .create_project(&Value::Object(body))
            .await
            .map(Json)
            .map_err(tool_error)
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Taskman {
    /// Runs every tool inside the request's ID scope and a `tool_call` span: rmcp runs tools
    /// on its own tasks (a session's worker, for legacy clients), where the HTTP request's
    /// scope does not reach, so the ID is taken from the HTTP request rmcp hands over.
    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let request_id = request_id_of(&context);
        let (tool, span_name) = TOOLS
            .into_iter()
            .find(|(name, _)| *name == request.name)
            .unwrap_or(("unknown", "tools/call unknown"));
        // A child of the HTTP request's span, named and described as OpenTelemetry's MCP
        // conventions have it; over stdio there is no request span and it starts a trace.
        let parent = context
            .extensions
            .get::<http::request::Parts>()
            .and_then(|parts| parts.extensions.get::<RequestSpan>())
            .map(|span| span.0.clone());
        let span = tracing::info_span!(
            parent: parent.as_ref().and_then(tracing::Span::id),
            "tool_call",
            otel.name = span_name,
            otel.kind = "internal",
            mcp.method.name = "tools/call",
            gen_ai.tool.name = tool,
            gen_ai.operation.name = "execute_tool",
            request_id = request_id.as_str(),
            tool,
        );
        let started = Instant::now();
        let call = ToolCallContext::new(self, request, context);
        let response = request_id
            .scope(self.tool_router.call(call))
            .instrument(span.clone())
            .await;
        let outcome = match &response {
            Ok(CallToolResponse::Complete(result)) if result.is_error == Some(true) => "tool_error",
            Ok(_) => "ok",
            Err(_) => "protocol_error",
        };
        if let Some(metrics) = &self.metrics {
            metrics.record(tool, outcome, started);
        }
        span.in_scope(|| {
            tracing::info!(
                outcome,
                duration_ms = started.elapsed().as_secs_f64() * 1e3,
                "tool call finished"
            )
        });
        response
    }

    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("taskman", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "Task manager. Tools: list_tasks, get_task, create_task, update_task, complete_task, \
                 delete_task, list_projects, create_project. Ids are opaque strings returned by the tools.",
            )
    }
}

/// Applies one of the contract's rules to tool arguments before any backend call: a bad
/// argument gets the same message the backend would give, without the round trip.
fn check<T>(verdict: Result<T, contract::Invalid>) -> Result<(), String> {
    verdict
        .map(drop)
        .map_err(|invalid| format!("{} (invalid argument: {})", invalid.message, invalid.field))
}

/// Ids are opaque, but a usable one is 1 to 128 characters without control characters.
fn check_id(id: &str) -> Result<(), String> {
    let length = id.chars().count();
    if !(1..=128).contains(&length) {
        return Err(format!(
            "id must be 1 to 128 characters (got {length}) (invalid argument: id)"
        ));
    }
    if id.chars().any(char::is_control) {
        return Err("id must not contain control characters (invalid argument: id)".to_owned());
    }
    Ok(())
}

fn object(args: &impl Serialize) -> Result<Map<String, Value>, String> {
    match serde_json::to_value(args) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) | Err(_) => Err("arguments could not be encoded as a JSON object".to_owned()),
    }
}

fn owned(pairs: Vec<(&str, String)>) -> Vec<(String, String)> {
    pairs
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect()
}

/// The ID of the HTTP request that carried this MCP message, or a fresh one (stdio has none),
/// so that backend calls always carry an ID.
fn request_id_of(context: &RequestContext<RoleServer>) -> RequestId {
    context
        .extensions
        .get::<http::request::Parts>()
        .and_then(|parts| parts.extensions.get::<RequestId>())
        .cloned()
        .unwrap_or_else(RequestId::new_v4)
}

/// The text the model sees when a tool fails: the backend's own message for a refusal.
fn tool_error(err: ClientError) -> String {
    match err {
        ClientError::Api { status, error } => match error.field {
            Some(field) => format!(
                "{} ({} {}, field {field})",
                error.message,
                status.as_u16(),
                error.code
            ),
            None => format!("{} ({} {})", error.message, status.as_u16(), error.code),
        },
        unavailable @ ClientError::Unavailable(_) => unavailable.to_string(),
    }
}
