//! What a source hands on: the objects it holds, where each came from, and the problems found
//! before compiling. A leaf below the sources (`local`, `kubernetes`, `manifests`), which build
//! these values, and the [`super::source`] that runs them.

use gridline_crds::model::{ObjectError, ObjectKey, Objects};
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

/// Everything a source holds at one moment.
#[derive(Clone, Debug, Default)]
pub struct LoadedConfig {
    pub objects: Objects,
    /// Where each object came from, so a problem found later (by `compile`) can name its file.
    pub provenance: Provenance,
    /// Problems found while reading: documents that do not parse, objects that do not
    /// deserialize or break a CEL rule. The objects concerned are not in `objects`.
    pub problems: Vec<Problem>,
}

impl LoadedConfig {
    /// A problem found by `compile`, placed at the object's origin.
    pub fn locate(&self, error: ObjectError) -> Problem {
        let origin = self
            .provenance
            .get(&error.object)
            .cloned()
            .unwrap_or(Origin::Unknown);
        Problem {
            origin,
            object: Some(error.object),
            field: error.field,
            message: error.message,
        }
    }
}

/// Where each object came from.
pub type Provenance = BTreeMap<ObjectKey, Origin>;

/// Where an object or a problem came from.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Origin {
    /// Document `document` (1-based, as editors count) of a manifest file.
    File { path: PathBuf, document: usize },
    /// A file or folder as a whole (one that could not be read).
    Path(PathBuf),
    /// An object read from the Kubernetes API.
    Kubernetes,
    /// No record of where the object came from (a `compile` error about an object no
    /// source reported: a bug, but still worth printing).
    Unknown,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File { path, .. } | Origin::Path(path) => write!(f, "{}", path.display()),
            Origin::Kubernetes => f.write_str("kubernetes"),
            Origin::Unknown => f.write_str("<unknown source>"),
        }
    }
}

/// One problem in the configuration: where it is, which object, which field, what is wrong.
///
/// Displays as `<file>: <Kind> <k8s-ns>/<name>: <field>: <message>`, or
/// `<file>: document <n>: <message>` when the object is not known (a YAML syntax error).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Problem {
    pub origin: Origin,
    /// The object, when the document got far enough to name one.
    pub object: Option<ObjectKey>,
    /// Path of the field inside the object; empty when the problem is the whole document.
    pub field: String,
    pub message: String,
}

impl Problem {
    /// A problem with a whole document that names no object.
    pub fn document(origin: Origin, message: impl Into<String>) -> Self {
        Self {
            origin,
            object: None,
            field: String::new(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.origin)?;
        match (&self.object, &self.origin) {
            (Some(object), _) => write!(f, "{object}: ")?,
            (None, Origin::File { document, .. }) => write!(f, "document {document}: ")?,
            (None, _) => {}
        }
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gridline_crds::model::Kind;

    #[test]
    fn a_problem_with_an_object_names_file_object_and_field() {
        let problem = Problem {
            origin: Origin::File {
                path: "m/topics.yaml".into(),
                document: 2,
            },
            object: Some(ObjectKey::new(Kind::Topic, "default", "orders")),
            field: "spec.eventRetentionInDays".into(),
            message: "must be 1-7".into(),
        };
        assert_eq!(
            problem.to_string(),
            "m/topics.yaml: Topic default/orders: spec.eventRetentionInDays: must be 1-7"
        );
    }

    #[test]
    fn a_problem_without_an_object_names_the_document() {
        let problem = Problem::document(
            Origin::File {
                path: "m/a.yaml".into(),
                document: 3,
            },
            "did not find expected key at line 4 column 1",
        );
        assert_eq!(
            problem.to_string(),
            "m/a.yaml: document 3: did not find expected key at line 4 column 1"
        );
    }

    #[test]
    fn a_compile_error_is_placed_at_the_file_its_object_came_from() {
        let key = ObjectKey::new(Kind::Topic, "default", "orders");
        let origin = Origin::File {
            path: "m/topics.yaml".into(),
            document: 1,
        };
        let loaded = LoadedConfig {
            provenance: Provenance::from([(key.clone(), origin.clone())]),
            ..LoadedConfig::default()
        };
        let problem = loaded.locate(ObjectError {
            object: key.clone(),
            field: "spec.namespaceRef.name".into(),
            message: "no Namespace named x".into(),
        });
        assert_eq!(problem.origin, origin);
        assert_eq!(problem.object, Some(key));
    }

    #[test]
    fn a_compile_error_about_an_unknown_object_still_prints() {
        let problem = LoadedConfig::default().locate(ObjectError {
            object: ObjectKey::new(Kind::Client, "default", "c1"),
            field: String::new(),
            message: "broken".into(),
        });
        assert_eq!(
            problem.to_string(),
            "<unknown source>: Client default/c1: broken"
        );
    }
}
