//! The architecture invariant of this crate: it builds on candle-core, gemm, pulp, rayon and
//! libc only (no other ferbayes crate, no candle-nn), so the networks' crates can be read
//! without the kernels and the kernels reused without the pipeline.

#[test]
fn kernels_depend_only_on_candle_core_gemm_pulp_rayon_and_libc() {
    let manifest = include_str!("../Cargo.toml");
    let mut section = String::new();
    let mut deps = Vec::new();
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            section = line.to_owned();
            continue;
        }
        if section == "[dependencies]" && !line.is_empty() && !line.starts_with('#') {
            let name = line.split(['=', '.']).next().unwrap_or("").trim();
            deps.push(name.to_owned());
        }
    }
    let allowed = ["candle-core", "gemm", "pulp", "rayon", "libc"];
    assert!(!deps.is_empty(), "no [dependencies] found");
    for d in &deps {
        assert!(
            allowed.contains(&d.as_str()),
            "ferbayes-kernels depends on `{d}`"
        );
    }
}
