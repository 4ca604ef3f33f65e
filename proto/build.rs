//! Generates the gRPC contract from `certfleet/v1/*.proto`.
//! A `PROTOC` set in the environment wins over the vendored protoc.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut config = prost_build::Config::new();
    match std::env::var_os("PROTOC") {
        Some(protoc) => config.protoc_executable(protoc),
        None => config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?),
    };
    println!("cargo:rerun-if-env-changed=PROTOC");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let protos = [
        "certfleet/v1/certificates.proto",
        "certfleet/v1/organizations.proto",
        "certfleet/v1/events.proto",
        "certfleet/v1/dns_providers.proto",
        "certfleet/v1/notifications.proto",
    ];
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("certfleet_descriptor.bin"))
        .compile_with_config(config, &protos, &["."])?;
    Ok(())
}
