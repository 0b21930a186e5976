//! What a wasm binary is, decided from its bytes and its exports.

use crate::EngineError;
use std::fmt;

/// The kinds of workload the engine runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProgramKind {
    /// A WASI preview 1 command: a core module exporting `_start`. Run with [`crate::Program::run`].
    WasiCommand,
    /// A component exporting `wasi:cli/run@0.2.x`. Run with [`crate::Program::run`].
    CliComponent,
    /// A component exporting `wasi:http/incoming-handler@0.2.x`. Serve with [`crate::Program::serve`].
    HttpComponent,
}

impl ProgramKind {
    /// Whether [`crate::Program::run`] applies.
    pub fn is_command(self) -> bool {
        matches!(self, ProgramKind::WasiCommand | ProgramKind::CliComponent)
    }
}

impl fmt::Display for ProgramKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProgramKind::WasiCommand => "WASI preview 1 command module",
            ProgramKind::CliComponent => "wasi:cli/run component",
            ProgramKind::HttpComponent => "wasi:http/incoming-handler component",
        })
    }
}

/// The binary format, read from the 8-byte header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    CoreModule,
    Component,
}

/// Read the wasm header: magic `\0asm`, then a version and a layer (core: version 1 layer 0;
/// component: layer 1). Precompiled artifacts and anything else are refused by name.
pub(crate) fn detect_format(bytes: &[u8]) -> Result<Format, EngineError> {
    if wasmtime::Engine::detect_precompiled(bytes).is_some() {
        return Err(EngineError::Unsupported(
            "found a precompiled wasmtime artifact (ELF): only wasm binaries are accepted, \
             precompiled code from outside is never trusted"
                .into(),
        ));
    }
    if bytes.starts_with(b"(") || bytes.starts_with(b";;") {
        return Err(EngineError::Unsupported(
            "found WebAssembly text (.wat): compile it to a binary first".into(),
        ));
    }
    let Some(header) = bytes.get(..8) else {
        return Err(EngineError::Unsupported(format!(
            "found {} bytes, too short for a wasm header",
            bytes.len()
        )));
    };
    if &header[..4] != b"\0asm" {
        return Err(EngineError::Unsupported(format!(
            "found no wasm magic number (first bytes {})",
            hex::encode(&header[..4])
        )));
    }
    let version = u16::from_le_bytes([header[4], header[5]]);
    let layer = u16::from_le_bytes([header[6], header[7]]);
    match (layer, version) {
        (0, 1) => Ok(Format::CoreModule),
        (1, _) => Ok(Format::Component),
        _ => Err(EngineError::Unsupported(format!(
            "found wasm layer {layer} version {version}: neither a core module nor a component"
        ))),
    }
}

/// Kind of a compiled core module: a command iff it exports a `_start` function.
pub(crate) fn module_kind(module: &wasmtime::Module) -> Result<ProgramKind, EngineError> {
    let has_start = module
        .exports()
        .any(|e| e.name() == "_start" && matches!(e.ty(), wasmtime::ExternType::Func(_)));
    if has_start {
        return Ok(ProgramKind::WasiCommand);
    }
    let names: Vec<&str> = module.exports().map(|e| e.name()).collect();
    Err(EngineError::Unsupported(format!(
        "found a core module without a `_start` function export (a library or reactor, not a \
         WASI command); its exports: [{}]",
        names.join(", ")
    )))
}

/// The interfaces we serve, without their `@version`: any 0.2.x is accepted.
const HTTP_HANDLER: &str = "wasi:http/incoming-handler";
const CLI_RUN: &str = "wasi:cli/run";

/// Kind of a compiled component, from its exported interface names.
pub(crate) fn component_kind(
    engine: &wasmtime::Engine,
    component: &wasmtime::component::Component,
) -> Result<ProgramKind, EngineError> {
    let ty = component.component_type();
    let names: Vec<String> = ty.exports(engine).map(|(n, _)| n.to_string()).collect();
    let exports = |interface: &str| {
        names.iter().any(|n| {
            n.strip_prefix(interface)
                .and_then(|rest| rest.strip_prefix("@0.2."))
                .is_some()
        })
    };
    if exports(HTTP_HANDLER) {
        Ok(ProgramKind::HttpComponent)
    } else if exports(CLI_RUN) {
        Ok(ProgramKind::CliComponent)
    } else {
        Err(EngineError::Unsupported(format!(
            "found a component exporting neither {HTTP_HANDLER}@0.2.x nor {CLI_RUN}@0.2.x; \
             its exports: [{}]",
            names.join(", ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_detection_names_what_it_found() {
        assert_eq!(
            detect_format(b"\0asm\x01\0\0\0").ok(),
            Some(Format::CoreModule)
        );
        assert_eq!(
            detect_format(b"\0asm\x0d\0\x01\0").ok(),
            Some(Format::Component)
        );
        let short = detect_format(b"\0as")
            .map(|_| ())
            .expect_err("too short")
            .to_string();
        assert!(short.contains("3 bytes"), "{short}");
        let elf = detect_format(b"\x7fELF\x02\x01\x01\0")
            .map(|_| ())
            .expect_err("ELF");
        assert!(elf.to_string().contains("7f454c46"), "{elf}");
        let text = detect_format(b"(module)").map(|_| ()).expect_err("text");
        assert!(text.to_string().contains("text"), "{text}");
        let odd = detect_format(b"\0asm\x02\0\0\0")
            .map(|_| ())
            .expect_err("version 2");
        assert!(odd.to_string().contains("version 2"), "{odd}");
    }
}
