//! The S3 facade against a real S3 server (`scripts/services.sh start`; endpoint, bucket and
//! credentials from `eval "$(scripts/services.sh env)"`): a file large enough for a multipart
//! upload goes up in parts and comes back whole, and a mirror follows a changed object.

use musicrec_data::store::{Bucket, MULTIPART_PART_BYTES};

fn bucket() -> Bucket {
    let name = std::env::var("MUSICREC_S3_BUCKET")
        .expect("MUSICREC_S3_BUCKET is not set: start the services and eval \"$(scripts/services.sh env)\"");
    Bucket::from_env(&name).unwrap()
}

#[test]
#[ignore = "needs scripts/services.sh start (run by .ci/run)"]
fn multipart_uploads_and_mirrors_work_against_the_server() {
    let bucket = bucket();
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let prefix = format!("test-store-{}-{nanos}", std::process::id());
    bucket.probe(&prefix).unwrap();
    let dir = tempfile::tempdir().unwrap();

    let big = dir.path().join("big.bin");
    let data: Vec<u8> = (0..MULTIPART_PART_BYTES * 2 + 777).map(|i| (i * 7 % 253) as u8).collect();
    std::fs::write(&big, &data).unwrap();
    let key = format!("{prefix}/big.bin");
    let up = bucket.upload(&big, &key).unwrap();
    let head = bucket.head(&key).unwrap().unwrap();
    assert_eq!((up.size, head.size), (data.len() as u64, data.len() as u64));
    // S3 marks a multipart object's etag with its part count.
    assert!(head.etag.as_deref().is_some_and(|e| e.trim_matches('"').ends_with("-3")), "{head:?}");

    let mirror = dir.path().join("mirror/big.bin");
    bucket.fetch(&key, &mirror).unwrap();
    assert!(std::fs::read(&mirror).unwrap() == data);
    bucket.put(&key, b"small now".to_vec()).unwrap();
    bucket.fetch(&key, &mirror).unwrap();
    assert_eq!(std::fs::read(&mirror).unwrap(), b"small now");

    assert_eq!(bucket.list(&prefix).unwrap().len(), 1);
    bucket.delete(&key).unwrap();
    assert!(bucket.list(&prefix).unwrap().is_empty());
}
