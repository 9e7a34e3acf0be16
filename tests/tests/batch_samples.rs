//! The shapes of the Azure Batch samples, end to end on real processes.

use peerbatch_tests::{ok, wait_converged, Cluster, FAST};
use std::fs;
use std::time::Duration;

/// Fan-out with staged inputs: one task per text file (a `files` sweep),
/// each running `cat` on its own input; its stdout equals its file.
#[test]
fn fan_out_one_task_per_staged_file() {
    let cluster = Cluster::start(3, FAST);
    let texts = cluster.tmp.path().join("texts");
    fs::create_dir_all(&texts).unwrap();
    let bodies = [
        ("alpha", "the first file\n"),
        ("beta", "the second file\nhas two lines\n"),
        ("gamma", ""),
    ];
    for (name, body) in bodies {
        fs::write(texts.join(format!("{name}.txt")), body).unwrap();
    }
    let job_file = cluster.file(
        "fanout.toml",
        r#"
name = "fan-out"
[[tasks]]
id = "cat-{file_stem}"
files = "texts/*.txt"
inputs = [{ path = "input.txt", source = "{file}" }]
command = "cat input.txt"
"#,
    );
    let node = &cluster.nodes[1];
    let job = ok(
        &node.cli(&["submit", job_file.to_str().unwrap(), "--wait"]),
        "submit",
    );
    let all: Vec<_> = cluster.nodes.iter().collect();
    let list = wait_converged(&all, &job, "succeeded", Duration::from_secs(60));
    assert_eq!(list.as_array().unwrap().len(), 3);
    for (name, body) in bodies {
        let out = cluster.nodes[2].cli(&["logs", &job, &format!("cat-{name}")]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), body, "cat-{name}");
    }
}

/// Map-reduce with dependencies: a splitter cuts a text into chunks,
/// mappers grep each chunk with line numbers, and a reducer that depends on
/// every other task renumbers and concatenates — equal to `grep -n` over
/// the whole text.
#[test]
fn map_reduce_with_dependencies_equals_grep_over_the_whole_file() {
    let cluster = Cluster::start(3, FAST);
    let lines: Vec<String> = (1..=400)
        .map(|i| {
            if i % 7 == 0 || i % 31 == 0 {
                format!("line {i}: the needle is here")
            } else {
                format!("line {i}: only hay")
            }
        })
        .collect();
    let text = lines.join("\n") + "\n";
    fs::write(cluster.tmp.path().join("book.txt"), &text).unwrap();
    let expected: String = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.contains("needle"))
        .map(|(n, l)| format!("{}:{l}\n", n + 1))
        .collect();
    let job_file = cluster.file(
        "mapreduce.toml",
        r#"
name = "map-reduce"
[[tasks]]
id = "split"
inputs = [{ path = "book.txt", source = "book.txt" }]
command = "split -l 100 -d -a 1 book.txt chunk"
outputs = ["chunk*"]

[[tasks]]
id = "map-"
range = "0..=3"
inputs = [{ from_task = "split", path = "chunk", within = "chunk{index}" }]
command = "grep -n needle chunk | awk -F: -v off=$(({index} * 100)) 'BEGIN{OFS=\":\"} {$1 = $1 + off; print}' > hits"
outputs = ["hits"]

[[tasks]]
id = "reduce"
depends_on = ["*"]
inputs = [
  { from_task = "map-0", path = "0", within = "hits" },
  { from_task = "map-1", path = "1", within = "hits" },
  { from_task = "map-2", path = "2", within = "hits" },
  { from_task = "map-3", path = "3", within = "hits" },
]
command = "cat 0 1 2 3"
"#,
    );
    let job = ok(
        &cluster.nodes[0].cli(&["submit", job_file.to_str().unwrap(), "--wait"]),
        "submit",
    );
    let out = cluster.nodes[2].cli(&["logs", &job, "reduce"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), expected);
}
