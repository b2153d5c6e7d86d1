//! Builds an app version into an image on the leader's Docker engine: the stored bundle (read
//! through its top directory, if it has one) becomes a build context written to a file, with a
//! generated `Dockerfile.trellis` for `py3` and `nodered` bundles; the file is streamed to
//! `docker build`, whose output is the build log. Images are tagged
//! `trellis-app/<app>:<version>` and labelled `io.trellis.app` and `io.trellis.app-version`.

use std::{
    collections::HashMap,
    io::Write,
    path::{Path, PathBuf},
};

use bollard::{Docker, query_parameters::BuildImageOptionsBuilder};
use futures::StreamExt;

use super::bundles::{self, BundleKind, Param};

/// The label with the app's name.
pub const APP: &str = super::prune::APP_LABEL;
/// The label with the version's name.
pub const APP_VERSION: &str = "io.trellis.app-version";
/// The Dockerfile Trellis writes into a build context (beside any the bundle has).
pub const GENERATED: &str = "Dockerfile.trellis";

/// The image an app version builds.
pub fn image_name(app: &str, version: &str) -> String {
    format!("trellis-app/{app}:{version}")
}

/// A Dockerfile `ENV` line's value, quoted.
fn env_value(v: &str) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "\"\"".into())
}

/// The Dockerfile Trellis writes for a bundle of `kind` (`None` for a `dockerfile` bundle, which
/// brings its own), on `base`, with `top` the names at the bundle's top.
pub fn dockerfile(
    kind: BundleKind,
    base: &str,
    top: &[String],
    params: &[Param],
) -> Option<String> {
    let has = |f: &str| top.iter().any(|t| t == f);
    let mut out = format!("FROM {base}\n");
    match kind {
        BundleKind::Dockerfile => return None,
        BundleKind::Py3 => {
            out.push_str("WORKDIR /app\nCOPY . /app\n");
            if has("requirements.txt") {
                // The exec form needs no shell in the base image.
                out.push_str(
                    "RUN [\"python3\", \"-m\", \"pip\", \"install\", \"--no-cache-dir\", \
                     \"--disable-pip-version-check\", \"-r\", \"requirements.txt\"]\n",
                );
            }
            out.push_str("ENV PYTHONUNBUFFERED=1\n");
        }
        BundleKind::Nodered => {
            out.push_str("COPY flows.json /data/flows.json\n");
            for f in ["package.json", "settings.js"] {
                if has(f) {
                    out.push_str(&format!("COPY {f} /data/{f}\n"));
                }
            }
            if has("package.json") {
                // The flows' extra nodes, into Node-RED's user directory (where it loads them
                // from), at build time; the exec form needs no shell in the base image.
                out.push_str(
                    "RUN [\"npm\", \"install\", \"--prefix\", \"/data\", \"--omit=dev\", \
                     \"--no-audit\", \"--no-fund\", \"--no-update-notifier\"]\n",
                );
            }
        }
    }
    for p in params {
        if let Some(d) = &p.default {
            out.push_str(&format!("ENV {}={}\n", p.name, env_value(d)));
        }
    }
    if kind == BundleKind::Py3 {
        out.push_str("CMD [\"python3\", \"app.py\"]\n");
    }
    Some(out)
}

/// Writes the build context of the bundle at `bundle` to `out`: its entries read through
/// `strip`, plus `extra` (a generated Dockerfile) when given.
pub fn write_context(
    bundle: &Path,
    strip: Option<&str>,
    extra: Option<&str>,
    out: &Path,
) -> Result<(), String> {
    let file = std::fs::File::open(bundle).map_err(|e| format!("the stored bundle: {e}"))?;
    let read = bundles::open(file).map_err(|e| format!("the stored bundle: {e}"))?;
    let mut archive = tar::Archive::new(read);
    let target = std::fs::File::create(out).map_err(|e| format!("the build context: {e}"))?;
    let mut builder = tar::Builder::new(std::io::BufWriter::new(target));
    let rebase = |p: &Path| -> Option<PathBuf> {
        let p = p.strip_prefix(".").unwrap_or(p);
        match strip {
            Some(top) => p.strip_prefix(top).ok().map(Path::to_path_buf),
            None => Some(p.to_path_buf()),
        }
        .filter(|p| !p.as_os_str().is_empty())
    };
    let entries = archive
        .entries()
        .map_err(|e| format!("the stored bundle: {e}"))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| format!("the stored bundle: {e}"))?;
        let path = entry
            .path()
            .map_err(|e| format!("the stored bundle: {e}"))?
            .into_owned();
        let Some(path) = rebase(&path) else { continue };
        let mut header = entry.header().clone();
        let kind = header.entry_type();
        let written = if kind.is_symlink() || kind.is_hard_link() {
            let link = entry
                .link_name()
                .map_err(|e| format!("the stored bundle: {e}"))?
                .map(|l| l.into_owned())
                .unwrap_or_default();
            // A hard link names a path in the archive, which moves with the strip.
            let link = if kind.is_hard_link() {
                rebase(&link).unwrap_or(link)
            } else {
                link
            };
            builder.append_link(&mut header, &path, &link)
        } else if kind.is_dir() || kind.is_file() {
            builder.append_data(&mut header, &path, &mut entry)
        } else {
            continue;
        };
        written.map_err(|e| format!("the build context: {e}"))?;
    }
    if let Some(text) = extra {
        let mut header = tar::Header::new_gnu();
        header.set_size(text.len() as u64);
        header.set_mode(0o644);
        builder
            .append_data(&mut header, GENERATED, text.as_bytes())
            .map_err(|e| format!("the build context: {e}"))?;
    }
    let mut inner = builder
        .into_inner()
        .map_err(|e| format!("the build context: {e}"))?;
    inner.flush().map_err(|e| format!("the build context: {e}"))
}

/// Builds the context in `context` on `docker` as `tag` with `labels`, the Dockerfile being
/// `dockerfile`; each line of output goes to `log`. Returns the image's id.
pub async fn run(
    docker: &Docker,
    context: &Path,
    dockerfile: &str,
    tag: &str,
    labels: &HashMap<String, String>,
    mut log: impl FnMut(&str),
) -> Result<String, String> {
    let file = tokio::fs::File::open(context)
        .await
        .map_err(|e| format!("the build context: {e}"))?;
    let body = tokio_util::io::ReaderStream::new(file);
    let opts = BuildImageOptionsBuilder::default()
        .dockerfile(dockerfile)
        .t(tag)
        .rm(true)
        .forcerm(true)
        .labels(labels)
        .build();
    let mut stream = docker.build_image(opts, None, Some(bollard::body_try_stream(body)));
    while let Some(item) = stream.next().await {
        match item {
            Ok(info) => {
                if let Some(text) = info.stream.as_deref().or(info.status.as_deref()) {
                    for line in text.lines() {
                        log(line);
                    }
                }
                if let Some(e) = info.error_detail.and_then(|d| d.message) {
                    log(&e);
                    return Err(format!("the build failed: {e}"));
                }
            }
            Err(bollard::errors::Error::DockerStreamError { error }) => {
                log(&error);
                return Err(format!("the build failed: {error}"));
            }
            Err(bollard::errors::Error::DockerResponseServerError { message, .. }) => {
                log(&message);
                return Err(format!(
                    "the leader's Docker engine refused the build: {message}"
                ));
            }
            Err(e) => {
                tracing::warn!(error = %e, "a build could not reach the leader's engine");
                return Err("the leader's Docker engine could not be reached for the build".into());
            }
        }
    }
    let image = docker
        .inspect_image(tag)
        .await
        .map_err(|e| format!("the built image {tag} is not on the leader's engine: {e}"))?;
    Ok(image.id.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::images::bundles::ParamType;

    #[test]
    fn a_py3_dockerfile_installs_requirements_and_sets_parameter_defaults() {
        let params = vec![
            Param {
                name: "INTERVAL".into(),
                kind: ParamType::Int,
                default: Some("5".into()),
                description: None,
            },
            Param {
                name: "GREETING".into(),
                kind: ParamType::String,
                default: Some("hi \"there\"".into()),
                description: None,
            },
            Param {
                name: "NO_DEFAULT".into(),
                kind: ParamType::String,
                default: None,
                description: None,
            },
        ];
        let top = ["app.py".to_owned(), "requirements.txt".to_owned()];
        assert_eq!(
            dockerfile(BundleKind::Py3, "python:3.11-slim", &top, &params).unwrap(),
            "FROM python:3.11-slim\nWORKDIR /app\nCOPY . /app\n\
             RUN [\"python3\", \"-m\", \"pip\", \"install\", \"--no-cache-dir\", \
             \"--disable-pip-version-check\", \"-r\", \"requirements.txt\"]\n\
             ENV PYTHONUNBUFFERED=1\nENV INTERVAL=\"5\"\nENV GREETING=\"hi \\\"there\\\"\"\n\
             CMD [\"python3\", \"app.py\"]\n"
        );
        let top = ["flows.json".to_owned(), "settings.js".to_owned()];
        assert_eq!(
            dockerfile(BundleKind::Nodered, "nodered/node-red:4", &top, &[]).unwrap(),
            "FROM nodered/node-red:4\nCOPY flows.json /data/flows.json\nCOPY settings.js /data/settings.js\n"
        );
        let top = ["flows.json".to_owned(), "package.json".to_owned()];
        assert_eq!(
            dockerfile(BundleKind::Nodered, "nr", &top, &[]).unwrap(),
            "FROM nr\nCOPY flows.json /data/flows.json\nCOPY package.json /data/package.json\n\
             RUN [\"npm\", \"install\", \"--prefix\", \"/data\", \"--omit=dev\", \"--no-audit\", \
             \"--no-fund\", \"--no-update-notifier\"]\n"
        );
        assert_eq!(dockerfile(BundleKind::Dockerfile, "x", &top, &[]), None);
    }
}
