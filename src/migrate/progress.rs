//! Progress of a long import: on a terminal, a bar with messages, bytes,
//! rate and ETA (indicatif); elsewhere (a log, a pipe) a plain line every
//! few seconds. Problems are printed as they happen, above the bar.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

pub struct Progress {
    bar: Option<ProgressBar>,
    quiet: bool,
    start: Instant,
    last_line: Instant,
    msgs: u64,
    bytes: u64,
    total_msgs: u64,
    total_bytes: u64,
}

/// Line interval when not on a terminal.
const EVERY: Duration = Duration::from_secs(5);

impl Progress {
    /// A bar if standard error is a terminal, lines otherwise; nothing but
    /// problems with `quiet`.
    pub fn new(quiet: bool) -> Progress {
        let now = Instant::now();
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let b = ProgressBar::new(0);
            b.set_style(
                ProgressStyle::with_template("{bar:30} {bytes}/{total_bytes} {msg} {bytes_per_sec} ETA {eta}").unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            b
        });
        Progress { bar, quiet, start: now, last_line: now, msgs: 0, bytes: 0, total_msgs: 0, total_bytes: 0 }
    }

    pub fn set_total(&mut self, msgs: u64, bytes: u64) {
        (self.total_msgs, self.total_bytes) = (msgs, bytes);
        if let Some(b) = &self.bar {
            b.set_length(bytes);
            b.set_message(format!("0/{msgs} messages"));
        }
    }

    pub fn advance(&mut self, msgs: u64, bytes: u64) {
        self.msgs += msgs;
        self.bytes += bytes;
        match &self.bar {
            Some(b) => {
                b.set_position(self.bytes.min(self.total_bytes));
                b.set_message(format!("{}/{} messages", self.msgs, self.total_msgs));
            }
            None if !self.quiet && self.last_line.elapsed() >= EVERY => {
                self.last_line = Instant::now();
                eprintln!("{}", self.line());
            }
            None => {}
        }
    }

    fn line(&self) -> String {
        let secs = self.start.elapsed().as_secs_f64().max(0.001);
        let rate = self.bytes as f64 / secs;
        let left = self.total_bytes.saturating_sub(self.bytes) as f64 / rate.max(1.0);
        format!(
            "import: {}/{} messages, {:.1}/{:.1} MB, {:.1} MB/s, ETA {}s",
            self.msgs,
            self.total_msgs,
            self.bytes as f64 / 1e6,
            self.total_bytes as f64 / 1e6,
            rate / 1e6,
            left.round() as u64
        )
    }

    /// A problem or a note, printed at once (above the bar).
    pub fn say(&self, text: &str) {
        match &self.bar {
            Some(b) => b.println(text),
            None => eprintln!("{text}"),
        }
    }

    pub fn finish(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }

    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }
}
