//! Manifests as a user writes them: multi-document YAML files, read into JSON objects that
//! the tests apply unchanged (but for their namespace).

use anyhow::{Context, bail};
use serde::Deserialize;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// One object of a manifest file.
#[derive(Clone, Debug)]
pub struct Manifest {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub body: Value,
    pub file: PathBuf,
}

impl Manifest {
    /// `Kind name`, as a person looks for it in `kubectl get`.
    pub fn describe(&self) -> String {
        format!("{} {}", self.kind, self.name)
    }

    /// One of the seven Gridline kinds (they carry status conditions).
    pub fn is_gridline(&self) -> bool {
        self.api_version.starts_with("gridline.dev/")
    }
}

/// The repository's root (the e2e crate is one level down).
pub fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(".."))
}

/// Every object of deploy/examples, files in name order, objects in file order.
pub fn examples() -> anyhow::Result<Vec<Manifest>> {
    read_dir(&repository_root().join("deploy/examples"))
}

/// Every object of the `*.yaml` / `*.yml` files of `dir`.
pub fn read_dir(dir: &Path) -> anyhow::Result<Vec<Manifest>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| {
            path.extension()
                .is_some_and(|ext| ext == "yaml" || ext == "yml")
        })
        .collect();
    files.sort();
    let mut manifests = Vec::new();
    for file in files {
        manifests.extend(read_file(&file)?);
    }
    Ok(manifests)
}

/// Every object of one multi-document YAML file (empty documents skipped).
pub fn read_file(file: &Path) -> anyhow::Result<Vec<Manifest>> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    parse(&text, file)
}

/// Every object of a multi-document YAML text; `file` only names it in errors.
pub fn parse(text: &str, file: &Path) -> anyhow::Result<Vec<Manifest>> {
    let mut manifests = Vec::new();
    for (index, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let yaml = serde_yaml::Value::deserialize(document)
            .with_context(|| format!("{} document {index}: invalid YAML", file.display()))?;
        if yaml.is_null() {
            continue;
        }
        let body: Value = serde_json::to_value(&yaml)
            .with_context(|| format!("{} document {index}: not JSON-like", file.display()))?;
        let field = |name: &str| -> anyhow::Result<String> {
            let pointer = match name {
                "name" => "/metadata/name",
                "apiVersion" => "/apiVersion",
                _ => "/kind",
            };
            match body.pointer(pointer).and_then(Value::as_str) {
                Some(value) => Ok(value.to_string()),
                None => bail!("{} document {index}: no {name}", file.display()),
            }
        };
        manifests.push(Manifest {
            api_version: field("apiVersion")?,
            kind: field("kind")?,
            name: field("name")?,
            body: body.clone(),
            file: file.to_path_buf(),
        });
    }
    Ok(manifests)
}

/// The manifest of `kind` called `name` among `manifests`.
pub fn find<'a>(manifests: &'a [Manifest], kind: &str, name: &str) -> anyhow::Result<&'a Manifest> {
    manifests
        .iter()
        .find(|m| m.kind == kind && m.name == name)
        .with_context(|| format!("no {kind} {name} among the manifests"))
}
