//! The benchmark examples' command line: `<scenario> --key value …`.

use std::collections::HashMap;

/// The `--key value` options after the scenario's name.
#[derive(Debug, Default)]
pub struct Opts(pub HashMap<String, String>);

impl Opts {
    /// The scenario (first argument) and the options of this process's
    /// command line.
    pub fn from_args() -> (String, Self) {
        let mut args = std::env::args().skip(1);
        let scenario = args.next().unwrap_or_default();
        let mut opts = HashMap::new();
        while let Some(k) = args.next() {
            opts.insert(
                k.trim_start_matches("--").to_owned(),
                args.next().unwrap_or_default(),
            );
        }
        (scenario, Self(opts))
    }

    pub fn get(&self, key: &str, default: &str) -> String {
        self.0
            .get(key)
            .cloned()
            .unwrap_or_else(|| default.to_owned())
    }

    /// A number option; panics naming the key when it is not one.
    pub fn num(&self, key: &str, default: usize) -> usize {
        self.get(key, &default.to_string()).parse().expect(key)
    }
}
