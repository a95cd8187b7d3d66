//! The `tether` binary as a user runs it.

use std::{
    io::Read,
    process::{Command, Output, Stdio},
    time::Duration,
};

use kube::ResourceExt;
use tether_testkit::{
    ControlPlane, cluster,
    process::{Supervised, free_port, http_get, signal, wait_until},
};

const TETHER: &str = env!("CARGO_BIN_EXE_tether");

fn tether(args: &[&str]) -> Output {
    Command::new(TETHER)
        .args(args)
        .output()
        .expect("running tether")
}

#[test]
fn crds_prints_every_crd_and_admission_policy_as_they_are_checked_in() {
    let output = tether(&["crds"]);
    assert!(output.status.success());
    let printed: Vec<serde_json::Value> =
        serde_saphyr::from_multiple(&String::from_utf8(output.stdout).unwrap())
            .expect("multi-document YAML");
    let mut checked_in: Vec<serde_json::Value> = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(tether_testkit::repo_root().join("crds"))
        .expect("crds/")
        .map(|entry| entry.expect("a directory entry").path())
        .collect();
    files.sort();
    for file in files {
        checked_in.extend(
            serde_saphyr::from_multiple::<serde_json::Value>(
                &std::fs::read_to_string(&file).expect("reading a manifest"),
            )
            .expect("multi-document YAML"),
        );
    }
    let names = |documents: &[serde_json::Value]| {
        let mut names: Vec<String> = documents
            .iter()
            .map(|document| {
                format!(
                    "{}/{}",
                    document["kind"].as_str().unwrap_or_default(),
                    document["metadata"]["name"].as_str().unwrap_or_default()
                )
            })
            .collect();
        names.sort();
        names
    };
    let printed_names = names(&printed);
    assert!(
        printed_names.contains(&"CustomResourceDefinition/providerconfigs.tether.dev".to_owned())
            && printed_names
                .contains(&"ValidatingAdmissionPolicy/databaseclaims.tether.dev".to_owned())
            && printed_names
                .contains(&"ValidatingAdmissionPolicyBinding/databaseclaims.tether.dev".to_owned()),
        "{printed_names:?}"
    );
    assert_eq!(printed_names, names(&checked_in));
    for document in &printed {
        assert!(
            checked_in.contains(document),
            "{} differs from crds/",
            document["metadata"]["name"]
        );
    }
}

#[test]
fn unknown_commands_and_flags_get_clap_errors() {
    let output = tether(&["frobnicate"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("unrecognized subcommand 'frobnicate'")
    );

    let output = tether(&["run", "--bogus"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("unexpected argument '--bogus'"));
}

#[test]
fn a_lease_too_short_to_renew_every_third_of_it_is_refused_before_anything_starts() {
    let output = tether(&["run", "--leader-elect", "--lease-duration", "2s"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("\"2s\" is too short for a lease") && stderr.contains("at least 3s"),
        "{stderr}"
    );
}

/// `tether run` on a cluster without the CRDs names the missing ones and exits; once
/// they are installed it starts, answers `/healthz`, and stops cleanly on SIGTERM.
#[tokio::test]
async fn run_names_missing_crds_then_starts_once_they_are_installed() {
    let control_plane = tokio::task::spawn_blocking(ControlPlane::start)
        .await
        .unwrap();
    let kubeconfig = control_plane.kubeconfig().to_str().unwrap().to_owned();

    let admin_port = free_port();
    let admin_addr = format!("127.0.0.1:{admin_port}");
    let run_args = [
        "run",
        "--kubeconfig",
        &kubeconfig,
        "--admin-addr",
        &admin_addr,
    ];
    let missing = tokio::task::spawn_blocking({
        let args: Vec<String> = run_args.iter().map(|s| s.to_string()).collect();
        move || {
            Command::new(TETHER)
                .args(&args)
                .output()
                .expect("running tether")
        }
    })
    .await
    .unwrap();
    assert_eq!(missing.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(
        stderr.contains("CustomResourceDefinitions missing from the cluster: "),
        "{stderr}"
    );
    assert!(
        stderr.contains("kubectl apply -f crds/"),
        "says how to install them: {stderr}"
    );
    for crd in tether::crds::all() {
        assert!(
            stderr.contains(&crd.name_any()),
            "names {}: {stderr}",
            crd.name_any()
        );
    }

    cluster::install_crds(&control_plane.client().await).await;
    let mut running = Supervised::spawn(
        "tether run",
        Command::new(TETHER)
            .args(run_args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped()),
    )
    .expect("starting tether run");
    let health = tokio::task::spawn_blocking(move || {
        wait_until("tether's /healthz answers", Duration::from_secs(30), || {
            http_get(admin_port, "/healthz")
        })
    })
    .await
    .unwrap();
    assert_eq!(health, "ok\n");

    signal(running.id(), "TERM");
    let status = tokio::task::spawn_blocking(move || {
        let status = running.stop(Duration::from_secs(10));
        let mut stderr = String::new();
        running
            .child_mut()
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        (status, stderr)
    })
    .await
    .unwrap();
    assert_eq!(status.0.and_then(|s| s.code()), Some(0), "{}", status.1);
    assert!(
        status.1.contains("SIGTERM received, stopping"),
        "{}",
        status.1
    );
    drop(control_plane);
}
