//! Progress of all long-running work: a bar on a terminal; where stderr is not one (a log
//! file), the steps that matter (a model's iterations, chunks of users scored) as log lines.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};
use musicrec_models::FitStep;

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

/// Where progress goes: decided once per piece of work.
enum Sink {
    Bar(ProgressBar),
    Log,
}

impl Sink {
    fn new(total: u64, template: &str) -> Self {
        if !std::io::stderr().is_terminal() {
            return Sink::Log;
        }
        let bar = ProgressBar::new(total);
        bar.set_style(ProgressStyle::with_template(template).expect("valid progress template").progress_chars("=> "));
        Sink::Bar(bar)
    }
}

/// A model's fit, one update per iteration (never per sample: the hot loops stay as they are):
/// iterations done with the latest loss when the fit computes it. Nothing shows for a model
/// that does not train by iterations.
pub struct FitProgress {
    model: &'static str,
    /// Made at the first iteration, which tells how many there are.
    sink: Option<Sink>,
}

impl FitProgress {
    pub fn new(model: &'static str) -> Self {
        Self { model, sink: None }
    }

    pub fn step(&mut self, step: &FitStep) {
        let model = self.model;
        let sink = self.sink.get_or_insert_with(|| {
            let sink = Sink::new(step.total as u64, "{prefix:>12} [{bar:40}] {pos}/{len} iterations {msg} (eta {eta})");
            if let Sink::Bar(bar) = &sink {
                bar.set_prefix(format!("{model} fit"));
            }
            sink
        });
        match sink {
            Sink::Bar(bar) => {
                bar.set_position(step.done as u64);
                if let Some(loss) = step.loss {
                    bar.set_message(format!("loss {loss:.6}"));
                }
            }
            Sink::Log => tracing::info!(
                model = self.model,
                iteration = step.done,
                of = step.total,
                loss = step.loss,
                seconds = format!("{:.2}", step.seconds),
                "fit iteration"
            ),
        }
    }
}

impl Drop for FitProgress {
    fn drop(&mut self) {
        if let Some(Sink::Bar(bar)) = &self.sink {
            bar.finish_and_clear();
        }
    }
}

/// Queries (users scored, tracks given similar tracks) done so far, one update per chunk.
pub struct Counted {
    what: &'static str,
    model: &'static str,
    total: u64,
    sink: Sink,
}

impl Counted {
    pub fn new(model: &'static str, what: &'static str, total: usize) -> Self {
        let sink =
            Sink::new(total as u64, "{prefix:>12} [{bar:40}] {human_pos}/{human_len} {msg} ({per_sec}, eta {eta})");
        if let Sink::Bar(bar) = &sink {
            bar.set_prefix(model);
            bar.set_message(what);
        }
        Self { what, model, total: total as u64, sink }
    }

    /// `done` queries so far.
    pub fn set(&self, done: usize) {
        match &self.sink {
            Sink::Bar(bar) => bar.set_position(done as u64),
            Sink::Log => tracing::info!(model = self.model, done, of = self.total, "{}", self.what),
        }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        if let Sink::Bar(bar) = &self.sink {
            bar.finish_and_clear();
        }
    }
}
