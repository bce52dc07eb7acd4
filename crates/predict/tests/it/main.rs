//! Integration tests of the predict library on FER+ faces (the `ferbayes predict` command's
//! tests, which run the binary, live with it in crates/cli).

mod redetect;
