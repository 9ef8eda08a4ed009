//! The embedded Task Manager backend: REST API v1 (`shared/spec/backend-api.md`) served by
//! axum over a SQLite store.
//!
//! - this module: the `Store` handle, its lifecycle (open, close) and its errors;
//! - `store`: schema and queries, run on the blocking pool through `Store::with_db`;
//! - `crate::contract` (shared with the MCP tools): turns untrusted JSON bodies, query strings
//!   and headers into typed requests;
//! - `routes`: the axum router, handlers, body extractor and correlation middleware;
//! - `error`: the `{"error":{...}}` answers.

// The interface main.rs calls is `pub`, but an example (or a test including it) exports
// nothing, so every `pub` item would be "unreachable".
#![allow(unreachable_pub)]

mod error;
mod routes;
mod store;

use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use rusqlite::Connection;

pub use routes::router;
use store::{Clock, SCHEMA_VERSION};

const MEMORY_PATH: &str = ":memory:";

/// A handle on the task database; clones share one connection.
#[derive(Clone)]
pub struct Store {
    shared: Arc<Shared>,
}

struct Shared {
    path: String,
    /// `None` once the store is closed.
    db: Mutex<Option<Db>>,
}

struct Db {
    conn: Connection,
    clock: Clock,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.shared.path)
            .finish_non_exhaustive()
    }
}

/// A storage failure: what was attempted, on which database, and why it failed.
#[derive(Debug)]
pub struct StoreError {
    path: String,
    kind: StoreErrorKind,
}

#[derive(Debug)]
enum StoreErrorKind {
    CreateDirectory(std::io::Error),
    Open(rusqlite::Error),
    Setup(rusqlite::Error),
    UnsupportedSchema(i64),
    Closed,
    Query {
        operation: &'static str,
        source: rusqlite::Error,
    },
    Close(rusqlite::Error),
    Worker(tokio::task::JoinError),
}

impl StoreError {
    /// True when the store was closed: the caller should answer "unavailable".
    pub(crate) fn is_closed(&self) -> bool {
        matches!(self.kind, StoreErrorKind::Closed)
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = &self.path;
        match &self.kind {
            StoreErrorKind::CreateDirectory(e) => {
                write!(
                    f,
                    "cannot create the directory of SQLite database {path}: {e}"
                )
            }
            StoreErrorKind::Open(e) => write!(f, "cannot open SQLite database {path}: {e}"),
            StoreErrorKind::Setup(e) => {
                write!(f, "cannot set up the schema of SQLite database {path}: {e}")
            }
            StoreErrorKind::UnsupportedSchema(version) => write!(
                f,
                "SQLite database {path} has schema version {version}, this backend knows version {SCHEMA_VERSION}"
            ),
            StoreErrorKind::Closed => write!(f, "SQLite database {path} is closed"),
            StoreErrorKind::Query { operation, source } => {
                write!(f, "{operation} failed on SQLite database {path}: {source}")
            }
            StoreErrorKind::Close(e) => write!(f, "cannot close SQLite database {path}: {e}"),
            StoreErrorKind::Worker(e) => {
                write!(f, "database worker for SQLite database {path} failed: {e}")
            }
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            StoreErrorKind::CreateDirectory(e) => Some(e),
            StoreErrorKind::Open(e)
            | StoreErrorKind::Setup(e)
            | StoreErrorKind::Close(e)
            | StoreErrorKind::Query { source: e, .. } => Some(e),
            StoreErrorKind::Worker(e) => Some(e),
            StoreErrorKind::UnsupportedSchema(_) | StoreErrorKind::Closed => None,
        }
    }
}

impl Store {
    /// `path` is a file path (parent directories are created) or ":memory:".
    pub fn open(path: &str) -> Result<Store, StoreError> {
        let fail = |kind| StoreError {
            path: path.to_owned(),
            kind,
        };
        let in_memory = path == MEMORY_PATH;
        let conn = if in_memory {
            Connection::open_in_memory()
        } else {
            create_parent_directories(path)
                .map_err(|e| fail(StoreErrorKind::CreateDirectory(e)))?;
            Connection::open(path)
        }
        .map_err(|e| fail(StoreErrorKind::Open(e)))?;
        let clock = store::initialise(&conn, in_memory).map_err(fail)?;
        Ok(Store {
            shared: Arc::new(Shared {
                path: path.to_owned(),
                db: Mutex::new(Some(Db { conn, clock })),
            }),
        })
    }

    /// Closes the connection cleanly (checkpoint WAL if used). Later calls on clones fail
    /// with 503 "unavailable". Closing an already closed store does nothing.
    pub async fn close(&self) -> Result<(), StoreError> {
        let shared = Arc::clone(&self.shared);
        let closed = tokio::task::spawn_blocking(move || {
            let Some(db) = lock(&shared).take() else {
                return Ok(());
            };
            if shared.path != MEMORY_PATH {
                // Fold the WAL back into the main file so that the database is one file at rest.
                db.conn
                    .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
                    .map_err(|source| StoreErrorKind::Query {
                        operation: "WAL checkpoint",
                        source,
                    })?;
            }
            db.conn.close().map_err(|(_, e)| StoreErrorKind::Close(e))
        })
        .await;
        self.settle(closed)
    }

    /// Runs `work` on the blocking pool with the connection locked.
    async fn with_db<T, F>(&self, operation: &'static str, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Db) -> rusqlite::Result<T> + Send + 'static,
    {
        let shared = Arc::clone(&self.shared);
        let done = tokio::task::spawn_blocking(move || {
            let mut guard = lock(&shared);
            let db = guard.as_mut().ok_or(StoreErrorKind::Closed)?;
            work(db).map_err(|source| StoreErrorKind::Query { operation, source })
        })
        .await;
        self.settle(done)
    }

    /// Attaches the database path to whatever went wrong on the blocking pool.
    fn settle<T>(
        &self,
        done: Result<Result<T, StoreErrorKind>, tokio::task::JoinError>,
    ) -> Result<T, StoreError> {
        done.map_err(StoreErrorKind::Worker)
            .and_then(|result| result)
            .map_err(|kind| StoreError {
                path: self.shared.path.clone(),
                kind,
            })
    }
}

fn lock(shared: &Shared) -> MutexGuard<'_, Option<Db>> {
    // A panic while the lock was held dropped any open transaction, which rolls it back,
    // so the connection is still consistent and the poison can be ignored.
    shared.db.lock().unwrap_or_else(PoisonError::into_inner)
}

fn create_parent_directories(path: &str) -> std::io::Result<()> {
    match Path::new(path).parent() {
        Some(parent) if !parent.as_os_str().is_empty() => std::fs::create_dir_all(parent),
        _ => Ok(()),
    }
}
