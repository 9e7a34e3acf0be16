//! The `package` commands: add a directory or archive as a package version,
//! list the versions the mesh knows.
//!
//! Owns what they print; talks to the node only through `client`.

use crate::api::types::{AddPackage, Package, PackageAdded};
use crate::bad_input::BadInput;
use crate::cli::text::{absolute, print_json};
use crate::client::Client;
use anyhow::Result;
use clap::Subcommand;
use peerbatch_protocol::files::check_package;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum PackageCmd {
    /// Store a directory or .tar/.tar.gz/.tgz archive as NAME@VERSION for the whole mesh.
    Add {
        /// The package's name: letters, digits, `.`, `_`, `-`, `+`.
        name: String,
        /// Its version, in the same letters.
        version: String,
        /// A directory, or a .tar, .tar.gz or .tgz archive.
        path: PathBuf,
    },
    /// List the package versions the mesh knows.
    List {
        /// Print the list as JSON.
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
            let body = AddPackage {
                path: absolute(&path)?.into(),
                name: name.clone(),
                version: version.clone(),
            };
            let r: PackageAdded = client.post_unbounded("/v1/packages", &body)?;
            let how = if r.new {
                "added"
            } else {
                "already present, unchanged"
            };
            eprintln!("{name}@{version}: {} files, {how}", r.files);
            println!("{}", r.blob);
            Ok(())
        }
        PackageCmd::List { json } => {
            let list: Vec<Package> = client.get("/v1/packages")?;
            if json {
                return print_json(&list);
            }
            println!("{:<24} {:<12} BLOB", "NAME", "VERSION");
            for p in &list {
                println!("{:<24} {:<12} {}", p.name, p.version, p.blob);
            }
            Ok(())
        }
    }
}
