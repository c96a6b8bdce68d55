//! Which names a client certificate goes by (pure): its subject's common names and its DNS
//! subject alternative names, matched against an allow-list. The chain was verified by rustls
//! during the handshake; this only tells one client of the same CA from another.

use rustls_pki_types::{CertificateDer, ServerName};

/// Whether the leaf certificate is known by one of `allowed`: a subject CN equal to it, or
/// (for a DNS-shaped name) a DNS subject alternative name valid for it.
pub fn allowed(leaf: &CertificateDer<'_>, allowed: &[String]) -> bool {
    let Ok(cert) = webpki::EndEntityCert::try_from(leaf) else { return false };
    let common = common_names(cert.subject());
    allowed.iter().any(|name| {
        common.contains(&name.as_str())
            || ServerName::try_from(name.as_str()).is_ok_and(|dns| {
                matches!(dns, ServerName::DnsName(_)) && cert.verify_is_valid_for_subject_name(&dns).is_ok()
            })
    })
}

/// The names a leaf certificate goes by, for logs: its subject CNs and DNS names.
pub fn names(leaf: &CertificateDer<'_>) -> Vec<String> {
    let Ok(cert) = webpki::EndEntityCert::try_from(leaf) else { return Vec::new() };
    let mut names: Vec<String> = common_names(cert.subject()).into_iter().map(str::to_string).collect();
    names.extend(cert.valid_dns_names().map(str::to_string));
    names
}

/// `commonName` (2.5.4.3) values of a DER `Name`'s content (the RDN sequence without its outer
/// SEQUENCE header, as webpki gives it); values that are not text are skipped.
fn common_names(mut rdns: &[u8]) -> Vec<&str> {
    const CN: &[u8] = &[0x55, 0x04, 0x03];
    const SET: u8 = 0x31;
    const SEQUENCE: u8 = 0x30;
    const OID: u8 = 0x06;
    // UTF8String, PrintableString, TeletexString (as Latin text), IA5String.
    const TEXT: &[u8] = &[0x0c, 0x13, 0x14, 0x16];
    let mut out = Vec::new();
    while let Some((SET, mut set, rest)) = tlv(rdns) {
        rdns = rest;
        while let Some((SEQUENCE, attribute, rest)) = tlv(set) {
            set = rest;
            if let Some((OID, oid, value)) = tlv(attribute) {
                if oid == CN {
                    if let Some((tag, text, _)) = tlv(value) {
                        if let (true, Ok(text)) = (TEXT.contains(&tag), std::str::from_utf8(text)) {
                            out.push(text);
                        }
                    }
                }
            }
        }
    }
    out
}

/// One DER tag-length-value: the tag, the value and what follows; `None` when malformed.
fn tlv(der: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = der.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = match first {
        0..=0x7f => (usize::from(first), rest),
        0x81..=0x82 => {
            let n = usize::from(first & 0x7f);
            let bytes = rest.get(..n)?;
            (bytes.iter().fold(0usize, |acc, &b| (acc << 8) | usize::from(b)), &rest[n..])
        }
        _ => return None,
    };
    let value = rest.get(..len)?;
    Some((tag, value, &rest[len..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls_pki_types::pem::PemObject;

    fn client_cert() -> CertificateDer<'static> {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../agent/tests/data/tls/client.pem");
        CertificateDer::from_pem_file(path).unwrap()
    }

    #[test]
    fn a_certificate_is_allowed_by_its_common_name_or_its_dns_name_and_nothing_else() {
        let cert = client_cert(); // CN=client, DNS:agent.worker-1.test
        assert!(allowed(&cert, &["client".into()]));
        assert!(allowed(&cert, &["kube-apiserver".into(), "agent.worker-1.test".into()]));
        for other in ["kube-apiserver", "Client", "agent.worker-2.test", "worker-1.test", "", "test CA"] {
            assert!(!allowed(&cert, &[other.into()]), "{other}");
        }
        assert!(!allowed(&cert, &[]));
        assert_eq!(names(&cert), ["client", "agent.worker-1.test"]);
    }

    #[test]
    fn common_names_read_multi_valued_rdns_and_stop_at_malformed_der() {
        // SET { SEQ { O=x } SEQ { CN=ab } }, SET { SEQ { CN=cd } }
        let name = [
            0x31, 0x15, 0x30, 0x08, 0x06, 0x03, 0x55, 0x04, 0x0a, 0x0c, 0x01, b'x', 0x30, 0x09, 0x06, 0x03, 0x55, 0x04,
            0x03, 0x0c, 0x02, b'a', b'b', 0x31, 0x0b, 0x30, 0x09, 0x06, 0x03, 0x55, 0x04, 0x03, 0x13, 0x02, b'c', b'd',
        ];
        assert_eq!(common_names(&name), ["ab", "cd"]);
        assert_eq!(common_names(&name[..20]), Vec::<&str>::new(), "a truncated SET yields nothing");
        assert_eq!(common_names(&[0x31, 0x85, 0, 0, 0, 0, 1]), Vec::<&str>::new());
    }
}
