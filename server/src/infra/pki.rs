//! The one place the leader makes certificates (CAs, server certificates) and writes private files
//! (keys, passwords): Docker's TLS directory, the leader's own TLS certificate and Mosquitto's
//! accounts all go through here.

use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// Certificates live this long (a daemon's certificate can be issued again at any time).
const VALIDITY_DAYS: u64 = 3650;

/// A new CA that may sign end-entity certificates only: its key, its certificate and the issuer
/// to sign with.
/// With `only_for`, the CA may sign certificates for those names and addresses only (X.509 name
/// constraints), so trusting it trusts nothing else.
pub(crate) fn new_ca(
    name: &str,
    only_for: Option<&[String]>,
) -> anyhow::Result<(KeyPair, rcgen::Certificate, Issuer<'static, KeyPair>)> {
    let ca_key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::CommonName, name);
    if let Some(hosts) = only_for {
        let permitted_subtrees = hosts
            .iter()
            .map(|h| match h.parse::<std::net::IpAddr>() {
                Ok(ip) => rcgen::GeneralSubtree::IpAddress(rcgen::CidrSubnet::from_addr_prefix(
                    ip,
                    if ip.is_ipv4() { 32 } else { 128 },
                )),
                Err(_) => rcgen::GeneralSubtree::DnsName(h.clone()),
            })
            .collect();
        params.name_constraints = Some(rcgen::NameConstraints {
            permitted_subtrees,
            excluded_subtrees: Vec::new(),
        });
    }
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut params);
    let ca_cert = params.self_signed(&ca_key)?;
    let issuer = Issuer::new(params, KeyPair::from_pem(&ca_key.serialize_pem())?);
    Ok((ca_key, ca_cert, issuer))
}

/// The CA in `ca` (PEM) with its key in `ca_key`, to sign with: the CA's PEM text and the
/// issuer. Only a CA whose key is at hand (one made by `made_by`) can sign.
pub(crate) fn load_ca(
    ca: &Path,
    ca_key: &Path,
    made_by: &str,
) -> anyhow::Result<(String, Issuer<'static, KeyPair>)> {
    let ca_pem = std::fs::read_to_string(ca)
        .map_err(|e| anyhow::anyhow!("cannot read {} ({e})", ca.display()))?;
    let key_pem = std::fs::read_to_string(ca_key).map_err(|e| {
        anyhow::anyhow!(
            "cannot read {} ({e}): only a CA made by {made_by} can sign certificates here",
            ca_key.display()
        )
    })?;
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, KeyPair::from_pem(&key_pem)?)?;
    Ok((ca_pem, issuer))
}

/// A server certificate for `hosts` (names or IP addresses) signed by `issuer`: its key and
/// certificate.
pub(crate) fn new_server_cert(
    hosts: &[String],
    issuer: &Issuer<'_, impl rcgen::SigningKey>,
) -> anyhow::Result<(KeyPair, rcgen::Certificate)> {
    let Some(first) = hosts.first() else {
        anyhow::bail!("name at least one --host the server is reached by");
    };
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(hosts.to_vec())
        .map_err(|e| anyhow::anyhow!("a --host is not a DNS name or IP address: {e}"))?;
    params
        .distinguished_name
        .push(DnType::CommonName, first.clone());
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    validity(&mut params);
    let cert = params.signed_by(&key, issuer)?;
    Ok((key, cert))
}

pub(crate) fn validity(params: &mut CertificateParams) {
    use chrono::Datelike;
    let ymd = |d: chrono::NaiveDate| {
        // Months and days always fit a u8; day 28 keeps every month valid ten years on.
        rcgen::date_time_ymd(d.year(), d.month() as u8, d.day().min(28) as u8)
    };
    let today = chrono::Utc::now().date_naive();
    // From yesterday, so a daemon whose clock is a little behind still accepts it.
    params.not_before = ymd(today - chrono::Days::new(1));
    params.not_after = ymd(today + chrono::Days::new(VALIDITY_DAYS));
}

/// Writes a private file atomically with `mode` (the one writer, shared with the agent).
pub(crate) fn write_file(path: &Path, data: &[u8], mode: u32) -> std::io::Result<()> {
    trellis_agent::files::write_private(path, data, mode)
}
