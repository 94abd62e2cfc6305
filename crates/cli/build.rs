//! Captures the commit the binary is built from (`MUSICREC_GIT_COMMIT`), so every tracked run
//! names the code that produced it even when run far from the repository.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !text.is_empty()).then_some(text)
}

fn main() {
    let commit = git(&["rev-parse", "HEAD"]).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=MUSICREC_GIT_COMMIT={commit}");
    // Rebuild when HEAD moves: HEAD itself (checkout) and the branch it points to (commit).
    // Worktrees keep HEAD in their own git dir and branches in the common one, which
    // `--git-path` resolves.
    // A path that does not exist would make cargo rerun this script on every build.
    let branch = git(&["symbolic-ref", "-q", "HEAD"]);
    for path in ["HEAD", "packed-refs"].into_iter().chain(branch.as_deref()) {
        if let Some(p) = git(&["rev-parse", "--path-format=absolute", "--git-path", path])
            && std::path::Path::new(&p).exists()
        {
            println!("cargo:rerun-if-changed={p}");
        }
    }
    println!("cargo:rerun-if-changed=build.rs");
}
