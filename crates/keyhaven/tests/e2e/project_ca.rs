//! Each project's certificate authority: `GET /v1/project/P/kms/ca`, the real
//! `avn project ca-get` and `keyhaven project ca-get`; one CA per project however many ask
//! at once, only for the project's members, its private key in no answer and no log line.

use crate::avn::Avn;
use crate::cli::Cli;
use crate::harness::*;
use crate::pg;
use serde_json::json;
use std::process::Command;

/// Every CA in the store: (project, certificate PEM, private key PEM).
fn stored_cas(p: &Platform) -> Vec<(String, String, String)> {
    const SQL: &str =
        "SELECT project, certificate_pem, private_key_pem FROM project_cas ORDER BY project";
    match &p.database_url {
        None => {
            let db = rusqlite::Connection::open(p.data().join("keyhaven.db")).unwrap();
            db.busy_timeout(std::time::Duration::from_secs(5)).unwrap();
            let mut stmt = db.prepare(SQL).unwrap();
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .unwrap()
                .collect::<rusqlite::Result<_>>()
                .unwrap()
        }
        Some(url) => {
            // One row per CA, its fields joined by a separator no PEM holds.
            let sql = "SELECT project || '|' || replace(certificate_pem, chr(10), '~') || '|' \
                       || replace(private_key_pem, chr(10), '~') FROM project_cas ORDER BY project";
            pg::shared()
                .psql_in(url, sql)
                .lines()
                .filter(|l| !l.is_empty())
                .map(|l| {
                    let f: Vec<String> = l.split('|').map(|s| s.replace('~', "\n")).collect();
                    (f[0].clone(), f[1].clone(), f[2].clone())
                })
                .collect()
        }
    }
}

/// `openssl x509 -noout -subject -ext basicConstraints` of a PEM file.
fn openssl_reads(path: &std::path::Path) -> String {
    let out = Command::new("openssl")
        .args([
            "x509",
            "-noout",
            "-subject",
            "-ext",
            "basicConstraints",
            "-in",
        ])
        .arg(path)
        .output()
        .expect("the openssl command runs");
    assert!(
        out.status.success(),
        "openssl cannot read {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn avn_and_keyhaven_fetch_the_one_project_ca_and_its_key_stays_in_the_store() {
    let p = Platform::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut answers = String::new();

    // No CA until one is needed.
    assert!(stored_cas(&p).is_empty());

    // The real avn, as Aiven's docs say (the project from avn's config).
    let avn = Avn::new(&p);
    avn.ok("project switch default");
    let avn_pem = dir.path().join("ca.pem");
    avn.ok(&format!(
        "project ca-get --target-filepath {}",
        avn_pem.display()
    ));
    let pem = std::fs::read_to_string(&avn_pem).unwrap();
    assert!(
        pem.starts_with("-----BEGIN CERTIFICATE-----\n")
            && pem.trim_end().ends_with("-----END CERTIFICATE-----"),
        "{pem}"
    );
    let read = openssl_reads(&avn_pem);
    assert!(read.contains("CN = Keyhaven project default CA"), "{read}");
    assert!(read.contains("CA:TRUE"), "{read}");

    // Again: the same certificate. And the API's answer is Aiven's shape, the same PEM.
    avn.ok(&format!(
        "project ca-get --target-filepath {}",
        avn_pem.display()
    ));
    assert_eq!(std::fs::read_to_string(&avn_pem).unwrap(), pem);
    let (status, body) = p.call("GET", "/v1/project/default/kms/ca", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"certificate": pem}));
    answers.push_str(&body.to_string());

    // Keyhaven's CLI writes the same file.
    let cli = Cli::new(&p);
    let cli_pem = dir.path().join("keyhaven-ca.pem");
    let out = cli.run(&[
        "project",
        "ca-get",
        "--target-filepath",
        cli_pem.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    answers.push_str(&String::from_utf8_lossy(&out.stdout));
    answers.push_str(&String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read_to_string(&cli_pem).unwrap(), pem);

    // Another project, asked for by many at once: one CA, its own.
    let (status, body) = p
        .call("POST", "/v1/project", Some(json!({"project": "other"})))
        .await;
    assert_eq!(status, 200, "{body}");
    let asks: Vec<_> = (0..8)
        .map(|_| {
            let (http, url) = (p.http.clone(), p.url("/v1/project/other/kms/ca"));
            let auth = format!("aivenv1 {}", p.token);
            tokio::spawn(async move {
                let resp = http.get(url).header("authorization", auth).send().await;
                let resp = resp.unwrap();
                let status = resp.status().as_u16();
                (status, resp.json::<serde_json::Value>().await.unwrap())
            })
        })
        .collect();
    let mut got = Vec::new();
    for ask in asks {
        got.push(ask.await.unwrap());
    }
    for (status, body) in &got {
        assert_eq!(*status, 200, "{body}");
        assert_eq!(body, &got[0].1);
        answers.push_str(&body.to_string());
    }
    let other_pem = got[0].1["certificate"].as_str().unwrap().to_string();
    assert_ne!(other_pem, pem);
    // The project given to the verb, or before the command.
    for args in [
        &[
            "project",
            "ca-get",
            "--project",
            "other",
            "--target-filepath",
        ][..],
        &[
            "--project",
            "other",
            "project",
            "ca-get",
            "--target-filepath",
        ][..],
    ] {
        let out = cli.run(&[args, &[cli_pem.to_str().unwrap()]].concat());
        assert!(out.status.success());
        assert_eq!(std::fs::read_to_string(&cli_pem).unwrap(), other_pem);
    }
    let cas = stored_cas(&p);
    let projects: Vec<&str> = cas.iter().map(|c| c.0.as_str()).collect();
    assert_eq!(projects, ["default", "other"]);
    assert_eq!(cas[0].1, pem);
    assert_eq!(cas[1].1, other_pem);

    // A user of another project cannot read it: answered as a project that does not
    // exist, like every project route; no token at all is a 403.
    let (status, body) = p
        .call(
            "POST",
            "/v1/user",
            Some(json!({"email": "outsider@example.com", "password": "correct horse battery"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let outsider = body["token"].as_str().unwrap().to_string();
    let (status, body) = p
        .call_as(
            &outsider,
            "POST",
            "/v1/project",
            Some(json!({"project": "theirs"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = p
        .call_as(&outsider, "GET", "/v1/project/theirs/kms/ca", None)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_ne!(body["certificate"], pem.as_str());
    answers.push_str(&body.to_string());
    for project in ["default", "other", "nope"] {
        let (status, body) = p
            .call_as(
                &outsider,
                "GET",
                &format!("/v1/project/{project}/kms/ca"),
                None,
            )
            .await;
        assert_eq!(status, 404, "{project}: {body}");
        assert_eq!(
            body["errors"][0]["error_code"], "project_not_found",
            "{body}"
        );
        assert_eq!(
            p.call_as(&outsider, "GET", &format!("/v1/project/{project}"), None)
                .await,
            (status, body.clone()),
            "the CA of {project} is refused as the project itself is"
        );
        answers.push_str(&body.to_string());
    }
    // No CA was made for a project nobody may see, nor one that does not exist.
    assert_eq!(stored_cas(&p).len(), 3);
    let resp = p
        .http
        .get(p.url("/v1/project/default/kms/ca"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 403);
    answers.push_str(&resp.text().await.unwrap());

    // The keys are in the store, and in no answer and no line of the server's log.
    let log = p.server_log();
    assert_eq!(
        log.matches("project CA created").count(),
        3,
        "each CA's creation is logged once"
    );
    for (project, _, key) in stored_cas(&p) {
        assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"), "{project}");
        // A P-256 key's PKCS#8 PEM: two lines of 64 characters that hold the algorithm and
        // the private scalar, then a last line with the end of the public key, which the
        // certificate holds too (public).
        let lines: Vec<&str> = key.lines().filter(|l| !l.starts_with("-----")).collect();
        assert_eq!(lines.len(), 3, "{project}: not a P-256 key's PEM");
        for haystack in [&log, &answers] {
            for line in &lines[..2] {
                assert!(!haystack.contains(line), "{project}'s key shown");
            }
            // The private scalar's base64 begins on the first line, after the constant header.
            assert!(!haystack.contains(&lines[0][48..]), "{project}'s key shown");
        }
    }
    assert!(!log.contains("PRIVATE KEY"), "a private key in the log");
    assert!(
        !answers.contains("PRIVATE KEY"),
        "a private key in an answer"
    );
}
