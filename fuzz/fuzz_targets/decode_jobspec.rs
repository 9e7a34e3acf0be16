//! A job spec (the body of a submit): decoding, validation and, for a valid
//! job, expanding its first and last tasks as every node does.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peerbatch_fuzz::decode_canonical;
use peerbatch_protocol::JobSpec;

fuzz_target!(|data: &[u8]| {
    let Some(job) = decode_canonical::<JobSpec>(data) else {
        return;
    };
    if job.validate().is_err() {
        return;
    }
    let count = u32::try_from(job.task_count()).expect("a valid job's task count fits a u32");
    for index in (0..count.min(16)).chain(count.saturating_sub(16)..count) {
        let task = job
            .task(index)
            .expect("every index below the count is a task");
        assert_eq!(job.position_of(&task.id), Some(index), "task {:?}", task.id);
    }
});
