//! A message from a peer (gossip or direct): `codec::decode::<Message>`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peerbatch_fuzz::decode_canonical;
use peerbatch_protocol::Message;

fuzz_target!(|data: &[u8]| {
    let _ = decode_canonical::<Message>(data);
});
