//! What a node keeps on disk: the ledger's events (sled), content blobs
//! (chunk files, and one data file per large file blob) and the rules for
//! reclaiming blobs. Each submodule owns
//! one of them.

pub mod blobs;
pub mod large;
pub mod ledger;
pub mod reclaim;
