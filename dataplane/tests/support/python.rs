//! Pythons with pinned packages for the compatibility tests: the official Azure SDK
//! (`tests/sdk`) and paho-mqtt (`tests/paho`). Each is a venv created once per target
//! directory (`python3 -m venv` + `pip install -r <dir>/requirements.txt`) and re-created
//! when its requirements change, so `cargo test` needs nothing installed by hand beyond
//! Python 3 and access to PyPI.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// Serializes venv creation between the tests of one binary (tests run on threads).
static CREATING: Mutex<()> = Mutex::new(());

/// The folder of the SDK tests and their requirements.
pub fn sdk_tests_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk")
}

/// The folder of the paho-mqtt tests and their requirements.
pub fn paho_tests_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/paho")
}

/// The Azure SDK venv's python, creating the venv on first use.
pub fn python_with_sdk() -> PathBuf {
    venv_python("azure-sdk-venv", &sdk_tests_dir())
}

/// The paho-mqtt venv's python, creating the venv on first use.
pub fn python_with_paho() -> PathBuf {
    venv_python("paho-venv", &paho_tests_dir())
}

/// The python of venv `name` with `<tests_dir>/requirements.txt` installed, creating it on
/// first use. Panics with pip's output if that fails.
fn venv_python(name: &str, tests_dir: &Path) -> PathBuf {
    let _guard = CREATING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    // nextest runs each test in a process of its own: the file lock keeps two of them from
    // building the same venv at once, as the mutex does for the threads of one process.
    let lock = std::fs::File::create(venv.with_extension("lock")).expect("create the venv lock");
    lock.lock().expect("lock the venv lock");
    let python = venv.join("bin/python");
    let requirements = tests_dir.join("requirements.txt");
    let stamp = venv.join("requirements.installed");
    let wanted = std::fs::read_to_string(&requirements).expect("read requirements.txt");
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(wanted.as_str()) {
        return python;
    }
    let status = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .expect("python3 must be installed to run the Python compatibility tests");
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
