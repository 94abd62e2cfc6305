//! `musicrec serve` as a child process on a free port, talked to with a real HTTP client.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use serde_json::Value;

use super::command;

pub struct ServiceProcess {
    child: Child,
    pub url: String,
    http: reqwest::blocking::Client,
}

impl ServiceProcess {
    /// Serves `art` with the configuration `env`; returns once it listens.
    pub fn start(art: &Path, env: &[(&str, &str)]) -> Self {
        Self::spawn(command(&["serve", "--artifacts", art.to_str().unwrap(), "--addr", "127.0.0.1:0"], env))
    }

    /// Starts `cmd`, a `musicrec serve` (possibly wrapped, e.g. in a shell setting limits);
    /// returns once it listens.
    pub fn spawn(mut cmd: Command) -> Self {
        let mut child = cmd
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let mut seen = Vec::new();
        let addr = loop {
            let Some(line) = lines.next() else { panic!("the service stopped before listening:\n{}", seen.join("\n")) };
            let line = plain(&line.unwrap());
            if line.contains("serving")
                && let Some(addr) = line.split("addr=").nth(1)
            {
                break addr.split_whitespace().next().unwrap().to_string();
            }
            seen.push(line);
        };
        // Keep draining its log so that it never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        Self { child, url: format!("http://{addr}"), http: reqwest::blocking::Client::new() }
    }

    pub fn get(&self, path_and_query: &str) -> Value {
        let response = self.http.get(format!("{}{path_and_query}", self.url)).send().unwrap();
        assert_eq!(response.status(), 200, "GET {path_and_query}");
        response.json().unwrap()
    }

    /// POST /events, which must be acknowledged.
    pub fn listen(&self, user: i64, track: i64) {
        let body = serde_json::json!({"user_id": user, "track_id": track});
        let response = self.http.post(format!("{}/events", self.url)).json(&body).send().unwrap();
        assert_eq!(response.status(), 201, "{}", response.text().unwrap());
    }

    /// Track ids of a JSON list of `{"track_id": ...}` objects.
    pub fn track_ids(list: &Value) -> Vec<i64> {
        list.as_array().unwrap().iter().map(|r| r["track_id"].as_i64().unwrap()).collect()
    }

    /// Sends signal `name` (`HUP`, `TERM`) to the service.
    pub fn signal(&self, name: &str) {
        let sent = Command::new("kill").arg(format!("-{name}")).arg(self.child.id().to_string()).status();
        assert!(sent.unwrap().success(), "kill -{name}");
    }

    /// Waits up to `limit` for the service to exit; its exit status, `None` if it did not.
    pub fn exit_within(&mut self, limit: std::time::Duration) -> Option<std::process::ExitStatus> {
        let started = std::time::Instant::now();
        while started.elapsed() < limit {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        None
    }

    /// SIGKILL: no shutdown, nothing flushed on the way out.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A log line without its terminal colour codes (`ESC [ ... m`).
fn plain(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            chars.by_ref().find(|&c| c == 'm');
        } else {
            out.push(c);
        }
    }
    out
}
