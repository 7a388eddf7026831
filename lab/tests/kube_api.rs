//! The lab API against kube-rs, the client kasi itself uses: typed and dynamic objects, selectors,
//! watches (including the 410 relist), server-side apply, logs, port-forward and discovery.

use futures::{AsyncBufReadExt, StreamExt, TryStreamExt};
use http_body_util::{BodyExt, Full};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authorization::v1::SelfSubjectAccessReview;
use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, Namespace, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kasi_lab::kube_api::{kubeconfig_yaml, serve, LabHooks, Store};
use kube::api::{
    Api, DeleteParams, DynamicObject, ListParams, LogParams, Patch, PatchParams, PostParams,
};
use kube::core::{ApiResource, GroupVersionKind};
use kube::runtime::{reflector, watcher, WatchStreamExt};
use kube::{Client, ResourceExt};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

/// Logs and port-forward targets the tests control.
#[derive(Default)]
struct FakeHooks {
    later_lines: Mutex<Option<mpsc::Receiver<String>>>,
    forward_to: Mutex<Option<SocketAddr>>,
}

impl LabHooks for FakeHooks {
    fn pod_log(
        &self,
        _namespace: &str,
        pod: &str,
        container: Option<&str>,
        follow: bool,
    ) -> Option<(String, Option<mpsc::Receiver<String>>)> {
        let text = format!(
            "{pod} {} line 1\nline 2\nline 3\n",
            container.unwrap_or("-")
        );
        let later = if follow {
            self.later_lines.lock().unwrap().take()
        } else {
            None
        };
        Some((text, later))
    }

    fn port_forward_target(&self, _namespace: &str, _pod: &str, port: u16) -> Option<SocketAddr> {
        (port == 15000)
            .then(|| *self.forward_to.lock().unwrap())
            .flatten()
    }
}

struct Lab {
    store: Store,
    hooks: Arc<FakeHooks>,
    url: String,
    client: Client,
}

async fn start_lab(store: Store) -> Lab {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let hooks = Arc::new(FakeHooks::default());
    tokio::spawn(serve(listener, store.clone(), hooks.clone()));
    let kubeconfig =
        kube::config::Kubeconfig::from_yaml(&kubeconfig_yaml(&url, "kasi-lab")).unwrap();
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(config.default_namespace, "default");
    let client = Client::try_from(config).unwrap();
    Lab {
        store,
        hooks,
        url,
        client,
    }
}

async fn with_namespace(store: Store, namespace: &str) -> Lab {
    store
        .put(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}))
        .unwrap();
    start_lab(store).await
}

/// A raw request: (status, content type, body).
async fn raw(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String, String) {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<bytes::Bytes>>();
    let mut request = http::Request::builder().method(method).uri(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = client
        .request(
            request
                .body(Full::new(bytes::Bytes::from(body.to_string())))
                .unwrap(),
        )
        .await
        .unwrap();
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        content_type,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

fn pod(name: &str, labels: Value) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {"containers": [{"name": "app", "image": "kasi/pod"}]},
    }))
    .unwrap()
}

fn names<K: kube::Resource>(items: &[K]) -> Vec<String> {
    items.iter().map(|item| item.name_any()).collect()
}

#[tokio::test]
async fn typed_objects_create_get_list_update_delete() {
    let lab = with_namespace(Store::new(), "lab").await;
    let pods: Api<Pod> = Api::namespaced(lab.client.clone(), "lab");
    let post = PostParams::default();
    pods.create(&post, &pod("a", json!({"app": "x", "tier": "web"})))
        .await
        .unwrap();
    pods.create(&post, &pod("b", json!({"app": "x"})))
        .await
        .unwrap();
    pods.create(&post, &pod("c", json!({"app": "y", "legacy": "1"})))
        .await
        .unwrap();
    let duplicate = pods.create(&post, &pod("a", json!({}))).await.unwrap_err();
    assert!(
        matches!(&duplicate, kube::Error::Api(s) if s.code == 409 && s.reason == "AlreadyExists"),
        "{duplicate:?}"
    );

    let selected = |selector: &str| {
        let pods = pods.clone();
        let params = ListParams::default().labels(selector).limit(100);
        async move { names(&pods.list(&params).await.unwrap().items) }
    };
    assert_eq!(selected("app=x").await, ["a", "b"]);
    assert_eq!(selected("app==x,tier").await, ["a"]);
    assert_eq!(selected("app!=x").await, ["c"]);
    assert_eq!(selected("app in (x,y),!legacy").await, ["a", "b"]);
    assert_eq!(selected("app notin (x)").await, ["c"]);
    let by_name = pods
        .list(&ListParams::default().fields("metadata.name=b"))
        .await
        .unwrap();
    assert_eq!(names(&by_name.items), ["b"]);
    assert!(by_name.metadata.resource_version.is_some());

    // A namespace that does not exist refuses creates, like a cluster.
    let elsewhere: Api<Pod> = Api::namespaced(lab.client.clone(), "nowhere");
    let missing = elsewhere
        .create(&post, &pod("z", json!({})))
        .await
        .unwrap_err();
    assert!(
        matches!(&missing, kube::Error::Api(s) if s.code == 404),
        "{missing:?}"
    );
    let all: Api<Pod> = Api::all(lab.client.clone());
    assert_eq!(
        all.list(&ListParams::default()).await.unwrap().items.len(),
        3
    );

    // Update with a stale resourceVersion conflicts; with the current one it succeeds.
    let mut current = pods.get("a").await.unwrap();
    let uid = current.metadata.uid.clone();
    current
        .metadata
        .labels
        .as_mut()
        .unwrap()
        .insert("tier".into(), "db".into());
    let updated = pods.replace("a", &post, &current).await.unwrap();
    assert_eq!(updated.metadata.uid, uid);
    let stale = pods.replace("a", &post, &current).await.unwrap_err();
    assert!(
        matches!(&stale, kube::Error::Api(s) if s.code == 409 && s.reason == "Conflict"),
        "{stale:?}"
    );

    // Merge and strategic merge patches; the latter merges containers by name.
    let merged = pods
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"tier": null}}})),
        )
        .await
        .unwrap();
    assert!(!merged.labels().contains_key("tier"));
    let strategic = pods
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Strategic(
                json!({"spec": {"containers": [{"name": "sidecar", "image": "envoy"}]}}),
            ),
        )
        .await
        .unwrap();
    let containers: Vec<String> = strategic
        .spec
        .unwrap()
        .containers
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(containers, ["app", "sidecar"]);

    // The other built-in kinds round-trip through their typed clients.
    let configmaps: Api<ConfigMap> = Api::namespaced(lab.client.clone(), "lab");
    let cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "config-network"}, "data": {"k": "v"}}))
            .unwrap();
    configmaps.create(&post, &cm).await.unwrap();
    assert_eq!(
        configmaps
            .get("config-network")
            .await
            .unwrap()
            .data
            .unwrap()["k"],
        "v"
    );
    let services: Api<Service> = Api::namespaced(lab.client.clone(), "lab");
    let svc: Service = serde_json::from_value(
        json!({"metadata": {"name": "hello"}, "spec": {"ports": [{"port": 80}]}}),
    )
    .unwrap();
    services.create(&post, &svc).await.unwrap();
    let endpoints: Api<Endpoints> = Api::namespaced(lab.client.clone(), "lab");
    let ep: Endpoints = serde_json::from_value(json!({"metadata": {"name": "hello"}, "subsets": [{"addresses": [{"ip": "127.0.0.2"}], "ports": [{"port": 8012}]}]})).unwrap();
    endpoints.create(&post, &ep).await.unwrap();
    let slices: Api<EndpointSlice> = Api::namespaced(lab.client.clone(), "lab");
    let slice: EndpointSlice = serde_json::from_value(json!({"metadata": {"name": "hello-abc", "labels": {"kubernetes.io/service-name": "hello"}}, "addressType": "IPv4", "endpoints": [{"addresses": ["127.0.0.2"], "conditions": {"ready": true}}]})).unwrap();
    slices.create(&post, &slice).await.unwrap();
    assert_eq!(
        names(
            &slices
                .list(&ListParams::default().labels("kubernetes.io/service-name=hello"))
                .await
                .unwrap()
                .items
        ),
        ["hello-abc"]
    );
    let deployments: Api<Deployment> = Api::namespaced(lab.client.clone(), "lab");
    let deployment: Deployment = serde_json::from_value(json!({"metadata": {"name": "activator"}, "spec": {"selector": {"matchLabels": {"app": "activator"}}, "template": {"metadata": {"labels": {"app": "activator"}}, "spec": {"containers": [{"name": "activator", "image": "a"}]}}}})).unwrap();
    let created = deployments.create(&post, &deployment).await.unwrap();
    assert_eq!(created.metadata.generation, Some(1));

    pods.delete("b", &DeleteParams::default()).await.unwrap();
    let gone = pods.get("b").await.unwrap_err();
    assert!(
        matches!(&gone, kube::Error::Api(s) if s.code == 404 && s.reason == "NotFound"),
        "{gone:?}"
    );

    let reviews: Api<SelfSubjectAccessReview> = Api::all(lab.client.clone());
    let review: SelfSubjectAccessReview = serde_json::from_value(json!({"spec": {"resourceAttributes": {"verb": "patch", "group": "networking.istio.io", "resource": "sidecars"}}})).unwrap();
    assert!(
        reviews
            .create(&post, &review)
            .await
            .unwrap()
            .status
            .unwrap()
            .allowed
    );
}

#[tokio::test]
async fn lists_come_in_pages_when_asked() {
    let lab = with_namespace(Store::new(), "paged").await;
    let config_maps: Api<ConfigMap> = Api::namespaced(lab.client.clone(), "paged");
    for i in 0..7 {
        let cm: ConfigMap = serde_json::from_value(
            json!({"metadata": {"name": format!("cm-{i}")}, "data": {"i": i.to_string()}}),
        )
        .unwrap();
        config_maps
            .create(&PostParams::default(), &cm)
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    let mut params = ListParams::default().limit(3);
    let mut pages = 0;
    let mut first_revision = None;
    loop {
        let page = config_maps.list(&params).await.unwrap();
        pages += 1;
        assert!(
            page.items.len() <= 3,
            "{} items in a page of 3",
            page.items.len()
        );
        seen.extend(names(&page.items));
        // Every page reports the first page's resourceVersion, as a snapshot would.
        let revision = page.metadata.resource_version.clone();
        assert_eq!(*first_revision.get_or_insert(revision.clone()), revision);
        // The cluster moves on between pages; later pages still continue after the last name.
        if pages == 1 {
            assert_eq!(page.metadata.remaining_item_count, Some(4));
            config_maps
                .delete("cm-0", &DeleteParams::default())
                .await
                .unwrap();
        }
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => params = params.continue_token(&token),
            _ => break,
        }
    }
    assert_eq!(pages, 3);
    let expected: Vec<String> = (0..7).map(|i| format!("cm-{i}")).collect();
    assert_eq!(seen, expected);

    // A watcher lists in pages of 2 and still sees everything.
    let (reader, writer) = reflector::store::<ConfigMap>();
    let stream = reflector(
        writer,
        watcher(config_maps.clone(), watcher::Config::default().page_size(2)),
    )
    .applied_objects()
    .boxed();
    tokio::spawn(stream.for_each(|_| async {}));
    reader.wait_until_ready().await.unwrap();
    assert_eq!(reader.state().len(), 6);

    let (status, _, body) = raw(
        "GET",
        &format!(
            "{}/api/v1/namespaces/paged/configmaps?limit=2&continue=nonsense",
            lab.url
        ),
        &[],
        "",
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("invalid continue token"), "{body}");
}

fn gvk_resource(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
}

#[tokio::test]
async fn server_side_apply_owns_conflicts_forces_and_dry_runs() {
    let lab = with_namespace(Store::new(), "lab").await;
    let configmaps: Api<ConfigMap> = Api::namespaced(lab.client.clone(), "lab");
    let config = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "cfg", "labels": {"app": "kasi"}}, "data": {"a": "1", "b": "2"}});
    let kasi = PatchParams::apply("kasi");
    let first = configmaps
        .patch("cfg", &kasi, &Patch::Apply(&config))
        .await
        .unwrap();
    let managed = &first.metadata.managed_fields.as_ref().unwrap()[0];
    assert_eq!(managed.manager.as_deref(), Some("kasi"));
    assert_eq!(managed.operation.as_deref(), Some("Apply"));
    assert_eq!(managed.fields_type.as_deref(), Some("FieldsV1"));
    assert_eq!(
        managed.fields_v1.as_ref().unwrap().0,
        json!({"f:data": {"f:a": {}, "f:b": {}}, "f:metadata": {"f:labels": {"f:app": {}}}})
    );

    // Applying the same configuration again changes nothing, not even the resourceVersion.
    let mut events = lab.store.subscribe();
    let again = configmaps
        .patch("cfg", &kasi, &Patch::Apply(&config))
        .await
        .unwrap();
    assert_eq!(
        again.metadata.resource_version,
        first.metadata.resource_version
    );
    assert!(
        events.try_recv().is_err(),
        "a no-op apply must not emit an event"
    );

    // Another manager setting a field to another value conflicts, field by field.
    let rival = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}, "data": {"a": "9"}});
    let conflict = configmaps
        .patch(
            "cfg",
            &PatchParams::apply("other-manager"),
            &Patch::Apply(&rival),
        )
        .await
        .unwrap_err();
    let kube::Error::Api(status) = &conflict else {
        panic!("{conflict:?}")
    };
    assert_eq!((status.code, status.reason.as_str()), (409, "Conflict"));
    assert!(
        status.message.contains(r#"conflict with "kasi": .data.a"#),
        "{}",
        status.message
    );
    let raw_conflict = raw(
        "PATCH",
        &format!(
            "{}/api/v1/namespaces/lab/configmaps/cfg?fieldManager=other-manager",
            lab.url
        ),
        &[("content-type", "application/apply-patch+yaml")],
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\ndata:\n  a: \"9\"\n",
    )
    .await;
    let status: Value = serde_json::from_str(&raw_conflict.2).unwrap();
    assert_eq!(raw_conflict.0, 409);
    assert_eq!(
        status["details"]["causes"],
        json!([{"reason": "FieldManagerConflict",
        "message": "conflict with \"kasi\": .data.a", "field": ".data.a"}])
    );

    // Dry run: the answer shows the result, the store keeps nothing and emits nothing.
    let dry = configmaps
        .patch(
            "cfg",
            &PatchParams::apply("other-manager").force().dry_run(),
            &Patch::Apply(&rival),
        )
        .await
        .unwrap();
    assert_eq!(dry.data.unwrap()["a"], "9");
    assert_eq!(configmaps.get("cfg").await.unwrap().data.unwrap()["a"], "1");
    assert!(
        events.try_recv().is_err(),
        "a dry run must not emit an event"
    );

    // Forcing moves ownership; kasi then drops b (its alone) but a stays (no longer its).
    configmaps
        .patch(
            "cfg",
            &PatchParams::apply("other-manager").force(),
            &Patch::Apply(&rival),
        )
        .await
        .unwrap();
    let smaller = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg", "labels": {"app": "kasi"}}});
    let after = configmaps
        .patch("cfg", &kasi, &Patch::Apply(&smaller))
        .await
        .unwrap();
    assert_eq!(
        after.data.unwrap(),
        [("a".to_string(), "9".to_string())].into()
    );

    // fieldManager is required for apply.
    let (code, content_type, body) = raw(
        "PATCH",
        &format!("{}/api/v1/namespaces/lab/configmaps/cfg", lab.url),
        &[("content-type", "application/apply-patch+yaml")],
        "{}",
    )
    .await;
    assert_eq!(
        (code, content_type.as_str()),
        (400, "application/json"),
        "{body}"
    );

    // Keyed lists are owned item by item, in the real FieldsV1 notation.
    let deployments: Api<Deployment> = Api::namespaced(lab.client.clone(), "lab");
    let deployment = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
        "spec": {"selector": {"matchLabels": {"app": "d"}}, "template": {"metadata": {"labels": {"app": "d"}},
        "spec": {"containers": [{"name": "app", "image": "i", "ports": [{"containerPort": 8012}]}]}}}});
    let applied = deployments
        .patch("d", &kasi, &Patch::Apply(&deployment))
        .await
        .unwrap();
    let managed = applied.metadata.managed_fields.unwrap();
    let fields = &managed[0].fields_v1.as_ref().unwrap().0;
    let container =
        &fields["f:spec"]["f:template"]["f:spec"]["f:containers"][r#"k:{"name":"app"}"#];
    assert_eq!(container["."], json!({}));
    assert!(
        container["f:ports"][r#"k:{"containerPort":8012,"protocol":"TCP"}"#].is_object(),
        "{fields}"
    );
}

#[tokio::test]
async fn istio_kinds_are_served_only_with_their_crds_and_knative_always() {
    let lab = with_namespace(Store::new(), "lab").await;
    let sidecar_v1 = gvk_resource("networking.istio.io", "v1", "Sidecar", "sidecars");
    let sidecars: Api<DynamicObject> = Api::namespaced_with(lab.client.clone(), "lab", &sidecar_v1);
    let sidecar = json!({"apiVersion": "networking.istio.io/v1", "kind": "Sidecar",
        "metadata": {"name": "activator"}, "spec": {"egress": [{"hosts": ["./*"]}]}});
    let missing = sidecars
        .patch(
            "activator",
            &PatchParams::apply("kasi"),
            &Patch::Apply(&sidecar),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&missing, kube::Error::Api(s) if s.code == 404),
        "{missing:?}"
    );
    let (_, _, groups) = raw("GET", &format!("{}/apis", lab.url), &[], "").await;
    assert!(!groups.contains("networking.istio.io") && groups.contains("serving.knative.dev"));
    let crds: Api<CustomResourceDefinition> = Api::all(lab.client.clone());
    assert!(crds
        .get_opt("sidecars.networking.istio.io")
        .await
        .unwrap()
        .is_none());

    lab.store.register_istio_crds().unwrap();
    let crd = crds.get("sidecars.networking.istio.io").await.unwrap();
    assert_eq!(crd.spec.names.kind, "Sidecar");
    sidecars
        .patch(
            "activator",
            &PatchParams::apply("kasi"),
            &Patch::Apply(&sidecar),
        )
        .await
        .unwrap();
    // The same object is served at every version of the CRD.
    let v1alpha3 = gvk_resource("networking.istio.io", "v1alpha3", "Sidecar", "sidecars");
    let old_api: Api<DynamicObject> = Api::namespaced_with(lab.client.clone(), "lab", &v1alpha3);
    let seen = old_api.get("activator").await.unwrap();
    assert_eq!(
        seen.types.unwrap().api_version,
        "networking.istio.io/v1alpha3"
    );
    assert_eq!(seen.data["spec"]["egress"][0]["hosts"][0], "./*");

    let discovery = kube::discovery::Discovery::new(lab.client.clone())
        .run()
        .await
        .unwrap();
    let (wasm, caps) = discovery
        .resolve_gvk(&GroupVersionKind::gvk(
            "extensions.istio.io",
            "v1alpha1",
            "WasmPlugin",
        ))
        .unwrap();
    assert_eq!(
        (wasm.plural.as_str(), caps.scope),
        ("wasmplugins", kube::discovery::Scope::Namespaced)
    );
    let istio = discovery.get("networking.istio.io").unwrap();
    assert_eq!(istio.preferred_version_or_latest(), "v1");

    let ksvc_resource = gvk_resource("serving.knative.dev", "v1", "Service", "services");
    let ksvcs: Api<DynamicObject> = Api::namespaced_with(lab.client.clone(), "lab", &ksvc_resource);
    let ksvc: DynamicObject = serde_json::from_value(json!({"apiVersion": "serving.knative.dev/v1", "kind": "Service",
        "metadata": {"name": "hello"}, "spec": {"template": {"spec": {"containers": [{"image": "hello"}]}}}})).unwrap();
    ksvcs.create(&PostParams::default(), &ksvc).await.unwrap();
    let revisions = gvk_resource("serving.knative.dev", "v1", "Revision", "revisions");
    let revisions: Api<DynamicObject> = Api::namespaced_with(lab.client.clone(), "lab", &revisions);
    assert!(revisions
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .is_empty());
    // Core services are unaffected by the Knative ones of the same plural.
    let services: Api<Service> = Api::namespaced(lab.client.clone(), "lab");
    assert!(services
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .is_empty());
}

#[tokio::test]
async fn watcher_and_reflector_follow_changes_and_relist_after_410() {
    let lab = with_namespace(Store::with_history_limit(5), "lab").await;
    let pods: Api<Pod> = Api::namespaced(lab.client.clone(), "lab");
    pods.create(&PostParams::default(), &pod("first", json!({"app": "x"})))
        .await
        .unwrap();
    let (reader, writer) = reflector::store();
    // A one-second server timeout makes the watcher re-watch from its last resourceVersion.
    let config = watcher::Config::default().labels("app=x").timeout(1);
    let mut events = watcher(pods.clone(), config).reflect(writer).boxed();
    macro_rules! next {
        () => {
            tokio::time::timeout(Duration::from_secs(5), events.try_next())
                .await
                .expect("a watch event within 5 s")
                .unwrap()
                .unwrap()
        };
    }
    assert!(matches!(next!(), watcher::Event::Init));
    assert!(matches!(next!(), watcher::Event::InitApply(p) if p.name_any() == "first"));
    assert!(matches!(next!(), watcher::Event::InitDone));
    assert_eq!(reader.state().len(), 1);

    pods.create(&PostParams::default(), &pod("second", json!({"app": "x"})))
        .await
        .unwrap();
    pods.create(&PostParams::default(), &pod("other", json!({"app": "y"})))
        .await
        .unwrap();
    assert!(matches!(next!(), watcher::Event::Apply(p) if p.name_any() == "second"));
    // Relabelling out of the selector is a delete for this watch.
    pods.patch(
        "first",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"app": "z"}}})),
    )
    .await
    .unwrap();
    assert!(matches!(next!(), watcher::Event::Delete(p) if p.name_any() == "first"));
    assert_eq!(
        names(
            &reader
                .state()
                .iter()
                .map(|p| (**p).clone())
                .collect::<Vec<_>>()
        ),
        ["second"]
    );

    // Push the watcher's resourceVersion out of the 5-event history: its next watch gets 410
    // Expired, which kube-rs reports and then answers by relisting (Init … InitDone again).
    let configmaps: Api<ConfigMap> = Api::namespaced(lab.client.clone(), "lab");
    for index in 0..10 {
        let cm: ConfigMap =
            serde_json::from_value(json!({"metadata": {"name": format!("c{index}")}})).unwrap();
        configmaps
            .create(&PostParams::default(), &cm)
            .await
            .unwrap();
    }
    let expired = tokio::time::timeout(Duration::from_secs(5), events.try_next())
        .await
        .unwrap();
    assert!(
        matches!(&expired, Err(watcher::Error::WatchError(status)) if status.code == 410),
        "{expired:?}"
    );
    assert!(matches!(next!(), watcher::Event::Init));
    assert!(matches!(next!(), watcher::Event::InitApply(p) if p.name_any() == "second"));
    assert!(matches!(next!(), watcher::Event::InitDone));
}

#[tokio::test]
async fn raw_watch_streams_bookmarks_expired_and_timeout() {
    let lab = with_namespace(Store::with_history_limit(3), "lab").await;
    for index in 0..6 {
        lab.store
            .put(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("c{index}"), "namespace": "lab"}}))
            .unwrap();
    }
    let watch = |query: String| {
        let url = format!("{}/api/v1/namespaces/lab/configmaps?{query}", lab.url);
        async move {
            let (code, content_type, body) = raw("GET", &url, &[], "").await;
            assert_eq!((code, content_type.as_str()), (200, "application/json"));
            body.lines()
                .map(|l| serde_json::from_str::<Value>(l).unwrap())
                .collect::<Vec<_>>()
        }
    };
    let events = watch("watch=1&timeoutSeconds=1&allowWatchBookmarks=true".into()).await;
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        ["ADDED", "ADDED", "ADDED", "ADDED", "ADDED", "ADDED", "BOOKMARK"]
    );
    assert_eq!(events[6]["object"]["kind"], "ConfigMap");
    let expired = watch("watch=true&resourceVersion=2&timeoutSeconds=1".into()).await;
    assert_eq!(expired[0]["type"], "ERROR");
    assert_eq!(expired[0]["object"]["code"], 410);
    assert_eq!(expired[0]["object"]["reason"], "Expired");
    let revision = lab.store.revision();
    let resumed = watch(format!(
        "watch=true&resourceVersion={}&timeoutSeconds=1",
        revision - 1
    ))
    .await;
    assert_eq!(resumed.len(), 1);
    assert_eq!(resumed[0]["object"]["metadata"]["name"], "c5");
    let legacy = format!(
        "{}/api/v1/watch/namespaces/lab/configmaps/c1?timeoutSeconds=1",
        lab.url
    );
    let (_, _, body) = raw("GET", &legacy, &[], "").await;
    assert_eq!(body.lines().count(), 1, "{body}");
}

#[tokio::test]
async fn pod_logs_follow_and_tail() {
    let lab = with_namespace(Store::new(), "lab").await;
    lab.store
        .put(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "activator-1", "namespace": "lab"},
            "spec": {"containers": [{"name": "activator"}, {"name": "istio-proxy"}]}}))
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(lab.client.clone(), "lab");
    let params = LogParams {
        container: Some("istio-proxy".into()),
        tail_lines: Some(2),
        ..LogParams::default()
    };
    assert_eq!(
        pods.logs("activator-1", &params).await.unwrap(),
        "line 2\nline 3\n"
    );
    let ambiguous = pods
        .logs("activator-1", &LogParams::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&ambiguous, kube::Error::Api(s) if s.code == 400),
        "{ambiguous:?}"
    );
    let unknown = pods.logs("nope", &params).await.unwrap_err();
    assert!(
        matches!(&unknown, kube::Error::Api(s) if s.code == 404),
        "{unknown:?}"
    );

    let (sender, receiver) = mpsc::channel(8);
    *lab.hooks.later_lines.lock().unwrap() = Some(receiver);
    let follow = LogParams {
        container: Some("istio-proxy".into()),
        follow: true,
        ..LogParams::default()
    };
    let mut lines = pods
        .log_stream("activator-1", &follow)
        .await
        .unwrap()
        .lines();
    assert_eq!(
        lines.next().await.unwrap().unwrap(),
        "activator-1 istio-proxy line 1"
    );
    lines.next().await.unwrap().unwrap();
    lines.next().await.unwrap().unwrap();
    sender.send("kasi: decision pinned".into()).await.unwrap();
    let later = tokio::time::timeout(Duration::from_secs(5), lines.next())
        .await
        .unwrap();
    assert_eq!(later.unwrap().unwrap(), "kasi: decision pinned");
}

#[tokio::test]
async fn portforward_reaches_the_target_over_websocket() {
    let lab = with_namespace(Store::new(), "lab").await;
    lab.store
        .put(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "activator-1", "namespace": "lab"},
            "spec": {"containers": [{"name": "istio-proxy"}]}}))
        .unwrap();
    // A tiny HTTP server standing in for Envoy's admin port.
    let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    *lab.hooks.forward_to.lock().unwrap() = Some(admin.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut connection, _)) = admin.accept().await {
            tokio::spawn(async move {
                let mut request = vec![0u8; 1024];
                let n = connection.read(&mut request).await.unwrap();
                let first_line = String::from_utf8_lossy(&request[..n])
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_string();
                let body = format!("admin saw {first_line}");
                let response = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                connection.write_all(response.as_bytes()).await.unwrap();
            });
        }
    });
    let pods: Api<Pod> = Api::namespaced(lab.client.clone(), "lab");
    let mut forwarder = pods.portforward("activator-1", &[15000]).await.unwrap();
    let mut stream = forwarder.take_stream(15000).unwrap();
    stream
        .write_all(b"GET /config_dump HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut response))
        .await
        .unwrap()
        .unwrap();
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
    assert!(
        response.ends_with("admin saw GET /config_dump HTTP/1.1"),
        "{response}"
    );

    // A port nothing listens on reports on the error channel.
    let mut forwarder = pods.portforward("activator-1", &[9999]).await.unwrap();
    let error = forwarder.take_error(9999).unwrap();
    let message = tokio::time::timeout(Duration::from_secs(5), error)
        .await
        .unwrap();
    assert!(message
        .unwrap_or_default()
        .contains("error forwarding port 9999"));
}

#[tokio::test]
async fn discovery_documents_tables_and_errors() {
    let lab = with_namespace(Store::new(), "lab").await;
    let get = |path: &str, accept: &'static str| {
        let url = format!("{}{path}", lab.url);
        async move { raw("GET", &url, &[("accept", accept)], "").await }
    };
    for path in [
        "/api",
        "/api/v1",
        "/apis",
        "/apis/apps",
        "/apis/apps/v1",
        "/version",
    ] {
        let (code, content_type, body) = get(path, "application/json").await;
        assert_eq!(
            (code, content_type.as_str()),
            (200, "application/json"),
            "{path}: {body}"
        );
    }
    let (_, _, core) = get("/api/v1", "application/json").await;
    let core: Value = serde_json::from_str(&core).unwrap();
    let pods = core["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "pods")
        .unwrap();
    assert_eq!(pods["shortNames"], json!(["po"]));
    assert!(core["resources"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["name"] == "pods/portforward"));
    let (_, _, groups) = get(
        "/apis",
        "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json",
    )
    .await;
    let groups: Value = serde_json::from_str(&groups).unwrap();
    assert_eq!(groups["kind"], "APIGroupList");
    assert!(get("/healthz", "*/*").await.0 == 200 && get("/readyz", "*/*").await.0 == 200);

    let (code, content_type, body) = get("/api/v1/nothing", "application/json").await;
    let status: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (code, content_type.as_str(), status["kind"].as_str()),
        (404, "application/json", Some("Status"))
    );
    // Just enough OpenAPI for kubectl's field-validation check (see the kube_api_kubectl tests).
    let (_, _, openapi) = get("/openapi/v3", "application/json").await;
    let openapi: Value = serde_json::from_str(&openapi).unwrap();
    let url = openapi["paths"]["api/v1"]["serverRelativeURL"]
        .as_str()
        .unwrap();
    let (code, _, core_openapi) = get(url, "application/json").await;
    assert_eq!(code, 200);
    assert!(core_openapi.contains("/api/v1/namespaces/{namespace}/pods/{name}"));
    let create = format!("{}/api/v1/namespaces/lab/configmaps", lab.url);
    let (code, _, body) = raw(
        "POST",
        &create,
        &[("content-type", "application/json")],
        "{not json",
    )
    .await;
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("not a valid JSON object"), "{body}");
    let (code, _, _) = raw(
        "GET",
        &format!("{create}?labelSelector=a%20in%20(b"),
        &[],
        "",
    )
    .await;
    assert_eq!(code, 400);

    lab.store
        .put(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "lab"},
            "spec": {"containers": [{"name": "a"}, {"name": "b"}]},
            "status": {"phase": "Running", "podIP": "127.0.0.2", "containerStatuses": [{"name": "a", "ready": true, "restartCount": 0}, {"name": "b", "ready": true, "restartCount": 1}]}}))
        .unwrap();
    let (_, _, table) = get(
        "/api/v1/namespaces/lab/pods",
        "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
    )
    .await;
    let table: Value = serde_json::from_str(&table).unwrap();
    assert_eq!(table["kind"], "Table");
    let columns: Vec<&str> = table["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        &columns[..5],
        ["Name", "Ready", "Status", "Restarts", "Age"]
    );
    assert_eq!(
        table["rows"][0]["cells"].as_array().unwrap()[..4],
        [json!("p"), json!("2/2"), json!("Running"), json!("1")]
    );
    assert_eq!(table["rows"][0]["object"]["kind"], "PartialObjectMetadata");

    let namespaces: Api<Namespace> = Api::all(lab.client.clone());
    assert!(
        names(&namespaces.list(&ListParams::default()).await.unwrap().items)
            .contains(&"default".to_string())
    );
}

/// kubectl 1.35 sends built-in kinds as protobuf: the lab reads the kinds kubectl's generators
/// create, and refuses any other as the real server refuses a media type it cannot read (415,
/// reason UnsupportedMediaType), for every verb with a body; the same object in JSON is then
/// created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protobuf_bodies_get_415_and_json_is_then_accepted() {
    let lab = with_namespace(Store::new(), "lab").await;
    let collection = format!("{}/api/v1/namespaces/lab/configmaps", lab.url);
    let object = format!("{collection}/proto");
    let protobuf = "application/vnd.kubernetes.protobuf";
    // The protobuf envelope's magic number and a kind the lab has no protobuf message for.
    let envelope = "k8s\u{0}\n\u{15}\n\u{7}apps/v1\u{12}\nDeployment";
    let json_body = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "proto", "namespace": "lab"}, "data": {"a": "b"}})
    .to_string();
    for (method, url) in [("POST", &collection), ("PUT", &object), ("DELETE", &object)] {
        let (code, content_type, body) = raw(
            method,
            url,
            &[("content-type", protobuf), ("accept", "application/json")],
            envelope,
        )
        .await;
        assert_eq!(
            (code, content_type.as_str()),
            (415, "application/json"),
            "{method}: {body}"
        );
        let status: Value = serde_json::from_str(&body).unwrap();
        for (field, value) in [
            ("kind", json!("Status")),
            ("apiVersion", json!("v1")),
            ("status", json!("Failure")),
            ("reason", json!("UnsupportedMediaType")),
            ("code", json!(415)),
        ] {
            assert_eq!(status[field], value, "{method} {field}: {body}");
        }
        let message = status["message"].as_str().unwrap();
        assert!(
            message.contains(protobuf) && message.contains("application/json"),
            "{method}: {message}"
        );
    }
    // A PATCH in protobuf (no such patch type) names the patch types instead.
    let (code, _, body) = raw("PATCH", &object, &[("content-type", protobuf)], envelope).await;
    let status: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (code, &status["reason"]),
        (415, &json!("UnsupportedMediaType"))
    );
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains("application/merge-patch+json"),
        "{body}"
    );
    // Nothing was created by the refused requests; the same object in JSON is.
    let configmaps: Api<ConfigMap> = Api::namespaced(lab.client.clone(), "lab");
    assert!(configmaps.get_opt("proto").await.unwrap().is_none());
    let (code, _, body) = raw(
        "POST",
        &collection,
        &[("content-type", "application/json; charset=utf-8")],
        &json_body,
    )
    .await;
    assert_eq!(code, 201, "{body}");
    let created = configmaps.get("proto").await.unwrap();
    assert_eq!(created.data.unwrap()["a"], "b");
    // A body without a Content-Type is read as JSON, the server's first media type.
    let (code, _, body) = raw("PUT", &object, &[], &json_body).await;
    assert_eq!(code, 200, "{body}");
    // A ConfigMap in protobuf is read: envelope {typeMeta {v1, ConfigMap}, raw ConfigMap
    // {metadata {name "wire"}, data {"k": "v"}}}.
    let config_map = "k8s\u{0}\n\u{f}\n\u{2}v1\u{12}\tConfigMap\u{12}\u{10}\n\u{6}\n\u{4}wire\u{12}\u{6}\n\u{1}k\u{12}\u{1}v";
    let (code, _, body) = raw(
        "POST",
        &collection,
        &[("content-type", protobuf)],
        config_map,
    )
    .await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(
        configmaps.get("wire").await.unwrap().data.unwrap()["k"],
        "v"
    );
}
