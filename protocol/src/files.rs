//! What a task declares about files: inputs placed in its working directory
//! before it starts, output patterns collected after it exits, and the
//! application packages it uses — with the rules those declarations must
//! follow (relative paths that stay inside the working directory, package
//! names that are safe directory names).
//!
//! Must not fetch, unpack or glob anything; the node's staging does.

use crate::content::check_path;
use crate::ids::BlobId;
use serde::{Deserialize, Serialize};

/// Where an input's content comes from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Source {
    /// A blob already in the mesh (a file or a tree). Local sources named in
    /// a job file are stored by `submit` and travel as this.
    Blob(BlobId),
    /// Another task of the job's outputs; the task waits for it to succeed.
    Task(String),
}

/// One input: a blob, or a file or directory inside a tree blob, placed
/// at `path` in the working directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Input {
    /// Relative destination; empty means the working directory itself
    /// (only for a tree).
    pub path: String,
    pub source: Source,
    /// A path inside the source's tree; empty means all of it.
    pub within: String,
}

/// An application package a task uses, resolved to its content at submit.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PackageUse {
    pub name: String,
    pub version: String,
    pub blob: BlobId,
}

/// A declaration that breaks the file rules.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileRuleError {
    #[error("task {task:?}: input path {path:?}: {reason}")]
    InputPath {
        task: String,
        path: String,
        reason: String,
    },
    #[error("task {task:?}: output pattern {pattern:?}: {reason}")]
    OutputPattern {
        task: String,
        pattern: String,
        reason: String,
    },
    #[error("package {name:?}@{version:?}: {reason}")]
    Package {
        name: String,
        version: String,
        reason: &'static str,
    },
}

/// Checks an input's destination and the path it takes inside its source.
pub fn check_input(task: &str, input: &Input) -> Result<(), FileRuleError> {
    for path in [&input.path, &input.within] {
        if !path.is_empty() {
            check_path(path).map_err(|e| FileRuleError::InputPath {
                task: task.to_string(),
                path: path.to_string(),
                reason: e.to_string(),
            })?;
        }
    }
    Ok(())
}

/// Checks an output glob: relative, no `..`, no empty pattern. `*`, `?`,
/// `[...]` and `**` are allowed in any component.
pub fn check_output(task: &str, pattern: &str) -> Result<(), FileRuleError> {
    check_path(pattern).map_err(|e| FileRuleError::OutputPattern {
        task: task.to_string(),
        pattern: pattern.to_string(),
        reason: e.to_string(),
    })
}

/// Checks a package's name and version: each a non-empty directory name of
/// letters, digits and `.`, `_`, `-`, `+`, not starting with `.`.
pub fn check_package(name: &str, version: &str) -> Result<(), FileRuleError> {
    let bad = |reason| {
        Err(FileRuleError::Package {
            name: name.to_string(),
            version: version.to_string(),
            reason,
        })
    };
    for part in [name, version] {
        if part.is_empty() || part.len() > 128 {
            return bad("names and versions are 1 to 128 characters");
        }
        if part.starts_with('.') {
            return bad("names and versions must not start with `.`");
        }
        let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+');
        if !part.chars().all(ok) {
            return bad("names and versions use only letters, digits, `.`, `_`, `-` and `+`");
        }
    }
    Ok(())
}

/// Splits `name@version`.
pub fn parse_package_ref(text: &str) -> Option<(&str, &str)> {
    let (name, version) = text.rsplit_once('@')?;
    check_package(name, version).ok()?;
    Some((name, version))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_paths_and_bad_names_are_refused() {
        let input = |path: &str, within: &str| Input {
            path: path.into(),
            source: Source::Blob(BlobId([0; 32])),
            within: within.into(),
        };
        assert!(check_input("t", &input("in/a.mp4", "")).is_ok());
        assert!(check_input("t", &input("", "results")).is_ok());
        for bad in ["../a", "/etc/passwd", "a/../../b", "a//b"] {
            let err = check_input("t", &input(bad, "")).unwrap_err();
            assert!(err.to_string().contains("task \"t\": input path"), "{err}");
            assert!(check_input("t", &input("x", bad)).is_err());
        }
        assert!(check_output("t", "results/**").is_ok());
        assert!(check_output("t", "*.mp3").is_ok());
        assert!(check_output("t", "../*.mp3").is_err());
        assert!(check_output("t", "/tmp/*").is_err());
        assert!(check_package("ffmpeg-static", "6.1").is_ok());
        assert!(check_package("../x", "1").is_err());
        assert!(check_package("x", "a/b").is_err());
        assert_eq!(
            parse_package_ref("ffmpeg-static@6.1"),
            Some(("ffmpeg-static", "6.1"))
        );
        assert_eq!(parse_package_ref("nover"), None);
    }
}
