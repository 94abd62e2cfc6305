//! `musicrec serve` refuses what it cannot serve with exit code 2 and a message naming it.
//! (The service itself is tested through HTTP in crates/service/tests.)

use crate::common::{TinyRun, musicrec, stderr};

#[test]
fn serve_refuses_a_missing_artifact_set_and_a_bad_address() {
    let tmp = tempfile::tempdir().unwrap();
    let art = tmp.path().to_str().unwrap();
    let out = musicrec(&["serve", "--artifacts", art, "--addr", "127.0.0.1:0"], &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("cannot be served") && err.contains("matrices"), "{err}");

    let out = musicrec(&["serve", "--artifacts", art, "--addr", "localhost"], &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--addr") && err.contains("localhost"), "{err}");

    let out = musicrec(&["serve", "--artifacts", art], &[("MUSICREC__SERVICE__MAX_K", "0")]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("service.max_k"));
}

/// A model file damaged in place (same size, so the manifest still lists it) is bad input too.
#[test]
fn serve_refuses_a_damaged_model_file_as_bad_input() {
    let tiny = TinyRun::generated(3)
        .stages("preprocess,matrices,features,als,bpr,item2item,top_items,ranking")
        .config(&[("MUSICREC__ALS__FACTORS", "8"), ("MUSICREC__BPR__FACTORS", "8"), ("MUSICREC__BPR__ITERATIONS", "3")])
        .build();
    let model = tiny.art.join("als").join("model.bin");
    let mut bytes = std::fs::read(&model).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&model, bytes).unwrap();
    let out = musicrec(&["serve", "--artifacts", tiny.art.to_str().unwrap(), "--addr", "127.0.0.1:0"], &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("model.bin"), "{err}");
}
