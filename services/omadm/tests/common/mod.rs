//! Helpers shared by the cross-check tests: finding the third-party tools they run.

use std::path::PathBuf;

/// The path of a tool on PATH. Missing, it prints a notice and returns `None` so the test skips, except
/// under `DMGW_REQUIRE_TOOLS` (CI), where a missing tool fails the test.
pub fn tool(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var_os("DMGW_REQUIRE_TOOLS").is_none(),
            "`{name}` is required (DMGW_REQUIRE_TOOLS is set): apt-get install libwbxml2-utils"
        );
        eprintln!(
            "NOTICE: `{name}` not found (Debian package libwbxml2-utils); skipping the cross-check"
        );
    }
    found
}
