//! kill -9 at any moment leaves, for every stage, either its previous complete outputs or
//! none: never a manifest whose outputs are missing or of another size. A rerun then succeeds.

use std::path::Path;
use std::time::Instant;

use musicrec_artifacts::Stage;

use crate::common::*;

/// Small models keep the debug-build test quick; the kill points cover every stage all the same.
const ENV: [(&str, &str); 4] = [
    ("MUSICREC__ALS__FACTORS", "8"),
    ("MUSICREC__ALS__ITERATIONS", "3"),
    ("MUSICREC__BPR__FACTORS", "8"),
    ("MUSICREC__BPR__ITERATIONS", "3"),
];

/// Checks every stage directory: a manifest, if present, lists only files that exist with the
/// recorded size. Returns how many stages are complete.
fn complete_stages(art: &Path) -> usize {
    let mut complete = 0;
    for stage in Stage::ALL.map(Stage::as_str) {
        let Ok(text) = std::fs::read_to_string(stage_dir(art, stage).join("manifest.json")) else { continue };
        let manifest: serde_json::Value = serde_json::from_str(&text).expect("a manifest is always whole JSON");
        for output in manifest["outputs"].as_array().unwrap() {
            let file = stage_dir(art, stage).join(output["file"].as_str().unwrap());
            let size =
                std::fs::metadata(&file).unwrap_or_else(|_| panic!("{} listed but missing", file.display())).len();
            assert_eq!(size, output["bytes"].as_u64().unwrap(), "{} has another size than listed", file.display());
        }
        complete += 1;
    }
    complete
}

#[test]
fn kill_at_any_moment_leaves_complete_outputs_or_none() {
    let tiny = TinyRun::generated(3).config(&ENV).prepare();
    let art = &tiny.art;

    let started = Instant::now();
    tiny.succeed(None, &[]);
    let full = started.elapsed();
    assert_eq!(complete_stages(art), Stage::ALL.len());

    // Kill at evenly spaced moments of a full run, over the outputs of the previous runs.
    let start = |_| {
        let mut command = tiny.command(&[], &[]);
        command.env("RUST_LOG", "off");
        command
    };
    let kills = kill_at_spaced_moments(12, full, start, |_| {
        complete_stages(art);
    });
    assert!(kills > 0, "no run was interrupted; the test did not test anything");

    let out = tiny.pipeline(None, &[]);
    assert!(out.status.success(), "a rerun after kills must succeed: {}", stderr(&out));
    assert_eq!(complete_stages(art), Stage::ALL.len());
    assert!(!art.join(".staging").exists(), "abandoned staging directories are cleaned up");
}
