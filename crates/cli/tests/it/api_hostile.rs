//! Hostile clients against the server itself: slow headers, stalled bodies, idle keep-alive
//! connections, more connections than allowed, made-up methods that would grow the metrics,
//! and what the first start leaves on disk (file modes, hidden policy files).

use crate::support::{client, code, write_config, Gw};
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Short limits so each attack is seen through within a few seconds.
const SHORT: &str = "header_read_timeout = \"1s\"\nrequest_body_timeout = \"1s\"\n";

fn addr(gw: &Gw) -> String {
    gw.url.trim_start_matches("http://").to_string()
}

/// Reads until the server closes the connection (or `limit` passes); returns what was read and
/// whether it was closed.
async fn read_until_closed(tcp: &mut TcpStream, limit: Duration) -> (String, bool) {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, tcp.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&out).into(), true),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => return (String::from_utf8_lossy(&out).into(), false),
        }
    }
}

/// The server answers a normal request quickly, on a new connection (a pooled one may be the
/// one the 1 s idle limit is closing at that moment).
async fn responsive(gw: &Gw) {
    let fresh = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let start = Instant::now();
    let resp = fresh
        .get(format!("{}/healthz", gw.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_sent_byte_by_byte_are_cut_off() {
    let gw = Gw::start_with(SHORT).await;
    let mut tcp = TcpStream::connect(addr(&gw)).await.unwrap();
    let request =
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let start = Instant::now();
    let mut closed = false;
    for byte in request {
        if tcp.write_all(&[*byte]).await.is_err() {
            closed = true;
            break;
        }
        responsive(&gw).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        if start.elapsed() > Duration::from_secs(4) {
            break;
        }
    }
    if !closed {
        let (text, was_closed) = read_until_closed(&mut tcp, Duration::from_secs(3)).await;
        assert!(was_closed, "still open after {:?}", start.elapsed());
        assert!(!text.contains("200 OK"), "{text}");
    }
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    responsive(&gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_body_is_refused_and_the_connection_closed() {
    let gw = Gw::start_with(SHORT).await;
    let mut tcp = TcpStream::connect(addr(&gw)).await.unwrap();
    tcp.write_all(
        b"POST /v1/actions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer tok-bot\r\n\
          Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"action\":",
    )
    .await
    .unwrap();
    let start = Instant::now();
    responsive(&gw).await;
    let (text, closed) = read_until_closed(&mut tcp, Duration::from_secs(4)).await;
    assert!(closed, "still open after {:?}: {text}", start.elapsed());
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("request_timeout"), "{text}");
    responsive(&gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed() {
    let gw = Gw::start_with(SHORT).await;
    // One that never sends anything.
    let mut silent = TcpStream::connect(addr(&gw)).await.unwrap();
    // One that sends a request, then keeps the connection alive without a next one.
    let mut kept = TcpStream::connect(addr(&gw)).await.unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let start = Instant::now();
    let (text, closed) = read_until_closed(&mut kept, Duration::from_secs(4)).await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(closed, "keep-alive still open after {:?}", start.elapsed());
    let (_, closed) = read_until_closed(&mut silent, Duration::from_secs(4)).await;
    assert!(
        closed,
        "silent connection still open after {:?}",
        start.elapsed()
    );
    responsive(&gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_limit_are_closed_and_the_server_recovers() {
    let gw = Gw::start_with(&format!("{SHORT}max_connections = 4\n")).await;
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(TcpStream::connect(addr(&gw)).await.unwrap());
    }
    // Let the server accept them all before the one too many.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut extra = TcpStream::connect(addr(&gw)).await.unwrap();
    let _ = extra
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    let (text, closed) = read_until_closed(&mut extra, Duration::from_millis(800)).await;
    assert!(closed, "the fifth connection was kept");
    assert!(text.is_empty(), "the fifth connection was served: {text}");
    // The held ones time out (header timeout), freeing their slots.
    for tcp in &mut held {
        let (_, closed) = read_until_closed(tcp, Duration::from_secs(4)).await;
        assert!(closed);
    }
    responsive(&gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn made_up_methods_and_paths_do_not_grow_the_metrics() {
    let gw = Gw::start().await;
    let metrics = || async {
        crate::support::get_text(&gw.http, format!("{}/metrics", gw.url))
            .await
            .len()
    };
    for n in 0..20 {
        let m = Method::from_bytes(format!("WARM{n}").as_bytes()).unwrap();
        let _ = gw.http.request(m, format!("{}/x{n}", gw.url)).send().await;
    }
    let _ = metrics().await;
    let before = metrics().await;
    for n in 0..600 {
        let m = Method::from_bytes(format!("M{n}X").as_bytes()).unwrap();
        let path = if n % 2 == 0 {
            format!("/v1/actions/{n}")
        } else {
            format!("/no/such/{n}")
        };
        let _ = gw.http.request(m, format!("{}{path}", gw.url)).send().await;
    }
    let after = metrics().await;
    // Before the fix each made-up method added a series (~2.8 KB each: ~1.7 MB here).
    assert!(
        after <= before + 4096,
        "metrics grew from {before} to {after} bytes"
    );
    let text = crate::support::get_text(&gw.http, format!("{}/metrics", gw.url)).await;
    assert!(text.contains("method=\"other\""), "{text}");
    assert!(!text.contains("M7X"), "{text}");
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_start_leaves_private_files_and_ignores_hidden_policies() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let config_path = write_config(dir.path(), "");
    // A forbid-everything policy an editor or an attacker left as a dot-file.
    std::fs::write(
        dir.path().join("policies/.hidden.cedar"),
        "@id(\"hidden\") forbid (principal, action, resource);\n",
    )
    .unwrap();
    let (url, server) = crate::support::serve(&config_path).await;
    let gw = Gw::from_parts(url, client(), dir, server);
    let (s, v) = gw
        .post(
            "bot",
            "/v1/actions",
            json!({"action": "logs.read", "resource": "r"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["status"], "allowed", "{v}");
    let data = gw.dir.path().join("data");
    let mut checked = 0;
    for name in [
        "gw.db",
        "gw.db-wal",
        "gw.db-shm",
        "gw.db.grant-signing.key",
        "gw.db.audit-log.key",
    ] {
        let path = data.join(name);
        let Ok(meta) = std::fs::metadata(&path) else {
            assert!(name.ends_with("-wal") || name.ends_with("-shm"), "{name}");
            continue;
        };
        checked += 1;
        assert_eq!(
            meta.permissions().mode() & 0o777,
            0o600,
            "{} is {:o}",
            path.display(),
            meta.permissions().mode() & 0o777
        );
    }
    assert!(checked >= 3);
    let _ = code(&v);
}

/// With `metrics_token_sha256` set, `/metrics` answers only that bearer token: no token, another
/// token (an API key included) and a token differing in its last byte get 401; `/healthz` stays
/// open. A malformed hash is refused at start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_can_require_their_own_bearer_token() {
    use sha2::Digest;
    let dir = tempfile::tempdir().unwrap();
    let hash = hex::encode(sha2::Sha256::digest(b"scrape-me"));
    let config = write_config(dir.path(), &format!("metrics_token_sha256 = \"{hash}\""));
    let (url, server) = crate::support::serve(&config).await;
    let http = client();
    let get = |token: Option<&'static str>| {
        let mut r = http.get(format!("{url}/metrics"));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send()
    };
    for token in [None, Some("scrape-mf"), Some("tok-alice"), Some("")] {
        let resp = get(token).await.unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{token:?}");
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["code"], "unauthenticated", "{token:?}");
    }
    let resp = get(Some("scrape-me")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.text().await.unwrap().contains("# EOF"));
    let health = http.get(format!("{url}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    server.abort();

    let bad = write_config(dir.path(), "metrics_token_sha256 = \"not-hex\"");
    let err = countersign_gateway::config::Config::load(&bad).unwrap_err();
    assert!(err.to_string().contains("metrics_token_sha256"), "{err}");
}

/// With `metrics_listen` set, `/metrics` is served there only (behind its token when one is
/// set) and the API's port answers 404 for it; the metrics port serves nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_can_listen_on_their_own_address_only() {
    use sha2::Digest;
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let hash = hex::encode(sha2::Sha256::digest(b"scrape-me"));
    let config = write_config(
        dir.path(),
        &format!("metrics_listen = \"127.0.0.1:{port}\"\nmetrics_token_sha256 = \"{hash}\""),
    );
    let (url, server) = crate::support::serve(&config).await;
    let http = client();
    let api = http
        .get(format!("{url}/metrics"))
        .bearer_auth("scrape-me")
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), StatusCode::NOT_FOUND);
    let metrics = format!("http://127.0.0.1:{port}");
    let mut ok = None;
    for _ in 0..50 {
        match http
            .get(format!("{metrics}/metrics"))
            .bearer_auth("scrape-me")
            .send()
            .await
        {
            Ok(r) => {
                ok = Some(r);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let r = ok.expect("the metrics address answers");
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.text().await.unwrap().contains("# EOF"));
    let anon = http.get(format!("{metrics}/metrics")).send().await.unwrap();
    assert_eq!(anon.status(), StatusCode::UNAUTHORIZED);
    for path in ["/healthz", "/v1/keys", "/openapi.json"] {
        let r = http.get(format!("{metrics}{path}")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
    }
    server.abort();
}
