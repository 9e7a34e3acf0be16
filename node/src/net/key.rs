//! Reading and writing the cluster pre-shared key file (the IPFS/libp2p `swarm.key` format):
//!
//! ```text
//! /key/swarm/psk/1.0.0/
//! /base16/
//! <64 hex digits>
//! ```
//!
//! Owns only that file format; it must not touch any other file or node state.

use std::{fs, io::Write, path::Path};

use rand::RngCore;
use tracing::warn;

use super::NetError;

const HEADER: &str = "/key/swarm/psk/1.0.0/";
const ENCODING: &str = "/base16/";

/// Read a cluster key written by [`write_cluster_key`] (or by go-libp2p/IPFS tooling).
///
/// Errors name the file and say what is wrong with it.
pub fn read_cluster_key(path: &Path) -> Result<[u8; 32], NetError> {
    let text = fs::read_to_string(path).map_err(|source| NetError::ClusterKeyIo {
        path: path.to_path_buf(),
        source,
    })?;
    warn_if_readable_by_others(path);
    parse(&text).map_err(|reason| NetError::ClusterKey {
        path: path.to_path_buf(),
        reason,
    })
}

/// Generate a fresh random cluster key and write it to `path` (mode 0600, never overwriting an
/// existing file). Returns the key.
pub fn write_cluster_key(path: &Path) -> Result<[u8; 32], NetError> {
    let mut key = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut key);
    let io_err = |source| NetError::ClusterKeyIo {
        path: path.to_path_buf(),
        source,
    };
    let mut file = create_private(path).map_err(io_err)?;
    file.write_all(encode(&key).as_bytes()).map_err(io_err)?;
    file.sync_all().map_err(io_err)?;
    Ok(key)
}

fn encode(key: &[u8; 32]) -> String {
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    format!("{HEADER}\n{ENCODING}\n{hex}\n")
}

fn parse(text: &str) -> Result<[u8; 32], String> {
    let mut lines = text.lines().map(str::trim);
    match lines.next() {
        Some(HEADER) => {}
        Some(other) => {
            return Err(format!(
                "first line must be {HEADER:?}, found {:?}",
                truncate(other)
            ))
        }
        None => return Err("file is empty".to_string()),
    }
    match lines.next() {
        Some(ENCODING) => {}
        Some(other) => {
            return Err(format!(
                "second line must be {ENCODING:?} (only base16 keys are supported), found {:?}",
                truncate(other)
            ))
        }
        None => return Err(format!("missing the {ENCODING:?} line")),
    }
    let hex = lines
        .next()
        .ok_or_else(|| "missing the key line (64 hex digits)".to_string())?;
    if lines.any(|l| !l.is_empty()) {
        return Err("unexpected text after the key line".to_string());
    }
    if hex.len() != 64 {
        return Err(format!(
            "key line must be 64 hex digits, found {} characters",
            hex.chars().count()
        ));
    }
    let mut key = [0u8; 32];
    for (i, pair) in hex.as_bytes().chunks(2).enumerate() {
        key[i] = (hex_digit(pair[0])? << 4) | hex_digit(pair[1])?;
    }
    Ok(key)
}

fn hex_digit(c: u8) -> Result<u8, String> {
    match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'a'..=b'f' => Ok(c - b'a' + 10),
        b'A'..=b'F' => Ok(c - b'A' + 10),
        _ => Err(format!(
            "key line contains {:?}, which is not a hex digit",
            char::from(c)
        )),
    }
}

/// Keep error messages short even if someone points us at a large binary file.
fn truncate(s: &str) -> String {
    s.chars().take(40).collect()
}

#[cfg(unix)]
fn create_private(path: &Path) -> std::io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

#[cfg(not(unix))]
fn create_private(path: &Path) -> std::io::Result<fs::File> {
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
}

#[cfg(unix)]
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = fs::metadata(path) {
        if meta.permissions().mode() & 0o077 != 0 {
            let path = path.display();
            warn!(%path, "cluster key file is readable by other users; chmod 600 it");
        }
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_path: &Path) {}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn temp_path(name: &str) -> PathBuf {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        std::env::temp_dir().join(format!(
            "peerbatch-net-{name}-{}-{nanos}",
            std::process::id()
        ))
    }

    #[test]
    fn write_then_read_round_trips_with_private_mode() {
        let path = temp_path("swarm.key");
        let key = write_cluster_key(&path).expect("write");
        assert_eq!(read_cluster_key(&path).expect("read"), key);
        let text = fs::read_to_string(&path).expect("read text");
        assert!(text.starts_with("/key/swarm/psk/1.0.0/\n/base16/\n"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).expect("metadata").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let err = write_cluster_key(&path).expect_err("must not overwrite");
        assert!(err.to_string().contains(&path.display().to_string()));
        let _ = fs::remove_file(&path);
    }

    #[test]
    fn garbled_file_is_rejected_naming_the_path() {
        let path = temp_path("garbled.key");
        fs::write(&path, "/key/swarm/psk/1.0.0/\n/base16/\nnot-hex-at-all\n").expect("write");
        let err = read_cluster_key(&path).expect_err("garbled key must be rejected");
        let msg = err.to_string();
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(msg.contains("64 hex digits"), "{msg}");
        let _ = fs::remove_file(&path);
    }

    #[test]
    fn parse_reports_what_is_wrong() {
        let good = encode(&[0xab; 32]);
        assert_eq!(parse(&good), Ok([0xab; 32]));
        assert_eq!(parse(&good.replace("\n", "\r\n")), Ok([0xab; 32]));
        assert!(parse("").unwrap_err().contains("empty"));
        assert!(parse("/key/swarm/psk/2.0.0/\n")
            .unwrap_err()
            .contains("first line"));
        assert!(parse("/key/swarm/psk/1.0.0/\n/base64/\nxx\n")
            .unwrap_err()
            .contains("base16"));
        let bad_digit = good.replace("ab\n", "zz\n");
        assert!(parse(&bad_digit).unwrap_err().contains("'z'"));
        assert!(parse(&format!("{good}extra\n"))
            .unwrap_err()
            .contains("after the key"));
    }
}
