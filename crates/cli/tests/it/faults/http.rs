//! HTTP faults against `musicrec serve` on the shared run: malformed and hostile requests as a
//! table of raw HTTP/1.1 exchanges (each a status and a fragment of the JSON error naming the
//! parameter, field or limit), then the clients that try to hold the server (silent,
//! half-sent, idle, many under a descriptor limit), shutdown with a half-sent request, Redis
//! down, and reloads of a broken set under load. The in-process versions of the last ones,
//! with exact metric counts, are the service crate's tests (crates/service/tests/api.rs).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::{all_behaved, copy_of_shared, shared};
use crate::common::*;

/// Longest wait for something that must happen: only a hang detector.
const HANG: Duration = Duration::from_secs(10);
/// The admin token, with the ` #` a YAML reading of the variable used to cut off.
const TOKEN: &str = "abcdefghijklmnop #suffix";

/// The served configuration: quick timeouts so that slow clients are dropped within a test.
const SERVED: [(&str, &str); 4] = [
    ("MUSICREC__SERVICE__ADMIN_TOKEN", TOKEN),
    ("MUSICREC__SERVICE__HEADER_READ_TIMEOUT_MS", "300"),
    ("MUSICREC__SERVICE__BODY_READ_TIMEOUT_MS", "300"),
    ("MUSICREC__SERVICE__SHUTDOWN_GRACE_MS", "200"),
];

/// One exchange: the request's parts and the answer it must get.
struct Request {
    name: &'static str,
    method: &'static str,
    /// Path and query; `{user}` is an old user of the run, `{track}` a track with similar ones.
    target: &'static str,
    headers: &'static [(&'static str, &'static str)],
    body: &'static str,
    status: u16,
    /// In the JSON answer's `error` (or, for a success, anywhere in the body).
    says: &'static str,
}

const fn get(name: &'static str, target: &'static str, status: u16, says: &'static str) -> Request {
    Request { name, method: "GET", target, headers: &[], body: "", status, says }
}

const JSON: &[(&str, &str)] = &[("Content-Type", "application/json")];

const fn post_event(name: &'static str, body: &'static str, status: u16, says: &'static str) -> Request {
    Request { name, method: "POST", target: "/events", headers: JSON, body, status, says }
}

const fn call(name: &'static str, method: &'static str, target: &'static str, status: u16) -> Request {
    Request { name, method, target, headers: &[], body: "", status, says: "" }
}

const fn reload(
    name: &'static str,
    auth: &'static [(&'static str, &'static str)],
    status: u16,
    says: &'static str,
) -> Request {
    Request { name, method: "POST", target: "/admin/reload", headers: auth, body: "", status, says }
}

const REQUESTS: &[Request] = &[
    // Parameters.
    get("no user_id", "/recommendations", 400, "user_id"),
    get("user_id not a number", "/recommendations?user_id=abc", 400, "abc"),
    get("user_id past 64 bits", "/recommendations?user_id=99999999999999999999", 400, "99999999999999999999"),
    get("k of 0", "/recommendations?user_id={user}&k=0", 400, "`k`"),
    get("k over max_k", "/recommendations?user_id={user}&k=11", 400, "1..=10"),
    get("k a word", "/recommendations?user_id={user}&k=two", 400, "two"),
    get("offset negative", "/recommendations?user_id={user}&offset=-1", 400, "`offset`"),
    get("offset over max_offset", "/recommendations?user_id={user}&offset=999999", 400, "`offset`"),
    get("a parameter twice", "/recommendations?user_id=1&user_id=2", 400, "more than once"),
    get("an unknown parameter", "/recommendations?user=1", 400, "unknown parameter `user`"),
    get("bad percent-encoding", "/recommendations?user_id=%ZZ", 400, "user_id"),
    get("an unknown user: popular tracks", "/recommendations?user_id=999999999", 200, "\"popular\""),
    get("an old user: the offline list", "/recommendations?user_id={user}&k=3", 200, "\"offline\""),
    get("similar without track_id", "/similar", 400, "track_id"),
    get("similar to an unknown track", "/similar?track_id=999999999", 404, "999999999"),
    get("similar k negative", "/similar?track_id={track}&k=-1", 400, "`k`"),
    get("popular k over the bound", "/popular?k=1000", 400, "`k`"),
    get("events without user_id", "/events", 400, "user_id"),
    get("events k over the bound", "/events?user_id=1&k=11", 400, "`k`"),
    get("no such endpoint", "/nowhere", 404, "no such endpoint"),
    // Event bodies.
    post_event("truncated JSON", "{\"user_id\": 1,", 400, "EOF"),
    Request {
        headers: &[],
        ..post_event("no Content-Type", "{\"user_id\": 1, \"track_id\": {track}}", 415, "Content-Type")
    },
    Request {
        headers: &[("Content-Type", "text/plain")],
        ..post_event("text/plain", "{\"user_id\": 1, \"track_id\": {track}}", 415, "Content-Type")
    },
    post_event("no track_id", "{\"user_id\": 1}", 422, "track_id"),
    post_event("user_id a string", "{\"user_id\": \"a\", \"track_id\": {track}}", 422, "user_id"),
    post_event("user_id a fraction", "{\"user_id\": 1.5, \"track_id\": {track}}", 422, "user_id"),
    post_event("user_id past 64 bits", "{\"user_id\": 1180591620717411303424, \"track_id\": {track}}", 422, "user_id"),
    post_event("an unknown track", "{\"user_id\": 1, \"track_id\": 999999999}", 422, "999999999"),
    post_event("an array", "[1, 100]", 400, "must be a JSON object"),
    post_event("a number", "7", 400, "not a number"),
    post_event("an empty body", "", 400, "EOF"),
    post_event("a body over max_body_bytes", "{big}", 413, "service.max_body_bytes"),
    post_event("a good event", "{\"user_id\": 7, \"track_id\": {track}}", 201, ""),
    // Methods.
    call("DELETE /recommendations", "DELETE", "/recommendations", 405),
    call("PUT /events", "PUT", "/events", 405),
    call("GET /admin/reload", "GET", "/admin/reload", 405),
    call("POST /health", "POST", "/health", 405),
    // The admin endpoint.
    reload("reload without a token", &[], 401, "token"),
    reload("reload with a wrong token", &[("Authorization", "Bearer wrong")], 401, "token"),
    reload("reload with the token cut at ` #`", &[("Authorization", "Bearer abcdefghijklmnop")], 401, "token"),
    reload(
        "reload with the whole token",
        &[("Authorization", "Bearer abcdefghijklmnop #suffix")],
        200,
        "model_version",
    ),
    // Heads over the limits, answered in JSON from the head alone.
    get("a target over max_uri_bytes", "/popular?k=1&pad={long}", 414, "service.max_uri_bytes"),
    Request {
        headers: &[("X-Pad", "{long}")],
        ..get("headers over max_header_bytes", "/health", 431, "service.max_header_bytes")
    },
    Request {
        headers: &[("Content-Type", "application/json"), ("Content-Length", "100000")],
        ..call("Content-Length over max_body_bytes, body never sent", "POST", "/events", 413)
    },
];

/// The text of a request: `{user}`, `{track}`, `{big}` (a 10 kB body) and `{long}` (20 kB)
/// filled in; a Content-Length unless the case sets its own.
fn request_text(r: &Request, user: i64, track: i64) -> String {
    let fill = |s: &str| {
        s.replace("{user}", &user.to_string())
            .replace("{track}", &track.to_string())
            .replace(
                "{big}",
                &format!("{{\"user_id\": 1, \"track_id\": {track}, \"pad\": \"{}\"}}", "x".repeat(10_000)),
            )
            .replace("{long}", &"y".repeat(20_000))
    };
    let body = fill(r.body);
    let mut text = format!("{} {} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n", r.method, fill(r.target));
    for (name, value) in r.headers {
        text.push_str(&format!("{name}: {}\r\n", fill(value)));
    }
    if !r.headers.iter().any(|(name, _)| *name == "Content-Length") && (r.method == "POST" || !body.is_empty()) {
        text.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    text + "\r\n" + &body
}

/// Sends `bytes` on a new connection and reads until the server closes it.
fn exchange(addr: &str, bytes: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(HANG)).unwrap();
    stream.write_all(bytes).unwrap();
    read_until_closed(stream)
}

fn read_until_closed(mut stream: TcpStream) -> String {
    stream.set_read_timeout(Some(HANG)).unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("the server keeps the connection open: {e}"),
        }
    }
    String::from_utf8_lossy(&answer).into_owned()
}

/// Status and body of a raw answer (0 and the text when it is none).
fn parse_answer(answer: &str) -> (u16, String) {
    let status = answer.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, body.to_string())
}

fn addr(service: &ServiceProcess) -> String {
    service.url.trim_start_matches("http://").to_string()
}

/// A track of the run with similar tracks (the first of ALS's similar list).
fn similar_track() -> i64 {
    let file = stage_dir(&shared().art, "als").join("similar.parquet");
    musicrec_data::parquet_io::read_i64_column(&file, "track_id").unwrap()[0]
}

#[test]
fn malformed_and_hostile_requests() {
    let run = shared();
    let service = ServiceProcess::start(&run.art, &SERVED);
    let (user, track) = (run.old_user(), similar_track());
    let addr = addr(&service);
    let results = REQUESTS
        .iter()
        .map(|r| {
            let (status, body) = parse_answer(&exchange(&addr, request_text(r, user, track).as_bytes()));
            let json: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            let error = json["error"].as_str().unwrap_or_default();
            let message = if r.status < 300 { body.as_str() } else { error };
            if status != r.status || !message.contains(r.says) {
                return Err(format!("{}: {status} {body:?}, expected {} with {:?}", r.name, r.status, r.says));
            }
            if r.status >= 400 && (json["status"] != r.status || error.is_empty()) && r.status != 405 {
                return Err(format!("{}: not a JSON error naming its status: {body:?}", r.name));
            }
            Ok(())
        })
        .collect();
    all_behaved("HTTP request", results);
    // Nothing above was the server's fault.
    let metrics = reqwest::blocking::get(format!("{}/metrics", service.url)).unwrap().text().unwrap();
    assert!(!metrics.contains("status=\"500\""), "{metrics}");
}

/// Clients that try to hold the server: each is dropped by a timeout, and the server answers
/// others meanwhile.
#[test]
fn slow_silent_and_idle_clients_are_dropped() {
    let service = ServiceProcess::start(&shared().art, &SERVED);
    let addr = addr(&service);
    let open = |bytes: &[u8]| {
        let mut stream = TcpStream::connect(&addr).unwrap();
        stream.write_all(bytes).unwrap();
        stream
    };
    let silent = open(b"");
    let half_head = open(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ");
    let half_body = open(
        b"POST /events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 40\r\n\r\n{\"user_id\"",
    );
    let idle = open(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(parse_answer(&exchange(&addr, b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")).0, 200);
    assert_eq!(read_until_closed(silent), "", "a silent connection is closed");
    assert_eq!(read_until_closed(half_head), "", "a half-sent head is closed");
    let (status, body) = parse_answer(&read_until_closed(half_body));
    assert!(status == 408 && body.contains("service.body_read_timeout_ms"), "{status} {body}");
    let (status, _) = parse_answer(&read_until_closed(idle));
    assert_eq!(status, 200, "an idle keep-alive connection is answered, then closed");
}

/// 140 half-sent requests against a server limited to 128 descriptors: only the header
/// timeout frees them, and /health must answer while they stay.
#[test]
fn half_sent_requests_under_a_descriptor_limit_do_not_stop_health() {
    let mut cmd = std::process::Command::new("sh");
    cmd.arg("-c")
        .arg("ulimit -n 128 && exec \"$0\" serve --artifacts \"$1\" --addr 127.0.0.1:0")
        .arg(env!("CARGO_BIN_EXE_musicrec"))
        .arg(shared().art())
        .envs(SERVED);
    let service = ServiceProcess::spawn(cmd);
    let addr = addr(&service);
    let clients: Vec<TcpStream> = (0..140)
        .filter_map(|_| {
            let mut stream = TcpStream::connect(&addr).ok()?;
            stream.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n").ok()?;
            Some(stream)
        })
        .collect();
    assert!(clients.len() >= 100, "{} clients connected", clients.len());
    let started = Instant::now();
    let health = loop {
        let answer = TcpStream::connect(&addr).ok().map(|mut s| {
            let _ = s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            read_until_closed(s)
        });
        match answer.map(|a| parse_answer(&a).0) {
            Some(200) => break 200,
            other if started.elapsed() > HANG => break other.unwrap_or(0),
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    assert_eq!(health, 200, "/health does not answer under descriptor pressure");
    drop(clients);
}

/// SIGTERM with a half-sent request open: the server stops within its grace period, exit 0.
#[test]
fn sigterm_does_not_wait_on_a_half_sent_request() {
    let mut service = ServiceProcess::start(
        &shared().art,
        &[SERVED[0], ("MUSICREC__SERVICE__HEADER_READ_TIMEOUT_MS", "3600000"), SERVED[3]],
    );
    let mut half = TcpStream::connect(addr(&service)).unwrap();
    half.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(100));
    service.signal("TERM");
    let exit = service.exit_within(HANG).expect("SIGTERM waits on a half-sent request");
    assert!(exit.success(), "{exit}");
    drop(half);
}

/// A Redis that refuses connections: every request is answered without the online part, and
/// the circuit breaker opens instead of paying a failure per request.
#[test]
fn redis_down_is_served_through_the_circuit_breaker() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("redis://{}", closed.local_addr().unwrap());
    drop(closed);
    let service = ServiceProcess::start(&shared().art, &[("MUSICREC__SERVICE__REDIS_URL", &url)]);
    let user = shared().old_user();
    for _ in 0..20 {
        let body = service.get(&format!("/recommendations?user_id={user}&k=3"));
        assert_eq!(body["recommendations"].as_array().map(Vec::len), Some(3), "{body}");
    }
    let metrics = reqwest::blocking::get(format!("{}/metrics", service.url)).unwrap().text().unwrap();
    let opened: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("musicrec_redis_circuit_opened_total "))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{metrics}"));
    assert!(opened >= 1, "{metrics}");
}

/// A set broken in place while the service serves it under load: the reload (POST and SIGHUP)
/// is refused naming the file, the old set stays served, and no request fails.
#[test]
fn reloading_a_broken_set_under_load_keeps_the_old_one() {
    let tmp = tempfile::tempdir().unwrap();
    let art = copy_of_shared(tmp.path());
    let service = ServiceProcess::start(&art, &SERVED);
    let user = shared().old_user();
    let stop = Arc::new(AtomicBool::new(false));
    let failed = Arc::new(AtomicU64::new(0));
    let load: Vec<_> = (0..2)
        .map(|_| {
            let (url, stop, failed) = (service.url.clone(), stop.clone(), failed.clone());
            std::thread::spawn(move || {
                let client = reqwest::blocking::Client::new();
                let mut ok = 0u64;
                while !stop.load(Ordering::Relaxed) || ok < 20 {
                    match client.get(format!("{url}/recommendations?user_id={user}")).send() {
                        Ok(r) if r.status() == 200 => ok += 1,
                        _ => {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    let version = service.get("/health")["model_version"].clone();
    let reload = || {
        let response = reqwest::blocking::Client::new()
            .post(format!("{}/admin/reload", service.url))
            .bearer_auth(TOKEN)
            .send()
            .unwrap();
        (response.status().as_u16(), response.json::<serde_json::Value>().unwrap())
    };
    let file = stage_dir(&art, "ranking").join("recommendations.parquet");
    let len = std::fs::metadata(&file).unwrap().len() as usize;
    std::fs::write(&file, vec![b'x'; len]).unwrap();
    let (status, body) = reload();
    assert_eq!(status, 422, "{body}");
    assert!(body["error"].as_str().unwrap().contains("still serving"), "{body}");
    let health = service.get("/health");
    assert_eq!(health["model_version"], version);
    assert!(health["last_reload_error"].as_str().unwrap_or_default().contains("recommendations.parquet"), "{health}");

    std::fs::remove_file(stage_dir(&art, "matrices").join("manifest.json")).unwrap();
    let (status, body) = reload();
    assert!(status == 422 && body["error"].as_str().unwrap().contains("matrices"), "{status} {body}");
    service.signal("HUP");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(service.get("/health")["model_version"], version, "SIGHUP keeps the old set too");

    stop.store(true, Ordering::Relaxed);
    for thread in load {
        thread.join().unwrap();
    }
    assert_eq!(failed.load(Ordering::Relaxed), 0);
}
