//! The `CoreApi` conformance suite against both real cores the agent
//! drives: V2Ray (Debian's `v2ray` or `$V2RAY_BIN`) through `CoreClient`,
//! and shadowsocks-libev's `ss-manager` through `SsManagerClient`, each
//! user's bytes fetched by the core's own client (a second V2Ray; `ss-local`).
//! Without the binaries the tests are skipped, except with `CI=true`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use node_agent_lib::core::conformance::CoreFixture;
use node_agent_lib::core::ports::{PortMap, PortRange};
use node_agent_lib::core::{
    Account, CoreApi, CoreUser, SS_MANAGER_TAG, ShadowsocksCipher, SsManagerClient, method_of,
};
use xray_core_client::testing::ssmanager::{TestSsLocal, TestSsManager};
use xray_core_client::testing::{
    TestClientCore, TestCore, VLESS_TAG, fetch_via_socks, free_ports, vless_user_with_id,
};

struct V2ray(TestCore);

#[async_trait]
impl CoreFixture for V2ray {
    fn core(&self) -> &dyn CoreApi {
        self.0.client()
    }

    fn tag(&self) -> &str {
        VLESS_TAG
    }

    fn user(&self, email: &str) -> CoreUser {
        vless_user_with_id(email)
    }

    async fn fetch_as(&self, user: &CoreUser, url: &str) -> Result<Vec<u8>, String> {
        let client = TestClientCore::for_user(&self.0, user)
            .await
            .ok_or("no client core")?;
        fetch_via_socks(client.socks_port(), url).await
    }
}

struct SsManager {
    client: SsManagerClient,
    _core: TestSsManager,
}

async fn ss_manager() -> Option<SsManager> {
    let core = TestSsManager::start().await?;
    // A block of its own per fixture, that no other port of the test (an
    // `ss-local`'s socks port) is taken from: tests run in parallel.
    let low = free_ports(41);
    let ports = Arc::new(PortMap::in_memory(PortRange::new(low, low + 40).unwrap()));
    let client = SsManagerClient::new(core.manager_address(), Duration::from_secs(2), ports);
    Some(SsManager {
        client,
        _core: core,
    })
}

#[async_trait]
impl CoreFixture for SsManager {
    fn core(&self) -> &dyn CoreApi {
        &self.client
    }

    fn tag(&self) -> &str {
        SS_MANAGER_TAG
    }

    fn user(&self, email: &str) -> CoreUser {
        CoreUser {
            email: email.to_owned(),
            level: 0,
            account: Account::Shadowsocks {
                password: uuid::Uuid::new_v4().to_string(),
                cipher: ShadowsocksCipher::Chacha20Poly1305,
            },
        }
    }

    async fn fetch_as(&self, user: &CoreUser, url: &str) -> Result<Vec<u8>, String> {
        let Account::Shadowsocks { password, cipher } = &user.account else {
            return Err("not a Shadowsocks user".into());
        };
        let port = self.client.ports().get(&user.email).ok_or("no port")?;
        let local = TestSsLocal::start(port, password, method_of(*cipher))
            .await
            .ok_or("no ss-local")?;
        fetch_via_socks(local.socks_port(), url).await
    }
}

async fn v2ray() -> Option<V2ray> {
    TestCore::start(&[]).await.map(V2ray)
}

mod v2ray {
    node_agent_lib::core_conformance_tests!(super::v2ray().await);
}

mod ss_manager {
    node_agent_lib::core_conformance_tests!(super::ss_manager().await);
}
