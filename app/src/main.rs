use clap::Parser;
use kasi::affinity::decode;
use kasi::cli::{Cli, Command, FilterSourceArg, LabArgs, ManifestArgs};
use kasi::install::render::{self, FilterSource, RenderOptions};
use kasi::install::FILTER_WASM;
use kasi::lab::{Lab, LabOptions};
use std::process::ExitCode;

/// Exit code for input kasi cannot use (as clap uses for bad flags).
const EXIT_BAD_INPUT: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let namespace = cli.global.system_namespace.clone();
    match cli.command {
        Some(Command::Decode {
            value,
            json,
            cookie_name,
        }) => match decode::decode(&value, cookie_name.as_deref()) {
            Ok(decoded) if json => {
                println!("{}", decoded.to_json());
                ExitCode::SUCCESS
            }
            Ok(decoded) => {
                print!("{}", decoded.to_text());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("kasi decode: {e}");
                ExitCode::from(EXIT_BAD_INPUT)
            }
        },
        Some(Command::Manifests(args)) => match manifests(&args, &namespace) {
            Ok(yaml) => {
                print!("{yaml}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("kasi manifests: {e:#}");
                ExitCode::from(EXIT_BAD_INPUT)
            }
        },
        Some(Command::Lab(args)) => run_lab(args, false),
        Some(Command::Demo(args)) => run_lab(args, true),
        None => {
            eprintln!("kasi: the terminal UI is not built yet (issue 5); try `kasi demo`, `kasi lab` or `kasi --help`");
            ExitCode::FAILURE
        }
    }
}

fn manifests(args: &ManifestArgs, namespace: &str) -> anyhow::Result<String> {
    let filter = match args.filter_source {
        FilterSourceArg::Configmap => FilterSource::ConfigMap {
            wasm: FILTER_WASM.to_vec(),
        },
        FilterSourceArg::Url => FilterSource::Url {
            url: args.filter_url.clone().unwrap_or_default(),
            sha256: args
                .filter_sha256
                .clone()
                .unwrap_or_else(|| render::sha256_hex(FILTER_WASM)),
        },
    };
    let mut options = RenderOptions::new(filter);
    options.system_namespace = namespace.to_owned();
    options.cookie_name = args.cookie_name.clone();
    options.cookie_ttl = args.cookie_ttl;
    options.cookie_path = args.cookie_path.clone();
    options.allowed_cidrs = (!args.allowed_cidrs.is_empty()).then(|| args.allowed_cidrs.clone());
    render::to_yaml(&render::render(&options)?)
}

fn run_lab(args: LabArgs, demo: bool) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("kasi: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let options = LabOptions {
        services: args.services as usize,
        state_dir: args.state_dir,
        envoy: args.envoy,
        istio_crds: !args.without_istio,
        ..LabOptions::default()
    };
    runtime.block_on(async move {
        let started = std::time::Instant::now();
        let lab = match Lab::start(options).await {
            Ok(lab) => lab,
            Err(e) => {
                eprintln!("kasi lab: {e:#}");
                return ExitCode::FAILURE;
            }
        };
        println!("kubeconfig: {}", lab.kubeconfig_path().display());
        println!("ingress:    {}", lab.ingress_url());
        eprintln!(
            "lab ready in {:.1}s; Ctrl-C stops it",
            started.elapsed().as_secs_f64()
        );
        if demo {
            eprintln!("{}", demo_guide(&lab));
        }
        wait_for_signal().await;
        eprintln!("stopping the lab…");
        lab.shutdown().await;
        ExitCode::SUCCESS
    })
}

fn demo_guide(lab: &Lab) -> String {
    let kubeconfig = lab.kubeconfig_path().display();
    let url = lab.ingress_url();
    let kasi = std::env::current_exe().map_or_else(|_| "kasi".into(), |p| p.display().to_string());
    format!(
        "\nThe terminal UI is not built yet; meanwhile, from another terminal:\n\
         \x20 export KUBECONFIG={kubeconfig}\n\
         \x20 kubectl get pods -A                      # activators with istio-proxy, hello pods\n\
         \x20 curl -si -c /tmp/jar -b /tmp/jar {url}/ | grep -i x-kasi-pod   # which pod answered\n\
         \x20 {kasi} manifests --allowed-cidrs {} | kubectl apply --server-side -f -   # install: sessions stick\n",
        lab.layout.pod_cidr()
    )
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
