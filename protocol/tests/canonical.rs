//! One value, one encoding: a signed event whose bytes are re-encoded in a
//! longer but still decodable form keeps its signature, so unless the codec
//! refuses it, it would enter the ledger under a second event id (a second
//! copy of someone else's job, a ground id) without its author's key.

use peerbatch_protocol::{
    codec, Command, Config, Core, EventBody, Identity, JobSpec, MemStore, Message, Millis, TaskSpec,
};

/// `bytes` with the one-byte varint at `at` rewritten in its three-byte
/// form (251 followed by the value as u16, little-endian): bincode reads
/// both as the same number.
fn widen_varint(bytes: &[u8], at: usize) -> Vec<u8> {
    assert!(bytes[at] < 251, "not a one-byte varint");
    let mut out = bytes[..at].to_vec();
    out.extend_from_slice(&[251, bytes[at], 0]);
    out.extend_from_slice(&bytes[at + 1..]);
    out
}

fn submit_bytes(by: &Identity) -> Vec<u8> {
    let job = JobSpec::array(
        "copied",
        TaskSpec::new("t", Command::Argv(vec!["true".into()]), 0),
        0,
        2,
    );
    let body = EventBody::JobSubmitted {
        job,
        submitted_ms: 1,
        nonce: 7,
    };
    by.sign(body).encode()
}

#[test]
fn a_value_decodes_only_from_its_own_encoding() {
    let bytes = codec::encode(&(5u32, 9u64));
    assert_eq!(codec::decode::<(u32, u64)>(&bytes), Ok((5, 9)));
    let longer = widen_varint(&bytes, 1);
    assert_eq!(
        codec::decode::<(u32, u64)>(&longer),
        Err(codec::CodecError::NotCanonical)
    );
}

#[test]
fn a_signed_submit_re_encoded_longer_is_refused_and_starts_no_second_job() {
    let author = Identity::from_seed([2; 32]);
    let mut node = Core::new(
        Identity::from_seed([1; 32]),
        Config::default(),
        MemStore::default(),
        Vec::new(),
        1,
        Millis(0),
    );
    let genuine = submit_bytes(&author);
    // Version byte, then the author's 32 key bytes, then the body's variant.
    let copy = widen_varint(&genuine, 1 + 32);
    let events = vec![genuine, copy];
    node.handle_gossip(Millis(1), author.node_id(), Message::Events { events });
    while node.poll_persist().is_some() {}
    assert_eq!(node.ledger().jobs().count(), 1);
    assert_eq!(node.stats().events_rejected, 1);
}
