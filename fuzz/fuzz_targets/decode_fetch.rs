//! A fetch-protocol request (as a chunk server reads it) and a response (as
//! a puller reads it), from the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peerbatch_fuzz::decode_canonical;
use peerbatch_protocol::content::{FetchRequest, FetchResponse};

fuzz_target!(|data: &[u8]| {
    let _ = decode_canonical::<FetchRequest>(data);
    let _ = decode_canonical::<FetchResponse>(data);
});
