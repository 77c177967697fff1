//! NRI calls the module's `malloc` and `free`. They are wasi-libc's (the allocator Rust's
//! `std` already uses on wasm32-wasip1): defining them in Rust would clash with wasi-libc's
//! symbols, so the linker is asked to export them, for this crate's cdylib only.

fn main() {
    if std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("wasm32") {
        println!("cargo:rustc-cdylib-link-arg=--export=malloc");
        println!("cargo:rustc-cdylib-link-arg=--export=free");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
