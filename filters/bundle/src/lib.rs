//! # palisade (the bundle)
//!
//! `palisade.wasm`: every Palisade policy as a stage of one engine, in one
//! VM. One read of the request head serves every stage, decisions pass from
//! stage to stage in memory, and the proxy-wasm toll (the VM crossing, the
//! callbacks) is paid once instead of once per module.
//!
//! The configuration has one section per stage, each exactly the standalone
//! module's configuration; a missing section turns that stage off, an
//! unknown section (or field inside one) is refused when the module loads:
//!
//! ```json
//! {"waf": {"paranoia_level": 1}, "transport": {"policies": {...}, "rules": [...]},
//!  "jwt": {"providers": {...}}, "mfa": {...}, "mcp": {"routes": [...]},
//!  "llm": {"models": [...]}, "ratelimit": {"rules": [...]}, "audit": {"schema": "ecs"}}
//! ```
//!
//! Stages run in the order WAF, transport, JWT, MFA, MCP, LLM, rate limit; the audit stage writes
//! its record when the request ends (it sits first in the chain only so
//! that its start time is taken before the other stages run).

use palisade_audit::AuditStage;
use palisade_jwt::JwtStage;
use palisade_llm::LlmStage;
use palisade_mcp::McpStage;
use palisade_mfa::MfaStage;
use palisade_ratelimit::RateLimitStage;
use palisade_shared::config::ConfigError;
use palisade_shared::engine::sections::{within, Sections};
use palisade_shared::engine::{Host, Module, Then};
use palisade_transport::TransportStage;
use palisade_waf::WafStage;

/// The sections a bundle configuration may have, in stage order.
pub const SECTIONS: [&str; 8] = [
    "waf",
    "transport",
    "jwt",
    "mfa",
    "mcp",
    "llm",
    "ratelimit",
    "audit",
];

/// Every stage of the bundle, each on or off.
pub type BundleStage = Then<
    Option<AuditStage>,
    Then<
        Option<WafStage>,
        Then<
            Option<TransportStage>,
            Then<
                Option<JwtStage>,
                Then<
                    Option<MfaStage>,
                    Then<Option<McpStage>, Then<Option<LlmStage>, Option<RateLimitStage>>>,
                >,
            >,
        >,
    >,
>;

/// The module `palisade.wasm` (root id `palisade`).
pub struct Bundle;

fn section<S>(
    sections: &Sections<'_>,
    name: &str,
    host: &dyn Host,
    configure: fn(&[u8], &dyn Host) -> Result<S, ConfigError>,
) -> Result<Option<S>, ConfigError> {
    sections
        .get(name)
        .map(|json| configure(json, host).map_err(|e| within(name, e)))
        .transpose()
}

impl Module for Bundle {
    type Stage = BundleStage;
    const NAME: &'static str = "";

    fn configure(config: &[u8], host: &dyn Host) -> Result<BundleStage, ConfigError> {
        let text = if config.iter().all(u8::is_ascii_whitespace) {
            &b"{}"[..]
        } else {
            config
        };
        let sections = Sections::parse(text, &SECTIONS)?;
        if sections.names().next().is_none() {
            return Err(ConfigError::invalid(
                ".",
                format!(
                    "the bundle has no stage configured: give at least one section of {}",
                    SECTIONS.join(", ")
                ),
            ));
        }
        Ok(Then {
            first: section(&sections, "audit", host, AuditStage::configure)?,
            then: Then {
                first: section(&sections, "waf", host, WafStage::configure)?,
                then: Then {
                    first: section(&sections, "transport", host, TransportStage::configure)?,
                    then: Then {
                        first: section(&sections, "jwt", host, JwtStage::configure)?,
                        then: Then {
                            first: section(&sections, "mfa", host, MfaStage::configure)?,
                            then: Then {
                                first: section(&sections, "mcp", host, McpStage::configure)?,
                                then: Then {
                                    first: section(&sections, "llm", host, LlmStage::configure)?,
                                    then: section(
                                        &sections,
                                        "ratelimit",
                                        host,
                                        RateLimitStage::configure,
                                    )?,
                                },
                            },
                        },
                    },
                },
            },
        })
    }
}

#[cfg(feature = "proxy-wasm")]
proxy_wasm::main! {{
    palisade_shared::engine::wasm::start::<Bundle>();
}}

#[cfg(test)]
mod tests;
