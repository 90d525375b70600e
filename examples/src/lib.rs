//! Examples of using the xray-manager libraries from another Rust program;
//! each example in `examples/` starts with the command that runs it.
