//! A hand-made artifact set (every stage the service reads, written through the artifact
//! store with manifests) and a server on 127.0.0.1:0 to talk to with a real HTTP client.
#![allow(dead_code)] // each test file uses its own part of this module

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use arrow_array::{ArrayRef, Float32Array, Int64Array, RecordBatch, StringArray, UInt32Array};
use musicrec_artifacts::layout::MANIFEST_FILE;
use musicrec_artifacts::layout::candidates::{MODEL_FILE, SIMILAR_FILE};
use musicrec_artifacts::layout::matrices::{ITEMS_FILE, USER_ITEM_FILE, USERS_FILE};
use musicrec_artifacts::layout::preprocess::{names_file, track_entities_file};
use musicrec_artifacts::layout::ranking::RECOMMENDATIONS_FILE;
use musicrec_artifacts::{Artifacts, Manifest, OutputFile, Stage, StageWriter};
use musicrec_config::{Config, RateLimit, RateLimitsConfig, Secret, ServiceConfig};
use musicrec_data::CsrMatrix;
use musicrec_data::atomic::write_atomic;
use musicrec_data::parquet_io::write_batch;
use musicrec_data::schema::EntityType;
use musicrec_models::{Als, AlsParams, Recommender, TopItems, TopItemsParams};
use musicrec_service::http::AppState;
use musicrec_service::{Server, Settings};
use serde_json::Value;

/// Tracks 100..=119; old users 1 and 2.
pub const TRACKS: std::ops::RangeInclusive<i64> = 100..=119;
pub const USERS: [i64; 2] = [1, 2];

/// Offline recommendations: user 1's list holds track 100, which the tests also play.
pub fn offline() -> Vec<(i64, Vec<i64>)> {
    vec![(1, vec![110, 100, 111, 112, 113]), (2, vec![114, 115])]
}

pub fn als_similar() -> Vec<(i64, Vec<i64>)> {
    vec![(100, vec![101, 102, 103]), (104, vec![105, 106])]
}

pub fn bpr_similar() -> Vec<(i64, Vec<i64>)> {
    vec![(100, vec![107, 101, 108])]
}

/// Train listens: user 1 played tracks 117 and 119, user 2 tracks 118 and 119, so the popular
/// list (by distinct listeners, ties by lower index) is 119, 117, 118.
fn user_item() -> CsrMatrix {
    let index = |t: i64| (t - TRACKS.start()) as u32;
    let rows = [0, 0, 1, 1];
    let cols = [index(117), index(119), index(118), index(119)];
    CsrMatrix::from_coo(USERS.len(), TRACKS.count(), &rows, &cols, &[1.0; 4])
}

/// The catalogue's names: track `t` is "Song t" by artist `t % 3` ("Artist 0".."Artist 2")
/// and, for even `t`, also artist 3; on album `t / 10` ("Album 10", "Album 11"); genre
/// "rock". Track 119 has no name and no links.
pub fn track_name(track: i64) -> Option<String> {
    (track != 119).then(|| format!("Song {track}"))
}

pub fn track_artists(track: i64) -> Vec<String> {
    let mut artists = vec![format!("Artist {}", track % 3)];
    if track % 2 == 0 {
        artists.push("Artist 3".into());
    }
    if track == 119 { Vec::new() } else { artists }
}

fn names(kind: EntityType, tracks: &[i64]) -> RecordBatch {
    let rows: Vec<(i64, String)> = match kind {
        EntityType::Track => tracks.iter().filter_map(|&t| track_name(t).map(|n| (t, n))).collect(),
        EntityType::Artist => (0..4).map(|a| (a, format!("Artist {a}"))).collect(),
        EntityType::Album => vec![(10, "Album 10".into()), (11, "Album 11".into())],
        EntityType::Genre => vec![(1, "rock".into())],
    };
    RecordBatch::try_from_iter([
        ("id", Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))) as ArrayRef),
        ("name", Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1.as_str()))) as ArrayRef),
    ])
    .unwrap()
}

fn links(kind: EntityType, tracks: &[i64]) -> RecordBatch {
    let mut pairs = Vec::new();
    for &t in tracks.iter().filter(|&&t| t != 119) {
        match kind {
            EntityType::Artist => {
                pairs.push((t, t % 3));
                if t % 2 == 0 {
                    pairs.push((t, 3));
                }
            }
            EntityType::Album => pairs.push((t, t / 10)),
            EntityType::Genre => pairs.push((t, 1)),
            EntityType::Track => {}
        }
    }
    let entity = format!("{}_id", kind.as_str());
    RecordBatch::try_from_iter([
        ("track_id", Arc::new(Int64Array::from_iter_values(pairs.iter().map(|p| p.0))) as ArrayRef),
        (entity.as_str(), Arc::new(Int64Array::from_iter_values(pairs.iter().map(|p| p.1))) as ArrayRef),
    ])
    .unwrap()
}

fn ids(name: &str, ids: Vec<i64>) -> RecordBatch {
    RecordBatch::try_from_iter([(name, Arc::new(Int64Array::from(ids)) as ArrayRef)]).unwrap()
}

fn ranked(lists: &[(i64, Vec<i64>)], key: &str, item: &str) -> RecordBatch {
    let (mut keys, mut items, mut ranks) = (Vec::new(), Vec::new(), Vec::new());
    // Rows in reverse rank order: readers must order by rank, not by row.
    for (k, list) in lists {
        for (r, &i) in list.iter().enumerate().rev() {
            keys.push(*k);
            items.push(i);
            ranks.push(r as u32 + 1);
        }
    }
    let scores: Vec<f32> = ranks.iter().map(|&r| 1.0 / r as f32).collect();
    RecordBatch::try_from_iter([
        (key, Arc::new(Int64Array::from(keys)) as ArrayRef),
        (item, Arc::new(Int64Array::from(items)) as ArrayRef),
        ("score", Arc::new(Float32Array::from(scores)) as ArrayRef),
        ("rank", Arc::new(UInt32Array::from(ranks)) as ArrayRef),
    ])
    .unwrap()
}

/// Writes the whole hand-made artifact set under `root`, every stage with run id `run`.
pub fn write_artifacts(root: &Path, run: &str) {
    let set = ArtifactSet {
        users: USERS.to_vec(),
        tracks: TRACKS.collect(),
        user_item: user_item(),
        als_similar: als_similar(),
        bpr_similar: bpr_similar(),
        offline: offline(),
        als_factors: 2,
        top_n: 3,
    };
    set.write(root, run);
}

/// Everything an artifact set holds, in external ids.
pub struct ArtifactSet {
    pub users: Vec<i64>,
    pub tracks: Vec<i64>,
    /// Train listens, users × tracks (dense indices).
    pub user_item: CsrMatrix,
    pub als_similar: Vec<(i64, Vec<i64>)>,
    pub bpr_similar: Vec<(i64, Vec<i64>)>,
    pub offline: Vec<(i64, Vec<i64>)>,
    pub als_factors: usize,
    pub top_n: usize,
}

impl ArtifactSet {
    pub fn write(&self, root: &Path, run: &str) {
        let artifacts = Artifacts::new(root);
        let fingerprint = "test".to_string();
        let commit = |stage: Stage, files: &dyn Fn(&mut StageWriter)| {
            let mut out = artifacts.begin(stage, run).unwrap();
            files(&mut out);
            out.commit(fingerprint.clone(), Value::Null, &Value::Null).unwrap();
        };
        commit(Stage::Preprocess, &|out| {
            for kind in EntityType::ALL {
                let file = names_file(kind);
                out.add_parquet(write_batch(out.path(&file), &names(kind, &self.tracks)).unwrap());
            }
            for kind in [EntityType::Album, EntityType::Artist, EntityType::Genre] {
                let file = track_entities_file(kind);
                out.add_parquet(write_batch(out.path(&file), &links(kind, &self.tracks)).unwrap());
            }
        });
        commit(Stage::Matrices, &|out| {
            out.add_parquet(write_batch(out.path(USERS_FILE), &ids("user_id", self.users.clone())).unwrap());
            out.add_parquet(write_batch(out.path(ITEMS_FILE), &ids("track_id", self.tracks.clone())).unwrap());
            let bytes = self.user_item.save(&out.path(USER_ITEM_FILE)).unwrap();
            out.add_file(USER_ITEM_FILE, bytes);
        });
        commit(Stage::Als, &|out| {
            let table = ranked(&self.als_similar, "track_id", "similar_track_id");
            out.add_parquet(write_batch(out.path(SIMILAR_FILE), &table).unwrap());
            let params =
                AlsParams { factors: self.als_factors, iterations: 3, min_users_per_item: 1, ..AlsParams::default() };
            let bytes = Als::fit(&params, &self.user_item).unwrap().save(&out.path(MODEL_FILE)).unwrap();
            out.add_file(MODEL_FILE, bytes);
        });
        commit(Stage::Bpr, &|out| {
            let table = ranked(&self.bpr_similar, "track_id", "similar_track_id");
            out.add_parquet(write_batch(out.path(SIMILAR_FILE), &table).unwrap());
        });
        commit(Stage::TopItems, &|out| {
            let model = TopItems::fit(&TopItemsParams { top_n: self.top_n }, &self.user_item).unwrap();
            let bytes = model.save(&out.path(MODEL_FILE)).unwrap();
            out.add_file(MODEL_FILE, bytes);
        });
        write_ranking(root, run, &self.offline);
    }
}

/// The ranking stage's output, written as that stage publishes it: files, then the manifest.
pub fn write_ranking(root: &Path, run: &str, lists: &[(i64, Vec<i64>)]) {
    let dir = Artifacts::new(root).dir(Stage::Ranking);
    std::fs::create_dir_all(&dir).unwrap();
    let written = write_batch(dir.join(RECOMMENDATIONS_FILE), &ranked(lists, "user_id", "track_id")).unwrap();
    let manifest = Manifest {
        format: 1,
        stage: Stage::Ranking.as_str().into(),
        run_id: run.into(),
        started_at: String::new(),
        finished_at: "2026-01-01T00:00:00+00:00".into(),
        duration_s: 0.0,
        peak_rss_bytes: None,
        config_fingerprint: "test".into(),
        params: Value::Null,
        inputs: BTreeMap::new(),
        outputs: vec![OutputFile { file: RECOMMENDATIONS_FILE.into(), rows: Some(written.rows), bytes: written.bytes }],
        summary: Value::Null,
    };
    write_atomic(dir.join(MANIFEST_FILE), &serde_json::to_vec(&manifest).unwrap()).unwrap();
}

pub fn config() -> ServiceConfig {
    ServiceConfig { fold_in: false, ..Config::defaults().service }
}

pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

/// `config()` with POST /admin/reload enabled by `ADMIN_TOKEN`.
pub fn admin_config() -> ServiceConfig {
    ServiceConfig { admin_token: Some(Secret::new(ADMIN_TOKEN)), ..config() }
}

/// Budgets that `assert_rate_limits` exercises: recommendations 5/min global and 3/min per
/// client, similar 2/min per client, the rest unlimited.
pub fn limited(mut config: ServiceConfig) -> ServiceConfig {
    let unlimited = RateLimit { global_per_minute: 0, per_client_per_minute: 0 };
    config.rate_limits = RateLimitsConfig {
        recommendations: RateLimit { global_per_minute: 5, per_client_per_minute: 3 },
        similar: RateLimit { global_per_minute: 0, per_client_per_minute: 2 },
        events: unlimited,
        popular: unlimited,
        ..config.rate_limits
    };
    config
}

/// The status, Retry-After and JSON error of one GET.
async fn limited_get(client: &reqwest::Client, url: &str) -> (u16, Option<u64>, String) {
    let response = client.get(url).send().await.unwrap();
    let status = response.status().as_u16();
    let retry_after = response.headers().get("retry-after").map(|v| v.to_str().unwrap().parse().unwrap());
    let body: Value = response.json().await.unwrap();
    (status, retry_after, body["error"].as_str().unwrap_or_default().to_string())
}

/// The behaviour of the budgets of `limited()`, through HTTP from two client addresses
/// (127.0.0.1 and 127.0.0.2), whatever limiter the server runs with.
pub async fn assert_rate_limits(server: &TestServer) {
    use musicrec_service::limits::{Endpoint, Scope};
    let recommendations = format!("{}/recommendations?user_id=1", server.url);
    let a = &server.client;
    for _ in 0..3 {
        assert_eq!(limited_get(a, &recommendations).await.0, 200);
    }
    let (status, retry_after, error) = limited_get(a, &recommendations).await;
    assert_eq!(status, 429, "{error}");
    // 3 per minute: the next request passes 20 s after the first.
    assert!(retry_after.is_some_and(|s| (15..=20).contains(&s)), "{retry_after:?}");
    assert!(error.contains("this client's") && error.contains("/recommendations"), "{error}");
    // Other endpoints have their own budgets, health none.
    for path in ["/popular", "/similar?track_id=100", "/similar?track_id=100", "/health"] {
        assert_eq!(limited_get(a, &format!("{}{path}", server.url)).await.0, 200, "{path}");
    }
    assert_eq!(limited_get(a, &format!("{}/similar?track_id=100", server.url)).await.0, 429);

    // Another address has its own client budget, but the global one (5) has 2 left: a's
    // refused request did not spend it.
    let b = reqwest::Client::builder().local_address(std::net::IpAddr::from([127, 0, 0, 2])).build().unwrap();
    assert_eq!(limited_get(&b, &recommendations).await.0, 200);
    assert_eq!(limited_get(&b, &recommendations).await.0, 200);
    let (status, retry_after, error) = limited_get(&b, &recommendations).await;
    assert_eq!((status, retry_after.is_some()), (429, true), "{error}");
    assert!(error.contains("the service's"), "{error}");

    let m = &server.state.metrics;
    assert_eq!(m.rate_limited_count(Endpoint::Recommendations, Scope::Client), 1);
    assert_eq!(m.rate_limited_count(Endpoint::Recommendations, Scope::Global), 1);
    assert_eq!(m.rate_limited_count(Endpoint::Similar, Scope::Client), 1);
    assert_eq!(m.requests("/recommendations", 429), 2);
    let text = server.client.get(format!("{}/metrics", server.url)).send().await.unwrap().text().await.unwrap();
    assert!(text.contains("musicrec_rate_limited_total{endpoint=\"/recommendations\",scope=\"global\"} 1"), "{text}");
}

/// A running server on an ephemeral port; stopped when dropped.
pub struct TestServer {
    pub url: String,
    pub state: Arc<AppState>,
    pub client: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl TestServer {
    pub async fn start(artifacts: &Path, config: ServiceConfig) -> Self {
        let settings = Settings { config, artifacts: Artifacts::new(artifacts) };
        let server = Server::start(settings, SocketAddr::from(([127, 0, 0, 1], 0))).await.unwrap();
        let url = format!("http://{}", server.local_addr());
        let state = server.state();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            server
                .run(async move {
                    let _ = stopped.await;
                })
                .await;
        });
        Self { url, state, client: reqwest::Client::new(), stop: Some(stop), task }
    }

    /// GET `path_and_query`: the status and the JSON body.
    pub async fn get(&self, path_and_query: &str) -> (u16, Value) {
        let response = self.client.get(format!("{}{path_and_query}", self.url)).send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> (u16, Value) {
        let response = self.client.post(format!("{}{path}", self.url)).json(body).send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    /// POST /admin/reload with `token` as the bearer token: status, JSON body and the
    /// WWW-Authenticate header.
    pub async fn reload(&self, token: Option<&str>) -> (u16, Value, Option<String>) {
        let mut request = self.client.post(format!("{}/admin/reload", self.url));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let challenge = response.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_string());
        (status, response.json().await.unwrap(), challenge)
    }

    pub async fn listen(&self, user: i64, track: i64) {
        let (status, body) = self.post_json("/events", &serde_json::json!({"user_id": user, "track_id": track})).await;
        assert_eq!(status, 201, "{body}");
    }

    /// (track_id, source) of a user's recommendations.
    pub async fn recommend(&self, user: i64, k: usize) -> Vec<(i64, String)> {
        let (status, body) = self.get(&format!("/recommendations?user_id={user}&k={k}")).await;
        assert_eq!(status, 200, "{body}");
        body["recommendations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r["track_id"].as_i64().unwrap(), r["source"].as_str().unwrap().to_string()))
            .collect()
    }

    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        (&mut self.task).await.unwrap();
    }
}

/// The hand-made artifact set (run id `run-1`) in a temporary directory, served with `config`.
pub async fn serve_hand_made(config: ServiceConfig) -> (tempfile::TempDir, TestServer) {
    let dir = tempfile::tempdir().unwrap();
    write_artifacts(dir.path(), "run-1");
    let server = TestServer::start(dir.path(), config).await;
    (dir, server)
}

/// The `track_id`s of a JSON list of tracks.
pub fn track_ids(list: &Value) -> Vec<i64> {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|t| t["track_id"].as_i64().unwrap())
        .collect()
}

/// `[(track, source)]` from a compact literal.
pub fn expect(items: &[(i64, &str)]) -> Vec<(i64, String)> {
    items.iter().map(|&(t, s)| (t, s.to_string())).collect()
}
