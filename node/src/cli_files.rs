//! The `package` commands: add a directory or archive as a package version,
//! list the versions the mesh knows.
//!
//! Owns what they print; talks to the node only through `client`.

use crate::bad_input::BadInput;
use crate::cli_text::{absolute, s};
use crate::client::Client;
use anyhow::Result;
use clap::Subcommand;
use peerbatch_protocol::files::check_package;
use serde_json::json;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum PackageCmd {
    /// Store a directory or .tar/.tar.gz/.tgz archive as NAME@VERSION for the whole mesh.
    Add {
        name: String,
        version: String,
        path: PathBuf,
    },
    /// List the package versions the mesh knows.
    List {
        #[arg(long)]
        json: bool,
    },
}

pub fn package(client: &Client, cmd: PackageCmd) -> Result<()> {
    match cmd {
        PackageCmd::Add {
            name,
            version,
            path,
        } => {
            check_package(&name, &version).map_err(|e| BadInput(e.to_string()))?;
            if std::fs::symlink_metadata(&path).is_err() {
                return Err(
                    BadInput(format!("{}: no such file or directory", path.display())).into(),
                );
            }
            let body = json!({ "name": name, "version": version, "path": absolute(&path)? });
            let r = client.post_unbounded("/v1/packages", &body)?;
            let how = if r["new"] == true {
                "added"
            } else {
                "already present, unchanged"
            };
            eprintln!("{name}@{version}: {} files, {how}", r["files"]);
            println!("{}", s(&r["blob"]));
            Ok(())
        }
        PackageCmd::List { json } => {
            let list = client.get("/v1/packages")?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
                return Ok(());
            }
            println!("{:<24} {:<12} BLOB", "NAME", "VERSION");
            for p in list.as_array().into_iter().flatten() {
                println!(
                    "{:<24} {:<12} {}",
                    s(&p["name"]),
                    s(&p["version"]),
                    s(&p["blob"])
                );
            }
            Ok(())
        }
    }
}
