//! `musicrec serve` as a child process on a free port, talked to with a real HTTP client.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};

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
        let mut cmd = command(&["serve", "--artifacts", art.to_str().unwrap(), "--addr", "127.0.0.1:0"], env);
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
