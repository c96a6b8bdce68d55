//! Agents' projected service-account tokens (pure): the key set (JWKS), the signature, and the
//! claims check that yields the node an agent may attest for (docs/design.md §5).
//!
//! An agent presents a token the kubelet projected into its pod for a dedicated audience
//! (`tokentrail-aggregator`). It proves three things once verified: the issuer (the cluster's
//! service-account issuer signed it), the account (the agent's own ServiceAccount, not just any
//! pod on the node: any pod can ask for a token with any audience), and the node the pod runs
//! on (the `kubernetes.io.node` claim, docs/kubernetes.md §4.1; the kubelet cannot obtain a token
//! bound to a pod of another node, NodeRestriction forbids it).
//!
//! Two ways to reach an [`AgentIdentity`]: [`verify`] checks the signature against the issuer's
//! keys and every claim here; [`from_review`] takes what the apiserver's TokenReview answered
//! (it checked signature, expiry and audience) and applies the same account and node rules.
//! Nothing here does I/O or reads a clock: the driver (`crate::authn`) passes `now`.
//! No error message quotes the token or any claim an attacker chose, except a node name.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use serde::Deserialize;

/// The `user.extra` key of a TokenReview (and of audit events) holding the bound pod's node
/// (docs/kubernetes.md §1, `authentication.kubernetes.io/node-name`, Kubernetes ≥ 1.30).
pub const NODE_NAME_EXTRA: &str = "authentication.kubernetes.io/node-name";

/// What a token must say to authenticate an agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expected {
    /// `iss`: the cluster's `--service-account-issuer`. Not checked with TokenReview (the
    /// apiserver accepts only its own issuers).
    pub issuer: Option<String>,
    /// An `aud` entry: the audience the agent's projected volume asks for.
    pub audience: String,
    /// The agent's ServiceAccount, `namespace/name`.
    pub serviceaccount: String,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds.
    pub leeway_secs: i64,
}

/// An authenticated agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentIdentity {
    /// The node its pod is bound to: the only node it may attest for.
    pub node: String,
    /// `exp` (seconds since the epoch): the stream ends then, the agent reconnects with the
    /// token the kubelet has rotated in meanwhile.
    pub expires_at: i64,
}

/// Why a token does not authenticate an agent. [`TokenRefusal::reason`] is the metric label.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenRefusal {
    /// No `authorization: Bearer` metadata.
    #[error("no bearer token")]
    Missing,
    /// Not a JWS compact serialisation with JSON header and claims.
    #[error("the token is not a well-formed JWT: {0}")]
    Malformed(&'static str),
    /// `alg` is none of RS256/384/512, ES256/384.
    #[error("the token's signature algorithm is not accepted")]
    UnsupportedAlgorithm,
    /// No key of the key set has the token's `kid` (and algorithm).
    #[error("no key of the issuer's key set matches the token")]
    UnknownKey,
    /// The signature does not verify.
    #[error("the token's signature does not verify")]
    BadSignature,
    /// `iss` is not the configured issuer.
    #[error("the token's issuer is not the configured one")]
    WrongIssuer,
    /// No `aud` entry is the configured audience.
    #[error("the token is not for this audience")]
    WrongAudience,
    /// `exp` has passed (or is missing).
    #[error("the token has expired")]
    Expired,
    /// `nbf` is in the future.
    #[error("the token is not valid yet")]
    NotYetValid,
    /// `sub` is not the agent's ServiceAccount.
    #[error("the token is not the agent's service account's")]
    WrongServiceAccount,
    /// The token is not bound to a pod on a node (no node claim: not a projected pod token).
    #[error("the token names no node")]
    NoNode,
    /// TokenReview answered `authenticated: false`.
    #[error("the apiserver did not authenticate the token")]
    NotAuthenticated,
}

impl TokenRefusal {
    /// A short, fixed label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            TokenRefusal::Missing => "missing",
            TokenRefusal::Malformed(_) => "malformed",
            TokenRefusal::UnsupportedAlgorithm => "algorithm",
            TokenRefusal::UnknownKey => "unknown_key",
            TokenRefusal::BadSignature => "signature",
            TokenRefusal::WrongIssuer => "issuer",
            TokenRefusal::WrongAudience => "audience",
            TokenRefusal::Expired => "expired",
            TokenRefusal::NotYetValid => "not_yet_valid",
            TokenRefusal::WrongServiceAccount => "serviceaccount",
            TokenRefusal::NoNode => "no_node",
            TokenRefusal::NotAuthenticated => "not_authenticated",
        }
    }
}

/// The issuer's public keys, from a JWKS document (`/openid/v1/jwks` of the apiserver, or
/// `kubectl get --raw /openid/v1/jwks`). Keys of other types are skipped.
#[derive(Clone, Debug, Default)]
pub struct KeySet {
    keys: Vec<Key>,
}

#[derive(Clone, Debug)]
struct Key {
    kid: Option<String>,
    material: Material,
}

#[derive(Clone, Debug)]
enum Material {
    /// Big-endian modulus and exponent.
    Rsa { n: Vec<u8>, e: Vec<u8> },
    /// Uncompressed point `04 || x || y`.
    Ec { curve: Curve, point: Vec<u8> },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Curve {
    P256,
    P384,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Alg {
    Rs256,
    Rs384,
    Rs512,
    Es256,
    Es384,
}

impl Alg {
    fn parse(s: &str) -> Option<Alg> {
        Some(match s {
            "RS256" => Alg::Rs256,
            "RS384" => Alg::Rs384,
            "RS512" => Alg::Rs512,
            "ES256" => Alg::Es256,
            "ES384" => Alg::Es384,
            _ => return None,
        })
    }

    fn fits(self, m: &Material) -> bool {
        match (self, m) {
            (Alg::Rs256 | Alg::Rs384 | Alg::Rs512, Material::Rsa { .. }) => true,
            (Alg::Es256, Material::Ec { curve, .. }) => *curve == Curve::P256,
            (Alg::Es384, Material::Ec { curve, .. }) => *curve == Curve::P384,
            _ => false,
        }
    }
}

#[derive(Deserialize)]
struct JwksDoc {
    keys: Vec<JwkDoc>,
}

#[derive(Deserialize)]
struct JwkDoc {
    kty: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(rename = "use", default)]
    use_: Option<String>,
    #[serde(default)]
    n: Option<String>,
    #[serde(default)]
    e: Option<String>,
    #[serde(default)]
    crv: Option<String>,
    #[serde(default)]
    x: Option<String>,
    #[serde(default)]
    y: Option<String>,
}

/// Why a JWKS document gives no usable key set; a key is named by its index.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    /// Not JSON, or not `{"keys": [...]}`.
    #[error("not a JWKS document")]
    NotJwks(#[source] serde_json::Error),
    /// A key lacks a field its type needs.
    #[error("key {key}: no {field:?}")]
    Missing {
        /// The key's index.
        key: usize,
        /// The field.
        field: &'static str,
    },
    /// A field is not base64url.
    #[error("key {key}: {field:?} is not base64url")]
    NotBase64 {
        /// The key's index.
        key: usize,
        /// The field.
        field: &'static str,
    },
    /// An EC key's coordinates do not fit its curve.
    #[error("key {key}: coordinates are not {len} bytes")]
    Coordinates {
        /// The key's index.
        key: usize,
        /// The curve's coordinate length.
        len: usize,
    },
    /// No RSA, P-256 or P-384 signing key at all.
    #[error("no RSA, P-256 or P-384 signing key")]
    NoSigningKey,
}

impl KeySet {
    /// Parses a JWKS document; an error names the key (by index) that is unusable.
    pub fn from_jwks(json: &[u8]) -> Result<KeySet, JwksError> {
        let doc: JwksDoc = serde_json::from_slice(json).map_err(JwksError::NotJwks)?;
        let mut keys = Vec::new();
        for (i, k) in doc.keys.into_iter().enumerate() {
            if k.use_.as_deref().is_some_and(|u| u != "sig") {
                continue;
            }
            let field = |v: &Option<String>, name: &'static str| -> Result<Vec<u8>, JwksError> {
                let v = v.as_deref().ok_or(JwksError::Missing { key: i, field: name })?;
                URL_SAFE_NO_PAD.decode(v).map_err(|_| JwksError::NotBase64 { key: i, field: name })
            };
            let material = match (k.kty.as_str(), k.crv.as_deref()) {
                ("RSA", _) => Material::Rsa { n: field(&k.n, "n")?, e: field(&k.e, "e")? },
                ("EC", Some(crv @ ("P-256" | "P-384"))) => {
                    let (curve, len) = if crv == "P-256" { (Curve::P256, 32) } else { (Curve::P384, 48) };
                    let (x, y) = (field(&k.x, "x")?, field(&k.y, "y")?);
                    if x.len() != len || y.len() != len {
                        return Err(JwksError::Coordinates { key: i, len });
                    }
                    Material::Ec { curve, point: [&[4][..], &x, &y].concat() }
                }
                _ => continue,
            };
            keys.push(Key { kid: k.kid, material });
        }
        if keys.is_empty() {
            return Err(JwksError::NoSigningKey);
        }
        Ok(KeySet { keys })
    }

    /// Keys that may have signed a token with this `kid` and algorithm.
    fn candidates<'a>(&'a self, kid: Option<&'a str>, alg: Alg) -> impl Iterator<Item = &'a Material> + 'a {
        self.keys
            .iter()
            .filter(move |k| kid.is_none() || k.kid.as_deref() == kid)
            .map(|k| &k.material)
            .filter(move |m| alg.fits(m))
    }
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
}

/// The claims read from a token (docs/kubernetes.md §4.1).
#[derive(Debug, Default, Deserialize)]
pub struct Claims {
    #[serde(default)]
    iss: Option<String>,
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    aud: Audiences,
    #[serde(default)]
    exp: Option<i64>,
    #[serde(default)]
    nbf: Option<i64>,
    #[serde(rename = "kubernetes.io", default)]
    kubernetes: Option<KubernetesClaims>,
}

/// `aud` is a string or an array of strings (RFC 7519 §4.1.3).
#[derive(Debug, Default, Deserialize)]
#[serde(untagged)]
enum Audiences {
    #[default]
    None,
    One(String),
    Many(Vec<String>),
}

impl Audiences {
    fn contains(&self, audience: &str) -> bool {
        match self {
            Audiences::None => false,
            Audiences::One(a) => a == audience,
            Audiences::Many(all) => all.iter().any(|a| a == audience),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
struct KubernetesClaims {
    #[serde(default)]
    node: Option<NameRef>,
}

#[derive(Debug, Default, Deserialize)]
struct NameRef {
    #[serde(default)]
    name: String,
}

impl Claims {
    /// The token's `exp`, if any.
    pub fn expires_at(&self) -> Option<i64> {
        self.exp
    }

    fn node(&self) -> Option<&str> {
        self.kubernetes.as_ref()?.node.as_ref().map(|n| n.name.as_str()).filter(|n| !n.is_empty())
    }
}

/// The three parts of a compact JWS, the claims decoded but **not verified**. Used to read
/// `exp` of a token TokenReview has authenticated, and by [`verify`].
pub fn decode_unverified(token: &str) -> Result<(Claims, &str, Vec<u8>, &str), TokenRefusal> {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(sig), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenRefusal::Malformed("not three dot-separated parts"));
    };
    let b64 = |s: &str| URL_SAFE_NO_PAD.decode(s).map_err(|_| TokenRefusal::Malformed("a part is not base64url"));
    let claims: Claims =
        serde_json::from_slice(&b64(payload)?).map_err(|_| TokenRefusal::Malformed("the claims are not JSON"))?;
    let signed = &token[..header.len() + 1 + payload.len()];
    Ok((claims, header, b64(sig)?, signed))
}

/// Verifies `token`'s signature against `keys` and its claims against `expected` at `now`
/// (seconds since the epoch).
pub fn verify(token: &str, keys: &KeySet, expected: &Expected, now: i64) -> Result<AgentIdentity, TokenRefusal> {
    let (claims, header, sig, signed) = decode_unverified(token)?;
    let header: Header = URL_SAFE_NO_PAD
        .decode(header)
        .ok()
        .and_then(|h| serde_json::from_slice(&h).ok())
        .ok_or(TokenRefusal::Malformed("the header is not JSON"))?;
    let alg = Alg::parse(&header.alg).ok_or(TokenRefusal::UnsupportedAlgorithm)?;
    let mut candidates = keys.candidates(header.kid.as_deref(), alg).peekable();
    if candidates.peek().is_none() {
        return Err(TokenRefusal::UnknownKey);
    }
    if !candidates.any(|key| signature_valid(alg, key, signed.as_bytes(), &sig)) {
        return Err(TokenRefusal::BadSignature);
    }
    check_claims(&claims, expected, now)
}

fn signature_valid(alg: Alg, key: &Material, message: &[u8], sig: &[u8]) -> bool {
    match key {
        Material::Rsa { n, e } => {
            let params = match alg {
                Alg::Rs256 => &signature::RSA_PKCS1_2048_8192_SHA256,
                Alg::Rs384 => &signature::RSA_PKCS1_2048_8192_SHA384,
                _ => &signature::RSA_PKCS1_2048_8192_SHA512,
            };
            RsaPublicKeyComponents { n, e }.verify(params, message, sig).is_ok()
        }
        Material::Ec { curve, point } => {
            let params = match curve {
                Curve::P256 => &signature::ECDSA_P256_SHA256_FIXED,
                Curve::P384 => &signature::ECDSA_P384_SHA384_FIXED,
            };
            UnparsedPublicKey::new(params, point).verify(message, sig).is_ok()
        }
    }
}

/// Checks verified claims: issuer, audience, validity window, account, node.
pub fn check_claims(claims: &Claims, expected: &Expected, now: i64) -> Result<AgentIdentity, TokenRefusal> {
    if expected.issuer.as_deref().is_some_and(|i| claims.iss.as_deref() != Some(i)) {
        return Err(TokenRefusal::WrongIssuer);
    }
    if !claims.aud.contains(&expected.audience) {
        return Err(TokenRefusal::WrongAudience);
    }
    let exp = claims.exp.ok_or(TokenRefusal::Expired)?;
    if now > exp.saturating_add(expected.leeway_secs) {
        return Err(TokenRefusal::Expired);
    }
    if claims.nbf.is_some_and(|nbf| now < nbf.saturating_sub(expected.leeway_secs)) {
        return Err(TokenRefusal::NotYetValid);
    }
    check_account(claims.sub.as_deref(), &expected.serviceaccount)?;
    let node = claims.node().ok_or(TokenRefusal::NoNode)?;
    Ok(AgentIdentity { node: node.to_string(), expires_at: exp })
}

fn check_account(username: Option<&str>, serviceaccount: &str) -> Result<(), TokenRefusal> {
    let account = username.and_then(|u| u.strip_prefix("system:serviceaccount:"));
    match account.and_then(|a| a.split_once(':')) {
        Some((ns, name)) if serviceaccount.split_once('/') == Some((ns, name)) => Ok(()),
        _ => Err(TokenRefusal::WrongServiceAccount),
    }
}

/// What a TokenReview's `status` said, reduced to what the check needs.
#[derive(Clone, Debug, Default)]
pub struct Review<'a> {
    /// `status.authenticated`.
    pub authenticated: bool,
    /// `status.user.username`.
    pub username: Option<&'a str>,
    /// `status.audiences`: the audiences the apiserver validated the token for.
    pub audiences: &'a [String],
    /// `status.user.extra["authentication.kubernetes.io/node-name"]`, when set.
    pub node_name: Option<&'a str>,
}

/// The identity a TokenReview establishes. The apiserver verified signature, issuer, expiry and
/// audience; `claims` are the token's own (authentic once the review succeeded), for `exp`
/// and for the node claim when the apiserver is older than 1.30 and sets no node extra.
pub fn from_review(review: &Review<'_>, claims: &Claims, expected: &Expected) -> Result<AgentIdentity, TokenRefusal> {
    if !review.authenticated {
        return Err(TokenRefusal::NotAuthenticated);
    }
    if !review.audiences.contains(&expected.audience) {
        return Err(TokenRefusal::WrongAudience);
    }
    check_account(review.username, &expected.serviceaccount)?;
    let node = review.node_name.filter(|n| !n.is_empty()).or_else(|| claims.node()).ok_or(TokenRefusal::NoNode)?;
    let expires_at = claims.exp.ok_or(TokenRefusal::Expired)?;
    Ok(AgentIdentity { node: node.to_string(), expires_at })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};

    const NOW: i64 = 1_800_000_000;

    fn expected() -> Expected {
        Expected {
            issuer: Some("https://issuer.test".into()),
            audience: "tokentrail-aggregator".into(),
            serviceaccount: "tokentrail/agent".into(),
            leeway_secs: 30,
        }
    }

    fn claims(node: &str) -> serde_json::Value {
        serde_json::json!({
            "iss": "https://issuer.test", "sub": "system:serviceaccount:tokentrail:agent",
            "aud": ["tokentrail-aggregator"], "iat": NOW - 60, "nbf": NOW - 60, "exp": NOW + 3600,
            "kubernetes.io": {"namespace": "tokentrail", "node": {"name": node, "uid": "n"},
                              "pod": {"name": "agent-x", "uid": "p"}, "serviceaccount": {"name": "agent", "uid": "s"}}
        })
    }

    /// A P-256 key made for this test run only, and its JWKS.
    struct TestKey(EcdsaKeyPair);

    impl TestKey {
        fn new() -> TestKey {
            let rng = SystemRandom::new();
            let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
            TestKey(EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap())
        }

        fn jwks(&self, kid: &str) -> KeySet {
            let p = self.0.public_key().as_ref();
            let doc = serde_json::json!({"keys": [
                {"kty": "RSA", "kid": "other", "use": "sig", "n": "AQAB", "e": "AQAB"},
                {"kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "alg": "ES256",
                 "x": URL_SAFE_NO_PAD.encode(&p[1..33]), "y": URL_SAFE_NO_PAD.encode(&p[33..])}]});
            KeySet::from_jwks(doc.to_string().as_bytes()).unwrap()
        }

        fn sign(&self, kid: &str, claims: &serde_json::Value) -> String {
            let header = serde_json::json!({"alg": "ES256", "kid": kid});
            let signed = format!(
                "{}.{}",
                URL_SAFE_NO_PAD.encode(header.to_string()),
                URL_SAFE_NO_PAD.encode(claims.to_string())
            );
            let sig = self.0.sign(&SystemRandom::new(), signed.as_bytes()).unwrap();
            format!("{signed}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
        }
    }

    #[test]
    fn a_valid_agent_token_yields_its_node() {
        let key = TestKey::new();
        let token = key.sign("k1", &claims("worker-1"));
        let id = verify(&token, &key.jwks("k1"), &expected(), NOW).unwrap();
        assert_eq!(id, AgentIdentity { node: "worker-1".into(), expires_at: NOW + 3600 });
    }

    #[test]
    fn each_broken_rule_has_its_refusal() {
        let key = TestKey::new();
        let keys = key.jwks("k1");
        let with = |f: &dyn Fn(&mut serde_json::Value)| {
            let mut c = claims("worker-1");
            f(&mut c);
            verify(&key.sign("k1", &c), &keys, &expected(), NOW)
        };
        assert_eq!(with(&|c| c["iss"] = "https://evil.test".into()), Err(TokenRefusal::WrongIssuer));
        assert_eq!(with(&|c| c["aud"] = "https://kubernetes.default.svc".into()), Err(TokenRefusal::WrongAudience));
        assert_eq!(with(&|c| c["exp"] = (NOW - 31).into()), Err(TokenRefusal::Expired));
        assert!(with(&|c| c["exp"] = (NOW - 29).into()).is_ok(), "inside the leeway");
        assert_eq!(with(&|c| c["nbf"] = (NOW + 60).into()), Err(TokenRefusal::NotYetValid));
        assert_eq!(
            with(&|c| c["sub"] = "system:serviceaccount:default:web".into()),
            Err(TokenRefusal::WrongServiceAccount)
        );
        assert_eq!(with(&|c| c["kubernetes.io"]["node"] = serde_json::Value::Null), Err(TokenRefusal::NoNode));
        assert_eq!(with(&|c| c["aud"] = "tokentrail-aggregator".into()).unwrap().node, "worker-1");
    }

    #[test]
    fn signatures_keys_and_shapes_are_checked() {
        let key = TestKey::new();
        let token = key.sign("k1", &claims("worker-1"));
        let other = TestKey::new();
        assert_eq!(verify(&token, &other.jwks("k1"), &expected(), NOW), Err(TokenRefusal::BadSignature));
        assert_eq!(verify(&token, &key.jwks("k2"), &expected(), NOW), Err(TokenRefusal::UnknownKey));
        // The claims changed after signing (a node swapped in).
        let (h, rest) = token.split_once('.').unwrap();
        let (_, s) = rest.split_once('.').unwrap();
        let forged = format!("{h}.{}.{s}", URL_SAFE_NO_PAD.encode(claims("worker-2").to_string()));
        assert_eq!(verify(&forged, &key.jwks("k1"), &expected(), NOW), Err(TokenRefusal::BadSignature));
        let none = format!("{}.{}.", URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#), rest.split_once('.').unwrap().0);
        assert_eq!(verify(&none, &key.jwks("k1"), &expected(), NOW), Err(TokenRefusal::UnsupportedAlgorithm));
        assert!(matches!(verify("a.b", &key.jwks("k1"), &expected(), NOW), Err(TokenRefusal::Malformed(_))));
    }

    #[test]
    fn a_review_is_checked_like_the_claims() {
        let c: Claims = serde_json::from_value(claims("worker-1")).unwrap();
        let audiences = vec!["tokentrail-aggregator".to_string()];
        let ok = Review {
            authenticated: true,
            username: Some("system:serviceaccount:tokentrail:agent"),
            audiences: &audiences,
            node_name: Some("worker-3"),
        };
        assert_eq!(from_review(&ok, &c, &expected()).unwrap().node, "worker-3", "the apiserver's extra wins");
        let old_apiserver = Review { node_name: None, ..ok.clone() };
        assert_eq!(from_review(&old_apiserver, &c, &expected()).unwrap().node, "worker-1");
        assert_eq!(
            from_review(&Review { authenticated: false, ..ok.clone() }, &c, &expected()),
            Err(TokenRefusal::NotAuthenticated)
        );
        assert_eq!(
            from_review(&Review { audiences: &[], ..ok.clone() }, &c, &expected()),
            Err(TokenRefusal::WrongAudience)
        );
        assert_eq!(
            from_review(&Review { username: Some("system:node:worker-1"), ..ok }, &c, &expected()),
            Err(TokenRefusal::WrongServiceAccount)
        );
    }

    #[test]
    fn bad_key_sets_say_which_key() {
        assert!(KeySet::from_jwks(br#"{"keys": []}"#).is_err());
        let err = KeySet::from_jwks(br#"{"keys": [{"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}]}"#).unwrap_err();
        assert!(err.to_string().starts_with("key 0"), "{err}");
    }
}
