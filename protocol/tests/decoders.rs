//! Every decoder of bytes from outside: what `encode` writes decodes to the
//! same value; arbitrary or damaged bytes never panic a decoder, whatever
//! they decode to re-encodes to exactly those bytes, and nothing over the
//! codec's size limit is read. The fuzz targets under `fuzz/` check the same
//! with coverage guidance; these run in every `cargo test`.

use peerbatch_protocol::codec::{self, CodecError};
use peerbatch_protocol::content::{
    batch_frame, split_batch, ChunkRef, FetchRequest, FetchResponse, Manifest, Object, Tree,
    TreeEntry, MAX_BATCH,
};
use peerbatch_protocol::event::Claim;
use peerbatch_protocol::exit::{ExitAction, ExitRule};
use peerbatch_protocol::{
    BlobId, Command, Event, EventBody, EventId, Identity, Input, JobId, JobSpec, Message, Outcome,
    Source, TaskGroup, TaskRef, TaskResult, TaskSpec,
};
use proptest::prelude::*;
use serde::{de::DeserializeOwned, Serialize};
use std::fmt::Debug;

/// Decodes `bytes` as a `T`; if that works, the bytes must be the value's
/// own encoding.
fn decodes_canonically<T>(bytes: &[u8]) -> Result<(), TestCaseError>
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    if let Ok(value) = codec::decode::<T>(bytes) {
        prop_assert!(bytes.len() <= codec::MAX_SIZE);
        prop_assert_eq!(codec::encode(&value), bytes, "{:?}", value);
    }
    Ok(())
}

/// `value` survives encode → decode, and every damaged copy of its bytes
/// either fails to decode or is the encoding of what it decodes to.
fn round_trips<T>(value: &T, damage: &[Damage]) -> Result<(), TestCaseError>
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let bytes = codec::encode(value);
    prop_assert_eq!(&codec::decode::<T>(&bytes).expect("own encoding"), value);
    let mut damaged = bytes.clone();
    for d in damage {
        d.apply(&mut damaged);
        decodes_canonically::<T>(&damaged)?;
    }
    Ok(())
}

/// One change to an encoding: a byte replaced, removed or inserted, or the
/// tail cut off (positions wrap around the current length).
#[derive(Clone, Debug)]
enum Damage {
    Set(usize, u8),
    Remove(usize),
    Insert(usize, u8),
    Truncate(usize),
}

impl Damage {
    fn apply(&self, bytes: &mut Vec<u8>) {
        let at = |i: usize, len: usize| if len == 0 { 0 } else { i % len };
        match *self {
            Damage::Set(i, b) if !bytes.is_empty() => {
                let i = at(i, bytes.len());
                bytes[i] = b;
            }
            Damage::Remove(i) if !bytes.is_empty() => {
                bytes.remove(at(i, bytes.len()));
            }
            Damage::Insert(i, b) => bytes.insert(at(i, bytes.len() + 1), b),
            Damage::Truncate(i) => bytes.truncate(at(i, bytes.len() + 1)),
            _ => {}
        }
    }
}

fn damage() -> impl Strategy<Value = Vec<Damage>> {
    let one = prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Damage::Set(i, b)),
        any::<usize>().prop_map(Damage::Remove),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Damage::Insert(i, b)),
        any::<usize>().prop_map(Damage::Truncate),
    ];
    prop::collection::vec(one, 1..6)
}

fn text() -> impl Strategy<Value = String> {
    "[a-z0-9_./{}*-]{0,12}"
}

fn command() -> impl Strategy<Value = Command> {
    prop_oneof![
        text().prop_map(Command::Shell),
        prop::collection::vec(text(), 0..4).prop_map(Command::Argv),
    ]
}

fn exit_rule() -> impl Strategy<Value = ExitRule> {
    let action = prop_oneof![
        Just(ExitAction::Retry),
        Just(ExitAction::FailTask),
        Just(ExitAction::FailJob),
        Just(ExitAction::Ignore),
    ];
    (any::<i32>(), any::<i32>(), action).prop_map(|(from, to, action)| ExitRule {
        from,
        to,
        action,
    })
}

fn input() -> impl Strategy<Value = Input> {
    let source = prop_oneof![
        any::<[u8; 32]>().prop_map(|b| Source::Blob(BlobId(b))),
        text().prop_map(Source::Task),
    ];
    (text(), source, text()).prop_map(|(path, source, within)| Input {
        path,
        source,
        within,
    })
}

prop_compose! {
    fn task_spec()(
        id in text(),
        command in command(),
        max_retries in any::<u32>(),
        env in prop::collection::vec((text(), text()), 0..3),
        wall in any::<Option<u64>>(),
        inputs in prop::collection::vec(input(), 0..3),
        outputs in prop::collection::vec(text(), 0..3),
        depends_on in prop::collection::vec(text(), 0..3),
        exit_codes in prop::collection::vec(exit_rule(), 0..3),
    ) -> TaskSpec {
        let mut spec = TaskSpec::new(id, command, max_retries);
        spec.env = env;
        spec.max_wall_clock_ms = wall;
        spec.inputs = inputs;
        spec.outputs = outputs;
        spec.depends_on = depends_on;
        spec.exit_codes = exit_codes;
        spec
    }
}

fn task_group() -> impl Strategy<Value = TaskGroup> {
    prop_oneof![
        task_spec().prop_map(TaskGroup::One),
        (task_spec(), any::<i64>(), any::<i64>(), any::<i64>()).prop_map(
            |(template, start, end, step)| TaskGroup::Array {
                template,
                start,
                end,
                step,
            }
        ),
    ]
}

prop_compose! {
    fn job_spec()(
        name in text(),
        priority in any::<i32>(),
        groups in prop::collection::vec(task_group(), 0..3),
        retention_ms in any::<u64>(),
        preparation in prop::option::of(command()),
        release in prop::option::of(command()),
        wall in any::<Option<u64>>(),
        after in prop::collection::vec(any::<[u8; 8]>().prop_map(JobId), 0..3),
    ) -> JobSpec {
        let mut job = JobSpec::new(name, groups);
        job.priority = priority;
        job.retention_ms = retention_ms;
        job.preparation = preparation;
        job.release = release;
        job.max_wall_clock_ms = wall;
        job.after = after;
        job
    }
}

fn task_ref() -> impl Strategy<Value = TaskRef> {
    (any::<[u8; 8]>(), any::<u32>()).prop_map(|(job, index)| TaskRef {
        job: JobId(job),
        index,
    })
}

fn claims() -> impl Strategy<Value = Vec<Claim>> {
    prop::collection::vec(
        (task_ref(), any::<u32>()).prop_map(|(task, attempt)| Claim { task, attempt }),
        0..4,
    )
}

fn outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![
        any::<i32>().prop_map(Outcome::Exited),
        any::<i32>().prop_map(Outcome::Signaled),
        Just(Outcome::TimedOut),
        text().prop_map(Outcome::FailedToStart),
        text().prop_map(Outcome::OutputsFailed),
    ]
}

fn blob() -> impl Strategy<Value = Option<BlobId>> {
    any::<Option<[u8; 32]>>().prop_map(|b| b.map(BlobId))
}

prop_compose! {
    fn task_result()(
        task in task_ref(),
        attempt in any::<u32>(),
        outcome in outcome(),
        stdout in blob(),
        stderr in blob(),
        outputs in blob(),
        duration_ms in any::<u64>(),
    ) -> TaskResult {
        TaskResult { task, attempt, outcome, stdout, stderr, outputs, duration_ms }
    }
}

fn event_body() -> impl Strategy<Value = EventBody> {
    prop_oneof![
        (job_spec(), any::<u64>(), any::<u64>()).prop_map(|(job, submitted_ms, nonce)| {
            EventBody::JobSubmitted {
                job,
                submitted_ms,
                nonce,
            }
        }),
        any::<[u8; 8]>().prop_map(|j| EventBody::JobCancelled { job: JobId(j) }),
        claims().prop_map(|claims| EventBody::Claims { claims }),
        claims().prop_map(|claims| EventBody::Reclaimed { claims }),
        prop::collection::vec(task_result(), 0..3)
            .prop_map(|results| EventBody::Finished { results }),
        (any::<[u8; 32]>(), any::<bool>(), any::<u64>()).prop_map(|(node, drain, at_ms)| {
            EventBody::DrainRequested {
                node: Identity::from_seed(node).node_id(),
                drain,
                at_ms,
            }
        }),
        (text(), text(), any::<[u8; 32]>(), any::<u64>()).prop_map(
            |(name, version, blob, added_ms)| EventBody::PackageAdded {
                name,
                version,
                blob: BlobId(blob),
                added_ms,
            }
        ),
    ]
}

fn event() -> impl Strategy<Value = Event> {
    (any::<[u8; 32]>(), event_body()).prop_map(|(seed, body)| Identity::from_seed(seed).sign(body))
}

fn message() -> impl Strategy<Value = Message> {
    let ids = prop::collection::vec(any::<[u8; 32]>().prop_map(EventId), 0..4);
    prop_oneof![
        prop::collection::vec(event().prop_map(|e| e.encode()), 0..3)
            .prop_map(|events| Message::Events { events }),
        Just(Message::Heartbeat),
        (
            prop::collection::vec((any::<u8>(), ids.clone()), 0..3),
            any::<bool>()
        )
            .prop_map(|(buckets, partial)| Message::SyncIds { buckets, partial }),
        ids.prop_map(|ids| Message::GetEvents { ids }),
    ]
}

fn object() -> impl Strategy<Value = Object> {
    let chunk = (any::<[u8; 32]>(), any::<u32>()).prop_map(|(hash, len)| ChunkRef { hash, len });
    let entry =
        (text(), any::<u32>(), any::<[u8; 32]>()).prop_map(|(path, mode, blob)| TreeEntry {
            path,
            mode,
            blob: BlobId(blob),
        });
    prop_oneof![
        (any::<u64>(), prop::collection::vec(chunk, 0..4))
            .prop_map(|(size, chunks)| Object::File(Manifest { size, chunks })),
        prop::collection::vec(entry, 0..4).prop_map(|entries| Object::Tree(Tree { entries })),
    ]
}

fn fetch_request() -> impl Strategy<Value = FetchRequest> {
    let hashes = prop::collection::vec(any::<[u8; 32]>(), 0..4);
    prop_oneof![
        any::<[u8; 32]>().prop_map(FetchRequest::Chunk),
        hashes.clone().prop_map(FetchRequest::Have),
        hashes.clone().prop_map(FetchRequest::Chunks),
        hashes.prop_map(FetchRequest::ChunksNotKept),
    ]
}

fn fetch_response() -> impl Strategy<Value = FetchResponse> {
    let bytes = prop::collection::vec(any::<u8>(), 0..64);
    prop_oneof![
        bytes.clone().prop_map(FetchResponse::Chunk),
        Just(FetchResponse::NotFound),
        bytes.prop_map(FetchResponse::Have),
    ]
}

/// Arbitrary bytes behind a correct version byte, so decoding gets past it.
fn versioned_junk() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..256).prop_map(|mut body| {
        body.insert(0, codec::VERSION);
        body
    })
}

proptest! {
    #[test]
    fn messages_round_trip_and_damaged_ones_decode_only_canonically(
        msg in message(), damage in damage()
    ) {
        round_trips(&msg, &damage)?;
    }

    #[test]
    fn events_round_trip_still_verify_and_damaged_ones_decode_only_canonically(
        event in event(), damage in damage()
    ) {
        round_trips(&event, &damage)?;
        prop_assert!(Event::decode_verified(&event.encode()).is_ok());
    }

    #[test]
    fn job_specs_round_trip_and_damaged_ones_decode_only_canonically(
        job in job_spec(), damage in damage()
    ) {
        round_trips(&job, &damage)?;
        let _ = job.validate();
    }

    #[test]
    fn content_objects_round_trip_and_damaged_ones_decode_only_canonically(
        object in object(), damage in damage()
    ) {
        round_trips(&object, &damage)?;
    }

    #[test]
    fn fetch_requests_and_responses_round_trip(
        request in fetch_request(), response in fetch_response(), damage in damage()
    ) {
        round_trips(&request, &damage)?;
        round_trips(&response, &damage)?;
    }

    #[test]
    fn arbitrary_bytes_never_panic_a_decoder(bytes in versioned_junk()) {
        decodes_canonically::<Message>(&bytes)?;
        decodes_canonically::<Event>(&bytes)?;
        decodes_canonically::<JobSpec>(&bytes)?;
        decodes_canonically::<Object>(&bytes)?;
        decodes_canonically::<FetchRequest>(&bytes)?;
        decodes_canonically::<FetchResponse>(&bytes)?;
    }

    #[test]
    fn batch_frames_split_back_into_their_chunks(
        chunks in prop::collection::vec(
            prop::option::of(prop::collection::vec(any::<u8>(), 0..32)), 0..MAX_BATCH.min(16)
        ),
        damage in damage(),
    ) {
        let data: Vec<u8> = chunks.iter().flatten().flatten().copied().collect();
        let lens = chunks.iter().map(|c| c.as_ref().map(|c| c.len() as u32)).collect();
        let frame = batch_frame(data, lens);
        let split = split_batch(&frame, chunks.len()).expect("own frame");
        let expected: Vec<Option<&[u8]>> = chunks.iter().map(|c| c.as_deref()).collect();
        prop_assert_eq!(split, expected);
        let mut damaged = frame.clone();
        for d in &damage {
            d.apply(&mut damaged);
            if let Ok(parts) = split_batch(&damaged, chunks.len()) {
                let carried: usize = parts.iter().flatten().map(|p| p.len()).sum();
                prop_assert!(carried <= damaged.len());
            }
        }
    }
}

#[test]
fn a_value_over_the_size_limit_is_refused_before_it_is_read() {
    let mut bytes = codec::encode(&FetchResponse::Chunk(Vec::new()));
    bytes.resize(codec::MAX_SIZE + 1, 0);
    assert_eq!(
        codec::decode::<FetchResponse>(&bytes),
        Err(CodecError::TooLarge(codec::MAX_SIZE + 1))
    );
    // A length field announcing more than the limit is refused without
    // allocating it: 0xfd then a u64 of 2^40 elements.
    let mut huge = vec![codec::VERSION, 0];
    huge.push(0xfd);
    huge.extend_from_slice(&(1u64 << 40).to_le_bytes());
    assert!(codec::decode::<FetchResponse>(&huge).is_err());
}
