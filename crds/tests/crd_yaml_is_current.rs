//! The committed CRD YAML must be what the Rust types generate. When this fails, run
//! `cargo run -p gridline-crds --bin crdgen -- crds/ charts/gridline/crds/` and commit the result.

use std::path::Path;

#[test]
fn committed_crd_yaml_matches_the_rust_types() {
    let crds_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let chart_crds_dir = crds_dir.join("../charts/gridline/crds");
    let mut stale = Vec::new();
    for folder in [crds_dir.to_path_buf(), chart_crds_dir] {
        for (file_name, generated) in gridline_crds::crd::all_crd_yaml() {
            let path = folder.join(&file_name);
            let committed = std::fs::read_to_string(&path).unwrap_or_default();
            if committed != generated {
                stale.push(path.display().to_string());
            }
        }
    }
    assert!(
        stale.is_empty(),
        "stale CRD YAML: {stale:?}; run `cargo run -p gridline-crds --bin crdgen -- crds/ charts/gridline/crds/` and commit"
    );
}

#[test]
fn every_kind_has_status_short_name_and_the_gridline_category() {
    for crd in gridline_crds::crd::all_crds() {
        let name = crd.metadata.name.clone().unwrap_or_default();
        assert!(name.ends_with(".gridline.dev"), "{name}");
        let names = &crd.spec.names;
        assert_eq!(
            names.categories.as_deref(),
            Some(&["gridline".to_string()][..]),
            "{name}"
        );
        assert_eq!(names.short_names.as_ref().map(Vec::len), Some(1), "{name}");
        let version = &crd.spec.versions[0];
        assert_eq!(version.name, "v1alpha1");
        assert!(
            version
                .subresources
                .as_ref()
                .and_then(|s| s.status.as_ref())
                .is_some(),
            "{name}"
        );
        let columns = version
            .additional_printer_columns
            .as_deref()
            .unwrap_or_default();
        assert!(
            columns.iter().any(|c| c.name == "Accepted"),
            "{name} shows Accepted"
        );
        let schema = serde_json::to_string(&version.schema).unwrap_or_default();
        assert!(
            schema.contains("x-kubernetes-validations"),
            "{name} carries CEL rules"
        );
        assert!(
            schema.contains("observedGeneration"),
            "{name} status has observedGeneration"
        );
    }
}
