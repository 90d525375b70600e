//! The schemas of the node API's JSON (the types of [`crate::wire`]),
//! written out for the OpenAPI document in their answer spelling.

use std::borrow::Cow;

use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Schema, Type};
use utoipa::{PartialSchema, ToSchema};

use crate::wire::ErrorBody;

impl PartialSchema for ErrorBody {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .description(Some("Every error answer."))
            .property(
                "error",
                string("A short stable text, e.g. `xray service error`."),
            )
            .required("error")
            .property("message", string("Details, when safe to show."))
            .into()
    }
}

impl ToSchema for ErrorBody {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("ErrorBody")
    }
}

fn string(description: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description))
}

fn integer(description: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
            utoipa::openapi::KnownFormat::Int64,
        )))
        .minimum(Some(0))
        .description(Some(description))
}

fn one_of(values: &[&'static str], description: &str) -> ObjectBuilder {
    string(description).enum_values(Some(values.iter().copied()))
}

fn strings(description: &str) -> ArrayBuilder {
    array_of(ObjectBuilder::new().schema_type(Type::String), description)
}

/// One managed inbound as clients dial it ([`crate::wire::InboundDescription`]):
/// empty texts and lists are left out of the JSON.
fn inbound_description() -> RefOr<Schema> {
    ObjectBuilder::new()
        .description(Some("How clients dial one managed inbound, derived by the agent from the core config it runs (the XTLS share-link standard's keys). The address clients use is not here: the manager takes it from the node's settings. Texts and lists the config does not set are absent."))
        .property("tag", string("The inbound's tag in the core config."))
        .required("tag")
        .property("protocol", one_of(&["vless", "vmess", "trojan", "shadowsocks"], "The inbound's protocol."))
        .required("protocol")
        .property("port", integer("The port it listens on (the first of a range). With `portRange`: the range's start."))
        .required("port")
        .property("portRange", string("A core with a port per user (`ss-manager`): the range `START-END` users' ports are taken from. A user's port is its home port, `START + (the first 8 bytes of SHA-256 of the user id, big-endian) mod (END - START + 1)`, unless `userPorts` names it."))
        .property("userPorts", ObjectBuilder::new().additional_properties(Some(integer("The user's port."))).description(Some("With `portRange`: the users (by id) whose port is not their home port (another user held it first).")))
        .property("flow", string("VLESS: the flow every user gets (`xtls-rprx-vision`)."))
        .property("method", string("Shadowsocks: the cipher."))
        .property("network", one_of(&["tcp", "ws", "httpupgrade", "grpc", "xhttp", "kcp"], "The transport (`raw` is `tcp`)."))
        .required("network")
        .property("headerType", string("tcp: `http` for the HTTP header disguise; kcp: its header type."))
        .property("path", string("ws, httpupgrade, xhttp: the path; tcp with an http header: its first path."))
        .property("host", string("ws, httpupgrade, xhttp: the Host header; tcp with an http header: its first Host."))
        .property("serviceName", string("grpc: the service name."))
        .property("mode", string("grpc: `gun` or `multi`; xhttp: `auto`, `packet-up`, `stream-up` or `stream-one`."))
        .property("authority", string("grpc: the `:authority` clients send."))
        .property("seed", string("kcp: the seed."))
        .property("security", one_of(&["none", "tls", "reality"], "The security layer."))
        .required("security")
        .property("sni", string("tls: the certificate's server name; reality: the first server name."))
        .property("alpn", strings("tls: the ALPN protocols, in order."))
        .property("fingerprint", string("The uTLS fingerprint clients should present (`chrome`, …)."))
        .property("serverNames", strings("reality: every server name the inbound accepts."))
        .property("shortIds", strings("reality: every short id the inbound accepts (may hold `\"\"`)."))
        .property("publicKey", string("reality: the X25519 public key (base64url without padding, as `xray x25519` prints it), computed from the config's private key."))
        .property("spiderX", string("reality: the spider path clients start from."))
        .property("allowInsecure", ObjectBuilder::new().schema_type(Type::Boolean).description(Some("tls: clients may skip verifying the certificate; only the operator sets it on the manager, never the agent.")))
        .into()
}

fn reference(name: &str) -> RefOr<Schema> {
    RefOr::Ref(utoipa::openapi::Ref::from_schema_name(name))
}

fn array_of(items: impl Into<RefOr<Schema>>, description: &str) -> ArrayBuilder {
    let items: RefOr<Schema> = items.into();
    ArrayBuilder::new()
        .items(items)
        .description(Some(description))
}

/// The plaintext schemas of the envelope (the types of [`crate::wire`]),
/// in their answer spelling; requests also accept the snake_case spellings.
pub(super) fn wire_schemas() -> Vec<(&'static str, RefOr<Schema>)> {
    vec![
        (
            "WireUser",
            ObjectBuilder::new()
                .description(Some("One user as the manager sends it (`userID`/`user_id` and `userName`/`user_name` are accepted too)."))
                .property("id", string("The core's key for the user and, without `proxyId`, the VLESS/VMess id (a UUID when such an inbound is managed)."))
                .required("id")
                .property("name", string("The user's name (empty when the manager does not tell nodes names)."))
                .required("name")
                .property("secret", string("The Trojan/Shadowsocks password; never logged."))
                .required("secret")
                .property("proxyId", string("The VLESS/VMess id on this node when it is not `id` (a manager giving each node its own credentials); `proxy_id` is accepted too. Never logged."))
                .into(),
        ),
        (
            "StartRequest",
            ObjectBuilder::new()
                .description(Some("`POST /start`: run the core with exactly these users."))
                .property("users", array_of(reference("WireUser"), "Every user the core must have."))
                .required("users")
                .into(),
        ),
        (
            "StartResponse",
            ObjectBuilder::new()
                .description(Some("The answer to `POST /start`."))
                .property(
                    "userConfigTemplate",
                    string("The node's share-link pattern for one user (`{{.UserID}}`, `{{.UserName}}`, `{{.UserSecret}}`), filled by the manager."),
                )
                .required("userConfigTemplate")
                .property(
                    "inbounds",
                    array_of(reference("InboundDescription"), "How clients dial each managed inbound the agent could describe, in config order (absent when none; agents older than this field never send it)."),
                )
                .into(),
        ),
        ("InboundDescription", inbound_description()),
        (
            "StatusResponse",
            ObjectBuilder::new()
                .description(Some("The answer to `GET /status`."))
                .property(
                    "nodeStatus",
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .enum_values(Some(["Running", "Stopped"])),
                )
                .required("nodeStatus")
                .property("users", integer("How many users the core really has."))
                .property("coreUptimeSecs", integer("Seconds since the core started (0 when stopped)."))
                .property("coreRestarts", integer("How many times the agent saw the core restart behind its back."))
                .property("usageJournal", reference("JournalMark"))
                .into(),
        ),
        (
            "JournalMark",
            ObjectBuilder::new()
                .description(Some("Where the usage journal stands (absent when the agent keeps none): the manager pulls `/usage` only when a pull would answer or confirm something."))
                .property("journal", string("The journal's id, as `UsageResponse.journal`."))
                .required("journal")
                .property("seq", integer("The newest sequence number the journal assigned (0: none yet)."))
                .required("seq")
                .property("batches", integer("Batches it holds that no pull has confirmed yet."))
                .required("batches")
                .into(),
        ),
        (
            "UsersEditRequest",
            ObjectBuilder::new()
                .description(Some("`POST /users/edit`: removals, then additions, on the running core (`add_users`/`del_users` are accepted too)."))
                .property("addUsers", array_of(reference("WireUser"), "Users to add (adding one the core has is success)."))
                .property("delUsers", array_of(string("A user id."), "Ids of users to remove (removing a missing one is success)."))
                .into(),
        ),
        (
            "UsersEditResponse",
            ObjectBuilder::new()
                .description(Some("The answer to `POST /users/edit` (older agents answer nothing: read it as `{}`)."))
                .property("userPorts", ObjectBuilder::new().additional_properties(Some(integer("The user's port."))).description(Some("A core with a port per user (`ss-manager`): the port of every user the edit added, by id. Absent for other cores.")))
                .into(),
        ),
        (
            "UsageRequest",
            ObjectBuilder::new()
                .description(Some("`POST /usage`: the batches after the manager's cursor; naming this node's journal confirms `after` (`max_batches` is accepted too)."))
                .property("journal", string("The journal the manager's cursor belongs to; absent or another: from the first batch."))
                .property("after", integer("The newest sequence number the manager stored from this journal (default 0)."))
                .property("maxBatches", integer("How many batches at most (default 64, capped at 256)."))
                .into(),
        ),
        (
            "UsageResponse",
            ObjectBuilder::new()
                .description(Some("The answer to `POST /usage`."))
                .property("journal", string("The node's journal id (made when its journal was created)."))
                .required("journal")
                .property("batches", array_of(reference("UsageBatch"), "In sequence order, each after the request's `after`."))
                .required("batches")
                .property("more", ObjectBuilder::new().schema_type(Type::Boolean).description(Some("More batches wait after the last one answered.")))
                .required("more")
                .into(),
        ),
        (
            "UsageBatch",
            ObjectBuilder::new()
                .description(Some("The bytes the core counted between two reads, or several merged while the manager was away: sequence numbers `firstSeq..=seq`."))
                .property("firstSeq", integer("The first sequence number the batch covers."))
                .required("firstSeq")
                .property("seq", integer("The last sequence number the batch covers."))
                .required("seq")
                .property("from", integer("Unix seconds of the read before the first delta."))
                .required("from")
                .property("to", integer("Unix seconds of the read that took the last delta."))
                .required("to")
                .property("users", array_of(reference("UserUsage"), "One entry per user that moved bytes."))
                .required("users")
                .into(),
        ),
        (
            "UserUsage",
            ObjectBuilder::new()
                .description(Some("What one user moved through the node's core in a batch, in bytes as the core counts them."))
                .property("id", string("The user's id."))
                .required("id")
                .property("up", integer("Bytes the user sent."))
                .required("up")
                .property("down", integer("Bytes the user received."))
                .required("down")
                .into(),
        ),
        (
            "KeyRequest",
            ObjectBuilder::new()
                .description(Some("`POST /key`: the node's next key (`grace_secs` is accepted too)."))
                .property("key", string("The new key: 32 bytes, base64url without padding."))
                .required("key")
                .property("graceSecs", integer("How long the key this request was sealed under stays accepted (at most 2592000: 30 days)."))
                .required("graceSecs")
                .into(),
        ),
        (
            "KeyResponse",
            ObjectBuilder::new()
                .description(Some("The answer to `POST /key`."))
                .property("rotated", ObjectBuilder::new().schema_type(Type::Boolean).description(Some("False when the key was already the node's (a repeated delivery): nothing changed.")))
                .required("rotated")
                .property("graceUntil", integer("Unix seconds after which the previous key is refused (absent: none is accepted)."))
                .into(),
        ),
]
}
