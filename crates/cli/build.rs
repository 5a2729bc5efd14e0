//! Links the front binary `countersign` as a position-dependent executable on Linux (DECISIONS.md,
//! "The front binary is linked without PIE"): its start then writes none of its relocated data,
//! which on a virtual machine is most of what starting it costs. `countersign-full` (the
//! gateway, every long-running process) stays a PIE. Set `COUNTERSIGN_FRONT_PIE=1` when
//! building to keep the front a PIE too.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=COUNTERSIGN_FRONT_PIE");
    let linux = std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux");
    if linux && std::env::var_os("COUNTERSIGN_FRONT_PIE").is_none() {
        println!("cargo:rustc-link-arg-bin=countersign=-no-pie");
    }
}
