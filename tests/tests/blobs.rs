//! Files through the mesh: `put` on one node, `get` on another, with
//! corrupted chunks, unsafe trees and a provider killed mid-transfer.

use peerbatch_protocol::content::{Manifest, Object, Tree, TreeEntry};
use peerbatch_protocol::BlobId;
use peerbatch_tests::{bin, hash_file, ok, wait_for, write_pattern, Cluster, Node};
use serde_json::Value;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const MIB: u64 = 1 << 20;

fn put(node: &Node, paths: &[&Path]) -> Vec<String> {
    let mut args = vec!["put"];
    args.extend(paths.iter().map(|p| p.to_str().unwrap()));
    let ids: Vec<String> = ok(&node.cli(&args), "put")
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(ids.len(), paths.len(), "one id per path: {ids:?}");
    for id in &ids {
        assert!(
            id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()),
            "{id:?}"
        );
    }
    ids
}

fn get(node: &Node, id: &str, out: &Path) -> Output {
    node.cli(&["get", id, "--out", out.to_str().unwrap(), "--json"])
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn files_and_trees_round_trip_and_unsafe_trees_are_refused() {
    let cluster = Cluster::start(3, &[]);
    let [a, c] = [&cluster.nodes[0], &cluster.nodes[2]];
    let src = cluster.tmp.path().join("src");
    fs::create_dir_all(src.join("tree/sub/deeper")).unwrap();
    let sizes = [0, 1, MIB + 1];
    let files: Vec<(PathBuf, blake3::Hash)> = sizes
        .iter()
        .map(|&size| {
            let path = src.join(format!("f{size}"));
            (path.clone(), write_pattern(&path, size, size + 7))
        })
        .collect();
    let tree = src.join("tree");
    fs::write(tree.join("top.txt"), "top\n").unwrap();
    fs::write(tree.join("sub/data.bin"), vec![7u8; 3000]).unwrap();
    fs::write(tree.join("sub/deeper/run.sh"), "#!/bin/sh\necho hi\n").unwrap();
    fs::set_permissions(
        tree.join("sub/deeper/run.sh"),
        fs::Permissions::from_mode(0o755),
    )
    .unwrap();

    let mut paths: Vec<&Path> = files.iter().map(|(p, _)| p.as_path()).collect();
    paths.push(&tree);
    let ids = put(a, &paths);

    // Storing the same file again writes no new chunk.
    let again = a.json(&["put", files[2].0.to_str().unwrap(), "--json"]);
    assert_eq!(again[0]["stored"]["id"], ids[2].as_str());
    assert_eq!(again[0]["stored"]["chunks_written"], 0, "{again}");

    let out = cluster.tmp.path().join("out");
    fs::create_dir_all(&out).unwrap();
    for ((_, hash), id) in files.iter().zip(&ids) {
        let target = out.join(id);
        ok(&get(c, id, &target), "get of a file");
        assert_eq!(hash_file(&target), *hash, "file {id}");
    }
    let tree_out = out.join("tree");
    ok(&get(c, &ids[3], &tree_out), "get of a tree");
    assert_eq!(fs::read(tree_out.join("top.txt")).unwrap(), b"top\n");
    assert_eq!(
        fs::read(tree_out.join("sub/data.bin")).unwrap(),
        vec![7u8; 3000]
    );
    let script = tree_out.join("sub/deeper/run.sh");
    assert_eq!(mode(&script), 0o755, "the executable bit survives");
    assert_eq!(mode(&tree_out.join("top.txt")) & 0o111, 0);
    let ran = Command::new(&script).output().unwrap();
    assert_eq!(ok(&ran, "the fetched script"), "hi");

    // An existing, non-empty destination is never overwritten.
    let refused = get(c, &ids[3], &tree_out);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("not empty"), "{err}");
    let bad_id = c.cli(&["get", "xyz", "--out", "/tmp/nowhere"]);
    assert_eq!(bad_id.status.code(), Some(2));

    // A crafted tree whose entry climbs out with `..`, stored on A.
    let crafted = Object::Tree(Tree {
        entries: vec![TreeEntry {
            path: "../x".into(),
            mode: 0o644,
            blob: BlobId::parse(&ids[1]).unwrap(),
        }],
    });
    let crafted_id = crafted.id().to_string();
    let dir = a.dir.join("chunks").join(&crafted_id[..2]);
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join(&crafted_id), crafted.encode()).unwrap();
    let trap = cluster.tmp.path().join("trap");
    fs::create_dir_all(&trap).unwrap();
    for node in [c, a] {
        let refused = get(node, &crafted_id, &trap.join("out"));
        assert!(!refused.status.success());
        let err = String::from_utf8_lossy(&refused.stderr);
        assert!(
            err.contains("\"../x\"") && err.contains("escapes"),
            "the error names the path: {err}"
        );
    }
    assert_eq!(
        fs::read_dir(&trap).unwrap().count(),
        0,
        "nothing was written"
    );
}

#[test]
fn a_manifest_declaring_16_tib_is_refused_by_name_and_the_node_lives_on() {
    let cluster = Cluster::start(2, &[]);
    let [a, c] = [&cluster.nodes[0], &cluster.nodes[1]];
    let file = cluster.tmp.path().join("five");
    fs::write(&file, b"hello").unwrap();
    let real = put(a, &[&file]).remove(0);
    let Some(Object::File(manifest)) = read_object(a, &real) else {
        panic!("no manifest for {real}");
    };
    // The same five bytes, declared as 16 TiB, stored on A.
    let crafted = Object::File(Manifest {
        size: 16 << 40,
        chunks: vec![manifest.chunks[0]],
    });
    let crafted_id = crafted.id().to_string();
    let dir = a.dir.join("chunks").join(&crafted_id[..2]);
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join(&crafted_id), crafted.encode()).unwrap();
    let out = cluster.tmp.path().join("out");
    for node in [c, a] {
        let refused = get(node, &crafted_id, &out);
        assert!(!refused.status.success());
        let err = String::from_utf8_lossy(&refused.stderr);
        assert!(
            err.contains(&crafted_id) && err.contains("17592186044416 bytes"),
            "the error names the blob and its size: {err}"
        );
        assert!(!out.exists(), "nothing was written");
        ok(&node.cli(&["status"]), "the node still answers");
    }
}

/// A blob's object as `node` stores it.
fn read_object(node: &Node, id: &str) -> Option<Object> {
    let bytes = fs::read(node.dir.join("chunks").join(&id[..2]).join(id)).ok()?;
    peerbatch_protocol::codec::decode(&bytes).ok()
}

#[test]
fn a_corrupted_chunk_is_refused_and_fetched_from_another_provider() {
    let cluster = Cluster::start(3, &[]);
    let [a, b, c] = [&cluster.nodes[0], &cluster.nodes[1], &cluster.nodes[2]];
    let file = cluster.tmp.path().join("eight");
    let hash = write_pattern(&file, 8 * MIB + 5, 42);
    let id = put(a, &[&file]).remove(0);
    ok(&get(b, &id, &cluster.tmp.path().join("on-b")), "get on B");

    // Every data chunk B holds becomes garbage of the same length.
    let mut corrupted = 0;
    for shard in fs::read_dir(b.dir.join("chunks")).unwrap() {
        for chunk in fs::read_dir(shard.unwrap().path()).unwrap() {
            let path = chunk.unwrap().path();
            if path.file_name().unwrap() != id.as_str() {
                let len = fs::metadata(&path).unwrap().len() as usize;
                fs::write(&path, vec![0xAB; len]).unwrap();
                corrupted += 1;
            }
        }
    }
    assert_eq!(corrupted, 9);

    // Providers are connected peers; C may so far know B only by gossip.
    wait_for("C to connect to A and B", Duration::from_secs(30), || {
        (c.status()["peers_connected"] == 2).then_some(())
    });
    // Whether or not C keeps a copy, every chunk is verified.
    let bare = cluster.tmp.path().join("on-c-bare");
    let args = ["get", "--no-store", &id, "--out", bare.to_str().unwrap()];
    ok(&c.cli(&args), "get --no-store on C");
    assert_eq!(hash_file(&bare), hash);
    let out = cluster.tmp.path().join("on-c");
    ok(&get(c, &id, &out), "get on C");
    assert_eq!(hash_file(&out), hash);
    let st = c.status();
    assert!(st["bad_chunks"].as_u64().unwrap() >= 1, "{st}");
    let b_id = b.peer_id();
    assert!(
        st["bad_chunks_by_peer"][&b_id].as_u64().unwrap_or(0) >= 1,
        "bad chunks are counted against B: {st}"
    );
    assert_eq!(st["bad_chunks_by_peer"].as_object().unwrap().len(), 1);
}

#[test]
fn a_get_that_keeps_no_copy_writes_only_the_file() {
    let cluster = Cluster::start(2, &[]);
    let [a, b] = [&cluster.nodes[0], &cluster.nodes[1]];
    let file = cluster.tmp.path().join("five");
    let hash = write_pattern(&file, 5 * MIB + 3, 7);
    let id = put(a, &[&file]).remove(0);
    let fetch = |name: &str, keep: bool| -> Value {
        let out = cluster.tmp.path().join(name);
        let mut args = vec!["get", &id, "--out", out.to_str().unwrap(), "--json"];
        if !keep {
            args.push("--no-store");
        }
        let done: Value = serde_json::from_str(&ok(&b.cli(&args), "get")).unwrap();
        assert_eq!(hash_file(&out), hash, "{name}");
        done
    };
    assert_eq!(fetch("bare1", false)["chunks_fetched"], 6);
    assert_eq!(
        fetch("bare2", false)["chunks_fetched"],
        6,
        "nothing was kept, so everything is fetched again"
    );
    assert_eq!(fetch("kept1", true)["chunks_fetched"], 6);
    let again = fetch("kept2", true);
    assert_eq!(again["chunks_fetched"], 0, "{again}");
    assert_eq!(again["chunks_present"], 6, "{again}");
}

#[test]
fn a_large_get_survives_its_only_provider_restarting_and_resumes() {
    let mut cluster = Cluster::start(2, &[]);
    let file = cluster.tmp.path().join("big");
    let size = 200 * MIB;
    let hash = write_pattern(&file, size, 2026);
    let chunks = size / MIB;

    let started = Instant::now();
    let id = put(&cluster.nodes[0], &[&file]).remove(0);
    let put_secs = started.elapsed().as_secs_f64();
    eprintln!(
        "put of 200 MiB: {put_secs:.2} s ({:.0} MiB/s)",
        200.0 / put_secs
    );

    let out = cluster.tmp.path().join("big.out");
    let c = &cluster.nodes[1];
    let first = Command::new(bin())
        .arg("--data-dir")
        .arg(&c.dir)
        .args(["get", &id, "--out", out.to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("C to fetch some chunks", Duration::from_secs(60), || {
        let n = c.status()["chunks_fetched"].as_u64().unwrap();
        (n >= 3).then_some(())
    });
    cluster.nodes[0].kill9();
    let first = first.wait_with_output().unwrap();
    assert!(
        !first.status.success(),
        "the get should have failed with its only provider gone"
    );
    assert!(
        !out.exists(),
        "nothing is written before every chunk is here"
    );
    let fetched_before = cluster.nodes[1].status()["chunks_fetched"]
        .as_u64()
        .unwrap();
    assert!(fetched_before < chunks, "killed midway: {fetched_before}");

    cluster.nodes[0].restart();
    cluster.wait_meshed();
    let started = Instant::now();
    let done = cluster.nodes[1].json(&["get", &id, "--out", out.to_str().unwrap(), "--json"]);
    eprintln!(
        "resumed get of {} chunks: {:.2} s",
        done["chunks_fetched"],
        started.elapsed().as_secs_f64()
    );
    assert_eq!(hash_file(&out), hash);
    let present = done["chunks_present"].as_u64().unwrap();
    assert!(present >= fetched_before, "{done}");
    assert_eq!(present + done["chunks_fetched"].as_u64().unwrap(), chunks);
    let total = cluster.nodes[1].status()["chunks_fetched"]
        .as_u64()
        .unwrap();
    assert!(total <= chunks, "no chunk was fetched twice: {total}");
}

#[test]
fn a_store_limit_reclaims_least_recently_used_copies_and_keeps_what_was_put_here() {
    let cluster = Cluster::start(2, &["--store-limit", "12MiB"]);
    let [a, b] = [&cluster.nodes[0], &cluster.nodes[1]];
    let src = cluster.tmp.path().join("src");
    fs::create_dir_all(&src).unwrap();
    let file = |name: &str, mib: u64, seed: u64| {
        let path = src.join(name);
        let hash = write_pattern(&path, mib * MIB, seed);
        (path, hash)
    };
    let (own, own_hash) = file("own", 5, 1);
    let (x, _) = file("x", 4, 2);
    let (y, y_hash) = file("y", 4, 4);
    let own_id = put(a, &[&own]).remove(0);
    let ids = put(b, &[&x, &y]);
    let out = cluster.tmp.path().join("out");
    fs::create_dir_all(&out).unwrap();
    // X is fetched first, so once Y arrives X is the least recently used.
    for (id, name) in ids.iter().zip(["x1", "y1"]) {
        ok(&get(a, id, &out.join(name)), "get");
    }
    let report = wait_for(
        "a reclaim pass to free space",
        Duration::from_secs(20),
        || {
            let r = a.status()["reclaim"].clone();
            (r["freed_bytes"].as_u64().unwrap_or(0) > MIB).then_some(r)
        },
    );
    let store: u64 = fs::read_dir(a.dir.join("chunks"))
        .unwrap()
        .flat_map(|d| fs::read_dir(d.unwrap().path()).unwrap())
        .map(|f| f.unwrap().metadata().unwrap().len())
        .sum();
    assert!(
        store <= 12 * MIB,
        "{store} bytes left above the limit: {report}"
    );

    let fetched = |id: &str, name: &str| -> u64 {
        let done: Value = serde_json::from_str(&ok(&get(a, id, &out.join(name)), "get")).unwrap();
        done["chunks_fetched"].as_u64().unwrap()
    };
    assert_eq!(fetched(&own_id, "own2"), 0, "what was put here stays");
    assert_eq!(hash_file(&out.join("own2")), own_hash);
    assert_eq!(fetched(&ids[1], "y2"), 0, "the recently used copy stays");
    assert_eq!(hash_file(&out.join("y2")), y_hash);
    assert!(
        fetched(&ids[0], "x2") >= 1,
        "the least recently used copy was reclaimed and is fetched again"
    );
}

/// Runs the CLI on `node` as a client that holds only the node's token in
/// `PEERBATCH_TOKEN` — not its files — as a task or another user does.
fn cli_with_token(node: &Node, args: &[&str]) -> Output {
    let token = fs::read_to_string(node.dir.join("token")).unwrap();
    node.command(args)
        .env("PEERBATCH_TOKEN", token.trim())
        .output()
        .unwrap()
}

#[test]
fn a_client_with_only_a_token_puts_a_file_larger_than_a_request_body_and_gets_it_from_another_node()
{
    let cluster = Cluster::start(2, &[]);
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
    // Over the 64 MiB a request body may otherwise hold.
    let src = cluster.tmp.path().join("big.bin");
    let want = write_pattern(&src, 70 * MIB + 123, 7);
    let id = ok(
        &cli_with_token(a, &["put", src.to_str().unwrap()]),
        "put with a token",
    );
    let out = cluster.tmp.path().join("big.out");
    ok(
        &cli_with_token(b, &["get", &id, "--out", out.to_str().unwrap()]),
        "get with a token from the other node",
    );
    assert_eq!(hash_file(&out), want, "the file came back changed");
    // The same id as the node's own put of the path gives.
    assert_eq!(put(a, &[&src]), vec![id]);
}

#[test]
fn a_streamed_put_beyond_the_nodes_store_limit_is_refused_naming_the_limit() {
    let tmp = tempfile::tempdir().unwrap();
    let node = Node::start(&tmp.path().join("a"), &["--store-limit", "1MiB"]);
    let src = tmp.path().join("two.bin");
    write_pattern(&src, 2 * MIB, 3);
    let out = cli_with_token(&node, &["put", src.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "stored beyond the limit: {err}");
    assert!(err.contains("--store-limit of 1048576 bytes"), "{err}");
}
