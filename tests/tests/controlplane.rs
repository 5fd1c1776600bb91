//! The control-plane harness against the real thing: kube-apiserver + etcd built by
//! `tests/controlplane/build.sh`, talked to with the `kube` client Periscope's scraper uses.

use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{SelfSubjectReview, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, ListParams, PostParams};
use periscope_tests::controlplane::{ControlPlane, kube_client};

fn meta(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        ..Default::default()
    }
}

/// Retries `f` until it succeeds or `timeout` passes (the last error fails the test).
async fn eventually<T, E: std::fmt::Display, F: Future<Output = Result<T, E>>>(
    timeout: Duration,
    mut f: impl FnMut() -> F,
) -> T {
    let start = Instant::now();
    loop {
        match f().await {
            Ok(v) => return v,
            Err(e) if start.elapsed() > timeout => panic!("still failing after {timeout:?}: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_survive_an_apiserver_restart() {
    let mut cp = ControlPlane::start();
    let client = kube_client(cp.kubeconfig_path()).await;

    Api::<Namespace>::all(client.clone())
        .create(
            &PostParams::default(),
            &Namespace {
                metadata: meta("periscope-e2e"),
                ..Default::default()
            },
        )
        .await
        .expect("create a Namespace");
    let config_maps = Api::<ConfigMap>::namespaced(client.clone(), "periscope-e2e");
    config_maps
        .create(
            &PostParams::default(),
            &ConfigMap {
                metadata: meta("settings"),
                data: Some([("mode".to_owned(), "fast".to_owned())].into()),
                ..Default::default()
            },
        )
        .await
        .expect("create a ConfigMap");
    let read = config_maps
        .get("settings")
        .await
        .expect("read the ConfigMap back");
    assert_eq!(read.data.unwrap()["mode"], "fast");

    // Its version, as a release build reports it.
    let version = client.apiserver_version().await.expect("GET /version");
    let expected = periscope_tests::controlplane::kubernetes_version();
    assert_eq!(version.git_version, expected);

    cp.stop_apiserver();
    let down = config_maps.get("settings").await;
    assert!(down.is_err(), "read with kube-apiserver stopped: {down:?}");
    cp.start_apiserver();
    assert!(
        cp.apiserver_log()
            .matches("starting kube-apiserver")
            .count()
            == 2
    );

    // The same client, reconnecting: the data was in etcd all along.
    let read = eventually(Duration::from_secs(10), || config_maps.get("settings")).await;
    assert_eq!(read.data.unwrap()["mode"], "fast");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rbac_is_enforced_for_a_service_account_token() {
    let cp = ControlPlane::start();
    let admin = kube_client(cp.kubeconfig_path()).await;
    let ns = "periscope-rbac";
    Api::<Namespace>::all(admin.clone())
        .create(
            &PostParams::default(),
            &Namespace {
                metadata: meta(ns),
                ..Default::default()
            },
        )
        .await
        .expect("create a Namespace");
    let secrets = Api::<Secret>::namespaced(admin.clone(), ns);
    secrets
        .create(
            &PostParams::default(),
            &Secret {
                metadata: meta("hidden"),
                string_data: Some([("password".to_owned(), "hunter2".to_owned())].into()),
                ..Default::default()
            },
        )
        .await
        .expect("create a Secret");
    let service_accounts = Api::<ServiceAccount>::namespaced(admin.clone(), ns);
    service_accounts
        .create(
            &PostParams::default(),
            &ServiceAccount {
                metadata: meta("reader"),
                ..Default::default()
            },
        )
        .await
        .expect("create a ServiceAccount");
    let token = service_accounts
        .create_token_request(
            "reader",
            &PostParams::default(),
            &TokenRequest {
                spec: Some(TokenRequestSpec {
                    expiration_seconds: Some(3600),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
        .await
        .expect("TokenRequest for the ServiceAccount")
        .status
        .and_then(|s| s.token)
        .expect("a token in the TokenRequest's status");
    let kubeconfig = cp.dir().join("reader.kubeconfig");
    cp.token_kubeconfig(&token, &kubeconfig);
    let reader = kube_client(&kubeconfig).await;

    // The token authenticates: the server knows who this is.
    let review = Api::<SelfSubjectReview>::all(reader.clone())
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await
        .expect("SelfSubjectReview as the ServiceAccount");
    let user = review
        .status
        .and_then(|s| s.user_info)
        .and_then(|u| u.username);
    assert_eq!(
        user.as_deref(),
        Some("system:serviceaccount:periscope-rbac:reader")
    );

    // …and is not authorized: no RoleBinding grants it anything.
    let reader_secrets = Api::<Secret>::namespaced(reader.clone(), ns);
    match reader_secrets.list(&ListParams::default()).await {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 403, "{status:?}"),
        other => panic!("listing Secrets without a RoleBinding: expected 403, got {other:?}"),
    }

    // A Role and RoleBinding grant it; RBAC then lets the same token list them.
    Api::<Role>::namespaced(admin.clone(), ns)
        .create(
            &PostParams::default(),
            &Role {
                metadata: meta("secret-reader"),
                rules: Some(vec![PolicyRule {
                    api_groups: Some(vec![String::new()]),
                    resources: Some(vec!["secrets".to_owned()]),
                    verbs: vec!["list".to_owned()],
                    ..Default::default()
                }]),
            },
        )
        .await
        .expect("create a Role");
    Api::<RoleBinding>::namespaced(admin.clone(), ns)
        .create(
            &PostParams::default(),
            &RoleBinding {
                metadata: meta("secret-reader"),
                role_ref: RoleRef {
                    api_group: Some("rbac.authorization.k8s.io".to_owned()),
                    kind: "Role".to_owned(),
                    name: "secret-reader".to_owned(),
                },
                subjects: Some(vec![Subject {
                    kind: "ServiceAccount".to_owned(),
                    name: "reader".to_owned(),
                    namespace: Some(ns.to_owned()),
                    ..Default::default()
                }]),
            },
        )
        .await
        .expect("create a RoleBinding");
    let list_params = ListParams::default();
    let listed = eventually(Duration::from_secs(10), || {
        reader_secrets.list(&list_params)
    })
    .await;
    let names: Vec<_> = listed
        .items
        .iter()
        .filter_map(|s| s.metadata.name.as_deref())
        .collect();
    assert_eq!(names, ["hidden"]);
}
