//! The NIF's malloc, calloc, realloc and free (librdkafka's included) are erlkaf_core's
//! `heap` wrappers: mimalloc, see native/erlkaf_core/src/heap.rs. The VM's
//! `enif_init_resource_type` is wrapped too (see src/resource.rs).
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rustc-cdylib-link-arg=-Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=free");
    // The producer resource's type handle, taken as rustler registers it (src/resource.rs).
    println!("cargo:rustc-cdylib-link-arg=-Wl,--wrap=enif_init_resource_type");
}
