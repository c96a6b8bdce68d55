//! Evidence can hold tokens (a Secret dump's `data`, a TokenRequest at RequestResponse level,
//! `last-applied-configuration`, a token pasted into a wrong field): none of it may reach an
//! observation or a problem message.
#![allow(clippy::unwrap_used)] // helpers outside #[test] fns: a failed unwrap is a failed test

mod common;

use common::*;
use tokentrail_aggregator_core::Decoded;

/// A realistic service-account JWT (header.claims.signature), and its base64 form as a Secret
/// stores it.
const JWT: &str = "eyJhbGciOiJSUzI1NiIsImtpZCI6IkxlZ2FjeUtleUlkIn0.eyJpc3MiOiJrdWJlcm5ldGVzL3NlcnZpY2VhY2NvdW50Iiwic3ViIjoic3lzdGVtOnNlcnZpY2VhY2NvdW50OmNpOm9sZCJ9.c2lnbmF0dXJlLWJ5dGVzLW9mLXRoZS10b2tlbi1zaG91bGQtbmV2ZXItbGVhaw";
const JWT_B64: &str = "ZXlKaGJHY2lPaUpTVXpJMU5pSXNJbXRwWkNJNklreGxaMkZqZVV0bGVVbGtJbjAuZXlKcGMzTWlPaUpyZFdKbGNtNWxkR1Z6TDNObGNuWnBZMlZoWTJOdmRXNTBJaXdpYzNWaUlqb2ljM2x6ZEdWdE9uTmxjblpwWTJWaFkyTnZkVzUwT21OcE9tOXNaQ0o5";

fn assert_no_token(out: &Decoded) {
    let text = format!(
        "{:?}\n{:?}\n{}",
        out.observations,
        out.problems,
        out.problems.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("\n")
    );
    // Any 24-character window of the token would be a leak, not only the whole of it.
    for secret in [JWT, JWT_B64] {
        for window in secret.as_bytes().windows(24).step_by(7) {
            let w = std::str::from_utf8(window).unwrap();
            assert!(!text.contains(w), "token fragment {w} leaked into:\n{text}");
        }
    }
}

#[test]
fn secret_dump_yields_facts_but_no_token() {
    let dump = format!(
        r#"{{"apiVersion":"v1","kind":"List","items":[
  {{"apiVersion":"v1","kind":"Secret","type":"kubernetes.io/service-account-token",
   "metadata":{{"name":"old-token","namespace":"ci","creationTimestamp":"2020-01-01T00:00:00Z",
     "annotations":{{"kubernetes.io/service-account.name":"old",
       "kubectl.kubernetes.io/last-applied-configuration":"{{\"apiVersion\":\"v1\",\"data\":{{\"token\":\"{JWT_B64}\"}},\"kind\":\"Secret\"}}"}}}},
   "data":{{"ca.crt":"Y2E=","namespace":"Y2k=","token":"{JWT_B64}"}},
   "stringData":{{"token":"{JWT}"}}}},
  {{"apiVersion":"v1","kind":"Secret","type":"Opaque","metadata":{{"name":"copy","namespace":"ci","creationTimestamp":"2020-01-01T00:00:00Z"}},"data":{{"token":"{JWT_B64}"}}}}
]}}"#
    );
    let out = decode(&dump);
    assert_eq!(token_secrets(&out).len(), 1);
    assert!(out.problems.is_empty(), "{:?}", out.problems);
    assert_no_token(&out);
}

#[test]
fn token_request_at_request_response_level_leaks_nothing() {
    let event = format!(
        r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"RequestResponse","auditID":"6c1d0000-0000-4000-8000-000000000000","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/ci/serviceaccounts/old/token","verb":"create","user":{{"username":"system:serviceaccount:ci:deployer"}},"sourceIPs":["10.0.1.23"],"objectRef":{{"resource":"serviceaccounts","namespace":"ci","name":"old","apiVersion":"v1","subresource":"token"}},"responseStatus":{{"metadata":{{}},"code":201}},"requestObject":{{"kind":"TokenRequest","spec":{{"audiences":null}},"status":{{"token":""}}}},"responseObject":{{"kind":"TokenRequest","apiVersion":"authentication.k8s.io/v1","spec":{{"audiences":["https://kubernetes.default.svc"]}},"status":{{"token":"{JWT}","expirationTimestamp":"2026-03-01T11:00:00Z"}}}},"requestReceivedTimestamp":"2026-03-01T10:00:00.100000Z"}}"#
    );
    let out = decode(&event);
    assert_eq!((mints(&out).len(), token_uses(&out).len()), (1, 1));
    assert_no_token(&out);
}

#[test]
fn tokens_in_wrong_places_are_not_echoed_in_problems() {
    let cases = [
        format!(
            r#"{{"kind":"Event","auditID":"a","verb":"get","sourceIPs":["{JWT}"],"user":{{"username":"system:serviceaccount:a:b"}},"requestReceivedTimestamp":"2026-03-01T10:00:00Z"}}"#
        ),
        format!(
            r#"{{"kind":"Event","auditID":"{JWT}","verb":"get","user":{{"username":"system:serviceaccount:a:b"}}}}"#
        ),
        format!(r#"{{"kind":"Event","auditID":"a","verb":["{JWT}"]}}"#),
        format!(r#"{{"kind":"{JWT}"}}"#),
        format!(
            r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"p","namespace":"n","creationTimestamp":"2026-03-01T10:00:00Z"}},"status":{{"podIP":"{JWT}"}}}}"#
        ),
        format!(
            r#"{{"apiVersion":"v1","kind":"Node","metadata":{{"name":"n","creationTimestamp":"2026-03-01T10:00:00Z"}},"spec":{{"podCIDR":"{JWT}"}}}}"#
        ),
        format!(r#"{{"message":"{{\"kind\":\"Event\",\"auditID\":\"{JWT} [Truncated...]"}}"#),
        format!(
            r#"{{"apiVersion":"v1","kind":"Secret","type":"kubernetes.io/service-account-token","metadata":{{"name":"s","namespace":"n","creationTimestamp":"{JWT}"}}}}"#
        ),
        JWT.to_string(),
    ];
    for case in cases {
        let out = decode(&case);
        assert!(!out.problems.is_empty(), "{case}");
        assert_no_token(&out);
    }
}
