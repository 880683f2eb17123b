//! The files this program creates hold secrets (the key, the database, live codes): their
//! directories are created owner-only.

use std::path::Path;

/// Creates `dir` and its parents if missing, with mode 0700 on Unix; an existing directory
/// is left as it is.
pub fn ensure_private_dir(dir: &Path) -> std::io::Result<()> {
    if dir.as_os_str().is_empty() || dir.exists() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}
