//! The job-file parser (`peerbatch submit FILE`): TOML text to a job, then
//! the same validation a submit applies. `lines`/`files` sweeps are read
//! under a directory that does not exist, so nothing on disk is touched.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peerbatch::jobfile;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let dir = Path::new("/nonexistent/peerbatch-fuzz");
    if let Ok(draft) = jobfile::parse("fuzz.toml", text, "fuzz", dir) {
        let _ = draft.spec.validate();
    }
});
