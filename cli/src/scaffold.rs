//! `sluice new <name> --lang rust|python|js`: writes a ready-to-build transform project.
//!
//! Every template is embedded in the binary. Python and JavaScript projects get their own
//! copy of the SDK, its build script and the WIT, so they build anywhere; a Rust project
//! refers to the `sluice-sdk` crate by path: by default the `guest-sdk/` of the Sluice source
//! tree this binary was built from, or `--sdk-path`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::args::{Lang, NewArgs};

/// The Sluice source tree's `guest-sdk/`, as it was when this binary was built.
const BUILT_SDK_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../guest-sdk");

const WIT: &str = include_str!("../../wit/sluice-transform@0.2.0/world.wit");
/// The `state` interface the world imports (docs/state.md).
const STATE_WIT: &str = include_str!("../../wit/sluice-transform@0.2.0/state.wit");
const README: &str = include_str!("../templates/README.md");
const SAMPLE: &str = include_str!("../templates/sample.jsonl");

/// A file of a new project: path inside it, content, whether it is a script.
struct File {
    path: &'static str,
    content: &'static str,
    executable: bool,
}

const fn file(path: &'static str, content: &'static str) -> File {
    File {
        path,
        content,
        executable: false,
    }
}

const fn script(path: &'static str, content: &'static str) -> File {
    File {
        path,
        content,
        executable: true,
    }
}

const RUST: &[File] = &[
    file("Cargo.toml", include_str!("../templates/rust/Cargo.toml")),
    file("src/lib.rs", include_str!("../templates/rust/lib.rs")),
    script("build.sh", include_str!("../templates/rust/build.sh")),
    script("test.sh", include_str!("../templates/rust/test.sh")),
];

const PYTHON: &[File] = &[
    file("app.py", include_str!("../templates/python/app.py")),
    file(
        "test_app.py",
        include_str!("../templates/python/test_app.py"),
    ),
    script("test.sh", include_str!("../templates/python/test.sh")),
    script("build.sh", include_str!("../../guest-sdk/python/build.sh")),
    file(
        "sluice_sdk/__init__.py",
        include_str!("../../guest-sdk/python/sluice_sdk/__init__.py"),
    ),
    file(
        "sluice_sdk/_flat.py",
        include_str!("../../guest-sdk/python/sluice_sdk/_flat.py"),
    ),
    file(
        "sluice_sdk/json.py",
        include_str!("../../guest-sdk/python/sluice_sdk/json.py"),
    ),
    file(
        "sluice_sdk/testing.py",
        include_str!("../../guest-sdk/python/sluice_sdk/testing.py"),
    ),
    file("wit/world.wit", WIT),
    file("wit/state.wit", STATE_WIT),
];

const JS: &[File] = &[
    file("app.js", include_str!("../templates/js/app.js")),
    file("app.test.mjs", include_str!("../templates/js/app.test.mjs")),
    script("test.sh", include_str!("../templates/js/test.sh")),
    script("build.sh", include_str!("../../guest-sdk/js/build.sh")),
    file("sluice.js", include_str!("../../guest-sdk/js/sluice.js")),
    file("bundle.mjs", include_str!("../../guest-sdk/js/bundle.mjs")),
    file(
        "componentize.mjs",
        include_str!("../../guest-sdk/js/componentize.mjs"),
    ),
    file("wit/world.wit", WIT),
    file("wit/state.wit", STATE_WIT),
];

/// Creates the project directory `args.name` (relative to the current directory).
pub(crate) fn new_project(args: NewArgs) -> Result<()> {
    let dir = args.name.clone();
    let name = project_name(&dir)?;
    if dir.exists() {
        bail!(ScaffoldError(format!(
            "{} already exists; choose another name or remove it",
            dir.display()
        )));
    }
    let sdk_path = match args.lang {
        Lang::Rust => Some(rust_sdk_path(args.sdk_path.as_deref())?),
        Lang::Python | Lang::Js => None,
    };
    let (files, language, entry, toolchain) = match args.lang {
        Lang::Rust => (RUST, "Rust", "src/lib.rs", "cargo, target wasm32-wasip2"),
        Lang::Python => (
            PYTHON,
            "Python",
            "app.py",
            "componentize-py, installed on first build",
        ),
        Lang::Js => (
            JS,
            "JavaScript",
            "app.js",
            "jco + componentize-js, installed on first build",
        ),
    };
    let sdk_note = match (&sdk_path, args.lang) {
        (Some(path), _) => format!(
            "The SDK crate `sluice-sdk` comes from `{path}` (see `Cargo.toml`); its docs: `cargo doc --open`."
        ),
        (None, Lang::Python) => "The SDK is the `sluice_sdk/` package beside `app.py` (its docstrings document it; \
            `sluice_sdk.json` parses and prints JSON exactly as the Rust SDK does). `build.sh` bundles it \
            with `wit/world.wit` into the component."
            .to_owned(),
        (None, _) => "The SDK is `sluice.js` beside `app.js` (its comments document it; `json` parses and prints \
            JSON exactly as the Rust SDK does). `build.sh` joins both into one module (`bundle.mjs`) and \
            builds it against `wit/world.wit`."
            .to_owned(),
    };
    let lang = args.lang.as_str();
    // Every SDK implements 0.2.0 (flat batches).
    let world_version = "0.2.0";
    let substitute = |text: &str| {
        text.replace("{{name}}", &name)
            .replace("{{crate_name}}", &name.replace('-', "_"))
            .replace("{{sdk_path}}", sdk_path.as_deref().unwrap_or(""))
            .replace("{{language}}", language)
            .replace("{{lang}}", lang)
            .replace("{{entry}}", entry)
            .replace("{{toolchain}}", toolchain)
            .replace("{{sdk_note}}", &sdk_note)
            .replace("{{world_version}}", world_version)
    };
    let readme = File {
        path: "README.md",
        content: README,
        executable: false,
    };
    let sample = file("sample.jsonl", SAMPLE);
    for file in files.iter().chain([&readme, &sample]) {
        let path = dir.join(file.path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path, substitute(file.content))
            .with_context(|| format!("cannot write {}", path.display()))?;
        if file.executable {
            make_executable(&path)?;
        }
    }
    println!(
        "created {language} transform {name} in {}\nnext: cd {} && ./test.sh && ./build.sh && sluice check {name}.wasm",
        dir.display(),
        dir.display()
    );
    Ok(())
}

/// The project's name: the directory's last component, which must suit every toolchain
/// (a Cargo package, a file name): ASCII letters, digits, `-` and `_`, starting with a letter.
fn project_name(dir: &Path) -> Result<String> {
    let name = dir
        .file_name()
        .and_then(|name| name.to_str())
        .unwrap_or_default();
    let valid = name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !valid {
        bail!(ScaffoldError(format!(
            "{:?} is not a usable transform name: use ASCII letters, digits, `-` and `_`, starting with a letter",
            dir.display().to_string()
        )));
    }
    Ok(name.to_owned())
}

/// The `sluice-sdk` crate directory a Rust project depends on, made absolute.
fn rust_sdk_path(given: Option<&Path>) -> Result<String> {
    let path = given.map_or_else(|| PathBuf::from(BUILT_SDK_PATH), Path::to_owned);
    let path = std::fs::canonicalize(&path)
        .ok()
        .filter(|path| path.join("Cargo.toml").is_file());
    let Some(path) = path else {
        bail!(ScaffoldError(match given {
            Some(given) => format!(
                "--sdk-path {}: not a sluice-sdk crate directory (no Cargo.toml)",
                given.display()
            ),
            None => format!(
                "the Rust SDK this binary was built with ({BUILT_SDK_PATH}) is gone; pass --sdk-path <Sluice checkout>/guest-sdk"
            ),
        }));
    };
    path.to_str()
        .map(str::to_owned)
        .context("the SDK path is not UTF-8")
}

#[cfg(unix)]
fn make_executable(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("cannot make {} executable", path.display()))
}

#[cfg(not(unix))]
fn make_executable(_path: &Path) -> Result<()> {
    Ok(())
}

/// A usage problem of `sluice new` (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct ScaffoldError(String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_must_suit_every_toolchain() {
        assert_eq!(project_name(Path::new("a/my-t_1")).unwrap(), "my-t_1");
        for bad in ["1abc", "a b", "ä", "-x", ""] {
            assert!(project_name(Path::new(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_built_sdk_path_is_the_guest_sdk_crate() {
        assert!(rust_sdk_path(None).unwrap().ends_with("guest-sdk"));
        assert!(rust_sdk_path(Some(Path::new("/nonexistent"))).is_err());
    }
}
