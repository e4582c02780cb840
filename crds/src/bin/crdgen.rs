//! Writes the CRD YAML of every Gridline kind into each folder given:
//! `cargo run -p gridline-crds --bin crdgen -- crds/ charts/gridline/crds/`.
//! Without arguments, prints all of them as one multi-document stream.

use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    let folders: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    if folders.is_empty() {
        print!("{}", gridline_crds::crd::combined_crd_yaml());
        return Ok(());
    }
    for folder in folders {
        for (file_name, yaml) in gridline_crds::crd::all_crd_yaml() {
            let path = folder.join(&file_name);
            std::fs::write(&path, yaml)?;
            eprintln!("wrote {}", path.display());
        }
    }
    Ok(())
}
