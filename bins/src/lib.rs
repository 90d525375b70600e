//! The thin binaries of xray-manager (`src/bin/`): each reads its settings,
//! builds the backends and calls a library's `serve`.

pub mod cli;
