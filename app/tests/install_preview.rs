//! The dry-run preview against the lab's real API server (server-side apply with `dryRun=All`,
//! managedFields, Istio's CRDs), seeded with the lab's Knative objects: before an install it says
//! what is created and what patched, after it everything is unchanged, and revert would restore
//! the patched objects and delete the created ones. No Envoy, no controllers: only the API.

use kasi::install::apply::{self, ApplyOptions};
use kasi::install::dry_run::{apply_preview, revert_preview};
use kasi::install::objects::{self, ApplyMode, ObjectRef};
use kasi::install::preview::{Preview, Verdict};
use kasi::install::record::{self, SavedOptions};
use kasi::install::render::{render, FilterSource, Piece, RenderOptions};
use kasi::install::FILTER_WASM;
use kasi_lab::data_plane::layout::Layout;
use kasi_lab::knative::seed::{self, SeedSpec};
use kasi_lab::kube_api::{kubeconfig_yaml, serve, LabHooks, Store};
use std::sync::Arc;

const NS: &str = "knative-serving";

struct NoHooks;
impl LabHooks for NoHooks {}

async fn lab_api() -> (kube::Client, tempfile::TempDir) {
    let store = Store::new();
    let spec = SeedSpec {
        layout: Layout { subnet: 42 },
        activators: 2,
        hello_pods: 1,
        h2c_pods: 0,
        mcp_pods: 0,
        filler_services: 2,
        istio_crds: true,
        native_sidecars: true,
    };
    for object in seed::objects(&spec) {
        store.put(object).expect("seed object");
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(serve(listener, store, Arc::new(NoHooks)));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeconfig");
    std::fs::write(&path, kubeconfig_yaml(&format!("http://{address}"), "lab")).unwrap();
    let kubeconfig = kube::config::Kubeconfig::read_from(&path).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    (kube::Client::try_from(config).unwrap(), dir)
}

/// The pieces as `kasi apply` would render them now (the cluster's session keys, if any).
async fn rendered(client: &kube::Client) -> (Vec<Piece>, RenderOptions) {
    let mut render_options = RenderOptions::new(FilterSource::ConfigMap {
        wasm: FILTER_WASM.to_vec(),
    });
    render_options.system_namespace = NS.into();
    render_options.allowed_cidrs = Some(vec!["127.42.0.0/16".into()]);
    let mut options = ApplyOptions {
        render: render_options,
        rotate_key: false,
        detect_cidrs: false,
        dry_run: true,
        show_diff: false,
        force_conflicts: false,
        force: false,
    };
    let skeleton = render(&options.render).unwrap();
    apply::resolve(client, &mut options, &skeleton, &mut std::io::sink())
        .await
        .expect("resolve");
    (render(&options.render).unwrap(), options.render)
}

fn verdict<'a>(preview: &'a Preview, piece: &str) -> &'a Verdict {
    &preview
        .of_piece(piece)
        .unwrap_or_else(|| panic!("no {piece} in {}", preview.to_text(false)))
        .verdict
}

#[tokio::test]
async fn dry_run_preview_before_and_after_install_and_for_revert() {
    let (client, _dir) = lab_api().await;
    let (pieces, render_options) = rendered(&client).await;
    let mut seen = Vec::new();
    let before = apply_preview(&client, &pieces, false, &mut |done, total| {
        seen.push((done, total))
    })
    .await
    .expect("apply preview");
    let text = before.to_text(true);
    assert_eq!(seen.last(), Some(&(pieces.len(), pieces.len())));

    // Existing Knative objects kasi patches.
    assert!(
        matches!(verdict(&before, "config-network"), Verdict::Patched(n) if *n >= 1),
        "{text}"
    );
    assert!(
        matches!(verdict(&before, "injection"), Verdict::Patched(n) if *n >= 3),
        "{text}"
    );
    // Everything of Istio's, and kasi's own objects, are new.
    for piece in [
        "wasmplugin",
        "stateful-session",
        "passthrough",
        "sidecar",
        "filter",
        "placeholder",
    ] {
        assert_eq!(
            verdict(&before, piece),
            &Verdict::Created,
            "{piece}: {text}"
        );
    }
    let network = before.of_piece("config-network").unwrap();
    assert!(
        network
            .diff
            .contains("+  mesh-compatibility-mode: disabled"),
        "{}",
        network.diff
    );
    assert!(!network.diff.contains("managedFields"), "{}", network.diff);
    let rollout = before.rollout.clone().expect("the activator rolls");
    assert!(
        rollout.starts_with("the activator Deployment rolls: 2 pods replaced"),
        "{rollout}"
    );
    // The session key never shows.
    let plugin = &before.of_piece("wasmplugin").unwrap().diff;
    assert!(plugin.contains("not shown"), "{plugin}");

    // Nothing was changed by the dry run: no revert record, nothing of kasi's.
    let revert_before = revert_preview(&client, NS, &mut |_, _| {}).await.unwrap();
    assert!(
        revert_before.objects.is_empty(),
        "{}",
        revert_before.to_text(false)
    );
    assert!(revert_before.note.is_some());

    // Install as `kasi apply` does (record, then apply each piece), without waiting for a rollout
    // no controller would make here.
    let mut captured = Vec::new();
    for piece in &pieces {
        let live = objects::get(&client, &ObjectRef::of(&piece.object))
            .await
            .unwrap();
        captured.push(record::capture(&piece.object, live.as_ref()));
    }
    record::ensure(&client, NS, captured, &SavedOptions::of(&render_options))
        .await
        .unwrap();
    for piece in &pieces {
        objects::apply(&client, &piece.object, ApplyMode::default())
            .await
            .expect("apply");
    }

    let (pieces, _) = rendered(&client).await;
    let after = apply_preview(&client, &pieces, false, &mut |_, _| {})
        .await
        .unwrap();
    let text = after.to_text(true);
    assert_eq!(after.changes(), 0, "{text}");
    assert!(
        after
            .objects
            .iter()
            .all(|o| o.verdict == Verdict::Unchanged),
        "{text}"
    );
    assert_eq!(after.rollout, None, "{text}");

    // Revert would restore the patched objects and delete what kasi created, the record too.
    let revert = revert_preview(&client, NS, &mut |_, _| {}).await.unwrap();
    let text = revert.to_text(true);
    assert!(
        matches!(verdict(&revert, "config-network"), Verdict::Patched(_)),
        "{text}"
    );
    assert!(
        matches!(verdict(&revert, "injection"), Verdict::Patched(_)),
        "{text}"
    );
    for piece in [
        "wasmplugin",
        "stateful-session",
        "passthrough",
        "sidecar",
        "filter",
        "placeholder",
    ] {
        assert_eq!(
            verdict(&revert, piece),
            &Verdict::Deleted,
            "{piece}: {text}"
        );
    }
    assert_eq!(
        revert
            .of_target("ConfigMap", record::RECORD_CONFIGMAP)
            .map(|o| &o.verdict),
        Some(&Verdict::Deleted),
        "{text}"
    );
    assert!(
        revert
            .of_piece("config-network")
            .unwrap()
            .diff
            .contains("-  mesh-compatibility-mode: disabled"),
        "{text}"
    );
    assert!(revert.rollout.is_some(), "{text}");
}
