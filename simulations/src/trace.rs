//! The run's trace: a digest of everything that happened and, on request,
//! readable lines for a failing run's replay.
//!
//! Owns the run digest (equal for equal configs) and the trace lines. Must
//! not decide anything; the world reports what it does.

pub struct Trace {
    hasher: blake3::Hasher,
    lines: Option<Vec<String>>,
}

impl Trace {
    pub fn new(readable: bool) -> Trace {
        Trace {
            hasher: blake3::Hasher::new(),
            lines: readable.then(Vec::new),
        }
    }

    /// Records one step: `tag` and `parts` go into the digest; `line` is
    /// only formatted when the trace is kept readable.
    pub fn step(&mut self, now: u64, tag: u8, parts: &[u64], line: impl FnOnce() -> String) {
        self.hasher.update(&now.to_le_bytes());
        self.hasher.update(&[tag]);
        for p in parts {
            self.hasher.update(&p.to_le_bytes());
        }
        if let Some(lines) = &mut self.lines {
            lines.push(format!("{:>9} ms  {}", now, line()));
        }
    }

    pub fn digest(&mut self, bytes: &[u8]) {
        self.hasher.update(bytes);
    }

    pub fn finish(&self) -> [u8; 32] {
        *self.hasher.finalize().as_bytes()
    }

    pub fn take_lines(&mut self) -> Vec<String> {
        self.lines.take().unwrap_or_default()
    }
}
