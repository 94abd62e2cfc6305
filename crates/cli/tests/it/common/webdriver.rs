//! A real browser for the tests: Debian's headless chromium, driven through chromedriver over
//! the W3C WebDriver protocol. chromedriver runs on a free port for one test and is stopped
//! with it. The dozen commands the tests use are a few JSON requests each over reqwest, which
//! the tests already have; a WebDriver crate would bring some 30 more (a second ICU, `time`,
//! cookies) for them.

use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

/// How W3C WebDriver names an element reference in JSON.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Longest wait for something the page must show: only a hang detector.
const PATIENCE: Duration = Duration::from_secs(30);

/// The program `variable` names, else `default`; a clear failure when it is not there, so a
/// machine without a browser fails the test instead of passing it.
fn program(variable: &str, default: &str, package: &str) -> PathBuf {
    let path = PathBuf::from(std::env::var_os(variable).unwrap_or_else(|| default.into()));
    assert!(
        path.is_file(),
        "{} not found: install Debian's `{package}` package (apt-get install -y chromium chromium-driver; \
         .ci/run does) or point {variable} at it",
        path.display()
    );
    path
}

/// One browser session; ended, with its chromedriver, when dropped.
pub struct Browser {
    http: reqwest::blocking::Client,
    /// `http://127.0.0.1:PORT/session/ID`.
    session: String,
    driver: Child,
    _profile: tempfile::TempDir,
}

/// An element of the current page.
pub struct Element<'a> {
    browser: &'a Browser,
    id: String,
}

impl Browser {
    /// Starts chromedriver and a headless chromium with a fresh profile and a `width`×`height`
    /// window.
    pub fn start(width: u32, height: u32) -> Self {
        let chromium = program("MUSICREC_CHROMIUM", "/usr/bin/chromium", "chromium");
        let chromedriver = program("MUSICREC_CHROMEDRIVER", "/usr/bin/chromedriver", "chromium-driver");
        let profile = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let log = std::fs::File::create(profile.path().join("chromedriver.log")).unwrap();
        let driver = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("{} does not start: {e}", chromedriver.display()));
        let http = reqwest::blocking::Client::builder().timeout(Duration::from_secs(60)).build().unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        while !http.get(format!("{base}/status")).send().is_ok_and(|r| r.status().is_success()) {
            assert!(started.elapsed() < PATIENCE, "chromedriver did not answer on {base} within {PATIENCE:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
        let window = format!("--window-size={width},{height}");
        let user_data = format!("--user-data-dir={}", profile.path().join("profile").display());
        let args: [&str; 11] = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            &window,
            &user_data,
        ];
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium, "args": args},
        }}});
        let mut browser = Self { http, session: base.clone(), driver, _profile: profile };
        let answer = browser.command("POST", "/session", capabilities, &base);
        let id = answer["sessionId"].as_str().unwrap_or_else(|| panic!("no session id in {answer}")).to_string();
        browser.session = format!("{base}/session/{id}");
        browser
    }

    /// `method` on `url` with `body`; the `value` of the answer, or a panic naming the error.
    fn command(&self, method: &str, path: &str, body: Value, base: &str) -> Value {
        let url = format!("{base}{path}");
        let request = match method {
            "GET" => self.http.get(&url),
            "DELETE" => self.http.delete(&url),
            _ => self.http.post(&url).json(&body),
        };
        let response = request.send().unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let status = response.status();
        let answer: Value = response.json().unwrap_or_else(|e| panic!("{method} {url}: not JSON: {e}"));
        assert!(status.is_success(), "{method} {path} {body}: {status} {}", answer["value"]);
        answer["value"].clone()
    }

    fn session(&self, method: &str, path: &str, body: Value) -> Value {
        self.command(method, path, body, &self.session)
    }

    pub fn goto(&self, url: &str) {
        self.session("POST", "/url", json!({"url": url}));
    }

    /// The first element matching the CSS `selector`, waiting for one to appear.
    pub fn find(&self, selector: &str) -> Element<'_> {
        let query = format!("return document.querySelector({}) !== null", json!(selector));
        self.wait_until(&format!("an element `{selector}`"), &query);
        let found = self.session("POST", "/element", json!({"using": "css selector", "value": selector}));
        Element { browser: self, id: found[ELEMENT].as_str().unwrap().to_string() }
    }

    /// Runs `script` (a function body; `return` its answer) in the page.
    pub fn execute(&self, script: &str) -> Value {
        self.session("POST", "/execute/sync", json!({"script": script, "args": []}))
    }

    /// Runs `script` until it answers something other than null, false, 0, "" or [], and
    /// returns that answer; a panic naming `what` and the page's status line after
    /// [`PATIENCE`].
    pub fn wait_until(&self, what: &str, script: &str) -> Value {
        let started = Instant::now();
        loop {
            let answer = self.execute(script);
            let empty = match &answer {
                Value::Null | Value::Bool(false) => true,
                Value::Number(n) => n.as_f64() == Some(0.0),
                Value::String(s) => s.is_empty(),
                Value::Array(a) => a.is_empty(),
                Value::Bool(true) | Value::Object(_) => false,
            };
            if !empty {
                return answer;
            }
            if started.elapsed() > PATIENCE {
                let status = self.execute("const s = document.getElementById('status'); return s && s.textContent");
                panic!("the page did not show {what} within {PATIENCE:?}; its status line: {status}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A PNG of the window.
    pub fn screenshot(&self) -> Vec<u8> {
        let encoded = self.session("GET", "/screenshot", Value::Null);
        base64::engine::general_purpose::STANDARD.decode(encoded.as_str().unwrap()).unwrap()
    }
}

impl Element<'_> {
    fn command(&self, method: &str, path: &str, body: Value) -> Value {
        self.browser.session(method, &format!("/element/{}{path}", self.id), body)
    }

    pub fn click(&self) {
        self.command("POST", "/click", json!({}));
    }

    /// Replaces the value of an input with `text`, typed.
    pub fn type_text(&self, text: &str) {
        self.command("POST", "/clear", json!({}));
        self.command("POST", "/value", json!({"text": text}));
    }

    pub fn text(&self) -> String {
        self.command("GET", "/text", Value::Null).as_str().unwrap_or_default().to_string()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ends chromium; then chromedriver itself.
        let _ = self.http.delete(&self.session).send();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
