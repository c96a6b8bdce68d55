//! Decoding a service-account token's payload claims (pure).
//!
//! Only the JWT's middle segment is read: the header and signature are ignored (the agent
//! attests what the kubelet wrote, it does not validate tokens). The caller hands in the file's
//! bytes and drops them right after; nothing decoded here can rebuild the token. Errors name
//! what was wrong, never the content.

use serde::Deserialize;

/// What kind of service-account token the claims describe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TokenKind {
    /// A TokenRequest token bound to a pod (`kubernetes.io.pod`).
    PodBound,
    /// A TokenRequest token bound to a Secret (`kubernetes.io.secret`).
    SecretBound,
    /// A TokenRequest token with no pod or Secret binding.
    Unbound,
    /// A legacy Secret-based token (issuer `kubernetes/serviceaccount`).
    LegacySecret,
}

/// A Kubernetes object named in the claims.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
pub struct ObjectRef {
    /// `name`.
    #[serde(default)]
    pub name: String,
    /// `uid` (empty when absent, e.g. a node missing at mint time).
    #[serde(default)]
    pub uid: String,
}

/// The claims of a service-account token that the agent attests. Times are JWT NumericDates
/// (seconds since the Unix epoch).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Claims {
    /// Kind, derived from which claims are present.
    pub kind: TokenKind,
    /// `jti`.
    pub jti: Option<String>,
    /// `iss`.
    pub issuer: String,
    /// `sub`: `system:serviceaccount:<ns>:<name>`.
    pub subject: String,
    /// `aud` (a string or a list in the JWT).
    pub audiences: Vec<String>,
    /// `iat`.
    pub issued_at: Option<i64>,
    /// `nbf`.
    pub not_before: Option<i64>,
    /// `exp`.
    pub expires_at: Option<i64>,
    /// `kubernetes.io.warnafter`.
    pub warn_after: Option<i64>,
    /// `kubernetes.io.namespace`, or the legacy namespace claim.
    pub namespace: String,
    /// `kubernetes.io.serviceaccount`, or the legacy service-account name/uid claims.
    pub serviceaccount: Option<ObjectRef>,
    /// `kubernetes.io.pod`.
    pub pod: Option<ObjectRef>,
    /// `kubernetes.io.node`.
    pub node: Option<ObjectRef>,
    /// `kubernetes.io.secret`.
    pub bound_secret: Option<ObjectRef>,
    /// Legacy `kubernetes.io/serviceaccount/secret.name`.
    pub legacy_secret_name: Option<String>,
}

/// Why a token file's content was refused. Never carries the content.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ClaimsError {
    /// Not three dot-separated segments.
    #[error("not a compact JWT (expected three dot-separated segments)")]
    NotAJwt,
    /// The payload segment is not base64url.
    #[error("payload is not base64url")]
    Base64,
    /// The payload is not a JSON object of the expected shape.
    #[error("payload is not a JSON claims object (column {column})")]
    Json {
        /// Where the JSON parser stopped.
        column: usize,
    },
    /// A JWT, but not a Kubernetes service-account token (`sub` not `system:serviceaccount:`).
    #[error("not a service-account token")]
    NotServiceAccount,
}

/// The issuer of legacy Secret-based tokens.
const LEGACY_ISSUER: &str = "kubernetes/serviceaccount";

/// Decodes the claims of a compact JWT. Surrounding whitespace (a trailing newline) is allowed.
pub fn decode(token: &[u8]) -> Result<Claims, ClaimsError> {
    let token = token.trim_ascii();
    let mut parts = token.split(|&b| b == b'.');
    let (Some(_header), Some(payload), Some(_signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ClaimsError::NotAJwt);
    };
    let mut json = base64url_decode(payload).ok_or(ClaimsError::Base64)?;
    let parsed = serde_json::from_slice::<RawClaims>(&json);
    // The payload holds no secret by itself, but it is a piece of the token: do not keep it.
    json.fill(0);
    std::hint::black_box(&json);
    let raw = parsed.map_err(|e| ClaimsError::Json { column: e.column() })?;
    raw.into_claims()
}

#[derive(Deserialize)]
struct RawClaims {
    iss: Option<String>,
    sub: Option<String>,
    aud: Option<Audience>,
    iat: Option<NumericDate>,
    nbf: Option<NumericDate>,
    exp: Option<NumericDate>,
    jti: Option<String>,
    #[serde(rename = "kubernetes.io")]
    kubernetes: Option<KubernetesClaims>,
    #[serde(rename = "kubernetes.io/serviceaccount/namespace")]
    legacy_namespace: Option<String>,
    #[serde(rename = "kubernetes.io/serviceaccount/secret.name")]
    legacy_secret_name: Option<String>,
    #[serde(rename = "kubernetes.io/serviceaccount/service-account.name")]
    legacy_sa_name: Option<String>,
    #[serde(rename = "kubernetes.io/serviceaccount/service-account.uid")]
    legacy_sa_uid: Option<String>,
}

#[derive(Deserialize)]
struct KubernetesClaims {
    namespace: Option<String>,
    serviceaccount: Option<ObjectRef>,
    pod: Option<ObjectRef>,
    node: Option<ObjectRef>,
    secret: Option<ObjectRef>,
    warnafter: Option<NumericDate>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

/// RFC 7519 NumericDate: a JSON number, possibly fractional.
#[derive(Deserialize)]
#[serde(transparent)]
struct NumericDate(serde_json::Number);

impl NumericDate {
    fn seconds(&self) -> Option<i64> {
        // Truncation is intended: sub-second precision is meaningless for these claims.
        #[allow(clippy::cast_possible_truncation)]
        self.0.as_i64().or_else(|| self.0.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))
    }
}

impl RawClaims {
    fn into_claims(self) -> Result<Claims, ClaimsError> {
        let subject = self.sub.unwrap_or_default();
        if !subject.starts_with("system:serviceaccount:") {
            return Err(ClaimsError::NotServiceAccount);
        }
        let issuer = self.iss.unwrap_or_default();
        let k8s = self.kubernetes;
        let legacy = issuer == LEGACY_ISSUER || self.legacy_secret_name.is_some();
        let (namespace, serviceaccount, pod, node, bound_secret, warn_after) = match k8s {
            Some(k) => (
                k.namespace.unwrap_or_default(),
                k.serviceaccount,
                k.pod,
                k.node,
                k.secret,
                k.warnafter.and_then(|d| d.seconds()),
            ),
            None => {
                let sa = (self.legacy_sa_name.is_some() || self.legacy_sa_uid.is_some()).then(|| ObjectRef {
                    name: self.legacy_sa_name.unwrap_or_default(),
                    uid: self.legacy_sa_uid.unwrap_or_default(),
                });
                (self.legacy_namespace.unwrap_or_default(), sa, None, None, None, None)
            }
        };
        let kind = if legacy {
            TokenKind::LegacySecret
        } else if pod.is_some() {
            TokenKind::PodBound
        } else if bound_secret.is_some() {
            TokenKind::SecretBound
        } else {
            TokenKind::Unbound
        };
        Ok(Claims {
            kind,
            jti: self.jti,
            issuer,
            subject,
            audiences: match self.aud {
                None => Vec::new(),
                Some(Audience::One(a)) => vec![a],
                Some(Audience::Many(a)) => a,
            },
            issued_at: self.iat.and_then(|d| d.seconds()),
            not_before: self.nbf.and_then(|d| d.seconds()),
            expires_at: self.exp.and_then(|d| d.seconds()),
            warn_after,
            namespace,
            serviceaccount,
            pod,
            node,
            bound_secret,
            legacy_secret_name: self.legacy_secret_name,
        })
    }
}

/// Decodes unpadded (or padded) base64url; `None` on any other byte.
fn base64url_decode(input: &[u8]) -> Option<Vec<u8>> {
    fn value(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        } as u32)
    }
    let input = input.strip_suffix(b"==").or_else(|| input.strip_suffix(b"=")).unwrap_or(input);
    if input.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(input.len() * 3 / 4);
    for chunk in input.chunks(4) {
        let mut acc = 0u32;
        for &c in chunk {
            acc = (acc << 6) | value(c)?;
        }
        // Left-align the chunk's bits into 24, then take as many whole bytes as it carries.
        acc <<= 6 * (4 - chunk.len() as u32);
        let bytes = acc.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(data: &[u8]) -> String {
        const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut s = String::new();
        for chunk in data.chunks(3) {
            let mut n = 0u32;
            for (i, &b) in chunk.iter().enumerate() {
                n |= u32::from(b) << (16 - 8 * i);
            }
            for i in 0..=chunk.len() {
                s.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            }
        }
        s
    }

    fn jwt(payload: &str) -> Vec<u8> {
        format!("{}.{}.c2ln", b64(br#"{"alg":"RS256"}"#), b64(payload.as_bytes())).into_bytes()
    }

    #[test]
    fn base64url_round_trips_every_length() {
        for len in 0..40u8 {
            let data: Vec<u8> = (0..len).map(|i| i.wrapping_mul(37).wrapping_add(250)).collect();
            assert_eq!(base64url_decode(b64(&data).as_bytes()).unwrap(), data, "len {len}");
        }
        assert!(base64url_decode(b"a+b/").is_none(), "standard alphabet is not base64url");
        assert!(base64url_decode(b"abcde").is_none(), "a lone trailing sextet cannot be");
    }

    #[test]
    fn pod_bound_token_claims_are_decoded() {
        let token = jwt(r#"{"aud":["https://kubernetes.default.svc.cluster.local"],"exp":1782000000,"iat":1750464000,
            "iss":"https://kubernetes.default.svc.cluster.local","jti":"aed34954-b33a-4142-b1ec-389d6bbb4936",
            "kubernetes.io":{"namespace":"payments","node":{"name":"worker-1","uid":"n-uid"},
            "pod":{"name":"api-1","uid":"p-uid"},"serviceaccount":{"name":"api","uid":"sa-uid"},"warnafter":1750467607},
            "nbf":1750464000,"sub":"system:serviceaccount:payments:api"}"#);
        let c = decode(&token).unwrap();
        assert_eq!(c.kind, TokenKind::PodBound);
        assert_eq!(c.jti.as_deref(), Some("aed34954-b33a-4142-b1ec-389d6bbb4936"));
        assert_eq!(c.audiences, ["https://kubernetes.default.svc.cluster.local"]);
        assert_eq!(
            (c.issued_at, c.not_before, c.expires_at, c.warn_after),
            (Some(1750464000), Some(1750464000), Some(1782000000), Some(1750467607))
        );
        assert_eq!(c.namespace, "payments");
        assert_eq!(c.pod, Some(ObjectRef { name: "api-1".into(), uid: "p-uid".into() }));
        assert_eq!(c.node.unwrap().name, "worker-1");
        assert_eq!(c.serviceaccount.unwrap().uid, "sa-uid");
    }

    #[test]
    fn legacy_token_claims_are_decoded() {
        let token = jwt(r#"{"iss":"kubernetes/serviceaccount","kubernetes.io/serviceaccount/namespace":"ci",
            "kubernetes.io/serviceaccount/secret.name":"deployer-token","kubernetes.io/serviceaccount/service-account.name":"deployer",
            "kubernetes.io/serviceaccount/service-account.uid":"sa-2","sub":"system:serviceaccount:ci:deployer"}"#);
        let c = decode(&token).unwrap();
        assert_eq!(c.kind, TokenKind::LegacySecret);
        assert_eq!(c.legacy_secret_name.as_deref(), Some("deployer-token"));
        assert_eq!(c.namespace, "ci");
        assert_eq!(c.serviceaccount, Some(ObjectRef { name: "deployer".into(), uid: "sa-2".into() }));
        assert_eq!((c.jti, c.expires_at, c.audiences.len()), (None, None, 0));
    }

    #[test]
    fn single_string_audience_and_fractional_dates_are_accepted() {
        let c = decode(&jwt(r#"{"sub":"system:serviceaccount:a:b","aud":"vault","iat":1.5e9,"jti":"j"}"#)).unwrap();
        assert_eq!(c.audiences, ["vault"]);
        assert_eq!(c.issued_at, Some(1_500_000_000));
        assert_eq!(c.kind, TokenKind::Unbound);
    }

    #[test]
    fn malformed_tokens_are_refused_without_echoing_content() {
        let cases: [(&[u8], ClaimsError); 4] = [
            (b"", ClaimsError::NotAJwt),
            (b"only.two", ClaimsError::NotAJwt),
            (b"a.b.c.d", ClaimsError::NotAJwt),
            (b"eyJ.not base64!.sig", ClaimsError::Base64),
        ];
        for (input, want) in cases {
            let err = decode(input).unwrap_err();
            assert_eq!(err, want);
            assert!(!err.to_string().contains("bm90"));
        }
        assert_eq!(decode(&jwt(r#"{"sub":"alice"}"#)).unwrap_err(), ClaimsError::NotServiceAccount);
        let not_json = decode(b"x.bm90IGpzb24.sig").unwrap_err(); // "not json"
        assert!(matches!(not_json, ClaimsError::Json { .. }));
        assert!(!not_json.to_string().contains("not json"), "{not_json}");
        assert!(matches!(decode(&jwt(r#"[1,2]"#)).unwrap_err(), ClaimsError::Json { .. }));
    }

    #[test]
    fn trailing_newline_is_allowed() {
        let mut token = jwt(r#"{"sub":"system:serviceaccount:a:b"}"#);
        token.push(b'\n');
        assert!(decode(&token).is_ok());
    }
}
