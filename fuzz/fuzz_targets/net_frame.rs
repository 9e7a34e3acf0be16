//! The request-response framing (`net::codec`): a length-prefixed frame read
//! as a request and as a response, refused above the limit, and written back
//! to the same bytes.
#![no_main]

use futures::executor::block_on;
use futures::io::Cursor;
use libfuzzer_sys::fuzz_target;
use libp2p::request_response::Codec;
use libp2p::StreamProtocol;
use peerbatch::net::codec::LengthPrefixed;

const LIMIT: usize = 1 << 16;
const PROTOCOL: StreamProtocol = StreamProtocol::new("/peerbatch/fuzz/1");

fuzz_target!(|data: &[u8]| {
    let mut codec = LengthPrefixed::<LIMIT>;
    let request = block_on(codec.read_request(&PROTOCOL, &mut Cursor::new(data)));
    let response = block_on(codec.read_response(&PROTOCOL, &mut Cursor::new(data)));
    match (&request, &response) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "request and response framing disagree"),
        (Err(_), Err(_)) => {}
        _ => panic!("request {request:?} and response {response:?} framing disagree"),
    }
    let Ok(payload) = request else {
        return;
    };
    assert!(payload.len() <= LIMIT);
    let mut out = Cursor::new(Vec::new());
    block_on(codec.write_request(&PROTOCOL, &mut out, payload.clone())).expect("rewrite");
    assert_eq!(out.get_ref()[..], data[..4 + payload.len()]);
});
