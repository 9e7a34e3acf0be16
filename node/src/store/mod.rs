//! What a node keeps on disk: the ledger's events (sled) and content blobs
//! (chunk files). Each submodule owns one of them.

pub mod blobs;
pub mod ledger;
