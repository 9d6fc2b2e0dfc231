//! What a VM bottle's manifest may not say: the keys that shape a *process's* view of the
//! host (`[env]`: which of cork's environment variables a command inherits; `[files]`:
//! which host files a command sees masked). A guest inherits neither — it has its own
//! kernel, filesystem and environment — so a manifest that sets them for a VM would
//! promise something cork does not do there. They are refused, located, never ignored.

use serde::Deserialize;
use toml::Spanned;

use crate::error::ManifestError;
use crate::locate::Locator;

/// Only the keys this check looks at; everything else is the normal parser's business.
#[derive(Deserialize)]
struct VmView {
    env: Option<Spanned<toml::Table>>,
    files: Option<Spanned<toml::Table>>,
}

/// Checks that manifest text `src` (already valid for [`crate::compile`]) has nothing a
/// VM bottle cannot honour.
pub fn check_for_vm(src: &str, origin: &str) -> Result<(), ManifestError> {
    // A large manifest without either table needs no second full `toml` pass (see `bulk/`);
    // one with them is located by the pass below.
    if let Some(raw) = crate::bulk::read(src)
        && raw.env.is_none()
        && raw.files.is_none()
    {
        return Ok(());
    }
    let loc = Locator::new(src, origin);
    let view: VmView = toml::from_str(src).map_err(|e| loc.toml_error(&e))?;
    let refusals = [
        (
            view.env,
            "env",
            "means nothing for a VM bottle (a guest inherits no environment from cork; \
             credential placeholders reach it over fw_cfg opt/cork/env): remove [env]",
        ),
        (
            view.files,
            "files",
            "means nothing for a VM bottle (a guest sees its own disks, never the host's \
             files): remove [files]",
        ),
    ];
    for (value, path, message) in refusals {
        if let Some(v) = value {
            return Err(loc.error(v.span(), path, message));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "version = 1\n[bottle]\nname = \"vm\"\n";

    #[test]
    fn a_manifest_without_process_keys_is_fine_for_a_vm() {
        let src = format!("{BASE}[egress]\nallow = [{{ cidr = \"198.51.100.0/24\" }}]\n");
        assert!(check_for_vm(&src, "m.toml").is_ok());
    }

    #[test]
    fn env_and_files_are_refused_where_they_are() {
        let src = format!("{BASE}[env]\npass = [\"HOME\"]\n");
        let e = check_for_vm(&src, "m.toml").expect_err("env refused");
        assert_eq!((e.line, e.path.as_str()), (4, "env"), "{e}");
        assert!(e.to_string().contains("remove [env]"), "{e}");
        let src = format!("{BASE}\n[files]\nhide = [\"~/.netrc\"]\n");
        let e = check_for_vm(&src, "m.toml").expect_err("files refused");
        assert_eq!((e.line, e.path.as_str()), (5, "files"), "{e}");
        assert!(e.to_string().starts_with("m.toml:5:"), "{e}");
    }

    #[test]
    fn large_manifests_are_checked_alike() {
        let rules: String = (0..8_000)
            .map(|i| {
                format!(
                    "[[egress.allow]]\ncidr = \"10.0.{}.{}\"\n",
                    i / 256,
                    i % 256
                )
            })
            .collect();
        let src = format!("{BASE}{rules}");
        assert!(src.len() >= crate::bulk::MIN_BULK_LEN);
        assert!(check_for_vm(&src, "m.toml").is_ok());
        let e = check_for_vm(&format!("{src}[files]\nhide = [\"~/.netrc\"]\n"), "m.toml")
            .expect_err("files refused");
        assert_eq!(
            (e.line, e.col, e.path.as_str()),
            (16_004, 1, "files"),
            "{e}"
        );
    }
}
