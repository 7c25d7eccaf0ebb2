//! A minimal net server for benchmarks and process-level tests: answers
//! `GET /` and `GET /hello` with the fixed ~300-byte JSON body that
//! benches/http_vs_nginx.sh also has nginx serve, `GET /slow?ms=N` after a
//! timer, anything else with 404. Prints `listening on ADDR` once serving,
//! stops on SIGTERM/SIGINT and exits 0 after a graceful shutdown.
//!
//! Usage: net-hello [--addr 127.0.0.1:8080] [--shards N] [--no-pin]

use std::process::ExitCode;
use std::time::Duration;

use net::{Handler, Request, Response, Server, ServerConfig};

const HELLO: &[u8] = include_bytes!("../../../benches/http/hello.json");

struct Hello;

impl Handler for Hello {
    async fn handle(&self, req: &mut Request<'_>) -> Response {
        match (req.method(), req.path()) {
            ("GET", "/") | ("GET", "/hello") => Response::json(200, HELLO.to_vec()),
            ("GET", "/slow") => {
                let ms = req
                    .query_param("ms")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(100);
                glommio::timer::sleep(Duration::from_millis(ms)).await;
                Response::new(200).body(format!("slept {ms}").into_bytes())
            }
            _ => Response::json(404, br#"{"error":"not found"}"#.to_vec()),
        }
    }
}

fn main() -> ExitCode {
    let mut config = ServerConfig::default();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = match arg.as_str() {
            "--no-pin" => {
                config.pin_to_cores = false;
                continue;
            }
            "--addr" | "--shards" => args.next(),
            _ => None,
        };
        let parsed = match (arg.as_str(), value) {
            ("--addr", Some(v)) => v.parse().map(|a| config.addr = a).is_ok(),
            ("--shards", Some(v)) => v.parse().map(|s| config.shards = s).is_ok(),
            _ => false,
        };
        if !parsed {
            eprintln!("usage: net-hello [--addr IP:PORT] [--shards N] [--no-pin]");
            return ExitCode::from(2);
        }
    }
    let server = match Server::start(config, |_| async { Hello }) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("net-hello: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Handlers first: whoever reads the line below may signal at once.
    server.shutdown_on_signals();
    println!("listening on {}", server.local_addr());
    match server.join() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("net-hello: {e}");
            ExitCode::FAILURE
        }
    }
}
