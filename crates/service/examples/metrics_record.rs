//! The cost of recording one request in the metrics, the work every request does in the
//! `track` middleware and the recommendations handler: `cargo run --release -p
//! musicrec-service --example metrics_record -- [MILLIONS] [THREADS]`. THREADS threads
//! record MILLIONS million requests each, spread over the endpoints and statuses a load test
//! answers (one recommended track per request), into one shared `Metrics`; prints nanoseconds
//! per request (wall time × threads / requests).
//! The same file builds against any version of `metrics.rs` with this interface, so an old and
//! a new version compare in one session.

use std::time::{Duration, Instant};

use musicrec_service::blend::Source;
use musicrec_service::metrics::Metrics;

fn main() {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<usize>().expect("MILLIONS and THREADS are integers"));
    let millions = args.next().unwrap_or(10);
    let threads = args.next().unwrap_or(2);
    let metrics = Metrics::default();
    let endpoints = ["/recommendations", "/events", "/similar", "/popular"].map(Metrics::endpoint_index);
    let statuses = [200, 200, 200, 201, 400, 429];
    let per_thread = millions * 1_000_000;
    let started = Instant::now();
    std::thread::scope(|scope| {
        for t in 0..threads {
            let (metrics, endpoints) = (&metrics, &endpoints);
            scope.spawn(move || {
                for i in 0..per_thread {
                    let n = i + t;
                    let elapsed = Duration::from_nanos(200_000 + (n % 997) as u64 * 1_000);
                    metrics.record_request(endpoints[n % endpoints.len()], statuses[n % statuses.len()], elapsed);
                    metrics.recommended(Source::ALL[n % Source::ALL.len()]);
                }
            });
        }
    });
    let seconds = started.elapsed().as_secs_f64();
    let ns = seconds * threads as f64 * 1e9 / (per_thread * threads) as f64;
    println!("{threads} threads × {millions}M requests: {ns:.1} ns per request (recorded and one source counted)");
    let counted: u64 = ["/recommendations", "/events", "/similar", "/popular"]
        .iter()
        .flat_map(|e| statuses.iter().map(move |&s| (e, s)))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .map(|(e, s)| metrics.requests(e, s))
        .sum();
    assert_eq!(counted, (per_thread * threads) as u64, "every request counted once");
}
