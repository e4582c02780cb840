//! `gridline-dataplane check`: everything `run` would refuse, found without running (as
//! `nginx -t` does). Every Namespace in the folder is checked, not only the one `run` serves.

use crate::config::Problem;
use crate::config::manifests::{SchemaRules, parse_manifests, read_manifests};
use gridline_crds::model::{Kind, compile_all};
use std::fmt;
use std::path::{Path, PathBuf};

/// The result of checking a folder.
#[derive(Debug)]
pub struct CheckReport {
    pub path: PathBuf,
    /// In file order, then document order.
    pub problems: Vec<Problem>,
    pub files: usize,
    /// Objects read without problems (before `compile`).
    pub objects: usize,
    pub namespaces: usize,
}

impl CheckReport {
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }

    /// The closing line.
    pub fn summary(&self) -> String {
        let read = format!(
            "{} {}, {} {}, {} {}",
            self.files,
            plural(self.files, "file", "files"),
            self.objects,
            plural(self.objects, "object", "objects"),
            self.namespaces,
            plural(self.namespaces, "Namespace", "Namespaces"),
        );
        if self.is_ok() {
            format!("{}: configuration ok ({read})", self.path.display())
        } else {
            format!(
                "{}: {} {} ({read})",
                self.path.display(),
                self.problems.len(),
                plural(self.problems.len(), "problem", "problems")
            )
        }
    }
}

impl fmt::Display for CheckReport {
    /// One line per problem, then the summary.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for problem in &self.problems {
            writeln!(f, "{problem}")?;
        }
        writeln!(f, "{}", self.summary())
    }
}

fn plural<'a>(n: usize, one: &'a str, many: &'a str) -> &'a str {
    if n == 1 { one } else { many }
}

/// Read, parse, validate and compile everything under `path`.
pub fn check(path: &Path) -> CheckReport {
    let (files, read_problems) = read_manifests(path);
    let loaded = parse_manifests(&files, &SchemaRules::new());
    let (_, errors) = compile_all(&loaded.objects);
    let mut problems = read_problems;
    problems.extend(loaded.problems.iter().cloned());
    problems.extend(errors.into_iter().map(|e| loaded.locate(e)));
    problems.sort();
    problems.dedup();
    CheckReport {
        path: path.to_path_buf(),
        problems,
        files: files.len(),
        objects: Kind::ALL.iter().map(|k| loaded.objects.count(*k)).sum(),
        namespaces: loaded.objects.namespaces.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn a_clean_folder_is_ok() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join("ns.yaml"),
            "apiVersion: gridline.dev/v1alpha1\nkind: Namespace\nmetadata:\n  name: ns1\nspec:\n  listeners:\n    mqttTls: {enabled: false, port: 8883}\n    https: {enabled: false, port: 443}\n",
        )
        .unwrap();
        let report = check(dir.path());
        assert!(report.is_ok(), "{report}");
        assert_eq!(
            report.summary(),
            format!(
                "{}: configuration ok (1 file, 1 object, 1 Namespace)",
                dir.path().display()
            )
        );
    }

    #[test]
    fn problems_are_listed_in_file_order_before_the_summary() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("b.yaml"), "kind: [").unwrap();
        fs::write(dir.path().join("a.yaml"), "a: b: c").unwrap();
        let report = check(dir.path());
        let text = report.to_string();
        let lines: Vec<_> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].contains("a.yaml: document 1: "), "{text}");
        assert!(lines[1].contains("b.yaml: document 1: "), "{text}");
        assert!(
            lines[2].ends_with("2 problems (2 files, 0 objects, 0 Namespaces)"),
            "{text}"
        );
    }
}
