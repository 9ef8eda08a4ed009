//! SQLite persistence for tasks, projects and idempotency records.
//!
//! One connection sits behind a mutex and every statement runs on tokio's blocking pool, so
//! async handlers never wait on disk I/O and writes are serialised (SQLite allows one writer
//! anyway). Timestamps are stored as fixed-width RFC 3339 text, which sorts chronologically.

use rusqlite::types::{Type, Value as SqlValue};
use rusqlite::{
    Connection, OptionalExtension, Row, TransactionBehavior, named_params, params, params_from_iter,
};
use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{Db, Store, StoreError, StoreErrorKind};
use crate::api::{Page, Priority, Project, Status, Task};
use crate::contract::{NewProject, NewTask, PageRequest, TaskFilter, TaskPatch};

/// Kept in `PRAGMA user_version`; a database written by a later schema is refused.
pub(super) const SCHEMA_VERSION: i64 = 1;
const IDEMPOTENCY_WINDOW_MICROS: i64 = 24 * 60 * 60 * 1_000_000;
const TASKS_SCOPE: &str = "POST /tasks";
const PROJECTS_SCOPE: &str = "POST /projects";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS projects (
    id          TEXT PRIMARY KEY NOT NULL,
    name        TEXT NOT NULL,
    -- Unicode lower case of the name: SQLite's NOCASE only folds ASCII.
    name_folded TEXT NOT NULL UNIQUE,
    description TEXT,
    created_at  TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS projects_by_creation ON projects (created_at, id);

CREATE TABLE IF NOT EXISTS tasks (
    id                 TEXT PRIMARY KEY NOT NULL,
    title              TEXT NOT NULL,
    title_folded       TEXT NOT NULL,
    description        TEXT,
    description_folded TEXT,
    status             TEXT NOT NULL CHECK (status IN ('todo', 'in_progress', 'done')),
    priority           TEXT NOT NULL CHECK (priority IN ('low', 'medium', 'high', 'urgent')),
    project_id         TEXT REFERENCES projects (id),
    due_date           TEXT,
    created_at         TEXT NOT NULL,
    updated_at         TEXT NOT NULL,
    completed_at       TEXT
);
CREATE INDEX IF NOT EXISTS tasks_by_creation ON tasks (created_at, id);
CREATE INDEX IF NOT EXISTS tasks_by_project ON tasks (project_id);

CREATE TABLE IF NOT EXISTS task_tags (
    task_id  TEXT NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    tag      TEXT NOT NULL,
    PRIMARY KEY (task_id, tag)
);
CREATE INDEX IF NOT EXISTS task_tags_by_tag ON task_tags (tag);

CREATE TABLE IF NOT EXISTS idempotency_keys (
    scope         TEXT NOT NULL,
    key           TEXT NOT NULL,
    request_body  TEXT NOT NULL,
    response_body TEXT NOT NULL,
    location      TEXT NOT NULL,
    created_us    INTEGER NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE INDEX IF NOT EXISTS idempotency_keys_by_age ON idempotency_keys (created_us);
";

const TASK_COLUMNS: &str = "id, title, description, status, priority, project_id, due_date, \
                            created_at, updated_at, completed_at";
const PROJECT_COLUMNS: &str = "id, name, description, created_at";

const INSERT_TASK: &str = "INSERT INTO tasks (id, title, title_folded, description, \
    description_folded, status, priority, project_id, due_date, created_at, updated_at, \
    completed_at) VALUES (:id, :title, :title_folded, :description, :description_folded, \
    :status, :priority, :project_id, :due_date, :created_at, :updated_at, :completed_at)";
const UPDATE_TASK: &str = "UPDATE tasks SET title = :title, title_folded = :title_folded, \
    description = :description, description_folded = :description_folded, status = :status, \
    priority = :priority, project_id = :project_id, due_date = :due_date, \
    created_at = :created_at, updated_at = :updated_at, completed_at = :completed_at \
    WHERE id = :id";

/// Why a well-formed request could not be carried out against the stored data.
#[derive(Debug)]
pub(crate) enum Refusal {
    TaskNotFound {
        id: String,
    },
    ProjectNotFound {
        id: String,
    },
    /// A task body's `project_id` names no project.
    UnknownProject {
        id: String,
    },
    ProjectNameTaken {
        name: String,
    },
    /// The `Idempotency-Key` was used for a different body within the window.
    IdempotencyKeyReused,
}

/// Storage failed (outer error), or the data said no (inner error).
pub(crate) type Outcome<T> = Result<Result<T, Refusal>, StoreError>;

/// The `Idempotency-Key` of a create request, with the body it came with.
#[derive(Debug)]
pub(crate) struct IdempotencyKey {
    pub(crate) key: String,
    pub(crate) request_body: Value,
}

/// What a create needs besides the new resource.
#[derive(Debug)]
pub(crate) struct CreateContext {
    /// The new resource's URL is this prefix followed by its id.
    pub(crate) location_prefix: String,
    pub(crate) idempotency: Option<IdempotencyKey>,
}

/// A 201 answer, kept as sent so that a retry with the same key gets the very same bytes.
#[derive(Debug)]
pub(crate) struct Created {
    pub(crate) location: String,
    pub(crate) body: String,
    pub(crate) replayed: bool,
}

impl Store {
    /// Runs `SELECT 1`.
    pub(crate) async fn health(&self) -> Result<(), StoreError> {
        self.with_db("health check", |db| {
            db.conn.query_row("SELECT 1", [], |_| Ok(()))
        })
        .await
    }

    pub(crate) async fn create_task(
        &self,
        task: NewTask,
        context: CreateContext,
    ) -> Outcome<Created> {
        let id = new_id();
        self.with_db("task insert", move |db| {
            create_once(db, TASKS_SCOPE, &context, &id, |conn, now| {
                insert_task(conn, &id, task, now)
            })
        })
        .await
    }

    pub(crate) async fn task(&self, id: String) -> Outcome<Task> {
        self.with_db("task lookup", move |db| {
            Ok(find_task(&db.conn, &id)?.ok_or(Refusal::TaskNotFound { id }))
        })
        .await
    }

    pub(crate) async fn update_task(&self, id: String, patch: TaskPatch) -> Outcome<Task> {
        self.with_db("task update", move |db| {
            let now = db.clock.next();
            let tx = db
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            let Some(mut task) = find_task(&tx, &id)? else {
                return Ok(Err(Refusal::TaskNotFound { id }));
            };
            if let Some(Some(project_id)) = &patch.project_id
                && !project_exists(&tx, project_id)?
            {
                return Ok(Err(Refusal::UnknownProject {
                    id: project_id.clone(),
                }));
            }
            apply_patch(&mut task, patch, &now);
            save_task(&tx, UPDATE_TASK, &task)?;
            tx.commit()?;
            Ok(Ok(task))
        })
        .await
    }

    pub(crate) async fn delete_task(&self, id: String) -> Outcome<()> {
        self.with_db("task delete", move |db| {
            // Tags go with the task: ON DELETE CASCADE, foreign keys are on.
            let deleted = db.conn.execute("DELETE FROM tasks WHERE id = ?1", [&id])?;
            Ok(if deleted == 0 {
                Err(Refusal::TaskNotFound { id })
            } else {
                Ok(())
            })
        })
        .await
    }

    pub(crate) async fn list_tasks(&self, filter: TaskFilter) -> Result<Page<Task>, StoreError> {
        self.with_db("task listing", move |db| list_tasks(&db.conn, &filter))
            .await
    }

    pub(crate) async fn create_project(
        &self,
        project: NewProject,
        context: CreateContext,
    ) -> Outcome<Created> {
        let id = new_id();
        self.with_db("project insert", move |db| {
            create_once(db, PROJECTS_SCOPE, &context, &id, |conn, now| {
                insert_project(conn, &id, project, now)
            })
        })
        .await
    }

    pub(crate) async fn project(&self, id: String) -> Outcome<Project> {
        self.with_db("project lookup", move |db| {
            let sql = format!("SELECT {PROJECT_COLUMNS} FROM projects WHERE id = ?1");
            let found = db
                .conn
                .prepare_cached(&sql)?
                .query_row([&id], project_from_row)
                .optional()?;
            Ok(found.ok_or(Refusal::ProjectNotFound { id }))
        })
        .await
    }

    pub(crate) async fn list_projects(
        &self,
        page: PageRequest,
    ) -> Result<Page<Project>, StoreError> {
        self.with_db("project listing", move |db| {
            let total = db
                .conn
                .query_row("SELECT COUNT(*) FROM projects", [], |row| {
                    row.get::<_, i64>(0)
                })?;
            let sql = format!(
                "SELECT {PROJECT_COLUMNS} FROM projects ORDER BY created_at, id LIMIT ?1 OFFSET ?2"
            );
            let items = db
                .conn
                .prepare_cached(&sql)?
                .query_map(
                    params![page.limit_sql(), page.offset_sql()],
                    project_from_row,
                )?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(page.of(items, total))
        })
        .await
    }
}

/// Sets up a freshly opened connection: pragmas, schema, and a clock that resumes after the
/// newest stored timestamp.
pub(super) fn initialise(conn: &Connection, in_memory: bool) -> Result<Clock, StoreErrorKind> {
    configure(conn, in_memory).map_err(StoreErrorKind::Setup)?;
    let version = conn
        .query_row("PRAGMA user_version", [], |row| row.get::<_, i64>(0))
        .map_err(StoreErrorKind::Setup)?;
    if version != 0 && version != SCHEMA_VERSION {
        return Err(StoreErrorKind::UnsupportedSchema(version));
    }
    conn.execute_batch(SCHEMA)
        .and_then(|()| conn.pragma_update(None, "user_version", SCHEMA_VERSION))
        .and_then(|()| latest_timestamp(conn))
        .map(Clock::resuming_after)
        .map_err(StoreErrorKind::Setup)
}

fn configure(conn: &Connection, in_memory: bool) -> rusqlite::Result<()> {
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    if !in_memory {
        // `journal_mode` answers with the mode it set, so it has to be read as a query.
        conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))?;
        // NORMAL is durable across application crashes in WAL mode, and much faster than FULL.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
    }
    Ok(())
}

/// The newest timestamp written so far, so that a reopened store never issues an older one.
fn latest_timestamp(conn: &Connection) -> rusqlite::Result<Option<OffsetDateTime>> {
    let latest: Option<String> = conn.query_row(
        "SELECT MAX(t) FROM (SELECT MAX(updated_at) AS t FROM tasks \
         UNION ALL SELECT MAX(created_at) FROM projects)",
        [],
        |row| row.get(0),
    )?;
    Ok(latest.and_then(|text| OffsetDateTime::parse(&text, &Rfc3339).ok()))
}

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Issues strictly increasing microsecond timestamps, even if the wall clock steps back or two
/// writes land in the same microsecond: creation order is then listing order, and an update
/// always moves `updated_at` forward.
pub(super) struct Clock {
    last_micros: i64,
}

/// One reading of the clock.
struct Now {
    micros: i64,
    rfc3339: String,
}

impl Clock {
    fn resuming_after(latest: Option<OffsetDateTime>) -> Clock {
        Clock {
            last_micros: latest.map_or(i64::MIN, unix_micros),
        }
    }

    fn next(&mut self) -> Now {
        let wall = OffsetDateTime::now_utc();
        let micros = unix_micros(wall).max(self.last_micros.saturating_add(1));
        self.last_micros = micros;
        let instant =
            OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1_000).unwrap_or(wall);
        Now {
            micros,
            rfc3339: format_timestamp(instant),
        }
    }
}

fn unix_micros(instant: OffsetDateTime) -> i64 {
    i64::try_from(instant.unix_timestamp_nanos() / 1_000).unwrap_or(i64::MAX)
}

/// Fixed width (always six fractional digits) so that the text sorts like the instant.
fn format_timestamp(instant: OffsetDateTime) -> String {
    let utc = instant.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        utc.year(),
        u8::from(utc.month()),
        utc.day(),
        utc.hour(),
        utc.minute(),
        utc.second(),
        utc.microsecond()
    )
}

/// The shared shape of POST /tasks and POST /projects: honour the idempotency key, insert,
/// and record the answer under the key, all in one transaction.
fn create_once<T: Serialize>(
    db: &mut Db,
    scope: &'static str,
    context: &CreateContext,
    id: &str,
    insert: impl FnOnce(&Connection, &Now) -> rusqlite::Result<Result<T, Refusal>>,
) -> rusqlite::Result<Result<Created, Refusal>> {
    let now = db.clock.next();
    let tx = db
        .conn
        .transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute(
        "DELETE FROM idempotency_keys WHERE created_us < ?1",
        [now.micros.saturating_sub(IDEMPOTENCY_WINDOW_MICROS)],
    )?;
    if let Some(idempotency) = &context.idempotency
        && let Some(previous) = find_idempotent_answer(&tx, scope, idempotency)?
    {
        return Ok(previous);
    }
    let resource = match insert(&tx, &now)? {
        Ok(resource) => resource,
        Err(refusal) => return Ok(Err(refusal)),
    };
    let created = Created {
        location: format!("{}{id}", context.location_prefix),
        body: to_json_text(&resource)?,
        replayed: false,
    };
    if let Some(idempotency) = &context.idempotency {
        tx.execute(
            "INSERT INTO idempotency_keys (scope, key, request_body, response_body, location, \
             created_us) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                scope,
                idempotency.key,
                to_json_text(&idempotency.request_body)?,
                created.body,
                created.location,
                now.micros
            ],
        )?;
    }
    tx.commit()?;
    Ok(Ok(created))
}

/// The earlier answer for this key: replayed for the same body, refused for another one.
fn find_idempotent_answer(
    conn: &Connection,
    scope: &str,
    idempotency: &IdempotencyKey,
) -> rusqlite::Result<Option<Result<Created, Refusal>>> {
    let previous = conn
        .query_row(
            "SELECT request_body, response_body, location FROM idempotency_keys \
             WHERE scope = ?1 AND key = ?2",
            params![scope, idempotency.key],
            |row| Ok((row.get::<_, String>(0)?, row.get(1)?, row.get(2)?)),
        )
        .optional()?;
    let Some((request_body, body, location)) = previous else {
        return Ok(None);
    };
    // Compared as JSON values, so key order and white space do not make a body different.
    let same_body = serde_json::from_str::<Value>(&request_body)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(0, Type::Text, Box::new(e)))?
        == idempotency.request_body;
    Ok(Some(if same_body {
        Ok(Created {
            location,
            body,
            replayed: true,
        })
    } else {
        Err(Refusal::IdempotencyKeyReused)
    }))
}

fn to_json_text<T: Serialize>(value: &T) -> rusqlite::Result<String> {
    serde_json::to_string(value).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
}

fn insert_task(
    conn: &Connection,
    id: &str,
    new: NewTask,
    now: &Now,
) -> rusqlite::Result<Result<Task, Refusal>> {
    if let Some(project_id) = &new.project_id
        && !project_exists(conn, project_id)?
    {
        return Ok(Err(Refusal::UnknownProject {
            id: project_id.clone(),
        }));
    }
    let task = Task {
        id: id.to_owned(),
        completed_at: (new.status == Status::Done).then(|| now.rfc3339.clone()),
        title: new.title,
        description: new.description,
        status: new.status,
        priority: new.priority,
        project_id: new.project_id,
        tags: new.tags,
        due_date: new.due_date,
        created_at: now.rfc3339.clone(),
        updated_at: now.rfc3339.clone(),
    };
    save_task(conn, INSERT_TASK, &task)?;
    Ok(Ok(task))
}

fn apply_patch(task: &mut Task, patch: TaskPatch, now: &Now) {
    let was_done = task.status == Status::Done;
    let TaskPatch {
        title,
        description,
        status,
        priority,
        project_id,
        tags,
        due_date,
    } = patch;
    if let Some(title) = title {
        task.title = title;
    }
    if let Some(description) = description {
        task.description = description;
    }
    if let Some(status) = status {
        task.status = status;
    }
    if let Some(priority) = priority {
        task.priority = priority;
    }
    if let Some(project_id) = project_id {
        task.project_id = project_id;
    }
    if let Some(tags) = tags {
        task.tags = tags;
    }
    if let Some(due_date) = due_date {
        task.due_date = due_date;
    }
    match (was_done, task.status == Status::Done) {
        (false, true) => task.completed_at = Some(now.rfc3339.clone()),
        (true, false) => task.completed_at = None,
        // Marking a done task done again keeps the moment it was first completed.
        _ => {}
    }
    task.updated_at = now.rfc3339.clone();
}

/// Writes every column of `task` with `sql` (INSERT_TASK or UPDATE_TASK) and replaces its tags.
fn save_task(conn: &Connection, sql: &str, task: &Task) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute(named_params! {
        ":id": task.id,
        ":title": task.title,
        ":title_folded": task.title.to_lowercase(),
        ":description": task.description,
        ":description_folded": task.description.as_deref().map(str::to_lowercase),
        ":status": task.status.as_str(),
        ":priority": task.priority.as_str(),
        ":project_id": task.project_id,
        ":due_date": task.due_date,
        ":created_at": task.created_at,
        ":updated_at": task.updated_at,
        ":completed_at": task.completed_at,
    })?;
    conn.execute("DELETE FROM task_tags WHERE task_id = ?1", [&task.id])?;
    let mut insert_tag =
        conn.prepare_cached("INSERT INTO task_tags (task_id, position, tag) VALUES (?1, ?2, ?3)")?;
    for (position, tag) in (0_i64..).zip(&task.tags) {
        insert_tag.execute(params![task.id, position, tag])?;
    }
    Ok(())
}

fn project_exists(conn: &Connection, id: &str) -> rusqlite::Result<bool> {
    conn.prepare_cached("SELECT EXISTS (SELECT 1 FROM projects WHERE id = ?1)")?
        .query_row([id], |row| row.get(0))
}

fn find_task(conn: &Connection, id: &str) -> rusqlite::Result<Option<Task>> {
    let sql = format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = ?1");
    let found = conn
        .prepare_cached(&sql)?
        .query_row([id], task_from_row)
        .optional()?;
    found.map(|task| with_tags(conn, task)).transpose()
}

fn with_tags(conn: &Connection, mut task: Task) -> rusqlite::Result<Task> {
    task.tags = conn
        .prepare_cached("SELECT tag FROM task_tags WHERE task_id = ?1 ORDER BY position")?
        .query_map([&task.id], |row| row.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(task)
}

/// A task without its tags, from a row of `TASK_COLUMNS`.
fn task_from_row(row: &Row<'_>) -> rusqlite::Result<Task> {
    Ok(Task {
        id: row.get(0)?,
        title: row.get(1)?,
        description: row.get(2)?,
        status: enum_column(row, 3, Status::parse)?,
        priority: enum_column(row, 4, Priority::parse)?,
        project_id: row.get(5)?,
        tags: Vec::new(),
        due_date: row.get(6)?,
        created_at: row.get(7)?,
        updated_at: row.get(8)?,
        completed_at: row.get(9)?,
    })
}

fn enum_column<T>(
    row: &Row<'_>,
    index: usize,
    parse: fn(&str) -> Option<T>,
) -> rusqlite::Result<T> {
    let text: String = row.get(index)?;
    parse(&text).ok_or_else(|| {
        let name = row.as_ref().column_name(index).unwrap_or("?").to_owned();
        rusqlite::Error::InvalidColumnType(index, name, Type::Text)
    })
}

fn project_from_row(row: &Row<'_>) -> rusqlite::Result<Project> {
    Ok(Project {
        id: row.get(0)?,
        name: row.get(1)?,
        description: row.get(2)?,
        created_at: row.get(3)?,
    })
}

fn list_tasks(conn: &Connection, filter: &TaskFilter) -> rusqlite::Result<Page<Task>> {
    let mut conditions: Vec<&str> = Vec::new();
    let mut arguments: Vec<SqlValue> = Vec::new();
    let mut require = |condition, values: &[&str]| {
        conditions.push(condition);
        arguments.extend(
            values
                .iter()
                .map(|value| SqlValue::Text((*value).to_owned())),
        );
    };
    if let Some(status) = filter.status {
        require("status = ?", &[status.as_str()]);
    }
    if let Some(priority) = filter.priority {
        require("priority = ?", &[priority.as_str()]);
    }
    if let Some(project_id) = &filter.project_id {
        require("project_id = ?", &[project_id]);
    }
    if let Some(tag) = &filter.tag {
        require(
            "EXISTS (SELECT 1 FROM task_tags WHERE task_tags.task_id = tasks.id AND task_tags.tag = ?)",
            &[tag],
        );
    }
    if let Some(q) = &filter.q {
        // instr() rather than LIKE: no wildcard escaping, and both sides are Unicode-folded.
        let folded = q.to_lowercase();
        require(
            "(instr(title_folded, ?) > 0 OR instr(coalesce(description_folded, ''), ?) > 0)",
            &[&folded, &folded],
        );
    }
    if let Some(due_before) = &filter.due_before {
        require("due_date < ?", &[due_before]);
    }
    let where_clause = if conditions.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conditions.join(" AND "))
    };

    let total = conn
        .prepare_cached(&format!("SELECT COUNT(*) FROM tasks{where_clause}"))?
        .query_row(params_from_iter(&arguments), |row| row.get::<_, i64>(0))?;
    arguments.push(SqlValue::Integer(filter.page.limit_sql()));
    arguments.push(SqlValue::Integer(filter.page.offset_sql()));
    let sql = format!(
        "SELECT {TASK_COLUMNS} FROM tasks{where_clause} ORDER BY created_at, id LIMIT ? OFFSET ?"
    );
    let items = conn
        .prepare_cached(&sql)?
        .query_map(params_from_iter(&arguments), task_from_row)?
        .map(|task| with_tags(conn, task?))
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(filter.page.of(items, total))
}

fn insert_project(
    conn: &Connection,
    id: &str,
    new: NewProject,
    now: &Now,
) -> rusqlite::Result<Result<Project, Refusal>> {
    let name_folded = new.name.to_lowercase();
    let taken: bool = conn
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM projects WHERE name_folded = ?1)")?
        .query_row([&name_folded], |row| row.get(0))?;
    if taken {
        return Ok(Err(Refusal::ProjectNameTaken { name: new.name }));
    }
    let project = Project {
        id: id.to_owned(),
        name: new.name,
        description: new.description,
        created_at: now.rfc3339.clone(),
    };
    conn.execute(
        "INSERT INTO projects (id, name, name_folded, description, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            project.id,
            project.name,
            name_folded,
            project.description,
            project.created_at
        ],
    )?;
    Ok(Ok(project))
}

impl PageRequest {
    fn limit_sql(&self) -> i64 {
        i64::try_from(self.limit).unwrap_or(i64::MAX)
    }

    fn offset_sql(&self) -> i64 {
        i64::try_from(self.offset).unwrap_or(i64::MAX)
    }

    fn of<T>(&self, items: Vec<T>, total: i64) -> Page<T> {
        Page {
            items,
            total: u64::try_from(total).unwrap_or(0),
            limit: self.limit,
            offset: self.offset,
        }
    }
}
