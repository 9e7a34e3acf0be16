//! Job-file factories: the axes of a task sweep from a table of parameter
//! lists, the lines of a file, or the files a glob matches.
//!
//! Owns reading those files (relative to the job file's directory) and the
//! errors naming them. Must not build tasks: `jobfile` places the axes in a
//! `TaskGroup::Sweep`, and the protocol expands them.

use globset::GlobBuilder;
use peerbatch_protocol::job::Axis;
use std::collections::BTreeMap;
use std::path::Path;

/// One axis per parameter list, in name order: `{ alpha = [1, 2], mode = ["a", "b"] }`.
pub fn lists(table: BTreeMap<String, Vec<toml::Value>>) -> Result<Vec<Axis>, String> {
    table
        .into_iter()
        .map(|(name, values)| {
            let rows = values
                .into_iter()
                .map(|v| match v {
                    toml::Value::String(s) => Ok(vec![s]),
                    toml::Value::Integer(_) | toml::Value::Float(_) | toml::Value::Boolean(_) => {
                        Ok(vec![v.to_string()])
                    }
                    other => Err(format!(
                        "sweep value {other} of {name:?} must be a string, number or boolean"
                    )),
                })
                .collect::<Result<_, _>>()?;
            Ok(Axis {
                names: vec![name],
                rows,
            })
        })
        .collect()
}

/// `{line}`: each non-empty line of a file (trailing whitespace removed).
pub fn lines(dir: &Path, file: &str) -> Result<Axis, String> {
    let path = dir.join(file);
    let text =
        std::fs::read_to_string(&path).map_err(|e| format!("lines {}: {e}", path.display()))?;
    let rows: Vec<Vec<String>> = text
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.is_empty())
        .map(|l| vec![l.to_string()])
        .collect();
    if rows.is_empty() {
        return Err(format!("lines {}: the file has no lines", path.display()));
    }
    Ok(Axis {
        names: vec!["line".into()],
        rows,
    })
}

/// `{file}` (relative to the job file), `{file_name}` and `{file_stem}`:
/// each regular file the glob matches, in path order.
pub fn files(dir: &Path, pattern: &str) -> Result<Axis, String> {
    let glob = GlobBuilder::new(pattern)
        .literal_separator(true)
        .build()
        .map_err(|e| format!("files {pattern:?}: {e}"))?
        .compile_matcher();
    let base = literal_dirs(pattern);
    let mut found = Vec::new();
    walk(dir, &base, &mut found).map_err(|e| format!("files {pattern:?}: {e}"))?;
    found.retain(|rel| glob.is_match(rel));
    found.sort();
    if found.is_empty() {
        return Err(format!(
            "files {pattern:?} matched no file under {}",
            dir.display()
        ));
    }
    let rows = found
        .into_iter()
        .map(|rel| {
            let p = Path::new(&rel);
            let name = p.file_name().map(|s| s.to_string_lossy().into_owned());
            let stem = p.file_stem().map(|s| s.to_string_lossy().into_owned());
            vec![
                rel.clone(),
                name.unwrap_or_default(),
                stem.unwrap_or_default(),
            ]
        })
        .collect();
    Ok(Axis {
        names: vec!["file".into(), "file_name".into(), "file_stem".into()],
        rows,
    })
}

/// The pattern's leading directories without wildcards, where walking
/// starts: `clips` for `clips/*.mp4` and for `clips/a.mp4`.
fn literal_dirs(pattern: &str) -> String {
    let parts: Vec<&str> = pattern.split('/').collect();
    let literal = parts
        .iter()
        .take_while(|part| !part.contains(['*', '?', '[', '{']))
        .count();
    // Not the last part: it names files, not a directory.
    parts[..literal.min(parts.len() - 1)].join("/")
}

/// Relative paths of the regular files under `dir/rel`.
fn walk(dir: &Path, rel: &str, out: &mut Vec<String>) -> std::io::Result<()> {
    let here = if rel.is_empty() {
        dir.to_path_buf()
    } else {
        dir.join(rel)
    };
    let Ok(items) = std::fs::read_dir(&here) else {
        return Ok(());
    };
    for item in items {
        let item = item?;
        let Ok(name) = item.file_name().into_string() else {
            continue;
        };
        let child = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        let kind = item.file_type()?;
        if kind.is_dir() {
            walk(dir, &child, out)?;
        } else if kind.is_file() {
            out.push(child);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_lines_and_files_make_axes() {
        let dir = std::env::temp_dir().join(format!("pb-sweep-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("clips/sub")).unwrap();
        for f in [
            "clips/a.mp4",
            "clips/b.mp4",
            "clips/notes.txt",
            "clips/sub/c.mp4",
        ] {
            std::fs::write(dir.join(f), "x").unwrap();
        }
        std::fs::write(dir.join("params.txt"), "--fast\n\n--slow  \n").unwrap();
        assert_eq!(literal_dirs("clips/*.mp4"), "clips", "walks clips/ only");
        assert_eq!(literal_dirs("clips/a.mp4"), "clips");
        assert_eq!(literal_dirs("*.mp4"), "");
        assert_eq!(literal_dirs("clips/**/x/*.mp4"), "clips");
        let axis = files(&dir, "clips/*.mp4").unwrap();
        assert_eq!(axis.rows.len(), 2, "`*` stays in one directory");
        assert_eq!(axis.rows[0], ["clips/a.mp4", "a.mp4", "a"]);
        assert_eq!(files(&dir, "clips/**/*.mp4").unwrap().rows.len(), 3);
        assert!(files(&dir, "*.wav")
            .unwrap_err()
            .contains("matched no file"));
        assert_eq!(
            lines(&dir, "params.txt").unwrap().rows,
            [["--fast"], ["--slow"]]
        );
        let table = BTreeMap::from([(
            "alpha".to_string(),
            vec![toml::Value::Float(0.5), toml::Value::Integer(2)],
        )]);
        assert_eq!(lists(table).unwrap()[0].rows, [["0.5"], ["2"]]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
