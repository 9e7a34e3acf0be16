//! What every decoder target checks: decoding arbitrary bytes never panics
//! and respects the codec's size limit, and whatever decodes is the one
//! encoding of its value (re-encoding gives the same bytes back), so a value
//! accepted from a peer has exactly one id.

use peerbatch_protocol::codec;
use serde::{de::DeserializeOwned, Serialize};
use std::fmt::Debug;

/// Decodes `data` as a `T`; if that succeeds, checks that it was within the
/// size limit and that it is the canonical encoding of the value.
pub fn decode_canonical<T>(data: &[u8]) -> Option<T>
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let value = codec::decode::<T>(data).ok()?;
    assert!(
        data.len() <= codec::MAX_SIZE,
        "accepted {} bytes",
        data.len()
    );
    let again = codec::encode(&value);
    assert_eq!(
        again, data,
        "decoded {value:?} from bytes it does not encode to"
    );
    Some(value)
}
