//! A local webhook receiver: records every request and answers from a script (then 200).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

/// One request as received.
#[derive(Clone, Debug)]
pub struct Received {
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub at: Instant,
    /// What it was answered.
    pub status: u16,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct State {
    script: VecDeque<(u16, Option<&'static str>)>,
    always: Option<u16>,
    delay: Option<std::time::Duration>,
    got: Vec<Received>,
}

/// The receiver's handle.
#[derive(Clone, Default)]
pub struct Receiver(Arc<Mutex<State>>);

impl Receiver {
    /// Answers the next requests with these statuses (and `Retry-After` values), then 200.
    pub fn script(&self, answers: &[(u16, Option<&'static str>)]) {
        self.0
            .lock()
            .unwrap()
            .script
            .extend(answers.iter().copied());
    }

    /// Answers every request with `status` (until `None`).
    pub fn always(&self, status: Option<u16>) {
        self.0.lock().unwrap().always = status;
    }

    /// Answers only after `delay` (until `None`).
    pub fn delay(&self, delay: Option<std::time::Duration>) {
        self.0.lock().unwrap().delay = delay;
    }

    pub fn received(&self) -> Vec<Received> {
        self.0.lock().unwrap().got.clone()
    }

    /// Requests answered 2xx.
    pub fn accepted(&self) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| (200..300).contains(&r.status))
            .collect()
    }

    /// Serves on a fresh loopback port; returns its URL.
    pub async fn start(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let me = self.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: Bytes| {
                let me = me.clone();
                async move {
                    let delay = me.0.lock().unwrap().delay;
                    if let Some(d) = delay {
                        tokio::time::sleep(d).await;
                    }
                    me.answer(headers, body)
                }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        format!("http://{addr}/hook")
    }

    fn answer(&self, headers: HeaderMap, body: Bytes) -> Response {
        let mut s = self.0.lock().unwrap();
        let (status, retry_after) = match s.always {
            Some(st) => (st, None),
            None => s.script.pop_front().unwrap_or((200, None)),
        };
        s.got.push(Received {
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
                .collect(),
            body: String::from_utf8_lossy(&body).into_owned(),
            at: Instant::now(),
            status,
        });
        let code = StatusCode::from_u16(status).unwrap();
        if (300..400).contains(&status) {
            return (code, [("location", "/elsewhere")]).into_response();
        }
        match retry_after {
            Some(r) => (code, [("retry-after", r)]).into_response(),
            None => code.into_response(),
        }
    }
}
