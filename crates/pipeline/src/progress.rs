//! Progress bars shared by all long-running work.

use indicatif::{ProgressBar, ProgressStyle};

/// A bar over `total` items; it draws only when stderr is a terminal.
pub fn bar(total: u64, message: &'static str) -> ProgressBar {
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{msg:>12} [{bar:40}] {human_pos}/{human_len} ({per_sec}, eta {eta})")
            .expect("valid progress template")
            .progress_chars("=> "),
    );
    bar.set_message(message);
    bar
}
