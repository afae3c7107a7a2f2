// The one place that knows how ferry links Ceph's C libraries. librados comes
// through the `ceph` crate's own link attribute; librbd is ours.
fn main() {
    println!("cargo:rustc-link-lib=dylib=rbd");
    println!("cargo:rerun-if-changed=build.rs");
}
