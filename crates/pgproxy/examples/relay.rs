//! A do-nothing TCP relay: the ceiling a PostgreSQL proxy on this machine can reach.
//!
//! `bench/pg-proxy.sh` runs pgbench through it beside the real proxy, so the cost of a third
//! process moving every message across loopback (two more socket hops per message, two more
//! wake-ups) is measured in the same run, apart from what `countersign pg` adds on top
//! (parsing, policy, the durable record). Same runtime as `countersign`: tokio's multi-thread
//! scheduler with one worker per core.
//!
//! `relay LISTEN_ADDR UPSTREAM_ADDR`, e.g. `relay 127.0.0.1:18773 127.0.0.1:5432`.

use std::process::ExitCode;

use tokio::net::{TcpListener, TcpStream};

#[tokio::main]
async fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(upstream)) = (args.next(), args.next()) else {
        eprintln!("usage: relay LISTEN_ADDR UPSTREAM_ADDR");
        return ExitCode::from(2);
    };
    let listener = match TcpListener::bind(&listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("relay: cannot listen on {listen}: {e}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!("relay listening on {listen}, to {upstream}");
    loop {
        let (mut down, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                eprintln!("relay: accept: {e}");
                continue;
            }
        };
        let upstream = upstream.clone();
        tokio::spawn(async move {
            let mut up = match TcpStream::connect(&upstream).await {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("relay: cannot reach {upstream}: {e}");
                    return;
                }
            };
            // As the proxy does: small protocol messages go out at once.
            let _ = down.set_nodelay(true);
            let _ = up.set_nodelay(true);
            let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
        });
    }
}
