//! Compiles proto/coreapi.proto with the vendored protoc, so a build needs no
//! system package. Only messages are generated: the service paths depend on
//! the core's flavor and are built at runtime (src/flavor.rs).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Handing the path to prost-build directly instead of exporting PROTOC:
    // `std::env::set_var` is unsafe in edition 2024 and the workspace forbids
    // unsafe code.
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(false)
        .build_transport(false)
        .compile_with_config(config, &["proto/coreapi.proto"], &["proto"])?;
    Ok(())
}
