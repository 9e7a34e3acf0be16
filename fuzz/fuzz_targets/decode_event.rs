//! A ledger event, as gossiped, synced or read back from sled: decoding,
//! signature checking and, for a submit, the job's validation.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peerbatch_fuzz::decode_canonical;
use peerbatch_protocol::{Event, EventBody};

fuzz_target!(|data: &[u8]| {
    let Some(event) = decode_canonical::<Event>(data) else {
        return;
    };
    let _ = event.verify();
    if let EventBody::JobSubmitted { job, .. } = &event.body {
        let _ = job.validate();
    }
});
