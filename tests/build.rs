//! Builds the guest components the tests run, for `wasm32-wasip2`: the examples workspace
//! (`examples/`) and the test-only guests (`tests/guests/`). Their paths reach the tests as
//! `<NAME>_COMPONENT` environment constants (see `src/lib.rs`).
//!
//! The guests build into `<target dir>/guests`, apart from the outer build's profile
//! directories (no lock contention), with the outer cargo's flags removed from the
//! environment. A failed guest build fails this build, with cargo's output.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// Guest workspaces (relative to the repository root) and the artifacts each must produce.
const WORKSPACES: &[(&str, &[&str])] = &[
    (
        "examples",
        &[
            "passthrough",
            "json_filter",
            "redact",
            "router",
            "windowed_count",
            "sessionizer",
        ],
    ),
    (
        "tests/guests",
        &[
            "fault_on_marker",
            "other_world",
            "wrong_signature",
            "missing_export",
            "future_version",
            "foreign_import",
            "version_stamp_v1",
            "version_stamp_v2",
            "fan_out_work",
            "bad_outputs",
            "flat_hostile",
            "identity_v0_1",
            "keyed_count",
        ],
    ),
];

/// Environment of the outer cargo that must not leak into the guest builds.
const LEAKING_VARS: &[&str] = &[
    "RUSTFLAGS",
    "RUSTDOCFLAGS",
    "CARGO_ENCODED_RUSTFLAGS",
    "CARGO_ENCODED_RUSTDOCFLAGS",
    "CARGO_BUILD_RUSTFLAGS",
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET",
    "CARGO_BUILD_TARGET_DIR",
    "RUSTC",
    "RUSTDOC",
    "RUSTC_WRAPPER",
    "RUSTC_WORKSPACE_WRAPPER",
    "RUSTC_LINKER",
    "CARGO_MAKEFLAGS",
    "MAKEFLAGS",
    "MFLAGS",
    "CARGO_PRIMARY_PACKAGE",
    "CARGO_MANIFEST_DIR",
    "CARGO_MANIFEST_PATH",
    "CARGO_PKG_NAME",
    "OUT_DIR",
    "TARGET",
    "HOST",
    "PROFILE",
    "OPT_LEVEL",
    "DEBUG",
    "NUM_JOBS",
];

/// Transforms in other languages: (artifact, build script under guest-sdk/, source directory
/// under the repository root, the file the script takes). Their components are cached under
/// the target dir by a hash of every input, since componentize-py and componentize-js take a
/// while.
const LANGUAGE_GUESTS: &[(&str, &str, &str, &str)] = &[
    ("redact_py", "python", "examples/redact-python", ""),
    ("redact_js", "js", "examples/redact-js", "app.js"),
    (
        "windowed_count_py",
        "python",
        "examples/windowed-count-python",
        "",
    ),
    (
        "edges_py",
        "python",
        "tests/guests/languages/edges-python",
        "",
    ),
    (
        "edges_js",
        "js",
        "tests/guests/languages/edges-js",
        "app.js",
    ),
    (
        "keyed_count_py",
        "python",
        "tests/guests/languages/keyed-count-python",
        "",
    ),
    (
        "keyed_count_js",
        "js",
        "tests/guests/languages/keyed-count-js",
        "app.js",
    ),
];

fn main() -> Result<()> {
    let tests_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let root = tests_dir
        .parent()
        .context("tests/ has no parent directory")?
        .to_owned();
    let target_dir = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if Path::new(&dir).is_absolute() => PathBuf::from(dir),
        Some(dir) => root.join(dir),
        None => root.join("target"),
    };
    let guest_target = target_dir.join("guests");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());

    for dir in ["wit", "guest-sdk"] {
        watch_tree(&root.join(dir))?;
    }
    for (workspace, artifacts) in WORKSPACES {
        let workspace_dir = root.join(workspace);
        watch_tree(&workspace_dir)?;
        if !workspace_dir.join("Cargo.toml").is_file() {
            bail!(
                "guest workspace {} has no Cargo.toml",
                workspace_dir.display()
            );
        }
        build_workspace(&cargo, &workspace_dir, &guest_target)?;
        for artifact in *artifacts {
            let path = guest_target
                .join("wasm32-wasip2/release")
                .join(format!("{artifact}.wasm"));
            if !path.is_file() {
                bail!(
                    "building {} succeeded but produced no {} (is the package renamed?)",
                    workspace_dir.display(),
                    path.display()
                );
            }
            println!(
                "cargo:rustc-env={}_COMPONENT={}",
                artifact.to_uppercase(),
                path.display()
            );
        }
    }
    for (artifact, language, source, entry) in LANGUAGE_GUESTS {
        let path = build_language_guest(&root, &guest_target, artifact, language, source, entry)?;
        println!(
            "cargo:rustc-env={}_COMPONENT={}",
            artifact.to_uppercase(),
            path.display()
        );
    }
    Ok(())
}

/// Builds `<source>` with `guest-sdk/<language>/build.sh` unless a component of the
/// same inputs is cached; returns the component's path.
fn build_language_guest(
    root: &Path,
    guest_target: &Path,
    artifact: &str,
    language: &str,
    source: &str,
    entry: &str,
) -> Result<PathBuf> {
    let sdk = root.join("guest-sdk").join(language);
    let source = root.join(source);
    for dir in [&sdk, &source] {
        watch_tree(dir)?;
    }
    let mut hasher = std::hash::DefaultHasher::new();
    for dir in [&sdk, &source, &root.join("wit")] {
        hash_tree(dir, &mut hasher)?;
    }
    let digest = std::hash::Hasher::finish(&hasher);
    let out = guest_target
        .join("languages")
        .join(format!("{artifact}-{digest:016x}.wasm"));
    if out.is_file() {
        return Ok(out);
    }
    let input = if entry.is_empty() {
        source.clone()
    } else {
        source.join(entry)
    };
    let output = Command::new(sdk.join("build.sh"))
        .arg(&input)
        .arg(&out)
        .output()
        .with_context(|| format!("cannot run {}", sdk.join("build.sh").display()))?;
    if !output.status.success() || !out.is_file() {
        bail!(
            "building {} with guest-sdk/{language}/build.sh failed ({}):\n{}\n{}",
            source.display(),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(out)
}

/// Feeds every file under `dir` (sorted, skipping build output and hidden entries) into `hasher`.
fn hash_tree(dir: &Path, hasher: &mut impl std::hash::Hasher) -> Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .collect::<Result<_, _>>()?;
    entries.sort_by_key(|entry| entry.file_name());
    for entry in entries {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if matches!(&*name, "target" | "__pycache__" | "node_modules")
            || name.starts_with('.')
            || name.ends_with(".wasm")
        {
            continue;
        }
        let path = entry.path();
        std::hash::Hash::hash(&*name, hasher);
        if path.is_dir() {
            hash_tree(&path, hasher)?;
        } else {
            let bytes =
                std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
            std::hash::Hash::hash(&bytes, hasher);
        }
    }
    Ok(())
}

fn build_workspace(cargo: &OsStr, workspace_dir: &Path, target_dir: &Path) -> Result<()> {
    let mut command = Command::new(cargo);
    command
        .current_dir(workspace_dir)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--target-dir",
        ])
        .arg(target_dir);
    for var in LEAKING_VARS {
        command.env_remove(var);
    }
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("CARGO_CFG_") || name.starts_with("CARGO_FEATURE_") {
            command.env_remove(&*name);
        }
    }
    let output = command
        .output()
        .with_context(|| format!("cannot run cargo to build {}", workspace_dir.display()))?;
    if !output.status.success() {
        bail!(
            "building the guest components in {} failed ({}):\n{}\n{}",
            workspace_dir.display(),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// Reruns this script when anything under `dir` changes, except build output (`target/`)
/// and hidden directories. Cargo scans a watched directory recursively, so the top level is
/// listed entry by entry (a `target/` may sit there) and subdirectories are watched whole.
fn watch_tree(dir: &Path) -> Result<()> {
    if !dir.is_dir() {
        println!("cargo:rerun-if-changed={}", dir.display());
        return Ok(());
    }
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name == "target" || name.starts_with('.') {
            continue;
        }
        println!("cargo:rerun-if-changed={}", entry.path().display());
    }
    Ok(())
}
