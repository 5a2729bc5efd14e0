//! What the proxy does with each message, whatever the transport. A client's message is routed
//! ([`route`]); the server's answers to the few requests the proxy looks at are rewritten
//! ([`initialized`], [`discovered`], [`tools_listed`], [`tasks_listed`]). stdio's
//! [`crate::Session`] and the Streamable HTTP front are thin drivers over this: they only differ
//! in how a message travels (a line, an HTTP body, an SSE event).

use serde_json::Value;
use std::collections::HashSet;

use crate::calls::Calls;
use crate::tasks::{self, Tasks};

/// One of the proxy's own tasks' requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskMethod {
    /// `tasks/get`.
    Get,
    /// `tasks/result` (blocks until the task ends).
    Result,
    /// `tasks/cancel`.
    Cancel,
    /// `tasks/update` (2026-07-28: the client's answers to the server's input requests).
    Update,
}

/// Where a client's message goes.
#[derive(Debug, Clone, PartialEq)]
pub enum Route {
    /// A `tools/call`, decided (and held while under review) before it may reach the server.
    Hold,
    /// A task-augmented `tools/call` on a tasks session: answered at once with a task of the
    /// proxy's, decided in the background.
    Task,
    /// A request about one of the proxy's own tasks (`taskId`).
    OwnTask(TaskMethod, String),
    /// `tasks/list` on a tasks session whose server lists none: the proxy answers.
    ListOwnTasks,
    /// A request relayed to the server, its answer rewritten (`None`: relayed unchanged).
    Relay(Option<Rewrite>),
    /// `notifications/cancelled` naming this request: cancels a held call, else relayed.
    Cancelled(Value),
    /// A notification or a client's response: relayed.
    Notification,
}

/// Which of the server's answers the proxy rewrites.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rewrite {
    /// `initialize`: a 2025-11-25 session gains the tasks capability ([`initialized`]).
    Initialize,
    /// `server/discover`: gains the 2026-07-28 Tasks extension ([`discovered`]).
    Discover,
    /// `tools/list`: filtered and annotated ([`tools_listed`]).
    ToolsList,
    /// `tasks/list` of a server with tasks of its own: ours join its first page
    /// ([`tasks_listed`]).
    TaskList {
        /// No cursor: the first page.
        first_page: bool,
    },
}

/// What the transport knows of the session.
pub struct Session<'a> {
    /// The session speaks 2025-11-25's tasks.
    pub tasks_on: bool,
    /// The server declared `tasks.list`.
    pub server_lists_tasks: bool,
    /// Tools the server runs only as its own tasks.
    pub server_task_tools: &'a HashSet<String>,
}

/// Routes a client's message (accepted by [`crate::inbound::check`]).
pub fn route(msg: &Value, session: &Session<'_>) -> Route {
    let id = msg.get("id").filter(|i| !i.is_null());
    let method = msg.get("method").and_then(Value::as_str);
    let params = &msg["params"];
    let Some(method) = method else {
        return Route::Notification;
    };
    if id.is_none() {
        return match method {
            "notifications/cancelled" => Route::Cancelled(params["requestId"].clone()),
            _ => Route::Notification,
        };
    }
    let own_task = params["taskId"].as_str().filter(|t| Tasks::owns(t));
    match (method, own_task) {
        ("tools/call", _) => {
            let server_runs_it = params["name"]
                .as_str()
                .is_some_and(|n| session.server_task_tools.contains(n));
            if params["task"].is_object() && session.tasks_on && !server_runs_it {
                Route::Task
            } else {
                Route::Hold
            }
        }
        ("initialize", _) => Route::Relay(Some(Rewrite::Initialize)),
        ("server/discover", _) => Route::Relay(Some(Rewrite::Discover)),
        ("tools/list", _) => Route::Relay(Some(Rewrite::ToolsList)),
        ("tasks/get", Some(t)) => Route::OwnTask(TaskMethod::Get, t.to_string()),
        ("tasks/result", Some(t)) => Route::OwnTask(TaskMethod::Result, t.to_string()),
        ("tasks/cancel", Some(t)) => Route::OwnTask(TaskMethod::Cancel, t.to_string()),
        ("tasks/update", Some(t)) => Route::OwnTask(TaskMethod::Update, t.to_string()),
        ("tasks/list", _) if session.tasks_on => {
            if session.server_lists_tasks {
                let first_page = params.get("cursor").is_none_or(Value::is_null);
                Route::Relay(Some(Rewrite::TaskList { first_page }))
            } else {
                Route::ListOwnTasks
            }
        }
        _ => Route::Relay(None),
    }
}

/// The server's `initialize` answer: on a 2025-11-25 session the tasks capability is advertised.
/// Returns whether the server lists tasks itself, for a tasks session (`msg` then changed);
/// `None` otherwise (unchanged).
pub fn initialized(msg: &mut Value) -> Option<bool> {
    let result = msg.get_mut("result").filter(|r| r.is_object())?;
    if result["protocolVersion"] != tasks::TASKS_VERSION {
        return None;
    }
    let lists = result["capabilities"]["tasks"]["list"].is_object();
    tasks::advertise(&mut result["capabilities"]);
    Some(lists)
}

/// The server's `server/discover` answer gains the Tasks extension. Returns whether it changed.
pub fn discovered(msg: &mut Value) -> bool {
    let Some(result) = msg.get_mut("result").filter(|r| r.is_object()) else {
        return false;
    };
    tasks::advertise_extension(&mut result["capabilities"]);
    true
}

/// The server's `tools/list` answer: denied tools hidden, reviewed ones marked, and on a tasks
/// session (`server_task_tools` given) tasks offered. Returns whether it changed.
pub fn tools_listed(
    msg: &mut Value,
    calls: &Calls,
    server_task_tools: Option<&mut HashSet<String>>,
) -> bool {
    let Some(result) = msg.get_mut("result") else {
        return false;
    };
    calls.filter_tools(result);
    if let Some(tools) = server_task_tools {
        tasks::offer(result, tools);
    }
    true
}

/// The server's `tasks/list` answer: the proxy's tasks join its first page. Returns whether it
/// changed, or the error to answer instead (a result that is not an object).
pub fn tasks_listed(msg: &mut Value, tasks: &Tasks, first_page: bool) -> Result<bool, String> {
    let Some(result) = msg.get_mut("result") else {
        return Ok(false);
    };
    if !first_page {
        return Ok(false);
    }
    if !tasks.merge_into(result) {
        return Err(tasks::not_an_object(&msg["id"], "tasks/list"));
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn route_of(msg: Value, tasks_on: bool, lists: bool) -> Route {
        let tools = HashSet::from(["own".to_string()]);
        let s = Session {
            tasks_on,
            server_lists_tasks: lists,
            server_task_tools: &tools,
        };
        route(&msg, &s)
    }

    #[test]
    fn messages_are_routed_the_same_whatever_the_transport() {
        let call =
            |p: Value| json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": p});
        assert_eq!(
            route_of(call(json!({"name": "x"})), true, false),
            Route::Hold
        );
        let task = json!({"name": "x", "task": {}});
        assert_eq!(route_of(call(task.clone()), true, false), Route::Task);
        assert_eq!(route_of(call(task), false, false), Route::Hold);
        let own = json!({"name": "own", "task": {}});
        assert_eq!(route_of(call(own), true, false), Route::Hold);
        let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tasks/list"});
        assert_eq!(route_of(list.clone(), true, false), Route::ListOwnTasks);
        assert_eq!(
            route_of(list.clone(), true, true),
            Route::Relay(Some(Rewrite::TaskList { first_page: true }))
        );
        assert_eq!(route_of(list, false, true), Route::Relay(None));
        let get = json!({"jsonrpc": "2.0", "id": 3, "method": "tasks/get",
            "params": {"taskId": "countersign-1"}});
        assert_eq!(
            route_of(get, false, false),
            Route::OwnTask(TaskMethod::Get, "countersign-1".into())
        );
        let theirs = json!({"jsonrpc": "2.0", "id": 3, "method": "tasks/get",
            "params": {"taskId": "server-1"}});
        assert_eq!(route_of(theirs, true, false), Route::Relay(None));
        let cancel = json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
            "params": {"requestId": 7}});
        assert_eq!(route_of(cancel, false, false), Route::Cancelled(json!(7)));
        let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        assert_eq!(route_of(note, false, false), Route::Notification);
    }

    #[test]
    fn answers_that_are_not_objects_are_left_or_refused() {
        let mut odd = json!({"jsonrpc": "2.0", "id": 1, "result": [1]});
        assert_eq!(initialized(&mut odd), None);
        assert!(!discovered(&mut odd));
        let tasks = Tasks::new(
            std::time::Duration::from_secs(1),
            std::sync::Arc::new(|| countersign_core::Timestamp(0)),
        );
        assert!(tasks_listed(&mut odd, &tasks, true).is_err());
        assert_eq!(tasks_listed(&mut odd, &tasks, false), Ok(false));
    }
}
