//! The architecture's invariants that a reading of the tree can check (ARCHITECTURE.md, "Tidy
//! tests"): which crate may know what, where the wall clock is read, and the lints every crate
//! obeys.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on bad setup

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn crates_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap()
}

/// Every crate's directory name.
fn crates() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(crates_dir())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("Cargo.toml").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn manifest(krate: &str) -> toml::Table {
    let text = std::fs::read_to_string(crates_dir().join(krate).join("Cargo.toml")).unwrap();
    text.parse().unwrap()
}

/// The names of a crate's normal (not dev) dependencies.
fn dependencies(krate: &str) -> BTreeSet<String> {
    manifest(krate)
        .get("dependencies")
        .and_then(|d| d.as_table())
        .map(|d| d.keys().cloned().collect())
        .unwrap_or_default()
}

/// `(path, text)` of every `.rs` file under `crates/<krate>/src`.
fn sources(krate: &str) -> Vec<(PathBuf, String)> {
    fn walk(dir: &Path, out: &mut Vec<(PathBuf, String)>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.filter_map(|e| e.ok()) {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push((p.clone(), std::fs::read_to_string(&p).unwrap()));
            }
        }
    }
    let mut out = Vec::new();
    walk(&crates_dir().join(krate).join("src"), &mut out);
    out
}

/// `crates/<krate>/src/...` for messages and allow-lists.
fn rel(p: &Path) -> String {
    let s = p.to_string_lossy().replace('\\', "/");
    s.split("/crates/").last().unwrap_or(&s).to_string()
}

fn uses(krate: &str, needle: &str) -> Vec<String> {
    sources(krate)
        .into_iter()
        .filter(|(_, text)| text.contains(needle))
        .map(|(p, _)| rel(&p))
        .collect()
}

/// `crates/<krate>` depends only on `allowed` and uses no I/O, clock, async or randomness.
fn assert_pure(krate: &str, allowed: &BTreeSet<&str>) {
    for dep in dependencies(krate) {
        assert!(
            allowed.contains(dep.as_str()),
            "crates/{krate} must not depend on `{dep}` (pure: no I/O, no async, no clock)"
        );
    }
    for needle in [
        "SystemTime",
        "Instant::",
        "std::fs",
        "std::net",
        "std::process",
        "std::env",
        "tokio",
        "async ",
        "rand::",
    ] {
        let found = uses(krate, needle);
        assert!(found.is_empty(), "`{needle}` in crates/{krate}: {found:?}");
    }
}

#[test]
fn every_crate_checks_the_workspace_lints() {
    for krate in crates() {
        let lints = manifest(&krate)
            .get("lints")
            .and_then(|l| l.get("workspace"))
            .and_then(|w| w.as_bool());
        assert_eq!(
            lints,
            Some(true),
            "crates/{krate}/Cargo.toml must say `[lints] workspace = true`"
        );
    }
}

#[test]
fn unsafe_code_is_allowed_once() {
    let allowed: Vec<String> = crates()
        .iter()
        .flat_map(|k| uses(k, "allow(unsafe_code)"))
        .collect();
    assert_eq!(
        allowed,
        vec!["mcp/src/stdio.rs".to_string()],
        "the only unsafe block is the MCP server's parent-death signal (DECISIONS.md)"
    );
}

#[test]
fn cedar_stays_in_the_policy_crate() {
    for krate in crates() {
        if krate == "policy" {
            continue;
        }
        assert!(
            !dependencies(&krate).iter().any(|d| d.starts_with("cedar")),
            "crates/{krate} depends on Cedar; only crates/policy may"
        );
        assert!(
            uses(&krate, "cedar_policy").is_empty(),
            "Cedar types appear in {:?}; only crates/policy may know Cedar",
            uses(&krate, "cedar_policy")
        );
    }
}

#[test]
fn the_core_knows_no_io_no_clock_and_no_wire() {
    let allowed: BTreeSet<&str> = [
        "serde",
        "serde_json",
        "serde_jcs",
        "sha2",
        "hex",
        "thiserror",
        "caseless",
        "unicode-normalization",
        "unicode-properties",
        "unicode-security",
    ]
    .into();
    for dep in dependencies("core") {
        assert!(
            allowed.contains(dep.as_str()),
            "the domain core must not depend on `{dep}` (no I/O, no async, no clock, no Cedar)"
        );
    }
    for needle in [
        "SystemTime",
        "Instant::now",
        "std::fs",
        "std::net",
        "tokio",
        "rand::",
    ] {
        assert!(
            uses("core", needle).is_empty(),
            "`{needle}` in the core: {:?}",
            uses("core", needle)
        );
    }
}

/// ARCHITECTURE.md, `crates/analyze`: the analyzers are pure functions of an action's
/// parameters: no I/O, no clock, no async, no randomness, and nothing of ours but the core.
#[test]
fn the_analyzers_are_pure() {
    // thiserror only derives `Error` impls (the core uses it too); pg_query is PostgreSQL's
    // parser compiled as a library (no I/O: it parses a string into a tree).
    let allowed: BTreeSet<&str> = [
        "countersign-core",
        "pg_query",
        "serde_json",
        "sqlparser",
        "thiserror",
    ]
    .into();
    assert_pure("analyze", &allowed);
}

#[test]
fn the_audit_crate_does_no_io() {
    for dep in dependencies("audit") {
        assert!(
            !["tokio", "rusqlite", "tokio-postgres", "reqwest", "axum"].contains(&dep.as_str()),
            "crates/audit must not depend on `{dep}`"
        );
    }
    for needle in ["SystemTime", "std::fs", "tokio"] {
        assert!(
            uses("audit", needle).is_empty(),
            "`{needle}` in crates/audit"
        );
    }
}

#[test]
fn the_gateway_knows_no_wire_format() {
    for dep in dependencies("gateway") {
        assert!(
            ![
                "axum",
                "hyper",
                "hyper-util",
                "tower",
                "tower-http",
                "reqwest"
            ]
            .contains(&dep.as_str()),
            "crates/gateway depends on `{dep}`: HTTP belongs in the adapters"
        );
    }
    for needle in ["axum::", "hyper::", "StatusCode"] {
        assert!(
            uses("gateway", needle).is_empty(),
            "`{needle}` in the gateway: {:?}",
            uses("gateway", needle)
        );
    }
}

#[test]
fn crates_depend_inwards() {
    // Adapters may depend on the use cases; nothing below them depends on an adapter.
    let adapters = [
        "countersign-channels",
        "countersign-http",
        "countersign-console",
        "countersign-mcp",
        "countersign-pgproxy",
        "countersign-server",
        "countersign",
    ];
    for krate in [
        "core", "policy", "audit", "store", "identity", "gateway", "evidence", "analyze",
    ] {
        for dep in dependencies(krate) {
            assert!(
                !adapters.contains(&dep.as_str()),
                "crates/{krate} depends on the adapter `{dep}`"
            );
        }
    }
    assert!(
        !dependencies("core")
            .iter()
            .any(|d| d.starts_with("countersign")),
        "the core depends on no other crate of ours"
    );
}

/// A ratchet: the wall clock is read in these files only: `enforce/src/clock.rs` is the clock.
/// The list may only shrink.
#[test]
fn the_wall_clock_is_read_in_known_places() {
    // Below the gateway, in the enforcement crate, so the front binary's `run` (which links no
    // gateway) reads the same clock.
    let known: BTreeSet<&str> = ["enforce/src/clock.rs"].into();
    for krate in crates() {
        for file in uses(&krate, "SystemTime::now") {
            assert!(
                known.contains(file.as_str()),
                "{file} reads the wall clock; take `now` as a parameter (or use the gateway's clock)"
            );
        }
    }
}

/// The normal dependencies of `krate`, ours followed to theirs: every crate of this workspace it
/// links, by package name, and every outside crate those name directly.
fn linked(krate: &str) -> BTreeSet<String> {
    let dir_of: std::collections::BTreeMap<String, String> = crates()
        .into_iter()
        .filter_map(|k| {
            let name = manifest(&k)
                .get("package")
                .and_then(|p| p.get("name"))
                .and_then(|n| n.as_str())
                .map(str::to_string)?;
            Some((name, k))
        })
        .collect();
    let mut seen = BTreeSet::new();
    let mut todo = vec![krate.to_string()];
    while let Some(k) = todo.pop() {
        for dep in dependencies(&k) {
            if seen.insert(dep.clone()) {
                if let Some(d) = dir_of.get(&dep) {
                    todo.push(d.clone());
                }
            }
        }
    }
    seen
}

/// ARCHITECTURE.md, "Enforcement": a front that asks a remote gateway (the enforcement crate, the
/// MCP proxy) does not link the policy engine; only the embedded gate, in the gateway, does.
#[test]
fn a_remote_front_does_not_link_cedar() {
    for krate in ["enforce", "mcp", "pgproxy"] {
        let linked = linked(krate);
        assert!(
            !linked.contains("countersign-policy")
                && !linked.iter().any(|d| d.starts_with("cedar")),
            "crates/{krate} links the policy engine (through {:?}); a remote-only front must not",
            linked
                .iter()
                .filter(|d| d.starts_with("countersign"))
                .collect::<Vec<_>>()
        );
    }
    // The check itself sees through crates: the gateway does link Cedar.
    assert!(linked("gateway").contains("cedar-policy"));
}

/// ARCHITECTURE.md, "crates/cli": the front binary (`countersign`, `src/front.rs`) and the
/// library it shares with `countersign-full` (`src/lib.rs` and its modules) name none of the
/// gateway's crates, so `countersign run` against a running gateway starts a small binary.
/// (`tests/it/front.rs` checks the built binary too.)
#[test]
fn the_front_binary_links_no_gateway() {
    let src = crates_dir().join("cli").join("src");
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    let mut files = vec!["front.rs".to_string(), "lib.rs".to_string()];
    for line in lib.lines() {
        if let Some(m) = line
            .trim()
            .strip_prefix("pub mod ")
            .and_then(|l| l.strip_suffix(';'))
        {
            files.push(format!("{m}.rs"));
        }
    }
    assert!(files.len() > 3, "no modules found in crates/cli/src/lib.rs");
    for file in files {
        let text = std::fs::read_to_string(src.join(&file)).unwrap();
        for heavy in [
            "countersign_gateway",
            "countersign_server",
            "countersign_store",
            "countersign_policy",
            "countersign_mcp",
            "countersign_pgproxy",
            "countersign_http",
            "countersign_console",
            "countersign_channels",
            "cedar",
            "rusqlite",
            "tokio_postgres",
            "pg_query",
            "mimalloc",
            "opentelemetry",
        ] {
            assert!(
                !text.contains(heavy),
                "crates/cli/src/{file} names `{heavy}`: the front binary must not link it"
            );
        }
    }
}

/// Error answers are built from `countersign_api::ErrorCode` only: no handler spells a code as
/// a string or writes the error body by hand, so every code has its one status.
#[test]
fn http_errors_come_from_the_error_code_enum() {
    for (path, text) in sources("http") {
        let file = rel(&path);
        for needle in ["code: \"", "json!("] {
            assert!(
                !text.contains(needle),
                "{file} contains `{needle}`: build errors with ApiError::new(ErrorCode::..)"
            );
        }
        if file != "http/src/error.rs" {
            assert!(
                !text.replace("-> ApiError {", "").contains("ApiError {"),
                "{file} builds an ApiError by hand: use ApiError::new(ErrorCode::..)"
            );
        }
    }
}

/// The wire types know the core and nothing else of ours (a remote-only client links no
/// gateway, store or Cedar), and nothing below the adapters knows the wire types.
#[test]
fn the_wire_types_sit_beside_the_core() {
    let ours: BTreeSet<String> = dependencies("api")
        .into_iter()
        .filter(|d| d.starts_with("countersign"))
        .collect();
    assert_eq!(
        ours,
        BTreeSet::from(["countersign-core".to_string()]),
        "crates/api may depend on the core only"
    );
    for krate in [
        "core", "policy", "audit", "store", "identity", "gateway", "evidence",
    ] {
        assert!(
            !dependencies(krate).contains("countersign-api"),
            "crates/{krate} depends on the wire types: only adapters may"
        );
    }
}

/// API v1's bodies are defined once, in crates/api: the server and the CLI client define none
/// of their own (no serde derives, no hand-built JSON).
#[test]
fn api_bodies_are_defined_once() {
    let mut files = sources("http");
    files.extend(
        sources("cli")
            .into_iter()
            .filter(|(p, _)| rel(p) == "cli/src/client.rs"),
    );
    for (path, text) in files {
        for needle in [
            "derive(Serialize",
            "derive(Deserialize",
            "Serialize)]",
            "Deserialize)]",
            "json!(",
        ] {
            assert!(
                !text.contains(needle),
                "{} contains `{needle}`: API v1 bodies are the types of crates/api",
                rel(&path)
            );
        }
    }
}

/// ARCHITECTURE.md, `crates/store`: what each write means lives once (`write.rs`); a backend
/// only reads and writes rows, and a writer reloads the log's head under its write lock. So the
/// backends neither decide (the core's rules, the audit tree's appends) nor keep a head of their
/// own.
#[test]
fn store_backends_only_read_and_write_rows() {
    let rules = [
        "check_open_reviews(",
        "best_answer(",
        "answers(",
        "fn decide",
        ".append(&",
        "stored_hashes_for_record",
        "EntryParts::new",
    ];
    for (path, text) in sources("store") {
        let name = rel(&path);
        if !(name.ends_with("store/src/sqlite.rs") || name.ends_with("store/src/postgres.rs")) {
            continue;
        }
        for rule in rules {
            assert!(
                !text.contains(rule),
                "{name} uses `{rule}`: what a write means belongs in store/src/write.rs"
            );
        }
        assert!(
            text.contains("head.frontier(size)"),
            "{name} must check its frontier against the log's size read under the write lock"
        );
    }
}

/// The store's traits stay focused: `Store` is only the sum of its aspects (it declares no
/// method of its own), and no aspect grows past a dozen methods; a new concern is a new trait.
#[test]
fn store_traits_stay_narrow() {
    let lib = crates_dir().join("store/src/lib.rs");
    let text = std::fs::read_to_string(&lib).unwrap();
    let mut traits = Vec::new();
    let mut current: Option<(String, usize)> = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("pub trait ") {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if line.trim_end().ends_with("{}") {
                traits.push((name, 0));
            } else {
                current = Some((name, 0));
            }
        } else if let Some((_, n)) = current.as_mut() {
            let item = line.trim_start_matches("    ");
            if line.starts_with("    ")
                && (item.starts_with("fn ") || item.starts_with("async fn "))
            {
                *n += 1;
            } else if line == "}" {
                traits.extend(current.take());
            }
        }
    }
    let methods = |name: &str| traits.iter().find(|(t, _)| t == name).map(|(_, n)| *n);
    assert_eq!(
        methods("Store"),
        Some(0),
        "`Store` must only combine the aspect traits: {traits:?}"
    );
    for aspect in ["Actions", "AuditLog", "Keys", "Coordination"] {
        assert!(
            methods(aspect).is_some(),
            "no trait `{aspect}` in {traits:?}"
        );
    }
    for (name, n) in &traits {
        assert!(
            *n <= 12,
            "store trait `{name}` has {n} methods: split it into focused traits"
        );
    }
}

/// The clock module is where time comes from; the crates that decide with time (core,
/// identity, policy, audit) read no clock at all, directly or through a library: OIDC `exp`/
/// `nbf` are checked against the caller's `now`, so jsonwebtoken's own clock checks stay off.
#[test]
fn time_is_passed_in_below_the_gateway() {
    for krate in ["core", "identity", "policy", "audit", "evidence", "analyze"] {
        for needle in [
            "SystemTime",
            "system_clock",
            "Utc::now",
            "OffsetDateTime::now",
        ] {
            assert!(
                uses(krate, needle).is_empty(),
                "`{needle}` in crates/{krate}: {:?}; take `now` as a parameter",
                uses(krate, needle)
            );
        }
    }
    // Every place that validates a JWT with jsonwebtoken (`jwks.rs::Key::verify`, shared by
    // OIDC and Bot Framework tokens) turns its time checks off.
    let validating: Vec<(std::path::PathBuf, String)> = sources("identity")
        .into_iter()
        .filter(|(_, text)| text.contains("Validation::new"))
        .collect();
    assert!(
        !validating.is_empty(),
        "no JWT validation found in crates/identity"
    );
    for (path, text) in validating {
        for off in ["validate_exp = false", "validate_nbf = false"] {
            assert!(
                text.contains(off),
                "{} must set `{off}`: jsonwebtoken would check times against the system clock \
                 instead of the `now` passed in",
                rel(&path)
            );
        }
    }
}

/// The server bootstrap (`crates/server`) is the one place a gateway process is put together:
/// no other crate opens a store for serving, or runs background work on its own.
#[test]
fn one_server_bootstrap_starts_the_background_work() {
    for krate in crates() {
        if krate == "server" {
            continue;
        }
        for needle in [
            "run_sweeper()",
            "run_checkpointer()",
            "run_credential_sweeper()",
            "run_change_relay()",
            "deliver_forever()",
            "Workers::new()",
        ] {
            assert!(
                uses(&krate, needle).is_empty(),
                "`{needle}` in {:?}: background work is registered in crates/server",
                uses(&krate, needle)
            );
        }
    }
    assert!(
        !dependencies("gateway").contains("countersign-server")
            && !dependencies("http").contains("countersign-server"),
        "the bootstrap sits above the gateway and the API"
    );
}

/// No wire format in the gateway: no HTTP crate at all, and JSON only where the gateway's own
/// artefacts are JSON by definition (listed with the reason).
#[test]
fn the_gateway_speaks_json_only_where_listed() {
    for dep in dependencies("gateway") {
        assert!(
            !["http", "http-body", "axum-core", "tonic", "hyper-util"].contains(&dep.as_str()),
            "crates/gateway depends on `{dep}`: wire formats belong in the adapters"
        );
    }
    let allowed: BTreeSet<&str> = [
        // Grant tokens are JWTs the gateway signs and verifies, and it publishes their JWKS.
        "gateway/src/grants.rs",
        // The embedded gate hands a front the approved action's parameters, that JSON object.
        "gateway/src/gate.rs",
    ]
    .into();
    for file in uses("gateway", "serde_json") {
        assert!(
            allowed.contains(file.as_str()),
            "{file} uses serde_json: shape JSON in the adapters (or list it here with a reason)"
        );
    }
}

/// `identity` takes a key-lookup trait (`KeyLookup`: managed keys by hash, id bindings), not
/// the whole store: it does not depend on the store crate; the gateway implements the trait.
#[test]
fn identity_takes_a_key_lookup_not_the_store() {
    assert!(
        !dependencies("identity").contains("countersign-store"),
        "crates/identity depends on the store; give it a `KeyLookup` instead"
    );
    assert!(
        uses("identity", "countersign_store").is_empty(),
        "the store's types in {:?}",
        uses("identity", "countersign_store")
    );
}

/// ARCHITECTURE.md, `crates/mcp`: messages stay raw JSON. The proxy defines no serde model of
/// MCP messages and links no MCP SDK, so fields of newer protocol versions pass through.
#[test]
fn the_mcp_proxy_keeps_messages_raw() {
    for dep in dependencies("mcp") {
        assert!(
            !dep.contains("rmcp") && !dep.contains("mcp-spec") && !dep.contains("mcp_types"),
            "crates/mcp depends on `{dep}`: the proxy keeps MCP messages as raw JSON"
        );
    }
    for (path, text) in sources("mcp") {
        for needle in [
            "derive(Serialize",
            "derive(Deserialize",
            "Deserialize)]",
            "Serialize)]",
        ] {
            assert!(
                !text.contains(needle),
                "{} models messages with `{needle}`: keep them serde_json::Value",
                rel(&path)
            );
        }
    }
}

#[test]
fn masking_is_pure() {
    let allowed: BTreeSet<&str> = [
        "countersign-core",
        "serde",
        "serde_json",
        "thiserror",
        "regex",
        "hmac",
        "sha2",
    ]
    .into();
    assert_pure("mask", &allowed);
}

/// ARCHITECTURE.md: every view of an action and every transition's audit entries pass through
/// the masker. Views are made in one place (`Gateway::view`), entries reach the store in two
/// (`insert_ruled` for a submission, `update` for every later transition), each next to its
/// masking call.
#[test]
fn every_view_and_every_entry_is_masked() {
    let service = std::fs::read_to_string(crates_dir().join("gateway/src/service.rs")).unwrap();
    let gateway: String = sources("gateway").into_iter().map(|(_, t)| t).collect();
    let literals = gateway
        .lines()
        .filter(|l| l.trim() == "ActionView {")
        .count();
    assert_eq!(literals, 1, "views are made in `Gateway::view` only");
    let view = &service[service.find("fn view(").unwrap()..];
    let view = &view[..view.find("\n    }\n").unwrap()];
    assert!(view.contains("mask_record("), "Gateway::view masks: {view}");
    // The one unmasked view: `Gateway::reveal`, after the core's `reveal` rule (`may_reveal`)
    // passed inside the transition that records it.
    let unmasked = gateway
        .lines()
        .filter(|l| l.trim().starts_with("Ok(Revealed {"))
        .count();
    assert_eq!(
        unmasked, 1,
        "an unmasked view is made in `Gateway::reveal` only"
    );
    let reveal = &service[service.find("pub async fn reveal(").unwrap()..];
    let reveal = &reveal[..reveal.find("\n    }\n").unwrap()];
    assert!(
        reveal.contains("rec.reveal(&me") && reveal.contains("Ok(Revealed {"),
        "Gateway::reveal asks the core's rule before it shows anything: {reveal}"
    );
    for (call, masking) in [
        ("self.store.insert_ruled(", "mask_events("),
        ("self.store.update(", "mask_events("),
    ] {
        assert_eq!(gateway.matches(call).count(), 1, "{call} is called once");
        let at = service.find(call).unwrap();
        let before = &service[..at];
        let fn_start = before
            .rfind("    pub async fn ")
            .max(before.rfind("    async fn "))
            .unwrap();
        assert!(
            service[fn_start..at].contains(masking),
            "entries reach `{call}` only after `{masking}`"
        );
    }
}

/// The web console is a front like the API: it reads actions only as the gateway's views
/// (`Gateway::get`, `reviews`, `vote`: masked by `Gateway::view`), never the store, and it
/// calls the core's rules rather than restating them (issue #16).
#[test]
fn the_console_reads_views_not_records() {
    let deps = dependencies("console");
    assert!(
        !deps.contains("countersign-store") && !deps.contains("countersign-policy"),
        "the console reads through the gateway, not the store or policy: {deps:?}"
    );
    for needle in [
        ".store()",
        "ActionView {",
        "ActionRecord {",
        "mask_record",
        "SystemTime",
    ] {
        assert!(
            uses("console", needle).is_empty(),
            "`{needle}` in {:?}: the console shows the gateway's views",
            uses("console", needle)
        );
    }
    assert!(
        !dependencies("http").contains("countersign-console")
            && !dependencies("gateway").contains("countersign-console"),
        "the console sits beside the API, mounted by the bootstrap"
    );
}

/// Traces leave the process (`[telemetry] otlp_endpoint`), so what a span records is reviewed:
/// spans are opened in these files only (each records a short list of fields, none of them a
/// credential or a parameter value; `crates/cli/tests/it/traces.rs` checks what is exported),
/// and `#[instrument]`, which records every argument by default, is used only with `skip_all`.
#[test]
fn spans_are_opened_in_reviewed_places() {
    let reviewed: BTreeSet<&str> = [
        "http/src/trace.rs",
        "gateway/src/service.rs",
        "store/src/op.rs",
    ]
    .into();
    for krate in crates() {
        if krate == "tidy" {
            continue;
        }
        for (path, text) in sources(&krate) {
            let file = rel(&path);
            for needle in ["_span!(", "span!(", "Span::new("] {
                assert!(
                    !text.contains(needle) || reviewed.contains(file.as_str()),
                    "{file} opens a span (`{needle}`): list it here once its fields are known \
                     to carry no credential and no parameter value"
                );
            }
            for (n, line) in text.lines().enumerate() {
                if line.contains("#[instrument") || line.contains("tracing::instrument(") {
                    assert!(
                        line.contains("skip_all"),
                        "{file}:{}: `#[instrument]` records every argument; use `skip_all` and \
                         name the fields",
                        n + 1
                    );
                }
            }
        }
    }
}

/// ARCHITECTURE.md, `crates/store`: a notification is queued only by the write path, in the
/// transaction of the change it tells of. `write.rs` alone decides outbox rows
/// (`NewNotification`), and only the backends' row writers insert them.
#[test]
fn outbox_rows_are_decided_in_the_write_path_only() {
    for krate in crates() {
        for (path, text) in sources(&krate) {
            let file = rel(&path);
            if text.contains("NewNotification {") {
                assert!(
                    file == "store/src/write.rs" || file == "store/src/outbox.rs",
                    "{file} makes an outbox row: rows are decided in store/src/write.rs"
                );
            }
            if text.contains("INSERT INTO outbox") {
                assert!(
                    file == "store/src/outbox.rs" || file == "store/src/postgres.rs",
                    "{file} inserts outbox rows outside the store backends' row writers"
                );
            }
        }
    }
}
