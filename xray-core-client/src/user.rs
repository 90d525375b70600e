//! Users as the core sees them, and their encoding into `TypedMessage`s.

use std::fmt;

use prost::Message as _;

use crate::error::CoreError;
use crate::flavor::Flavor;
use crate::proto;

/// A user of one inbound. `email` is the user's key inside the core (per-user
/// stats are keyed by it), so it must be unique per inbound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreUser {
    pub email: String,
    pub level: u32,
    pub account: Account,
}

/// Protocol-specific credentials. `Debug` never shows ids or passwords.
#[derive(Clone, PartialEq, Eq)]
pub enum Account {
    /// VLESS; sent with encryption `none`. `flow` may be empty or e.g.
    /// `xtls-rprx-vision`.
    Vless {
        id: String,
        flow: String,
    },
    /// VMess with security `auto` (and alter id 0 on V2Ray).
    Vmess {
        id: String,
    },
    Trojan {
        password: String,
    },
    /// Xray only: V2Ray's Shadowsocks inbounds hold a single user.
    Shadowsocks {
        password: String,
        cipher: ShadowsocksCipher,
    },
}

const REDACTED: &str = "<redacted>";

impl fmt::Debug for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Account::Vless { flow, .. } => f
                .debug_struct("Vless")
                .field("id", &REDACTED)
                .field("flow", flow)
                .finish(),
            Account::Vmess { .. } => f.debug_struct("Vmess").field("id", &REDACTED).finish(),
            Account::Trojan { .. } => f
                .debug_struct("Trojan")
                .field("password", &REDACTED)
                .finish(),
            Account::Shadowsocks { cipher, .. } => f
                .debug_struct("Shadowsocks")
                .field("password", &REDACTED)
                .field("cipher", cipher)
                .finish(),
        }
    }
}

/// The AEAD ciphers Xray's Shadowsocks user management accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ShadowsocksCipher {
    Aes128Gcm,
    Aes256Gcm,
    Chacha20Poly1305,
    Xchacha20Poly1305,
}

impl ShadowsocksCipher {
    fn to_proto(self) -> proto::CipherType {
        match self {
            ShadowsocksCipher::Aes128Gcm => proto::CipherType::Aes128Gcm,
            ShadowsocksCipher::Aes256Gcm => proto::CipherType::Aes256Gcm,
            ShadowsocksCipher::Chacha20Poly1305 => proto::CipherType::Chacha20Poly1305,
            ShadowsocksCipher::Xchacha20Poly1305 => proto::CipherType::Xchacha20Poly1305,
        }
    }

    fn from_proto(value: i32) -> Option<Self> {
        match proto::CipherType::try_from(value).ok()? {
            proto::CipherType::Aes128Gcm => Some(ShadowsocksCipher::Aes128Gcm),
            proto::CipherType::Aes256Gcm => Some(ShadowsocksCipher::Aes256Gcm),
            proto::CipherType::Chacha20Poly1305 => Some(ShadowsocksCipher::Chacha20Poly1305),
            proto::CipherType::Xchacha20Poly1305 => Some(ShadowsocksCipher::Xchacha20Poly1305),
            proto::CipherType::Unknown => None,
        }
    }
}

const VLESS: &str = "proxy.vless.Account";
const VMESS: &str = "proxy.vmess.Account";
const TROJAN: &str = "proxy.trojan.Account";
const SHADOWSOCKS: &str = "proxy.shadowsocks.Account";

pub(crate) fn typed(
    flavor_prefix: &str,
    relative: &str,
    message: &impl prost::Message,
) -> proto::TypedMessage {
    proto::TypedMessage {
        r#type: format!("{flavor_prefix}{relative}"),
        value: message.encode_to_vec(),
    }
}

impl CoreUser {
    /// The user as the core's `User` message, with the account type named
    /// with `type_prefix` (normally the flavor's package prefix).
    pub(crate) fn to_proto(
        &self,
        flavor: Flavor,
        type_prefix: &str,
    ) -> Result<proto::User, CoreError> {
        let account = match &self.account {
            Account::Vless { id, flow } => typed(
                type_prefix,
                VLESS,
                &proto::VlessAccount {
                    id: id.clone(),
                    flow: flow.clone(),
                    encryption: "none".into(),
                },
            ),
            Account::Vmess { id } => typed(
                type_prefix,
                VMESS,
                &proto::VmessAccount {
                    id: id.clone(),
                    // V2Ray wants 0 (AEAD); Xray dropped the field, and 0 is
                    // not encoded at all in proto3.
                    alter_id: 0,
                    security_settings: Some(proto::SecurityConfig {
                        r#type: proto::SecurityType::Auto.into(),
                    }),
                },
            ),
            Account::Trojan { password } => typed(
                type_prefix,
                TROJAN,
                &proto::TrojanAccount {
                    password: password.clone(),
                },
            ),
            Account::Shadowsocks { password, cipher } => {
                if flavor == Flavor::V2ray {
                    return Err(CoreError::Unsupported(
                        "Shadowsocks user management (V2Ray's Shadowsocks inbounds hold one user)",
                    ));
                }
                typed(
                    type_prefix,
                    SHADOWSOCKS,
                    &proto::ShadowsocksAccount {
                        password: password.clone(),
                        cipher_type: cipher.to_proto().into(),
                        iv_check: false,
                    },
                )
            }
        };
        Ok(proto::User {
            level: self.level,
            email: self.email.clone(),
            account: Some(account),
        })
    }

    /// Decodes a user listed by the core; either package prefix is accepted.
    pub(crate) fn from_proto(user: proto::User) -> Result<Self, CoreError> {
        let typed = user
            .account
            .ok_or_else(|| CoreError::Other(format!("user {} has no account", user.email)))?;
        let relative = typed
            .r#type
            .strip_prefix(Flavor::Xray.package_prefix())
            .or_else(|| typed.r#type.strip_prefix(Flavor::V2ray.package_prefix()))
            .unwrap_or(&typed.r#type);
        let bad = |e: prost::DecodeError| {
            CoreError::Other(format!(
                "cannot decode {} of user {}: {e}",
                typed.r#type, user.email
            ))
        };
        let value = typed.value.as_slice();
        let account = match relative {
            VLESS => {
                let a = proto::VlessAccount::decode(value).map_err(bad)?;
                Account::Vless {
                    id: a.id,
                    flow: a.flow,
                }
            }
            VMESS => Account::Vmess {
                id: proto::VmessAccount::decode(value).map_err(bad)?.id,
            },
            TROJAN => Account::Trojan {
                password: proto::TrojanAccount::decode(value).map_err(bad)?.password,
            },
            SHADOWSOCKS => {
                let a = proto::ShadowsocksAccount::decode(value).map_err(bad)?;
                let cipher = ShadowsocksCipher::from_proto(a.cipher_type).ok_or_else(|| {
                    CoreError::Other(format!(
                        "user {} uses Shadowsocks cipher {} which this client does not model",
                        user.email, a.cipher_type
                    ))
                })?;
                Account::Shadowsocks {
                    password: a.password,
                    cipher,
                }
            }
            other => {
                return Err(CoreError::Other(format!(
                    "user {} has account type {other} which this client does not model",
                    user.email
                )));
            }
        };
        Ok(CoreUser {
            email: user.email,
            level: user.level,
            account,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(account: Account) -> CoreUser {
        CoreUser {
            email: "u1".into(),
            level: 0,
            account,
        }
    }

    fn all_accounts() -> Vec<Account> {
        vec![
            Account::Vless {
                id: "secret-vless-id".into(),
                flow: "xtls-rprx-vision".into(),
            },
            Account::Vmess {
                id: "secret-vmess-id".into(),
            },
            Account::Trojan {
                password: "secret-trojan".into(),
            },
            Account::Shadowsocks {
                password: "secret-ss".into(),
                cipher: ShadowsocksCipher::Chacha20Poly1305,
            },
        ]
    }

    #[test]
    fn debug_hides_ids_and_passwords() {
        for account in all_accounts() {
            let shown = format!("{:?}", user(account));
            assert!(!shown.contains("secret"), "{shown}");
            assert!(shown.contains(REDACTED), "{shown}");
        }
    }

    #[test]
    fn account_type_names_follow_the_flavor() {
        let vless = user(all_accounts().remove(0));
        let xray = vless.to_proto(Flavor::Xray, "xray.").unwrap();
        assert_eq!(xray.account.unwrap().r#type, "xray.proxy.vless.Account");
        let v2ray = vless.to_proto(Flavor::V2ray, "v2ray.core.").unwrap();
        assert_eq!(
            v2ray.account.unwrap().r#type,
            "v2ray.core.proxy.vless.Account"
        );
    }

    #[test]
    fn every_account_round_trips_on_xray() {
        for account in all_accounts() {
            let original = user(account);
            let decoded =
                CoreUser::from_proto(original.to_proto(Flavor::Xray, "xray.").unwrap()).unwrap();
            assert_eq!(decoded, original);
        }
    }

    #[test]
    fn vless_is_sent_with_encryption_none() {
        let typed = user(all_accounts().remove(0))
            .to_proto(Flavor::V2ray, "v2ray.core.")
            .unwrap()
            .account
            .unwrap();
        let account = proto::VlessAccount::decode(typed.value.as_slice()).unwrap();
        assert_eq!(account.encryption, "none");
    }

    #[test]
    fn vmess_on_v2ray_carries_alter_id_zero() {
        let typed = user(Account::Vmess { id: "abc".into() })
            .to_proto(Flavor::V2ray, "v2ray.core.")
            .unwrap()
            .account
            .unwrap();
        assert_eq!(typed.r#type, "v2ray.core.proxy.vmess.Account");
        let account = proto::VmessAccount::decode(typed.value.as_slice()).unwrap();
        assert_eq!(account.alter_id, 0);
        assert_eq!(account.id, "abc");
    }

    #[test]
    fn shadowsocks_is_unsupported_on_v2ray() {
        let ss = user(all_accounts().remove(3));
        assert!(matches!(
            ss.to_proto(Flavor::V2ray, "v2ray.core."),
            Err(CoreError::Unsupported(_))
        ));
    }

    #[test]
    fn unknown_account_type_is_an_error_naming_it() {
        let odd = proto::User {
            level: 0,
            email: "u9".into(),
            account: Some(proto::TypedMessage {
                r#type: "xray.proxy.shadowsocks_2022.Account".into(),
                value: vec![],
            }),
        };
        match CoreUser::from_proto(odd) {
            Err(CoreError::Other(text)) => assert!(text.contains("shadowsocks_2022"), "{text}"),
            other => panic!("unexpected {other:?}"),
        }
    }
}
