//! A content object (file manifest or tree) as fetched from a peer or read
//! from the chunk store; a tree's path rules are checked as a node does.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peerbatch_fuzz::decode_canonical;
use peerbatch_protocol::content::Object;

fuzz_target!(|data: &[u8]| {
    if let Some(Object::Tree(tree)) = decode_canonical::<Object>(data) {
        let _ = tree.validate();
    }
});
