//! `[containment]`: what a compromised node can reach beyond itself (see
//! `docs/threat-model.md`).

use serde::Deserialize;

use crate::domain::CredentialScope;

/// How far the users a node learns reach beyond that node.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct ContainmentSettings {
    /// Each user presents a different credential on each node, derived from
    /// the user's secret, which (with the user's name) then never reaches a
    /// node: what one node learns opens nothing on another. Off by default:
    /// the SPEC's templates put the user's id as the VLESS id
    /// (`vless://{{.UserID}}@…`), which a node then no longer accepts;
    /// templates use `{{.NodeUserID}}` instead. Env:
    /// `XM_CONTAINMENT_PER_NODE_CREDENTIALS`.
    pub per_node_credentials: bool,
    /// Whether the SPEC's `GET /user/{id}-{name}/nodes` answers (on by
    /// default, for the SPEC); off, it is a 404 `not found`. Every node
    /// learns users' ids (and, with shared credentials, names), so with it
    /// on a compromised node can read those users' node lists. Env:
    /// `XM_CONTAINMENT_ID_NAME_NODE_LIST`.
    pub id_name_node_list: bool,
}

impl Default for ContainmentSettings {
    fn default() -> Self {
        Self {
            per_node_credentials: false,
            id_name_node_list: true,
        }
    }
}

impl ContainmentSettings {
    /// The scope of users' credentials these settings ask for.
    pub fn credentials(&self) -> CredentialScope {
        CredentialScope::per_node(self.per_node_credentials)
    }

    /// Applies `XM_CONTAINMENT_*`; a value that is not a boolean is an error
    /// naming the variable.
    pub fn apply_env(&mut self, var: &impl Fn(&str) -> Option<String>) -> Result<(), String> {
        for (key, field) in [
            (
                "XM_CONTAINMENT_PER_NODE_CREDENTIALS",
                &mut self.per_node_credentials,
            ),
            (
                "XM_CONTAINMENT_ID_NAME_NODE_LIST",
                &mut self.id_name_node_list,
            ),
        ] {
            if let Some(v) = var(key) {
                *field = match v.trim() {
                    "1" | "true" | "yes" | "on" => true,
                    "0" | "false" | "no" | "off" => false,
                    _ => return Err(format!("{key}: {v:?} is not true or false")),
                };
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(vars: &[(&str, &str)]) -> Result<ContainmentSettings, String> {
        let mut s = ContainmentSettings::default();
        s.apply_env(&|k| {
            vars.iter()
                .find(|(name, _)| *name == k)
                .map(|(_, v)| (*v).to_owned())
        })?;
        Ok(s)
    }

    #[test]
    fn the_defaults_are_the_specs() {
        let s = ContainmentSettings::default();
        assert_eq!(s.credentials(), CredentialScope::Shared);
        assert!(s.id_name_node_list);
        let parsed: ContainmentSettings = toml::from_str("").unwrap();
        assert_eq!(parsed, s);
    }

    #[test]
    fn the_env_turns_each_setting_and_refuses_other_values() {
        let s = from(&[
            ("XM_CONTAINMENT_PER_NODE_CREDENTIALS", "true"),
            ("XM_CONTAINMENT_ID_NAME_NODE_LIST", "0"),
        ])
        .unwrap();
        assert_eq!(s.credentials(), CredentialScope::PerNode);
        assert!(!s.id_name_node_list);
        let err = from(&[("XM_CONTAINMENT_ID_NAME_NODE_LIST", "maybe")]).unwrap_err();
        assert!(err.contains("XM_CONTAINMENT_ID_NAME_NODE_LIST"), "{err}");
        assert!(toml::from_str::<ContainmentSettings>("per_node = true").is_err());
    }
}
