//! Data and artifacts on a real S3 server (the one `scripts/services.sh start` runs), through
//! the real binary: a whole run, a mirror on another machine (a fresh cache), the service's
//! reload picking up a newer run, wrong credentials, and kills in the middle of uploads.
//! Endpoint, bucket and credentials come from `eval "$(scripts/services.sh env)"`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use musicrec_artifacts::Stage;
use musicrec_data::store::Bucket;

use crate::common::*;

/// Small models keep the debug-build runs quick.
pub(crate) const SMALL_MODELS: [(&str, &str); 4] = [
    ("MUSICREC__ALS__FACTORS", "8"),
    ("MUSICREC__ALS__ITERATIONS", "3"),
    ("MUSICREC__BPR__FACTORS", "8"),
    ("MUSICREC__BPR__ITERATIONS", "3"),
];

/// A prefix of our own in the test bucket, emptied when the test ends, passed or not.
pub(crate) struct TestPrefix {
    pub(crate) bucket: Bucket,
    pub(crate) prefix: String,
}

impl Drop for TestPrefix {
    fn drop(&mut self) {
        for object in self.bucket.list(&self.prefix).unwrap_or_default() {
            let _ = self.bucket.delete(&object.key);
        }
    }
}

/// The test bucket and a prefix of our own in it; panics (fails the test) when the services'
/// environment is not set, rather than passing without having tested anything.
pub(crate) fn test_prefix(test: &str) -> TestPrefix {
    for var in ["AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "MUSICREC_S3_BUCKET"] {
        assert!(
            std::env::var_os(var).is_some(),
            "{var} is not set: start the services and eval \"$(scripts/services.sh env)\""
        );
    }
    let name = std::env::var("MUSICREC_S3_BUCKET").unwrap();
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    TestPrefix {
        bucket: Bucket::from_env(&name).unwrap(),
        prefix: format!("test-{test}-{}-{nanos}", std::process::id()),
    }
}

pub(crate) fn url(bucket: &Bucket, key: &str) -> String {
    bucket.url(key)
}

/// `musicrec` with its S3 mirror in `cache`, not started yet.
pub(crate) fn command_with_cache(args: &[&str], cache: &Path, env: &[(&str, &str)]) -> Command {
    let mut all = vec![("MUSICREC_CACHE_DIR", cache.to_str().unwrap())];
    all.extend_from_slice(env);
    command(args, &all)
}

pub(crate) fn musicrec_with_cache(args: &[&str], cache: &Path, env: &[(&str, &str)]) -> std::process::Output {
    command_with_cache(args, cache, env).output().expect("the musicrec binary runs")
}

/// The key of `stage`'s directory in the version `CURRENT` under `art` (a key) names, as
/// every reader resolves it; the top-level layout from before versions when there is none.
fn stage_key(bucket: &Bucket, art: &str, stage: &str) -> String {
    let Some(id) = bucket.get(&format!("{art}/CURRENT")).unwrap() else { return format!("{art}/{stage}") };
    let id = String::from_utf8(id).unwrap().trim().to_string();
    let index = bucket.get(&format!("{art}/versions/{id}/version.json")).unwrap().expect("the current version's index");
    let index: serde_json::Value = serde_json::from_slice(&index).unwrap();
    match index["units"][stage].as_str().unwrap_or(&id) {
        "legacy" => format!("{art}/{stage}"),
        holder => format!("{art}/versions/{holder}/{stage}"),
    }
}

/// For every stage with a manifest in the current version under `prefix`: each listed output exists with its listed
/// size, and no other object is in the stage's prefix. Returns the manifests found.
fn check_manifests(bucket: &Bucket, prefix: &str) -> Vec<serde_json::Value> {
    let objects = bucket.list(prefix).unwrap();
    let mut manifests = Vec::new();
    for stage in Stage::ALL.map(Stage::as_str) {
        let stage_prefix = format!("{}/", stage_key(bucket, prefix, stage));
        let Some(bytes) = bucket.get(&format!("{stage_prefix}manifest.json")).unwrap() else { continue };
        let manifest: serde_json::Value = serde_json::from_slice(&bytes).expect("a manifest object is whole JSON");
        let outputs = manifest["outputs"].as_array().unwrap();
        for output in outputs {
            let key = format!("{stage_prefix}{}", output["file"].as_str().unwrap());
            let object = objects.iter().find(|o| o.key == key).unwrap_or_else(|| panic!("{key} listed but missing"));
            assert_eq!(object.size, output["bytes"].as_u64().unwrap(), "{key} has another size than listed");
        }
        for object in objects.iter().filter(|o| o.key.starts_with(&stage_prefix)) {
            let file = &object.key[stage_prefix.len()..];
            assert!(
                file == "manifest.json" || outputs.iter().any(|o| o["file"] == file),
                "{} is in the stage's prefix but not in its manifest",
                object.key
            );
        }
        manifests.push(manifest);
    }
    manifests
}

pub(crate) fn generate_on_s3(bucket: &Bucket, data: &str, cache: &Path) {
    let out = musicrec_with_cache(&["generate", "--scale", "tiny", "--seed", "5", "--out", data], cache, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let keys: Vec<String> = bucket
        .list(data.strip_prefix(&format!("s3://{}/", bucket.name())).unwrap())
        .unwrap()
        .into_iter()
        .map(|o| o.key.rsplit('/').next().unwrap().to_string())
        .collect();
    assert_eq!(keys, ["catalog_names.parquet", "generator.json", "interactions.parquet", "tracks.parquet"]);
}

/// The service's admin token in these tests (POST /admin/reload needs one).
const ADMIN_TOKEN: &str = "s3-test-admin-token-0123456789";

/// A minimal HTTP/1.1 exchange with the service; returns (status, body).
fn http(port: u16, method: &str, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(60))).ok()?;
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    let status = answer.split(' ').nth(1)?.parse().ok()?;
    Some((status, answer.split_once("\r\n\r\n")?.1.to_string()))
}

fn model_version(port: u16) -> Option<String> {
    let (status, body) = http(port, "GET", "/health")?;
    let health: serde_json::Value = serde_json::from_str(&body).ok()?;
    (status == 200).then(|| health["model_version"].as_str().unwrap_or_default().to_string())
}

struct Service(Child);

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
#[ignore = "needs scripts/services.sh start (run by .ci/run)"]
fn a_whole_run_on_s3_lists_only_objects_that_exist_and_other_machines_read_it() {
    let guard = test_prefix("run");
    let (bucket, prefix) = (&guard.bucket, &guard.prefix);
    let tmp = tempfile::tempdir().unwrap();
    let cache = |name: &str| tmp.path().join(name);
    let (data, art) = (url(bucket, &format!("{prefix}/data")), url(bucket, &format!("{prefix}/art")));
    generate_on_s3(bucket, &data, &cache("generator"));

    // A fresh cache: the data set is downloaded, every stage uploaded, every stage tracked to
    // the MLflow server (Postgres backend, artifacts proxied to S3).
    let (uri, experiment) = (mlflow::server(), mlflow::unique("s3-run"));
    let env = [
        SMALL_MODELS.as_slice(),
        &[("MLFLOW_TRACKING_URI", uri.as_str()), ("MUSICREC__TRACKING__EXPERIMENT", experiment.as_str())],
    ]
    .concat();
    let out = musicrec_with_cache(&["run", "--data", &data, "--artifacts", &art], &cache("runner"), &env);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("not sent"), "{}", stderr(&out));
    let printed = stdout(&out);
    assert!(printed.starts_with("run ") && printed.contains(&format!("on {data}")), "{printed}");
    assert!(printed.contains(&format!("results: {art}\n")), "{printed}");
    let art_key = format!("{prefix}/art");
    let report = url(bucket, &stage_key(bucket, &art_key, "report"));
    assert!(printed.contains(&format!("report: {report}/report.md")), "{printed}");
    let recs = format!("{}/recommendations.parquet", url(bucket, &stage_key(bucket, &art_key, "ranking")));
    assert!(printed.contains(&recs), "{printed}");
    let manifests = check_manifests(bucket, &format!("{prefix}/art"));
    assert_eq!(manifests.len(), Stage::ALL.len());
    let run_id = manifests[0]["run_id"].as_str().unwrap().to_string();
    assert!(manifests.iter().all(|m| m["run_id"] == run_id.as_str()));
    assert_eq!(manifests[0]["inputs"]["data"], data.as_str(), "preprocess records the S3 data location");

    // Every stage's run record is on S3 too, finished, and another machine lists them.
    let records = bucket.list(&format!("{prefix}/art/runs/")).unwrap();
    assert_eq!(records.len(), Stage::ALL.len(), "one run record per stage");
    for object in &records {
        let record: serde_json::Value = serde_json::from_slice(&bucket.get(&object.key).unwrap().unwrap()).unwrap();
        assert_eq!(record["status"], "finished", "{}", object.key);
    }
    let out = musicrec_with_cache(&["runs", "list", "--artifacts", &art], &cache("lister"), &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).lines().filter(|l| l.contains(&run_id)).count(), Stage::ALL.len(), "{}", stdout(&out));

    // The same stages are in MLflow, each with its params, metrics and downloadable artifacts.
    let rest = mlflow::Rest::new();
    let (children, parents) = rest.runs(&rest.experiment_id(&experiment));
    assert_eq!(parents.len(), 1);
    assert_eq!(children.len(), Stage::ALL.len(), "{:?}", children.keys());
    for (stage, run) in &children {
        assert_eq!(run["info"]["status"], "FINISHED", "{stage}");
        assert_eq!(mlflow::tag(run, "pipeline_run_id").as_deref(), Some(run_id.as_str()), "{stage}");
        assert!(!mlflow::pairs(run, "metrics").is_empty(), "{stage} has metrics");
        let files = rest.artifacts(&mlflow::run_id(run));
        let manifest = rest.download(&mlflow::run_id(run), "manifest.json");
        assert!(files.iter().any(|f| f == "manifest.json"), "{stage}: {files:?}");
        let uploaded: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
        assert_eq!(uploaded["run_id"], run_id.as_str(), "{stage}: the manifest MLflow holds is the run's");
    }
    assert!(!mlflow::pairs(&children["als"], "params").is_empty(), "als has params");

    // Another machine (a fresh cache) judges the offline lists: the stages it needs and the
    // file are mirrored from S3, and the numbers are the ranking stage's own.
    let args = ["evaluate", "--recs", &recs, "--window", "test", "--artifacts", &art];
    let out = musicrec_with_cache(&args, &cache("evaluator"), &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let judged: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let metrics_key = format!("{}/metrics.json", stage_key(bucket, &art_key, "ranking"));
    let own: serde_json::Value = serde_json::from_slice(&bucket.get(&metrics_key).unwrap().unwrap()).unwrap();
    assert_eq!(judged["test"]["ndcg@10"], own["test"]["ndcg@10"]);
    let users = format!("{}/users.parquet", stage_key(bucket, &art_key, "matrices"));
    assert!(cache("evaluator").join(bucket.name()).join(users).is_file());

    // The service serves from its own mirror; after a newer ranking run lands on S3, a reload
    // mirrors and serves it.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    let service = Service(
        command_with_cache(
            &["serve", "--artifacts", &art, "--addr", &addr],
            &cache("service"),
            &[("MUSICREC__SERVICE__ADMIN_TOKEN", ADMIN_TOKEN)],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap(),
    );
    let started = Instant::now();
    let mut version = None;
    while version.is_none() && started.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(200));
        version = model_version(port);
    }
    assert_eq!(version.as_deref(), Some(run_id.as_str()), "the service serves the run on S3");
    std::thread::sleep(Duration::from_secs(1)); // run ids have a one-second clock
    let out = musicrec_with_cache(
        &["run", "--data", &data, "--artifacts", &art, "--stages", "ranking"],
        &cache("rerunner"),
        &SMALL_MODELS,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let newer = check_manifests(bucket, &format!("{prefix}/art"));
    let new_id = newer.iter().find(|m| m["stage"] == "ranking").unwrap()["run_id"].as_str().unwrap().to_string();
    assert_ne!(new_id, run_id);
    assert_eq!(model_version(port).as_deref(), Some(run_id.as_str()), "no reload yet");
    let (status, body) = http(port, "POST", "/admin/reload").unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(model_version(port).as_deref(), Some(new_id.as_str()), "the reload mirrored the newer run");
    drop(service);
}

#[test]
#[ignore = "needs scripts/services.sh start (run by .ci/run)"]
fn wrong_credentials_are_a_clear_error_that_shows_no_secret_and_writes_nothing() {
    let guard = test_prefix("creds");
    let (bucket, prefix) = (&guard.bucket, &guard.prefix);
    let tmp = tempfile::tempdir().unwrap();
    let (data, art) = (url(bucket, &format!("{prefix}/data")), url(bucket, &format!("{prefix}/art")));
    generate_on_s3(bucket, &data, &tmp.path().join("generator"));

    let secret = std::env::var("AWS_SECRET_ACCESS_KEY").unwrap();
    let key_id = std::env::var("AWS_ACCESS_KEY_ID").unwrap();
    let wrong = "wrongSecretKeyThatMustNotBePrinted0123456789";
    let cache = tmp.path().join("runner");
    let (local_art, generated) = (tmp.path().join("local-art"), format!("{art}/data"));
    let attempts: [&[&str]; 3] = [
        &["run", "--data", &data, "--artifacts", &art],
        &["run", "--data", &data, "--artifacts", local_art.to_str().unwrap()],
        &["generate", "--scale", "tiny", "--out", &generated],
    ];
    for args in attempts {
        let out = musicrec_with_cache(args, &cache, &[("AWS_SECRET_ACCESS_KEY", wrong), ("RUST_LOG", "debug")]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: a user error: {err}");
        let refused = err.contains("SignatureDoesNotMatch") || err.contains("HTTP 403 Forbidden");
        assert!(refused && err.contains("check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY"), "{args:?}: {err}");
        for shown in [wrong, secret.as_str(), key_id.as_str()] {
            assert!(!err.contains(shown) && !stdout(&out).contains(shown), "{args:?} printed a credential: {err}");
        }
    }
    assert!(!stage_dir(&local_art, "preprocess").exists(), "nothing was written locally either");
    let unknown_key = musicrec_with_cache(attempts[0], &cache, &[("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE")]);
    assert_eq!(unknown_key.status.code(), Some(2));
    assert!(!stderr(&unknown_key).contains("AKIAIOSFODNN7EXAMPLE"), "{}", stderr(&unknown_key));

    // With the right key: only the data set is there, no manifest, no stray object.
    let keys: Vec<String> = bucket.list(prefix).unwrap().into_iter().map(|o| o.key).collect();
    assert!(keys.iter().all(|k| k.starts_with(&format!("{prefix}/data/"))), "{keys:?}");
    assert_eq!(keys.len(), 4);
}

#[test]
#[ignore = "needs scripts/services.sh start (run by .ci/run)"]
fn a_kill_mid_upload_leaves_no_manifest_listing_missing_objects() {
    let guard = test_prefix("kill");
    let (bucket, prefix) = (&guard.bucket, &guard.prefix);
    let tmp = tempfile::tempdir().unwrap();
    let (data, art) = (url(bucket, &format!("{prefix}/data")), url(bucket, &format!("{prefix}/art")));
    generate_on_s3(bucket, &data, &tmp.path().join("generator"));
    let args = ["run", "--data", &data, "--artifacts", &art];
    let cache = tmp.path().join("runner");

    let started = Instant::now();
    let out = musicrec_with_cache(&args, &cache, &SMALL_MODELS);
    assert!(out.status.success(), "{}", stderr(&out));
    let full = started.elapsed();

    // Kill at evenly spaced moments of a full run over the previous run's objects; each
    // mirror is new, so every stage's download and upload paths are crossed.
    let start = |step: u32| {
        let mut command = command_with_cache(&args, &tmp.path().join(format!("killed-{step}")), &SMALL_MODELS);
        command.env("RUST_LOG", "off");
        command
    };
    let kills = kill_at_spaced_moments(8, full, start, |_| {
        check_manifests(bucket, &format!("{prefix}/art"));
        // The killed run's writer lease would hold the next run off until it expires (30 s,
        // see publish.rs for that); this test is about the objects a kill leaves.
        bucket.delete(&format!("{prefix}/art/LOCK")).unwrap();
    });
    assert!(kills > 0, "no run was interrupted; the test did not test anything");

    let out = musicrec_with_cache(&args, &cache, &SMALL_MODELS);
    assert!(out.status.success(), "a rerun after kills must succeed: {}", stderr(&out));
    assert_eq!(check_manifests(bucket, &format!("{prefix}/art")).len(), Stage::ALL.len());
}

/// Sharded scoring against S3, as several machines would run it: the fit on one, two scorers
/// at once each with its own mirror, the merge on a fourth; the merged stage on S3 is exactly
/// what a single process publishes, and a merge with a part missing publishes nothing.
#[test]
#[ignore = "needs scripts/services.sh start (run by .ci/run)"]
fn sharded_scoring_on_s3_publishes_what_one_process_publishes() {
    let guard = test_prefix("shards");
    let (bucket, prefix) = (&guard.bucket, &guard.prefix);
    let tmp = tempfile::tempdir().unwrap();
    let cache = |name: &str| tmp.path().join(name);
    let data = url(bucket, &format!("{prefix}/data"));
    let (single, sharded) = (url(bucket, &format!("{prefix}/single")), url(bucket, &format!("{prefix}/sharded")));
    generate_on_s3(bucket, &data, &cache("generator"));
    // One thread: the fits of the two runs must be the same model.
    let env = [SMALL_MODELS.as_slice(), &[("MUSICREC__THREADS", "1")]].concat();
    let run = |art: &str, machine: &str, extra: &[&str]| {
        let mut args = vec!["run", "--data", &data, "--artifacts", art, "--stages"];
        args.extend(extra);
        let out = musicrec_with_cache(&args, &cache(machine), &env);
        assert!(out.status.success(), "{machine}: {}", stderr(&out));
    };
    for art in [&single, &sharded] {
        run(art, "fitter", &["preprocess,matrices"]);
    }
    run(&single, "fitter", &["als"]);
    run(&sharded, "fitter", &["als", "--shards", "2"]);

    let merge = |machine: &str| {
        musicrec_with_cache(
            &["run", "--data", &data, "--artifacts", &sharded, "--stages", "als", "--merge-shards"],
            &cache(machine),
            &env,
        )
    };
    let scorers: Vec<Child> = (0..2)
        .map(|i| {
            let shard = format!("{i}/2");
            let args = ["run", "--data", &data, "--artifacts", &sharded, "--stages", "als", "--shard", &shard];
            command_with_cache(&args, &cache(&format!("scorer-{i}")), &env)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for scorer in scorers {
        let out = scorer.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let out = merge("merger");
    assert!(out.status.success(), "{}", stderr(&out));

    let key = |art: &str, file: &str| {
        format!("{}/{file}", stage_key(bucket, art.strip_prefix(&format!("s3://{}/", bucket.name())).unwrap(), "als"))
    };
    for file in ["metrics.json", "model.bin"] {
        assert_eq!(bucket.get(&key(&single, file)).unwrap(), bucket.get(&key(&sharded, file)).unwrap(), "als/{file}");
    }
    let rows = |art: &str| {
        let path = cache("reader").join(art.rsplit('/').next().unwrap()).with_extension("parquet");
        bucket.download(&key(art, "candidates.parquet"), &path).unwrap().expect("candidates on S3");
        musicrec_data::parquet_io::read_batches(&path).unwrap()
    };
    assert_eq!(rows(&single), rows(&sharded), "the merged candidates are the single run's rows");
    check_manifests(bucket, &format!("{prefix}/sharded"));

    // A part gone from S3: the merge names it and publishes nothing new.
    let part = bucket
        .list(&format!("{prefix}/sharded/versions/"))
        .unwrap()
        .into_iter()
        .find(|o| o.key.contains("part-0001") && o.key.ends_with("candidates.parquet"))
        .expect("part 1 of 2 is on S3");
    bucket.delete(&part.key).unwrap();
    let before = bucket.get(&key(&sharded, "manifest.json")).unwrap();
    let out = merge("merger-2");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--shard 1/2"), "{}", stderr(&out));
    assert_eq!(bucket.get(&key(&sharded, "manifest.json")).unwrap(), before, "nothing published");
}

#[test]
#[ignore = "needs scripts/services.sh start (run by .ci/run)"]
fn import_to_s3_uploads_the_layout_manifest_last_and_a_failed_import_changes_nothing_there() {
    let guard = test_prefix("import");
    let (bucket, prefix) = (&guard.bucket, &guard.prefix);
    let tmp = tempfile::tempdir().unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../import/tests/fixtures/movielens-100k");
    let data = url(bucket, &format!("{prefix}/ml"));
    let import = |source: &Path, cache: &str| {
        musicrec_with_cache(
            &["import", "movielens", source.to_str().unwrap(), "--out", &data],
            &tmp.path().join(cache),
            &[],
        )
    };
    let objects = || -> Vec<(String, u64, Option<String>)> {
        bucket.list(prefix).unwrap().into_iter().map(|o| (o.key, o.size, o.etag)).collect()
    };

    // A source that fails on its last line: exit 2, nothing uploaded.
    let bad = tmp.path().join("bad");
    std::fs::create_dir(&bad).unwrap();
    for file in ["u.data", "u.item", "u.genre"] {
        std::fs::copy(fixture.join(file), bad.join(file)).unwrap();
    }
    let mut ratings = std::fs::read_to_string(bad.join("u.data")).unwrap();
    ratings.push_str("4\t1\t5\tyesterday\n");
    std::fs::write(bad.join("u.data"), ratings).unwrap();
    let out = import(&bad, "importer");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("yesterday"), "{}", stderr(&out));
    assert!(objects().is_empty(), "a failed import uploaded {:?}", objects());

    // The import: the three files, the suggested configuration and import.json.
    let out = import(&fixture, "importer");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains(&format!("to {data}")), "{}", stdout(&out));
    let names: Vec<String> = objects().into_iter().map(|o| o.0.rsplit('/').next().unwrap().to_string()).collect();
    assert_eq!(
        names,
        ["catalog_names.parquet", "config.yaml", "import.json", "interactions.parquet", "tracks.parquet"]
    );
    let summary: serde_json::Value =
        serde_json::from_slice(&bucket.get(&format!("{prefix}/ml/import.json")).unwrap().unwrap()).unwrap();
    assert_eq!(summary["events"], 7, "{summary}");

    // Another machine (a fresh cache) runs preprocess on it with the automatic split.
    let art = tmp.path().join("art");
    let auto = [("MUSICREC__PREPROCESS__TRAIN_END", "auto"), ("MUSICREC__PREPROCESS__TARGET_END", "auto")];
    let out = musicrec_with_cache(
        &["run", "--data", &data, "--artifacts", art.to_str().unwrap(), "--stages", "preprocess"],
        &tmp.path().join("reader"),
        &auto,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(manifest(&art, "preprocess")["summary"]["events_kept"], 7);

    // A failed import over it, from another mirror too: the import there stays whole.
    let before = objects();
    for cache in ["importer", "other-importer"] {
        let out = import(&bad, cache);
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert_eq!(objects(), before, "a failed import changed the import on S3");
    }
}
