//! A Python with the official Azure SDK, for the compatibility tests. Created once per target
//! directory as a venv (`python3 -m venv` + `pip install -r tests/sdk/requirements.txt`), so
//! `cargo test` needs nothing installed by hand beyond Python 3 and access to PyPI.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// Serializes venv creation between the tests of one binary (tests run on threads).
static CREATING: Mutex<()> = Mutex::new(());

/// The folder of the SDK tests and their requirements.
pub fn sdk_tests_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk")
}

/// The venv's python, creating the venv on first use. Panics with pip's output if that fails.
pub fn python_with_sdk() -> PathBuf {
    let _guard = CREATING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("azure-sdk-venv");
    let python = venv.join("bin/python");
    let requirements = sdk_tests_dir().join("requirements.txt");
    let stamp = venv.join("requirements.installed");
    let wanted = std::fs::read_to_string(&requirements).expect("read requirements.txt");
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(wanted.as_str()) {
        return python;
    }
    let status = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .expect("python3 must be installed to run the SDK compatibility tests");
    assert!(status.success(), "python3 -m venv failed");
    let output = Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-r",
        ])
        .arg(&requirements)
        .output()
        .expect("run pip");
    assert!(
        output.status.success(),
        "pip install -r {} failed:\n{}{}",
        requirements.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::write(&stamp, wanted).expect("write venv stamp");
    python
}
