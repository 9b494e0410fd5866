//! With the `mimalloc` feature, every binary, test and bench of this crate is linked with
//! malloc, calloc, realloc and free wrapped by `heap.rs` (the NIF's build script does the
//! same for the NIF).
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var_os("CARGO_FEATURE_MIMALLOC").is_some() {
        println!("cargo:rustc-link-arg=-Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=free");
    }
}
