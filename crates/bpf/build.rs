//! Compiles the BPF programs in `c/` with clang-19 and runs a host-compiled layout probe so
//! the tests can compare the Rust mirrors with what C actually lays out.

use std::{
    env,
    path::{Path, PathBuf},
    process::Command,
};

/// The BPF objects to build: `c/<name>.bpf.c` becomes `$OUT_DIR/<name>.bpf.o`.
const BPF_OBJECTS: &[&str] = &["sock", "nodeport", "nodeport_xdp", "director", "decap"];

/// Objects only the benches load (not embedded in the library, not in the build id).
const BENCH_OBJECTS: &[&str] = &["bench_restore"];

fn main() {
    let manifest_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let include = manifest_dir.join("include");
    let c_dir = manifest_dir.join("c");
    let clang = env::var("SWITCHYARD_CLANG").unwrap_or_else(|_| "clang-19".to_owned());

    println!("cargo:rerun-if-changed={}", include.display());
    println!("cargo:rerun-if-changed={}", c_dir.display());
    println!("cargo:rerun-if-env-changed=SWITCHYARD_CLANG");

    for name in BPF_OBJECTS.iter().chain(BENCH_OBJECTS) {
        let source = c_dir.join(format!("{name}.bpf.c"));
        let object = out_dir.join(format!("{name}.bpf.o"));
        run(
            Command::new(&clang)
                .args(["-O2", "-g", "-target", "bpf", "-Wall", "-Werror"])
                .arg("-I/usr/include/x86_64-linux-gnu")
                .arg(format!("-I{}", include.display()))
                .arg("-c")
                .arg(&source)
                .arg("-o")
                .arg(&object),
            &format!("compiling {}", source.display()),
        );
    }

    build_id(&out_dir);

    layout_probe(&clang, &include, &c_dir, &out_dir, "layout_probe", "c_layout.rs");
    // The per-packet section of the header has a probe of its own (tests/layout_nodeport.rs).
    layout_probe(
        &clang,
        &include,
        &c_dir,
        &out_dir,
        "layout_probe_nodeport",
        "c_layout_nodeport.rs",
    );
    // And the director's section (tests/layout_director.rs).
    layout_probe(
        &clang,
        &include,
        &c_dir,
        &out_dir,
        "layout_probe_director",
        "c_layout_director.rs",
    );
}

/// Sets `SWITCHYARD_BPF_BUILD_ID` for the crate: the first 16 hex digits of a SHA-256 over the
/// embedded objects, so `switchyard --version` tells which programs a binary carries.
fn build_id(out_dir: &Path) {
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    for name in BPF_OBJECTS {
        let path = out_dir.join(format!("{name}.bpf.o"));
        let bytes =
            std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        hash.update(name.as_bytes());
        hash.update((bytes.len() as u64).to_le_bytes());
        hash.update(&bytes);
    }
    let id: String = hash.finalize()[..8].iter().map(|b| format!("{b:02x}")).collect();
    println!("cargo:rustc-env=SWITCHYARD_BPF_BUILD_ID={id}");
}

fn run(command: &mut Command, what: &str) {
    let status = command.status().unwrap_or_else(|e| {
        panic!(
            "{what}: cannot run {:?} ({e}); run scripts/setup to install clang-19 and libbpf-dev",
            command.get_program()
        )
    });
    assert!(status.success(), "{what}: {status}");
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

/// Compiles `c/NAME.c` for the host, runs it and writes what it prints (the C compiler's view
/// of sizes, offsets and constants) to `OUT_DIR/generated`, for the layout tests.
fn layout_probe(
    clang: &str,
    include: &Path,
    c_dir: &Path,
    out_dir: &Path,
    name: &str,
    generated: &str,
) {
    let probe_source = c_dir.join(format!("{name}.c"));
    let probe = out_dir.join(name);
    run(
        Command::new(clang)
            .args(["-O0", "-Wall", "-Werror"])
            .arg(format!("-I{}", include.display()))
            .arg(&probe_source)
            .arg("-o")
            .arg(&probe),
        &format!("compiling {}", probe_source.display()),
    );
    let output = Command::new(&probe)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", probe.display()));
    assert!(
        output.status.success(),
        "{} failed: {}",
        probe.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    write(&out_dir.join(generated), &output.stdout);
}
