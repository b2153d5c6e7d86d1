//! App bundles for the tests: tar.gz archives made with `tar`, a wheel made with this machine's
//! Python, and the `hello` py3 app (its versions print their greeting, parameter and version).

use std::process::Command;

/// A tar.gz of `files` (path, contents) under the top directory `top`, as `tar czf` makes it.
pub fn bundle(top: &str, files: &[(&str, &[u8])]) -> Vec<u8> {
    let dir = tempfile::tempdir().expect("tempdir");
    for (path, body) in files {
        let p = dir.path().join(top).join(path);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, body).expect("write");
    }
    let out = Command::new("tar")
        .args(["czf", "-", "-C"])
        .arg(dir.path())
        .arg(top)
        .output()
        .expect("tar");
    assert!(out.status.success());
    out.stdout
}

/// A wheel of the package `hello_dep`, whose `value()` is `"dep-ok"`.
pub fn wheel() -> Vec<u8> {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("w.whl");
    let script = r#"
import sys, zipfile
w = zipfile.ZipFile(sys.argv[1], "w")
w.writestr("hello_dep/__init__.py", "def value():\n    return 'dep-ok'\n")
w.writestr("hello_dep-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: hello-dep\nVersion: 1.0\n")
w.writestr("hello_dep-1.0.dist-info/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
w.writestr("hello_dep-1.0.dist-info/RECORD", "")
w.close()
"#;
    let ok = Command::new("python3")
        .args(["-c", script])
        .arg(&path)
        .status()
        .expect("python3");
    assert!(ok.success());
    std::fs::read(path).expect("the wheel")
}

pub fn app_py(version: &str) -> String {
    format!(
        r#"import os, signal, sys, time
import hello_dep
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
greeting = os.environ.get("GREETING", "?")
i = 0
while True:
    print(f"{{greeting}} from v{version}: {{hello_dep.value()}} tick {{i}}", flush=True)
    i += 1
    time.sleep(1)
"#
    )
}

pub fn hello_bundle(version: &str, wheel: &[u8]) -> Vec<u8> {
    let app_yaml = format!(
        "name: hello\nversion: '{version}'\ndescription: Says hello\ntags: [demo]\nparameters:\n  - name: GREETING\n    type: string\n    default: hello\n    description: what to say\n"
    );
    bundle(
        "hello",
        &[
            ("app.py", app_py(version).as_bytes()),
            ("app.yaml", app_yaml.as_bytes()),
            (
                "requirements.txt",
                b"./wheels/hello_dep-1.0-py3-none-any.whl\n",
            ),
            ("wheels/hello_dep-1.0-py3-none-any.whl", wheel),
        ],
    )
}
