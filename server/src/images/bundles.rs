//! App bundles (device-app-manager's install, checked): a tar or tar.gz holding an app, read
//! entry by entry before anything is stored or built. Refused, with what is wrong: not a tar,
//! absolute paths, `..`, links that leave the tree, devices and fifos, too many entries or too
//! many unpacked bytes, no `app.py` / `Dockerfile` / `flows.json` for its type, a bad `app.yaml`.
//!
//! Types: `py3` (`app.py`, optional `requirements.txt`), `dockerfile` (a build context with a
//! `Dockerfile`), `nodered` (`flows.json`, optional `package.json` and `settings.js`). A bundle
//! whose files all sit in one top directory (`myapp/app.py`, as `tar czf myapp.tgz myapp`
//! makes) is read as if that directory were its top.
//!
//! `app.yaml`, optional: `name`, `version`, `description`, `tags`, `type`, `build` (`leader`, the
//! default: built once on the leader's engine and sent to the nodes; or `node`: built on each
//! node's own engine, as device-app-manager does), and `parameters`
//! (device-app-manager's `init.conf`): each a `name` (an environment variable name), a `type`
//! (`string`, `int`, `float`, `bool`), a `default` and a `description`. They become environment
//! variables a user sets per deployment and per node.

use std::{
    collections::BTreeMap,
    io::Read,
    path::{Component, Path},
};

use serde::{Deserialize, Serialize};

/// The most entries a bundle may hold.
pub const MAX_ENTRIES: usize = 20_000;
/// The most an `app.yaml` may weigh.
pub const MAX_MANIFEST: u64 = 64 * 1024;

/// What a bundle builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, async_graphql::Enum)]
#[serde(rename_all = "lowercase")]
pub enum BundleKind {
    /// `app.py` on the Python base image.
    #[graphql(name = "PY3")]
    Py3,
    /// Its own `Dockerfile`.
    Dockerfile,
    /// `flows.json` on the Node-RED base image.
    Nodered,
}

impl BundleKind {
    /// The name in `app.yaml` and in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            BundleKind::Py3 => "py3",
            BundleKind::Dockerfile => "dockerfile",
            BundleKind::Nodered => "nodered",
        }
    }

    /// From the database.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "py3" => Some(BundleKind::Py3),
            "dockerfile" => Some(BundleKind::Dockerfile),
            "nodered" => Some(BundleKind::Nodered),
            _ => None,
        }
    }

    /// The file a bundle of this type must have at its top.
    pub fn needs(self) -> &'static str {
        match self {
            BundleKind::Py3 => "app.py",
            BundleKind::Dockerfile => "Dockerfile",
            BundleKind::Nodered => "flows.json",
        }
    }
}

/// A parameter's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, async_graphql::Enum)]
#[serde(rename_all = "lowercase")]
#[graphql(name = "AppParamType")]
pub enum ParamType {
    /// Any text.
    String,
    /// A whole number.
    Int,
    /// A number.
    Float,
    /// `true` or `false`.
    Bool,
}

/// One parameter of an app: an environment variable with a type and a default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, async_graphql::SimpleObject)]
#[graphql(name = "AppParam")]
#[serde(deny_unknown_fields)]
pub struct Param {
    /// The environment variable's name.
    pub name: String,
    /// Its type.
    #[serde(rename = "type", default = "string_type")]
    pub kind: ParamType,
    /// Its default, as text.
    #[serde(default)]
    pub default: Option<String>,
    /// What it does.
    #[serde(default)]
    pub description: Option<String>,
}

fn string_type() -> ParamType {
    ParamType::String
}

/// `app.yaml`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The app's name.
    #[serde(default)]
    pub name: Option<String>,
    /// This version's name.
    #[serde(default)]
    pub version: Option<String>,
    /// What the app does.
    #[serde(default)]
    pub description: Option<String>,
    /// Words to find it by.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Its type, when the files do not say.
    #[serde(default, rename = "type")]
    pub kind: Option<BundleKind>,
    /// Its parameters.
    #[serde(default)]
    pub parameters: Vec<Param>,
    /// Where it is built: on the leader's engine, then sent to the nodes (the default), or on
    /// each node's own engine.
    #[serde(default)]
    pub build: Option<BuildOn>,
}

/// Where a bundle is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BuildOn {
    /// On the leader's engine, then sideloaded.
    Leader,
    /// On each target node's own engine.
    Node,
}

/// A bundle that passed every check.
#[derive(Debug, Clone, PartialEq)]
pub struct Checked {
    /// Its type.
    pub kind: BundleKind,
    /// Its `app.yaml`, or an empty one.
    pub manifest: Manifest,
    /// The top directory every entry sits in, stripped when building.
    pub strip: Option<String>,
    /// The names at its top (after `strip`): files and directories.
    pub top_files: Vec<String>,
    /// Bytes once unpacked.
    pub unpacked_bytes: u64,
}

/// Checks an app name: what a Docker repository and a deployment name take.
pub fn check_name(name: &str) -> Result<(), String> {
    // 36: the app's deployment, `app-<name>`, takes at most 40.
    let ok = !name.is_empty()
        && name.len() <= 36
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "name {name:?}: 1 to 36 lowercase letters, digits and '-', starting with a letter or digit"
        ))
    }
}

/// Checks a version name: what a Docker tag takes, in lowercase (a deployment's image is).
pub fn check_version(version: &str) -> Result<(), String> {
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    let ok = !version.is_empty()
        && version.len() <= 64
        && version.starts_with(allowed)
        && version
            .chars()
            .all(|c| allowed(c) || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "version {version:?}: 1 to 64 lowercase letters, digits, '.', '_' and '-', starting with a letter or digit"
        ))
    }
}

fn check_param(p: &Param) -> Result<(), String> {
    let ok = !p.name.is_empty()
        && p.name.len() <= 64
        && p.name
            .starts_with(|c: char| c.is_ascii_uppercase() || c == '_')
        && p.name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    if !ok {
        return Err(format!(
            "parameter {:?}: a name of capitals, digits and '_' (an environment variable)",
            p.name
        ));
    }
    if let Some(d) = &p.default {
        check_value(p, d)?;
    }
    Ok(())
}

/// Checks a value given for parameter `p`.
pub fn check_value(p: &Param, value: &str) -> Result<(), String> {
    let ok = match p.kind {
        ParamType::String => true,
        ParamType::Int => value.trim().parse::<i64>().is_ok(),
        ParamType::Float => value.trim().parse::<f64>().is_ok_and(f64::is_finite),
        ParamType::Bool => matches!(value.trim(), "true" | "false"),
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "parameter {}: {value:?} is not a {}",
            p.name,
            match p.kind {
                ParamType::String => "string",
                ParamType::Int => "whole number",
                ParamType::Float => "number",
                ParamType::Bool => "true or false",
            }
        ))
    }
}

/// Parses and checks an `app.yaml`.
pub fn parse_manifest(text: &str) -> Result<Manifest, String> {
    let options = marked_yaml::LoaderOptions::default().error_on_duplicate_keys(true);
    let m: Manifest = marked_yaml::from_yaml_with_options(0, text, options)
        .map_err(|e| format!("app.yaml: {e}"))?;
    if let Some(n) = &m.name {
        check_name(n).map_err(|e| format!("app.yaml: {e}"))?;
    }
    if let Some(v) = &m.version {
        check_version(v).map_err(|e| format!("app.yaml: {e}"))?;
    }
    if m.tags.len() > 32 || m.tags.iter().any(|t| t.is_empty() || t.len() > 40) {
        return Err("app.yaml: tags: at most 32, each 1 to 40 characters".into());
    }
    if m.description.as_ref().is_some_and(|d| d.len() > 4096) {
        return Err("app.yaml: description: at most 4096 characters".into());
    }
    if m.parameters.len() > 64 {
        return Err("app.yaml: parameters: at most 64".into());
    }
    let mut seen = std::collections::BTreeSet::new();
    for p in &m.parameters {
        check_param(p).map_err(|e| format!("app.yaml: {e}"))?;
        if !seen.insert(p.name.as_str()) {
            return Err(format!("app.yaml: parameter {} given twice", p.name));
        }
    }
    Ok(m)
}

/// `path` as the components of a path inside the bundle, or why it is unsafe.
fn inside(path: &Path) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(s) => out.push(s.to_string_lossy().into_owned()),
            Component::CurDir => {}
            Component::ParentDir => {
                return Err(format!(
                    "unsafe path {}: '..' is not allowed",
                    path.display()
                ));
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(format!(
                    "unsafe path {}: absolute paths are not allowed",
                    path.display()
                ));
            }
        }
    }
    Ok(out)
}

/// Where a symlink at `at` (components) pointing to `target` lands, or an error when it leaves
/// the bundle.
fn resolve_link(at: &[String], target: &Path, shown: &Path) -> Result<(), String> {
    if target.is_absolute() {
        return Err(format!(
            "symlink {} points outside the bundle ({})",
            shown.display(),
            target.display()
        ));
    }
    let mut stack: Vec<&str> = at[..at.len().saturating_sub(1)]
        .iter()
        .map(String::as_str)
        .collect();
    for c in target.components() {
        match c {
            Component::Normal(s) => stack.push(s.to_str().unwrap_or("?")),
            Component::CurDir => {}
            Component::ParentDir => {
                if stack.pop().is_none() {
                    return Err(format!(
                        "symlink {} points outside the bundle ({})",
                        shown.display(),
                        target.display()
                    ));
                }
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(format!(
                    "symlink {} points outside the bundle ({})",
                    shown.display(),
                    target.display()
                ));
            }
        }
    }
    Ok(())
}

/// Opens a bundle: gzip'd when it starts with gzip's magic, else a plain tar.
pub fn open(file: std::fs::File) -> std::io::Result<Box<dyn Read>> {
    use std::io::{BufRead, BufReader};
    let mut reader = BufReader::new(file);
    let gz = reader.fill_buf()?.starts_with(&[0x1f, 0x8b]);
    Ok(if gz {
        Box::new(flate2::read::GzDecoder::new(reader))
    } else {
        Box::new(reader)
    })
}

/// Checks the bundle `read` gives, unpacking at most `max_unpacked` bytes.
pub fn check(read: impl Read, max_unpacked: u64) -> Result<Checked, String> {
    use tar::EntryType as T;
    let mut archive = tar::Archive::new(read);
    let entries = archive
        .entries()
        .map_err(|e| format!("not a tar archive: {e}"))?;
    let mut paths: Vec<Vec<String>> = Vec::new();
    let mut manifests: BTreeMap<Vec<String>, String> = BTreeMap::new();
    let mut unpacked = 0u64;
    let mut links = Vec::new();
    for entry in entries {
        // tar's own words quote the bytes it read: not shown.
        let mut entry = entry.map_err(|_| match paths.len() {
            0 => "not a tar archive (nor a gzip'd one)".to_owned(),
            n => format!("the archive is damaged after {n} entries"),
        })?;
        if paths.len() >= MAX_ENTRIES {
            return Err(format!("more than {MAX_ENTRIES} entries"));
        }
        let path = entry
            .path()
            .map_err(|e| format!("an entry's name is not a path: {e}"))?
            .into_owned();
        let parts = inside(&path)?;
        if parts.is_empty() {
            continue;
        }
        let kind = entry.header().entry_type();
        match kind {
            T::Regular | T::Continuous => {}
            T::Directory => {}
            T::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(|e| format!("symlink {}: {e}", path.display()))?
                    .ok_or_else(|| format!("symlink {} has no target", path.display()))?
                    .into_owned();
                resolve_link(&parts, &target, &path)?;
                // Checked again once the top directory is known: it must stay inside that too.
                links.push((parts.clone(), target, path.clone()));
            }
            T::Link => {
                let target = entry
                    .link_name()
                    .map_err(|e| format!("hard link {}: {e}", path.display()))?
                    .ok_or_else(|| format!("hard link {} has no target", path.display()))?;
                inside(&target).map_err(|e| format!("hard link {}: {e}", path.display()))?;
            }
            T::XGlobalHeader | T::XHeader | T::GNULongName | T::GNULongLink => continue,
            other => {
                return Err(format!(
                    "{} is a {}: only files, directories and links may be in a bundle",
                    path.display(),
                    match other {
                        T::Char => "character device",
                        T::Block => "block device",
                        T::Fifo => "fifo",
                        _ => "special entry",
                    }
                ));
            }
        }
        let size = entry.size();
        unpacked = unpacked.saturating_add(size);
        if unpacked > max_unpacked {
            return Err(format!(
                "more than {} once unpacked",
                super::disk::human(max_unpacked)
            ));
        }
        // Only the app.yaml at the top, or in the top directory of the first entry (the one
        // that may be stripped): not one per directory.
        let top_dir = paths.first().map(|p| p[0].as_str());
        if kind == T::Regular
            && parts.last().is_some_and(|f| f == "app.yaml")
            && (parts.len() == 1 || (parts.len() == 2 && top_dir.is_none_or(|t| t == parts[0])))
        {
            if size > MAX_MANIFEST {
                return Err(format!("{} is over 64 KiB", path.display()));
            }
            let mut text = String::new();
            entry
                .read_to_string(&mut text)
                .map_err(|e| format!("{}: not UTF-8 text ({e})", path.display()))?;
            manifests.insert(parts.clone(), text);
        } else {
            // Read to the end, so a cut archive is found here and not at build time.
            std::io::copy(&mut entry, &mut std::io::sink())
                .map_err(|e| format!("the archive is damaged at {}: {e}", path.display()))?;
        }
        paths.push(parts);
    }
    if paths.is_empty() {
        return Err("the bundle is empty".into());
    }
    // One top directory holding everything, and no app at the very top: read from inside it.
    let markers = ["app.py", "Dockerfile", "flows.json", "app.yaml"];
    let at_top = |ps: &[Vec<String>], strip: usize| -> Vec<String> {
        let mut top: Vec<String> = ps
            .iter()
            .filter(|p| p.len() > strip)
            .map(|p| p[strip].clone())
            .collect();
        top.sort();
        top.dedup();
        top
    };
    let first = paths[0][0].clone();
    let strip = (paths.iter().all(|p| p[0] == first)
        && !paths
            .iter()
            .any(|p| p.len() == 1 && markers.contains(&p[0].as_str()))
        && paths.iter().any(|p| p.len() > 1))
    .then_some(first);
    let depth = usize::from(strip.is_some());
    for (parts, target, shown) in &links {
        resolve_link(&parts[depth.min(parts.len())..], target, shown)?;
    }
    let top_files = at_top(&paths, depth);
    let manifest_key: Vec<String> = strip
        .iter()
        .cloned()
        .chain(std::iter::once("app.yaml".to_owned()))
        .collect();
    let manifest = match manifests.get(&manifest_key) {
        Some(text) => parse_manifest(text)?,
        None => Manifest::default(),
    };
    let has = |f: &str| top_files.iter().any(|t| t == f);
    let kind = match manifest.kind {
        Some(k) => k,
        None if has("Dockerfile") => BundleKind::Dockerfile,
        None if has("app.py") => BundleKind::Py3,
        None if has("flows.json") => BundleKind::Nodered,
        None => {
            return Err(
                "the bundle has none of app.py (py3), Dockerfile (dockerfile) or flows.json \
                 (nodered) at its top"
                    .into(),
            );
        }
    };
    if !has(kind.needs()) {
        return Err(format!(
            "a {} bundle needs {} at its top",
            kind.as_str(),
            kind.needs()
        ));
    }
    Ok(Checked {
        kind,
        manifest,
        strip,
        top_files,
        unpacked_bytes: unpacked,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tar of `(path, contents)` files; a contents of `-> target` makes a symlink.
    fn tar(files: &[(&str, &str)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, body) in files {
            let mut h = tar::Header::new_gnu();
            if let Some(target) = body.strip_prefix("-> ") {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_size(0);
                h.set_mode(0o777);
                // `set_link_name` refuses `..`; the raw header field takes what an attacker wrote.
                let name = &mut h.as_old_mut().linkname;
                name[..target.len()].copy_from_slice(target.as_bytes());
                raw_path(&mut h, path);
                h.set_cksum();
                b.append(&h, std::io::empty()).unwrap();
            } else {
                h.set_size(body.len() as u64);
                h.set_mode(0o644);
                raw_path(&mut h, path);
                h.set_cksum();
                b.append(&h, body.as_bytes()).unwrap();
            }
        }
        b.into_inner().unwrap()
    }

    /// Writes `path` into the header as is (`set_path` refuses `..` and absolute paths).
    fn raw_path(h: &mut tar::Header, path: &str) {
        let name = &mut h.as_old_mut().name;
        name.fill(0);
        name[..path.len()].copy_from_slice(path.as_bytes());
    }

    fn checked(files: &[(&str, &str)]) -> Result<Checked, String> {
        check(tar(files).as_slice(), 1 << 20)
    }

    #[test]
    fn a_py3_bundle_with_its_app_yaml_passes_and_a_top_directory_is_read_through() {
        let c = checked(&[
            ("thermo/app.py", "print('hi')\n"),
            ("thermo/requirements.txt", ""),
            (
                "thermo/app.yaml",
                "name: thermo\nversion: '1.0'\ntags: [lab]\nparameters:\n  - name: INTERVAL\n    type: int\n    default: 5\n",
            ),
            ("thermo/lib/util.py", "x = 1\n"),
            ("thermo/lib/link.py", "-> util.py"),
        ])
        .expect("a good bundle");
        assert_eq!(c.kind, BundleKind::Py3);
        assert_eq!(c.strip.as_deref(), Some("thermo"));
        assert_eq!(c.manifest.name.as_deref(), Some("thermo"));
        assert_eq!(c.manifest.version.as_deref(), Some("1.0"));
        assert_eq!(c.manifest.parameters[0].kind, ParamType::Int);
        assert_eq!(c.manifest.parameters[0].default.as_deref(), Some("5"));
        assert_eq!(
            c.top_files,
            ["app.py", "app.yaml", "lib", "requirements.txt"]
        );
        let c = checked(&[("Dockerfile", "FROM scratch\n"), ("app.py", "")]).unwrap();
        assert_eq!(
            c.kind,
            BundleKind::Dockerfile,
            "a Dockerfile says dockerfile"
        );
        assert_eq!(c.strip, None);
        let c = checked(&[("flows.json", "[]")]).unwrap();
        assert_eq!(c.kind, BundleKind::Nodered);
    }

    #[test]
    fn every_bad_bundle_is_refused_with_its_reason() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (
                &[("../evil.py", "x"), ("app.py", "")],
                "unsafe path ../evil.py: '..' is not allowed",
            ),
            (
                &[("/etc/passwd", "x"), ("app.py", "")],
                "unsafe path /etc/passwd: absolute paths are not allowed",
            ),
            (
                &[("app.py", ""), ("a/b/../../../x", "")],
                "unsafe path a/b/../../../x: '..' is not allowed",
            ),
            (
                &[("app.py", ""), ("out", "-> ../../etc/shadow")],
                "symlink out points outside the bundle (../../etc/shadow)",
            ),
            (
                &[("app.py", ""), ("abs", "-> /etc/shadow")],
                "symlink abs points outside the bundle (/etc/shadow)",
            ),
            (
                &[("top/app.py", ""), ("top/up", "-> ../sibling")],
                "symlink top/up points outside the bundle (../sibling)",
            ),
            (
                &[("lib/x.py", "")],
                "the bundle has none of app.py (py3), Dockerfile (dockerfile) or flows.json (nodered) at its top",
            ),
            (
                &[("app.yaml", "type: py3\n"), ("main.py", "")],
                "a py3 bundle needs app.py at its top",
            ),
            (
                &[("app.yaml", "type: dockerfile\n"), ("app.py", "")],
                "a dockerfile bundle needs Dockerfile at its top",
            ),
        ];
        for (files, want) in cases {
            assert_eq!(checked(files).unwrap_err(), *want, "{files:?}");
        }
        let bad_yaml = checked(&[("app.py", ""), ("app.yaml", "name: Bad Name\n")]).unwrap_err();
        assert!(
            bad_yaml.starts_with("app.yaml: name \"Bad Name\""),
            "{bad_yaml}"
        );
        let unknown = checked(&[("app.py", ""), ("app.yaml", "nmae: x\n")]).unwrap_err();
        assert!(
            unknown.starts_with("app.yaml:") && unknown.contains("nmae"),
            "{unknown}"
        );
        let typed = checked(&[
            ("app.py", ""),
            (
                "app.yaml",
                "parameters:\n  - name: N\n    type: int\n    default: five\n",
            ),
        ])
        .unwrap_err();
        assert_eq!(
            typed,
            "app.yaml: parameter N: \"five\" is not a whole number"
        );
        assert!(check(&b"not a tar at all, just text"[..], 1 << 20).is_err());
        let cut = tar(&[("app.py", &"x".repeat(5000))]);
        let e = check(&cut[..1200], 1 << 20).unwrap_err();
        assert!(e.contains("damaged") || e.contains("not a tar"), "{e}");
        let big = checked(&[("app.py", &"x".repeat(4096))]);
        assert!(big.is_ok());
        let e = check(tar(&[("app.py", &"x".repeat(4096))]).as_slice(), 1000).unwrap_err();
        assert_eq!(e, "more than 1000 B once unpacked");
    }
}
