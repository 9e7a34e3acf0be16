//! A batch frame answering a `Chunks` request: the first two bytes say how
//! many chunks were asked for, the rest is the frame.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peerbatch_protocol::content::{split_batch, MAX_BATCH};

fuzz_target!(|data: &[u8]| {
    let Some((asked, frame)) = data.split_first_chunk::<2>() else {
        return;
    };
    let asked = usize::from(u16::from_le_bytes(*asked)) % (MAX_BATCH + 1);
    let Ok(chunks) = split_batch(frame, asked) else {
        return;
    };
    assert_eq!(chunks.len(), asked);
    let carried: usize = chunks.iter().flatten().map(|c| c.len()).sum();
    assert!(carried <= frame.len());
});
