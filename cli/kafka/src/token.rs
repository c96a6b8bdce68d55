//! The client-credentials grant's request and answer (RFC 6749 §4.4, §5.1, §5.2), pure: what is
//! sent, and what a token response becomes for librdkafka. The HTTP exchange is [`crate::fetch`].

use std::fmt;

use base64::Engine as _;
use serde_json::Value;

/// A token and what librdkafka needs with it. `Debug` does not show the token.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    /// The access token, as the brokers get it.
    pub value: String,
    /// The principal librdkafka reports (the JWT's `sub`, else the client id). The brokers
    /// take theirs from the token itself.
    pub principal: String,
    /// When it expires, in milliseconds since the Unix epoch: librdkafka asks for a new one at
    /// 80% of its lifetime.
    pub expires_ms: i64,
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("value", &"[redacted]")
            .field("principal", &self.principal)
            .field("expires_ms", &self.expires_ms)
            .finish()
    }
}

/// What was wrong with the endpoint's answer (the endpoint is named by the caller).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum AnswerError {
    /// Not a 2xx: the provider refused the request (a wrong secret, an unknown client or scope).
    #[error("answered {status}{detail}")]
    Refused {
        /// The HTTP status code.
        status: u16,
        /// The OAuth error code and description of the answer, if it had them.
        detail: String,
    },
    /// A 2xx whose body is not a usable token response.
    #[error("answered {status} without a usable token: {reason}")]
    NotAToken {
        /// The HTTP status code.
        status: u16,
        /// What is wrong.
        reason: &'static str,
    },
}

/// The request body, `application/x-www-form-urlencoded`.
pub fn form_body(scope: Option<&str>) -> String {
    let mut body = String::from("grant_type=client_credentials");
    if let Some(scope) = scope {
        body.push_str("&scope=");
        body.push_str(&form_encode(scope));
    }
    body
}

/// The `Authorization` header's value: HTTP Basic with the client id and secret, each
/// form-encoded first as RFC 6749 §2.3.1 says (it matters only for ids and secrets with
/// characters outside letters, digits and `-._~`).
pub fn basic_auth(client_id: &str, client_secret: &str) -> String {
    let pair = format!("{}:{}", form_encode(client_id), form_encode(client_secret));
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair))
}

/// `application/x-www-form-urlencoded` encoding of one value: unreserved characters as they are,
/// space as `+`, every other byte as `%XX`.
fn form_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => out.push(char::from(b)),
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The token of an answer with HTTP status `status` and body `body`, received at `now_ms`.
/// The lifetime is `expires_in` from now; a JWT's `exp`, when earlier or when there is no
/// `expires_in`. The principal is a JWT's `sub`, else `client_id`. The JWT is read, not
/// verified: the brokers verify it, this only schedules the refresh and names the client.
pub fn parse_answer(status: u16, body: &[u8], client_id: &str, now_ms: i64) -> Result<Token, AnswerError> {
    let json: Option<Value> = serde_json::from_slice(body).ok();
    if !(200..300).contains(&status) {
        return Err(AnswerError::Refused { status, detail: error_detail(json.as_ref()) });
    }
    let not = |reason| AnswerError::NotAToken { status, reason };
    let json = json.ok_or(not("the body is not JSON"))?;
    let value = json.get("access_token").and_then(Value::as_str).ok_or(not("no access_token"))?;
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(not("the access_token is empty or not printable ASCII"));
    }
    if let Some(kind) = json.get("token_type").and_then(Value::as_str) {
        if !kind.eq_ignore_ascii_case("bearer") {
            return Err(not("the token_type is not Bearer"));
        }
    }
    let claims = jwt_claims(value);
    let expires_in = match json.get("expires_in") {
        None | Some(Value::Null) => None,
        // Some providers send it as a string.
        Some(v) => Some(
            v.as_i64().or_else(|| v.as_str().and_then(|s| s.parse().ok())).ok_or(not("expires_in is not a number"))?,
        ),
    };
    let from_expires_in = expires_in.map(|s| now_ms.saturating_add(s.saturating_mul(1000)));
    let from_exp = claims.exp.map(|s| s.saturating_mul(1000));
    let expires_ms = match (from_expires_in, from_exp) {
        (Some(a), Some(b)) => a.min(b),
        (Some(t), None) | (None, Some(t)) => t,
        (None, None) => return Err(not("neither expires_in nor a JWT exp says when it expires")),
    };
    if expires_ms <= now_ms {
        return Err(not("it has already expired"));
    }
    let principal = claims.sub.unwrap_or_else(|| client_id.to_string());
    Ok(Token { value: value.to_string(), principal, expires_ms })
}

/// ` (invalid_client: bad secret)` from an RFC 6749 §5.2 error answer; empty without one. Only
/// these two fields: whatever else a body holds is not repeated into logs.
fn error_detail(json: Option<&Value>) -> String {
    let field = |k| json.and_then(|j| j.get(k)).and_then(Value::as_str).map(printable);
    match (field("error"), field("error_description")) {
        (Some(e), Some(d)) => format!(" ({e}: {d})"),
        (Some(e), None) => format!(" ({e})"),
        (None, Some(d)) => format!(" ({d})"),
        (None, None) => String::new(),
    }
}

/// At most 200 characters, without control characters.
fn printable(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(200).collect()
}

/// The claims read from a JWT's payload.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Claims {
    /// `sub`.
    pub sub: Option<String>,
    /// `exp`, seconds since the Unix epoch.
    pub exp: Option<i64>,
}

/// `sub` and `exp` of `token` if it is a JWT (three base64url parts, a JSON object in the
/// second), not verified; nothing if it is not (an opaque token).
pub fn jwt_claims(token: &str) -> Claims {
    let mut parts = token.split('.');
    let (Some(_header), Some(payload), Some(_signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Claims::default();
    };
    let Ok(bytes) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')) else {
        return Claims::default();
    };
    let Ok(Value::Object(claims)) = serde_json::from_slice(&bytes) else { return Claims::default() };
    Claims {
        sub: claims.get("sub").and_then(Value::as_str).filter(|s| !s.is_empty()).map(String::from),
        // Whole seconds; a fractional NumericDate is rounded down.
        exp: claims.get("exp").and_then(|e| e.as_i64().or_else(|| e.as_f64().map(|f| f as i64))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An unsigned JWT with `claims`.
    fn jwt(claims: &str) -> String {
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        format!("{}.{}.", b64(r#"{"alg":"none"}"#), b64(claims))
    }

    const NOW: i64 = 1_800_000_000_000;

    #[test]
    fn the_request_is_the_client_credentials_grant_with_basic_auth() {
        assert_eq!(form_body(None), "grant_type=client_credentials");
        assert_eq!(
            form_body(Some("kafka api://x/.default")),
            "grant_type=client_credentials&scope=kafka+api%3A%2F%2Fx%2F.default"
        );
        // base64("tokentrail:s3cret")
        assert_eq!(basic_auth("tokentrail", "s3cret"), "Basic dG9rZW50cmFpbDpzM2NyZXQ=");
        // Encoded before Basic: a ':' in the id cannot split it wrongly. base64("a%3Ab:p%2Bq")
        assert_eq!(basic_auth("a:b", "p+q"), "Basic YSUzQWI6cCUyQnE=");
    }

    #[test]
    fn a_jwt_gives_its_sub_and_the_earlier_of_exp_and_expires_in() {
        let exp = NOW / 1000 + 600;
        let token = jwt(&format!(r#"{{"sub":"svc-tokentrail","exp":{exp},"iat":1}}"#));
        let body = format!(r#"{{"access_token":"{token}","token_type":"Bearer","expires_in":3600}}"#);
        let t = parse_answer(200, body.as_bytes(), "client", NOW).unwrap();
        assert_eq!((t.principal.as_str(), t.expires_ms, t.value == token), ("svc-tokentrail", exp * 1000, true));
        // No expires_in: exp alone.
        let body = format!(r#"{{"access_token":"{token}"}}"#);
        assert_eq!(parse_answer(200, body.as_bytes(), "client", NOW).unwrap().expires_ms, exp * 1000);
        // expires_in earlier than exp (and as a string, as some providers send it).
        let body = format!(r#"{{"access_token":"{token}","expires_in":"60"}}"#);
        assert_eq!(parse_answer(200, body.as_bytes(), "client", NOW).unwrap().expires_ms, NOW + 60_000);
    }

    #[test]
    fn an_opaque_token_is_the_client_ids_for_expires_in() {
        let body = br#"{"access_token":"2YotnFZFEjr1zCsicMWpAA","token_type":"bearer","expires_in":3600}"#;
        let t = parse_answer(200, body, "tokentrail", NOW).unwrap();
        assert_eq!((t.principal.as_str(), t.expires_ms), ("tokentrail", NOW + 3_600_000));
        assert_eq!(jwt_claims("2YotnFZFEjr1zCsicMWpAA"), Claims::default());
        assert_eq!(jwt_claims("a.b.c.d"), Claims::default());
        assert_eq!(jwt_claims("a.!!!.c"), Claims::default());
        assert_eq!(jwt_claims(&jwt(r#"["not","an","object"]"#)), Claims::default());
        assert_eq!(jwt_claims(&jwt(r#"{"sub":"","exp":1.9}"#)), Claims { sub: None, exp: Some(1) });
    }

    #[test]
    fn refusals_say_the_status_and_the_oauth_error_only() {
        let body = br#"{"error":"invalid_client","error_description":"bad\nsecret","trace":"s3cret"}"#;
        let err = parse_answer(401, body, "c", NOW).unwrap_err();
        assert_eq!(err.to_string(), "answered 401 (invalid_client: badsecret)");
        assert_eq!(parse_answer(503, b"<html>busy</html>", "c", NOW).unwrap_err().to_string(), "answered 503");
    }

    #[test]
    fn answers_without_a_usable_token_are_refused_with_the_reason() {
        let cases: [(&[u8], &str); 7] = [
            (b"not json", "the body is not JSON"),
            (br#"{"token_type":"bearer","expires_in":60}"#, "no access_token"),
            (br#"{"access_token":"","expires_in":60}"#, "empty or not printable"),
            (br#"{"access_token":"a b","expires_in":60}"#, "empty or not printable"),
            (br#"{"access_token":"t","token_type":"mac","expires_in":60}"#, "not Bearer"),
            (br#"{"access_token":"t"}"#, "neither expires_in nor a JWT exp"),
            (br#"{"access_token":"t","expires_in":0}"#, "already expired"),
        ];
        for (body, why) in cases {
            let err = parse_answer(200, body, "c", NOW).unwrap_err().to_string();
            assert!(err.starts_with("answered 200 without a usable token: ") && err.contains(why), "{err}");
        }
    }

    #[test]
    fn debug_does_not_show_the_token() {
        let t = Token { value: "eyJsecret".into(), principal: "p".into(), expires_ms: 1 };
        let shown = format!("{t:?}");
        assert!(!shown.contains("eyJsecret") && shown.contains("[redacted]"), "{shown}");
    }
}
