//! OpenID Connect identity providers people sign in with (`[[oidc]]` in
//! latch.toml, or `--oidc FILE` on a dev server):
//!
//! ```toml
//! [[oidc]]
//! name = "corp"                                   # latch login --oidc corp
//! issuer = "https://login.example.com"            # https (http only for a loopback issuer)
//! client_id = "latch"
//! client_secret_file = "/etc/latch/oidc-corp.secret"
//! scopes = ["openid", "profile", "email", "groups"]   # default: openid profile email
//! username_claim = "preferred_username"           # default; must be a valid latch name
//! groups_claim = "groups"                         # default
//! mfa_amr = ["mfa", "otp", "hwk", "swk", "sms"]   # an amr with any of these: the session has MFA
//! mfa_acr = ["urn:example:loa:2"]                 # an acr among these: MFA too (default: none)
//! [oidc.groups]                                   # IdP group = latch group; other IdP groups are ignored
//! "corp-admins" = "admins"
//! "engineering" = "eng"
//! ```
//!
//! latch is a confidential client: the server, not the CLI, holds the client
//! secret and redeems the authorization code (with PKCE).

use std::collections::BTreeMap;
use std::path::Path;

use latch_core::federation::validate_issuer;
use latch_core::validate_name;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProvider {
    name: String,
    issuer: String,
    client_id: String,
    client_secret_file: Option<std::path::PathBuf>,
    scopes: Option<Vec<String>>,
    username_claim: Option<String>,
    groups_claim: Option<String>,
    mfa_amr: Option<Vec<String>>,
    #[serde(default)]
    mfa_acr: Vec<String>,
    #[serde(default)]
    groups: BTreeMap<String, String>,
}

/// A validated provider.
#[derive(Clone)]
pub struct OidcProvider {
    pub name: String,
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Option<latch_crypto::Secret>,
    pub scopes: Vec<String>,
    pub username_claim: String,
    pub groups_claim: String,
    /// IdP group → latch group.
    pub groups: BTreeMap<String, String>,
    pub mfa_amr: Vec<String>,
    /// `acr` values that mean a second factor was used.
    pub mfa_acr: Vec<String>,
}

impl std::fmt::Debug for OidcProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcProvider")
            .field("name", &self.name)
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

impl OidcProvider {
    /// The latch groups this provider manages: a member of one of them is
    /// added or removed on every sign-in, as the IdP says.
    pub fn managed_groups(&self) -> Vec<String> {
        let mut g: Vec<String> = self.groups.values().cloned().collect();
        g.sort();
        g.dedup();
        g
    }
}

/// The default `mfa_amr`: RFC 8176 values that mean a second factor was used.
pub const DEFAULT_MFA_AMR: [&str; 6] = ["mfa", "otp", "hwk", "swk", "sms", "fpt"];

/// Validates `[[oidc]]` entries; `base` resolves relative secret files.
pub fn validate(raw: Vec<RawProvider>, base: &Path) -> Result<Vec<OidcProvider>, String> {
    let mut out: Vec<OidcProvider> = Vec::new();
    for r in raw {
        let at = |m: String| format!("[[oidc]] {}: {m}", r.name);
        validate_name("OIDC provider", &r.name).map_err(|e| format!("[[oidc]] name: {e}"))?;
        if out.iter().any(|p| p.name == r.name) {
            return Err(at("the name is used twice: each provider needs its own".into()));
        }
        validate_issuer(&r.issuer).map_err(|e| at(e.0))?;
        if r.client_id.is_empty() || r.client_id.len() > 256 || r.client_id.chars().any(char::is_control) {
            return Err(at("client_id must be 1 to 256 printable characters".into()));
        }
        let client_secret = match &r.client_secret_file {
            None => None,
            Some(p) => {
                let path = if p.is_absolute() { p.clone() } else { base.join(p) };
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| at(format!("client_secret_file {}: {e}", path.display())))?;
                let secret = text.trim().to_string();
                if secret.is_empty() {
                    return Err(at(format!("client_secret_file {} is empty", path.display())));
                }
                Some(latch_crypto::Secret::new(secret))
            }
        };
        let scopes = r.scopes.unwrap_or_else(|| vec!["openid".into(), "profile".into(), "email".into()]);
        if !scopes.iter().any(|s| s == "openid") {
            return Err(at("scopes must include openid".into()));
        }
        if let Some(bad) = scopes.iter().find(|s| s.is_empty() || !s.bytes().all(|b| b.is_ascii_graphic() && b != b'"'))
        {
            return Err(at(format!("scope {bad:?} is not valid")));
        }
        for (idp, latch) in &r.groups {
            if idp.is_empty() || idp.chars().any(char::is_control) {
                return Err(at(format!("IdP group {idp:?} is not valid")));
            }
            validate_name("group", latch).map_err(|e| at(format!("groups.{idp:?}: {e}")))?;
        }
        let claim = |v: Option<String>, default: &str| -> Result<String, String> {
            let c = v.unwrap_or_else(|| default.to_string());
            if c.is_empty() || !c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
                return Err(at(format!("claim name {c:?} is not valid")));
            }
            Ok(c)
        };
        if let Some(bad) = r.mfa_acr.iter().find(|a| a.is_empty() || a.len() > 256 || a.chars().any(char::is_control)) {
            return Err(at(format!("mfa_acr value {bad:?} is not valid")));
        }
        out.push(OidcProvider {
            username_claim: claim(r.username_claim.clone(), "preferred_username")?,
            groups_claim: claim(r.groups_claim.clone(), "groups")?,
            mfa_amr: r.mfa_amr.clone().unwrap_or_else(|| DEFAULT_MFA_AMR.iter().map(|s| s.to_string()).collect()),
            mfa_acr: r.mfa_acr.clone(),
            name: r.name,
            issuer: r.issuer,
            client_id: r.client_id,
            client_secret,
            scopes,
            groups: r.groups,
        });
    }
    Ok(out)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OidcFile {
    #[serde(default)]
    oidc: Vec<RawProvider>,
}

/// Providers from a TOML file of `[[oidc]]` entries (the dev server's `--oidc FILE`).
pub fn load_file(path: &Path) -> Result<Vec<OidcProvider>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let f: OidcFile = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    validate(f.oidc, path.parent().unwrap_or(Path::new(".")))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn parse(text: &str) -> Result<Vec<OidcProvider>, String> {
        let f: OidcFile = toml::from_str(text).map_err(|e| e.to_string())?;
        validate(f.oidc, Path::new("/nonexistent"))
    }

    #[test]
    fn providers_are_validated() {
        let ok = parse(
            r#"[[oidc]]
name = "corp"
issuer = "https://login.example.com"
client_id = "latch"
[oidc.groups]
"corp-admins" = "admins"
"engineering" = "eng"
"#,
        )
        .unwrap();
        assert_eq!(ok[0].managed_groups(), ["admins", "eng"]);
        assert_eq!(ok[0].scopes, ["openid", "profile", "email"]);
        assert_eq!(ok[0].username_claim, "preferred_username");
        let bad = |text: &str, needle: &str| {
            let e = parse(text).unwrap_err();
            assert!(e.contains(needle), "{e:?} lacks {needle:?}");
        };
        bad("[[oidc]]\nname = \"c\"\nissuer = \"http://login.example.com\"\nclient_id = \"x\"\n", "must use https");
        bad(
            "[[oidc]]\nname = \"c\"\nissuer = \"https://l.example\"\nclient_id = \"x\"\nscopes = [\"profile\"]\n",
            "scopes must include openid",
        );
        bad(
            "[[oidc]]\nname = \"c\"\nissuer = \"https://l.example\"\nclient_id = \"x\"\n[oidc.groups]\n\"a\" = \"not a name\"\n",
            "groups.\"a\"",
        );
        bad(
            "[[oidc]]\nname = \"c\"\nissuer = \"https://l.example\"\nclient_id = \"x\"\nclient_secret_file = \"nope\"\n",
            "client_secret_file /nonexistent/nope",
        );
        bad("[[oidc]]\nname = \"c\"\nissuer = \"https://l.example\"\nclient_id = \"x\"\nbogus = 1\n", "unknown field");
        bad(
            "[[oidc]]\nname = \"c\"\nissuer = \"https://l.example\"\nclient_id = \"x\"\nmfa_acr = [\"\"]\n",
            "mfa_acr value",
        );
        let twice = "[[oidc]]\nname = \"c\"\nissuer = \"https://l.example\"\nclient_id = \"x\"\n";
        bad(&format!("{twice}{twice}"), "used twice");
    }
}
