//! `spec.customDomains`: each name is checked like the schema checks it (local mode has no API
//! server), then its certificate is found and matched against the name.
//!
//! A certificate problem is the domain's, not the Namespace's: the listeners present
//! `spec.tls` for a domain without a usable certificate, so the Namespace stays Accepted and
//! the problem is kept on the compiled domain for the `CustomDomainsReady` condition.

use super::{Compiler, ObjectProblems};
use crate::model::snapshot::{CERTIFICATE_MISMATCH, CompiledCustomDomain, TlsMaterial};
use crate::types::Namespace;
use crate::types::namespace::{CustomDomain, MAX_CUSTOM_DOMAINS};
use std::collections::BTreeSet;
use x509_parser::extensions::GeneralName;
use x509_parser::pem::Pem;

impl Compiler<'_> {
    pub(super) fn custom_domains(
        &self,
        problems: &mut ObjectProblems,
        namespace: &Namespace,
    ) -> Vec<CompiledCustomDomain> {
        let domains = &namespace.spec.custom_domains;
        if domains.len() > MAX_CUSTOM_DOMAINS as usize {
            problems.add(
                "spec.customDomains",
                format!(
                    "{} custom domains; a Namespace has at most {MAX_CUSTOM_DOMAINS}",
                    domains.len()
                ),
            );
        }
        let mut seen = BTreeSet::new();
        let mut compiled = Vec::new();
        for (index, domain) in domains.iter().enumerate() {
            let field = format!("spec.customDomains[{index}].fullyQualifiedDomainName");
            let name = &domain.fully_qualified_domain_name;
            if !is_domain_name(name) {
                problems.add(
                    field,
                    format!(
                        "'{name}' is not a fully qualified domain name: at most 253 characters in \
                         two or more dot-separated labels of lowercase letters, digits and '-', \
                         no wildcard"
                    ),
                );
                continue;
            }
            if !seen.insert(name.clone()) {
                problems.add(field, format!("custom domain '{name}' is listed twice"));
                continue;
            }
            let (certificate, problem) = match self.domain_certificate(domain) {
                Ok(material) => (Some(material), None),
                Err(problem) => (None, Some(problem)),
            };
            compiled.push(CompiledCustomDomain {
                fully_qualified_domain_name: name.to_ascii_lowercase(),
                certificate,
                problem,
            });
        }
        compiled
    }

    /// The domain's certificate and key, or why there is none to present.
    fn domain_certificate(&self, domain: &CustomDomain) -> Result<TlsMaterial, String> {
        let secret = &domain.tls.secret_name;
        let name = &domain.fully_qualified_domain_name;
        let certificate_chain_pem = self.pem(secret, "tls.crt", "CERTIFICATE")?;
        let private_key_pem = self.pem(secret, "tls.key", "PRIVATE KEY")?;
        let names = leaf_dns_names(&certificate_chain_pem)
            .map_err(|why| format!("key 'tls.crt' of Secret '{secret}': {why}"))?;
        if !names.iter().any(|pattern| covers(pattern, name)) {
            let named = if names.is_empty() {
                "no DNS name".to_string()
            } else {
                names.join(", ")
            };
            return Err(format!(
                "the certificate in Secret '{secret}' {CERTIFICATE_MISMATCH} {name} (it names {named})"
            ));
        }
        Ok(TlsMaterial {
            certificate_chain_pem,
            private_key_pem,
        })
    }
}

/// The DNS names (subject alternative names) of the first certificate of a PEM chain: the leaf,
/// which TLS presents first. A certificate's subject CN is not consulted, as TLS clients no
/// longer do (RFC 6125 §6.4.4 when SANs are present; rustls and browsers always).
fn leaf_dns_names(chain_pem: &[u8]) -> Result<Vec<String>, String> {
    let pem = Pem::iter_from_buffer(chain_pem)
        .filter_map(Result::ok)
        .find(|pem| pem.label == "CERTIFICATE")
        .ok_or("holds no readable PEM certificate")?;
    let certificate = pem
        .parse_x509()
        .map_err(|error| format!("the first certificate is not valid X.509 ({error})"))?;
    let names = match certificate.subject_alternative_name() {
        Ok(Some(extension)) => extension
            .value
            .general_names
            .iter()
            .filter_map(|name| match name {
                GeneralName::DNSName(dns) => Some(dns.to_ascii_lowercase()),
                _ => None,
            })
            .collect(),
        Ok(None) => Vec::new(),
        Err(error) => {
            return Err(format!(
                "the certificate's subject alternative names are unreadable ({error})"
            ));
        }
    };
    Ok(names)
}

/// Whether a certificate's DNS name `pattern` covers `name` (RFC 6125 §6.4.3): equal without
/// regard to case, or a wildcard `*.` that stands for exactly one whole left-most label, over at
/// least two more labels (`*.example.com` covers `a.example.com`, not `example.com`,
/// `a.b.example.com` or anything under `*.com`). Partial-label wildcards (`a*.example.com`)
/// cover nothing, as in rustls.
pub(crate) fn covers(pattern: &str, name: &str) -> bool {
    let pattern = pattern.to_ascii_lowercase();
    let name = name.to_ascii_lowercase();
    if let Some(parent) = pattern.strip_prefix("*.") {
        return parent.contains('.')
            && !parent.contains('*')
            && name
                .split_once('.')
                .is_some_and(|(label, rest)| !label.is_empty() && rest == parent);
    }
    !pattern.contains('*') && pattern == name
}

/// `FULLY_QUALIFIED_DOMAIN_NAME_PATTERN` and the 253-character bound, as the schema states them.
pub(crate) fn is_domain_name(name: &str) -> bool {
    let labels: Vec<&str> = name.split('.').collect();
    let label_ok = |label: &str| {
        (1..=63).contains(&label.len())
            && label
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    name.len() <= 253
        && labels.len() >= 2
        && labels.iter().all(|label| label_ok(label))
        && labels
            .last()
            .is_some_and(|last| last.starts_with(|c: char| c.is_ascii_lowercase()))
}

#[cfg(test)]
mod tests;
