//! Pulling blobs from peers into the local chunk store.
//!
//! Owns the client side of the fetch protocol: ask providers for a blob's
//! manifest and then for each chunk the store lacks, verifying every chunk
//! before it is written and moving on to the next provider on any failure.
//! Must not serve requests (the driver does) or touch the Swarm.

use crate::net::Net;
use crate::store::blobs::BlobStore;
use anyhow::{bail, Context, Result};
use libp2p::PeerId;
use peerbatch_protocol::codec;
use peerbatch_protocol::content::{FetchRequest, FetchResponse, Manifest};
use peerbatch_protocol::ids::to_hex;
use peerbatch_protocol::BlobId;

/// A whole blob, from the local store or from `providers`.
pub async fn fetch_blob(
    net: &Net,
    blobs: &BlobStore,
    id: BlobId,
    providers: &[PeerId],
) -> Result<Vec<u8>> {
    if let Some(bytes) = blobs.read_blob(&id)? {
        return Ok(bytes);
    }
    if !blobs.has_chunk(&id.0) {
        fetch_chunk(net, blobs, &id.0, providers).await?;
    }
    let manifest: Manifest = blobs
        .manifest(&id)?
        .context("manifest vanished after fetching it")?;
    for chunk in &manifest.chunks {
        if !blobs.has_chunk(&chunk.hash) {
            fetch_chunk(net, blobs, &chunk.hash, providers).await?;
        }
    }
    blobs
        .read_blob(&id)?
        .with_context(|| format!("blob {id} is incomplete after fetching"))
}

async fn fetch_chunk(
    net: &Net,
    blobs: &BlobStore,
    hash: &[u8; 32],
    providers: &[PeerId],
) -> Result<()> {
    let request = codec::encode(&FetchRequest::Chunk(*hash));
    let mut failures = Vec::new();
    for peer in providers {
        let reply = match net.fetch(*peer, request.clone()).await {
            Ok(reply) => reply,
            Err(e) => {
                failures.push(format!("{peer}: {e}"));
                continue;
            }
        };
        match codec::decode::<FetchResponse>(&reply) {
            Ok(FetchResponse::Chunk(bytes)) => match blobs.write_chunk(hash, &bytes) {
                Ok(()) => return Ok(()),
                Err(e) => {
                    tracing::warn!("peer {peer} sent a bad chunk: {e:#}");
                    failures.push(format!("{peer}: {e:#}"));
                }
            },
            Ok(FetchResponse::NotFound) => failures.push(format!("{peer}: not found")),
            Err(e) => failures.push(format!("{peer}: garbled reply: {e}")),
        }
    }
    if providers.is_empty() {
        bail!(
            "chunk {} is not here and no peer is connected",
            to_hex(hash)
        );
    }
    bail!(
        "no peer could provide chunk {} ({})",
        to_hex(hash),
        failures.join("; ")
    )
}
