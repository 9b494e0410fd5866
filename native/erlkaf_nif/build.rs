//! The NIF's malloc, calloc, realloc and free (librdkafka's included) are erlkaf_core's
//! `heap` wrappers: mimalloc, see native/erlkaf_core/src/heap.rs.
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rustc-cdylib-link-arg=-Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=free");
}
