//! What the core needs for traffic accounting, merged into the operator's
//! base config: the stats object, the `StatsService` in the API, and per-user
//! counters on policy level 0 (the level every managed user gets). Nothing
//! the operator set is dropped; only those switches are turned on.

use serde_json::{Map, Value};

use super::ConfigError;

/// Adds `stats: {}`, `StatsService` and `statsUserUplink`/`statsUserDownlink`
/// on level 0 to `root`, keeping every other key and level. Gives warnings
/// for what it had to change against the operator's explicit choice.
pub(super) fn ensure_accounting(root: &mut Value) -> Result<Vec<String>, ConfigError> {
    let mut warnings = Vec::new();
    let Some(root) = root.as_object_mut() else {
        return Err(ConfigError::Invalid(
            "the base config is not an object".into(),
        ));
    };
    match root.get("stats") {
        None | Some(Value::Null) => {
            root.insert("stats".into(), Value::Object(Map::new()));
        }
        Some(Value::Object(_)) => {}
        Some(_) => return Err(ConfigError::Invalid("`stats` is not an object".into())),
    }
    if let Some(api) = root.get_mut("api") {
        let api = api
            .as_object_mut()
            .ok_or_else(|| ConfigError::Invalid("`api` is not an object".into()))?;
        let services = api
            .entry("services")
            .or_insert_with(|| Value::Array(Vec::new()));
        let services = services
            .as_array_mut()
            .ok_or_else(|| ConfigError::Invalid("`api.services` is not an array".into()))?;
        if !services.iter().any(|s| s == "StatsService") {
            services.push(Value::from("StatsService"));
        }
    }
    let level = object_at(root, "policy")?;
    let level = object_at(level, "levels")?;
    let level = object_at(level, "0")?;
    for key in ["statsUserUplink", "statsUserDownlink"] {
        if level.get(key).is_some_and(|v| v != &Value::Bool(true)) {
            warnings.push(format!(
                "policy.levels.0.{key} turned on: the agent counts every managed user's traffic"
            ));
        }
        level.insert(key.into(), Value::Bool(true));
    }
    Ok(warnings)
}

/// The object under `key` in `parent`, created empty when missing.
fn object_at<'a>(
    parent: &'a mut Map<String, Value>,
    key: &str,
) -> Result<&'a mut Map<String, Value>, ConfigError> {
    let slot = parent
        .entry(key)
        .or_insert_with(|| Value::Object(Map::new()));
    if slot.is_null() {
        *slot = Value::Object(Map::new());
    }
    slot.as_object_mut()
        .ok_or_else(|| ConfigError::Invalid(format!("`{key}` in the policy is not an object")))
}
