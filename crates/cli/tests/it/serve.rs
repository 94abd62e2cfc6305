//! `musicrec serve` refuses what it cannot serve with exit code 2 and a message naming it.
//! (The service itself is tested through HTTP in crates/service/tests.)

use crate::common::{musicrec, stderr};

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
