//! The web page in a real browser (headless chromium) against a real `musicrec serve` of a tiny
//! run: find a user, see their recommendations and page through them, play a track and see the
//! online part appear, look up similar tracks; then the API docs page lists the operations and
//! sends one.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use musicrec_data::parquet_io::read_i64_column;
use serde_json::Value;

use crate::common::webdriver::Browser;
use crate::common::{TinyRun, command, stage_dir};

/// `musicrec serve` in the background; killed when dropped.
struct Serving(Child);

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `musicrec serve` of `art` on a free port, once its /health answers; its base URL.
fn serve(art: &std::path::Path) -> (Serving, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    let child = command(&["serve", "--artifacts", art.to_str().unwrap(), "--addr", &addr], &[])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let (serving, url) = (Serving(child), format!("http://{addr}"));
    let started = Instant::now();
    while !reqwest::blocking::get(format!("{url}/health")).is_ok_and(|r| r.status().is_success()) {
        assert!(started.elapsed() < Duration::from_secs(60), "musicrec serve did not answer on {addr}");
        std::thread::sleep(Duration::from_millis(100));
    }
    (serving, url)
}

/// A JavaScript expression: `[track_id, source]` of each row of the track list `list` (a CSS
/// selector).
fn rows(list: &str) -> String {
    format!(
        "[...document.querySelectorAll('{list} li.track')].map(li => [Number(li.dataset.track), li.dataset.source || null])"
    )
}

fn pairs(answer: &Value) -> Vec<(i64, String)> {
    answer
        .as_array()
        .unwrap()
        .iter()
        .map(|row| (row[0].as_i64().unwrap(), row[1].as_str().unwrap_or_default().to_string()))
        .collect()
}

#[test]
#[ignore = "needs Debian's chromium and chromedriver (run by .ci/run, which installs them)"]
fn the_web_page_in_headless_chromium_shows_a_users_blend_and_how_a_listen_changes_it() {
    let tiny = TinyRun::generated(3)
        .config(&[("MUSICREC__ALS__FACTORS", "8"), ("MUSICREC__BPR__FACTORS", "8"), ("MUSICREC__BPR__ITERATIONS", "3")])
        .build();
    let old_user =
        read_i64_column(&stage_dir(&tiny.art, "ranking").join("recommendations.parquet"), "user_id").unwrap()[0];
    let (_serving, url) = serve(&tiny.art);
    let browser = Browser::start(1280, 1000);

    browser.goto(&format!("{url}/"));
    browser.wait_until("the model version", "return document.getElementById('model').textContent.includes('model ')");

    // Find a user: their offline list, nothing played yet.
    browser.find("#user-id").type_text(&old_user.to_string());
    browser.find("#show").click();
    let recs = pairs(&browser.wait_until("recommendations", &format!("return {}", rows("#recs"))));
    assert_eq!(recs.len(), 10, "{recs:?}");
    assert!(recs.iter().all(|(_, source)| source == "offline"), "{recs:?}");
    let recent = browser.find("#recent").text();
    assert!(recent.contains("none yet"), "{recent}");

    // More: the next page (offset 10) appended, as the API gives it.
    browser.find("#more").click();
    let paged = pairs(
        &browser
            .wait_until("the second page", &format!("const r = {}; return r.length > 10 ? r : null", rows("#recs"))),
    );
    let second: Value =
        reqwest::blocking::get(format!("{url}/recommendations?user_id={old_user}&k=10&offset=10&fields=ids"))
            .unwrap()
            .json()
            .unwrap();
    let second: Vec<(i64, String)> = second["recommendations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["track_id"].as_i64().unwrap(), t["source"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(paged[..10], recs[..], "the first page stays");
    assert_eq!(paged[10..], second[..], "the second page is the API's offset 10");

    // A random user: the button fills in a user the run knows, with an offline list.
    browser.execute("document.getElementById('user-id').value = ''");
    browser.find("#random").click();
    browser.wait_until("a random user", "return /^[0-9]+$/.test(document.getElementById('user-id').value)");
    let random = pairs(&browser.wait_until("the random user's recommendations", &format!("return {}", rows("#recs"))));
    assert!(!random.is_empty() && random.iter().all(|(_, source)| source == "offline"), "{random:?}");

    // Play the first recommendation: it becomes a recent listen, leaves the list, and the
    // online part (similar tracks, fold-in) comes in, marked as new.
    let played = random[0].0;
    browser.find("#recs li.track button.play").click();
    browser.wait_until(
        "the played track among the recent listens",
        &format!("return {}.some(r => r[0] === {played})", rows("#recent")),
    );
    let after = pairs(&browser.wait_until(
        "an online source in the recommendations",
        &format!(
            "const r = {}; return r.some(x => x[1] !== 'offline' && x[1] !== 'popular') ? r : null",
            rows("#recs")
        ),
    ));
    assert!(after.iter().all(|(track, _)| *track != played), "a played track is not recommended: {after:?}");
    let mix = browser.find("#mix").text();
    assert!(mix.starts_with("online "), "{mix}");
    let new = browser.execute("return document.querySelectorAll('#recs li.track.new').length");
    assert!(new.as_u64().unwrap() > 0, "the tracks the listen brought are marked");

    // Similar tracks of the played one.
    browser.find("#recent li.track button.similar").click();
    let similar = pairs(&browser.wait_until("similar tracks", &format!("return {}", rows("#similar"))));
    assert!(
        similar.iter().all(|(track, source)| *track != played && ["als", "bpr"].contains(&source.as_str())),
        "{similar:?}"
    );
    assert!(browser.find("#similar-of").text().contains(&played.to_string()));

    // The clicks above scrolled the page to their buttons; the picture in the docs shows it
    // from the top.
    browser.execute("window.scrollTo(0, 0)");
    let png = browser.screenshot();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
    // The viewport: the window less what headless chromium keeps for its own frame.
    let (width, height) =
        (u32::from_be_bytes(png[16..20].try_into().unwrap()), u32::from_be_bytes(png[20..24].try_into().unwrap()));
    assert!(width == 1280 && (600..=1000).contains(&height), "{width}×{height}");
    // `MUSICREC_SCREENSHOT=<path>` keeps it (docs/img/web.png is made so).
    let keep = std::env::var_os("MUSICREC_SCREENSHOT").map_or_else(|| tiny.scratch("web.png"), Into::into);
    std::fs::write(&keep, &png).unwrap();

    // The docs page lists every operation of the OpenAPI document and sends one.
    browser.goto(&format!("{url}/docs"));
    let listed = browser
        .wait_until("the operations", "return [...document.querySelectorAll('.op summary')].map(s => s.textContent)");
    let listed: Vec<&str> = listed.as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
    for operation in ["GET/recommendations", "POST/events", "GET/similar", "GET/popular", "GET/users/random"] {
        assert!(listed.iter().any(|s| s.starts_with(operation)), "{operation} missing from {listed:?}");
    }
    browser.find("#get--popular summary").click();
    browser.find("#get--popular input[name=k]").type_text("3");
    browser.find("#get--popular button.send").click();
    let answer = browser.wait_until(
        "the answer",
        "const a = document.querySelector('#get--popular .answer'); return a.dataset.status ? a.textContent : null",
    );
    let answer = answer.as_str().unwrap();
    assert!(answer.contains("GET /popular?k=3\n200") && answer.contains("\"popular\""), "{answer}");
}
