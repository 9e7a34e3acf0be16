//! The cluster key file and the join token that carries it.
//!
//! The key file extends the IPFS/libp2p `swarm.key` format with the cluster's admin nodes, one
//! line each after the key (a file without them is still read, as a cluster with no admin):
//!
//! ```text
//! /key/swarm/psk/1.0.0/
//! /base16/
//! <64 hex digits>
//! admin <peer id>
//! ```
//!
//! A join token (`peerbatch invite`) is `pbjoin1:` followed by the hex of that text with
//! `addr <multiaddr>` lines added: the addresses where the inviting node can be dialled.
//!
//! Owns only these two formats; it must not touch any other file or node state.

use std::{fmt, fs, io::Write, path::Path, str::FromStr};

use libp2p::{Multiaddr, PeerId};
use rand::RngCore;
use tracing::warn;

use super::NetError;

const HEADER: &str = "/key/swarm/psk/1.0.0/";
const ENCODING: &str = "/base16/";
const TOKEN_PREFIX: &str = "pbjoin1:";
/// Most admins a key file or token may list.
const MAX_ADMINS: usize = 64;
/// Most addresses a token may carry.
const MAX_ADDRS: usize = 32;
/// Longest token accepted, in characters.
const MAX_TOKEN: usize = 32 * 1024;

/// A cluster's pre-shared secret and its admin nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterKey {
    pub secret: [u8; 32],
    pub admins: Vec<PeerId>,
}

/// What `peerbatch invite` prints and `peerbatch node --join-token` reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinToken {
    pub key: ClusterKey,
    /// Where the inviting node can be dialled.
    pub addrs: Vec<Multiaddr>,
}

impl ClusterKey {
    /// A fresh random secret with these admins.
    pub fn generate(admins: Vec<PeerId>) -> ClusterKey {
        let mut secret = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut secret);
        ClusterKey { secret, admins }
    }

    /// Reads a key file written by [`ClusterKey::write_new`] (or a plain `swarm.key` from
    /// go-libp2p/IPFS tooling). Errors name the file and say what is wrong with it.
    pub fn read(path: &Path) -> Result<ClusterKey, NetError> {
        let text = fs::read_to_string(path).map_err(|source| NetError::ClusterKeyIo {
            path: path.to_path_buf(),
            source,
        })?;
        warn_if_readable_by_others(path);
        ClusterKey::decode(&text).map_err(|reason| NetError::ClusterKey {
            path: path.to_path_buf(),
            reason,
        })
    }

    /// Parses a key file's text ([`ClusterKey::encode`]); the error says what is wrong.
    pub(super) fn decode(text: &str) -> Result<ClusterKey, String> {
        let (key, addrs) = parse(text)?;
        if !addrs.is_empty() {
            return Err("addr lines belong in a join token, not a key file".into());
        }
        Ok(key)
    }

    /// Writes the key to `path` (mode 0600, never overwriting an existing file).
    pub fn write_new(&self, path: &Path) -> Result<(), NetError> {
        let io_err = |source| NetError::ClusterKeyIo {
            path: path.to_path_buf(),
            source,
        };
        let mut file = create_private(path).map_err(io_err)?;
        file.write_all(self.encode().as_bytes()).map_err(io_err)?;
        file.sync_all().map_err(io_err)
    }

    /// The key file's text (also what an approval hands a waiting node, inside TLS).
    pub(super) fn encode(&self) -> String {
        let hex: String = self.secret.iter().map(|b| format!("{b:02x}")).collect();
        let mut text = format!("{HEADER}\n{ENCODING}\n{hex}\n");
        for admin in &self.admins {
            text.push_str(&format!("admin {admin}\n"));
        }
        text
    }
}

/// Generate a fresh random cluster key without admins and write it to `path` (mode 0600, never
/// overwriting an existing file). Returns the secret.
pub fn write_cluster_key(path: &Path) -> Result<[u8; 32], NetError> {
    let key = ClusterKey::generate(Vec::new());
    key.write_new(path)?;
    Ok(key.secret)
}

impl fmt::Display for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = self.key.encode();
        for addr in &self.addrs {
            text.push_str(&format!("addr {addr}\n"));
        }
        f.write_str(TOKEN_PREFIX)?;
        text.bytes().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

/// Why a join token was refused.
#[derive(Debug, thiserror::Error)]
#[error("join token: {0}")]
pub struct TokenError(String);

impl FromStr for JoinToken {
    type Err = TokenError;

    fn from_str(token: &str) -> Result<JoinToken, TokenError> {
        let token = token.trim();
        if token.len() > MAX_TOKEN {
            return Err(TokenError(format!(
                "{} characters, more than the {MAX_TOKEN} a token may have",
                token.len()
            )));
        }
        let hex = token.strip_prefix(TOKEN_PREFIX).ok_or_else(|| {
            TokenError(format!(
                "must start with {TOKEN_PREFIX:?} (as `peerbatch invite` prints it)"
            ))
        })?;
        if hex.len() % 2 != 0 {
            return Err(TokenError("odd number of hex digits".into()));
        }
        let bytes = hex
            .as_bytes()
            .chunks(2)
            .map(|pair| Ok((hex_digit(pair[0])? << 4) | hex_digit(pair[1])?))
            .collect::<Result<Vec<u8>, String>>()
            .map_err(TokenError)?;
        let text = String::from_utf8(bytes).map_err(|_| TokenError("not UTF-8 inside".into()))?;
        let (key, addrs) = parse(&text).map_err(TokenError)?;
        if addrs.is_empty() {
            return Err(TokenError("carries no address to dial".into()));
        }
        Ok(JoinToken { key, addrs })
    }
}

/// Parses a key file's text, with any `addr` lines (a token's) returned beside it.
fn parse(text: &str) -> Result<(ClusterKey, Vec<Multiaddr>), String> {
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
    let secret = parse_secret(hex)?;
    let (mut admins, mut addrs) = (Vec::new(), Vec::new());
    for (n, line) in lines.enumerate().filter(|(_, l)| !l.is_empty()) {
        let at = n + 4;
        match line.split_once(' ') {
            Some(("admin", id)) if admins.len() < MAX_ADMINS => admins.push(
                id.trim()
                    .parse::<PeerId>()
                    .map_err(|e| format!("line {at}: {:?} is not a peer id: {e}", truncate(id)))?,
            ),
            Some(("addr", addr)) if addrs.len() < MAX_ADDRS => {
                addrs.push(addr.trim().parse::<Multiaddr>().map_err(|e| {
                    format!("line {at}: {:?} is not a multiaddr: {e}", truncate(addr))
                })?)
            }
            Some(("admin", _)) => return Err(format!("more than {MAX_ADMINS} admin lines")),
            Some(("addr", _)) => return Err(format!("more than {MAX_ADDRS} addr lines")),
            _ => {
                return Err(format!(
                    "line {at}: expected `admin PEER_ID` after the key, found {:?}",
                    truncate(line)
                ))
            }
        }
    }
    Ok((ClusterKey { secret, admins }, addrs))
}

fn parse_secret(hex: &str) -> Result<[u8; 32], String> {
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
    use super::super::tests::temp_path;
    use super::*;

    #[test]
    fn write_then_read_round_trips_with_private_mode() {
        let path = temp_path("swarm.key");
        let key = write_cluster_key(&path).expect("write");
        assert_eq!(ClusterKey::read(&path).expect("read").secret, key);
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
        let err = ClusterKey::read(&path).expect_err("garbled key must be rejected");
        let msg = err.to_string();
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(msg.contains("64 hex digits"), "{msg}");
        let _ = fs::remove_file(&path);
    }

    fn secret(text: &str) -> Result<[u8; 32], String> {
        parse(text).map(|(key, _)| key.secret)
    }

    #[test]
    fn parse_reports_what_is_wrong() {
        let good = ClusterKey {
            secret: [0xab; 32],
            admins: Vec::new(),
        }
        .encode();
        assert_eq!(secret(&good), Ok([0xab; 32]));
        assert_eq!(secret(&good.replace("\n", "\r\n")), Ok([0xab; 32]));
        assert!(secret("").unwrap_err().contains("empty"));
        assert!(secret("/key/swarm/psk/2.0.0/\n")
            .unwrap_err()
            .contains("first line"));
        assert!(secret("/key/swarm/psk/1.0.0/\n/base64/\nxx\n")
            .unwrap_err()
            .contains("base16"));
        let bad_digit = good.replace("ab\n", "zz\n");
        assert!(secret(&bad_digit).unwrap_err().contains("'z'"));
        assert!(secret(&format!("{good}extra\n"))
            .unwrap_err()
            .contains("line 4: expected `admin PEER_ID` after the key"));
        assert!(secret(&format!("{good}admin nobody\n"))
            .unwrap_err()
            .contains("line 4: \"nobody\" is not a peer id"));
    }

    #[test]
    fn admins_round_trip_through_the_key_file_and_a_token() {
        let admins: Vec<PeerId> = (0..3).map(|_| PeerId::random()).collect();
        let key = ClusterKey::generate(admins);
        let path = temp_path("admins.key");
        key.write_new(&path).expect("write");
        assert_eq!(ClusterKey::read(&path).expect("read"), key);
        let _ = fs::remove_file(&path);

        let token = JoinToken {
            key,
            addrs: vec!["/ip4/10.0.0.5/tcp/4001".parse().expect("addr")],
        };
        let text = token.to_string();
        assert!(text.starts_with("pbjoin1:") && !text.contains(char::is_whitespace));
        assert_eq!(text.parse::<JoinToken>().expect("parse"), token);
    }

    #[test]
    fn a_bad_token_says_what_is_wrong() {
        let err = |t: &str| t.parse::<JoinToken>().expect_err("refused").to_string();
        assert!(err("hello").contains("must start with \"pbjoin1:\""));
        assert!(err("pbjoin1:abc").contains("odd number"));
        assert!(err("pbjoin1:zz").contains("not a hex digit"));
        let keyless = JoinToken {
            key: ClusterKey::generate(Vec::new()),
            addrs: Vec::new(),
        };
        assert!(err(&keyless.to_string()).contains("no address"));
        assert!(err(&"a".repeat(40_000)).contains("more than"));
    }
}
