use clap::Parser;
use kasi::affinity::decode;
use kasi::cli::{
    ApplyArgs, Cli, Command, DemoArgs, FilterSourceArg, LabArgs, ManifestArgs, ProbeArgs,
};
use kasi::cluster::{self, ClusterTarget};
use kasi::install::apply::{self, ApplyOptions};
use kasi::install::render::{self, FilterSource, RenderOptions};
use kasi::install::session_keys::KeyRing;
use kasi::install::{revert, status, InstallError, FILTER_WASM};
use kasi_lab::{Lab, LabOptions};
use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::process::ExitCode;

/// Exit code for input kasi cannot use (as clap uses for bad flags).
const EXIT_BAD_INPUT: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let namespace = cli.global.system_namespace.clone();
    let target = ClusterTarget {
        kubeconfig: cli.global.kubeconfig.clone(),
        context: cli.global.context.clone(),
    };
    match cli.command {
        Some(Command::Apply(args)) => run_install("apply", &target, |client, out| {
            Box::pin(run_apply(client, args, namespace, out))
        }),
        Some(Command::Revert { yes }) => run_install("revert", &target, |client, out| {
            Box::pin(async move {
                revert::revert(&client, &namespace, &mut ask(yes, "revert"), out)
                    .await
                    .map(|_| ())
            })
        }),
        Some(Command::Status { json, exit_code }) => {
            run_install("status", &target, |client, out| {
                Box::pin(async move {
                    let found = status::collect(&client, &namespace).await?;
                    let text = if json {
                        serde_json::to_string_pretty(&found).map_err(anyhow::Error::from)? + "\n"
                    } else {
                        status::to_text(&found)
                    };
                    let _ = out.write_all(text.as_bytes());
                    let problems = found.problems();
                    if exit_code && !problems.is_empty() {
                        return Err(InstallError::NotReady(problems.join("\n")));
                    }
                    Ok(())
                })
            })
        }
        Some(Command::Decode {
            value,
            json,
            cookie_name,
            carrier,
        }) => match decode::decode(&value, cookie_name.as_deref(), carrier.map(Into::into)) {
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
        Some(Command::Manifests {
            manifest,
            session_key,
        }) => match manifests(&manifest, session_key.as_deref(), &namespace) {
            Ok(yaml) => {
                print!("{yaml}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("kasi manifests: {e:#}");
                ExitCode::from(EXIT_BAD_INPUT)
            }
        },
        Some(Command::Lab(args)) => run_lab(args),
        Some(Command::Demo(args)) => run_demo(args, &namespace),
        Some(Command::Probe(args)) => run_probe(args),
        None => run_ui(&cli.global, &namespace),
    }
}

/// `kasi manifests`: without a cluster to read keys from, a fresh session key unless one is given.
fn manifests(
    args: &ManifestArgs,
    session_key: Option<&str>,
    namespace: &str,
) -> anyhow::Result<String> {
    let mut options = render_options(args, namespace);
    let keys = match session_key {
        Some(text) => KeyRing::pinned(text).map_err(anyhow::Error::msg)?,
        None => KeyRing::generate(),
    };
    options.session_keys = Some(keys);
    let yaml = render::to_yaml(&render::render(&options)?)?;
    if session_key.is_none() {
        eprintln!("kasi: generated a new session key; `kasi apply` keeps the cluster's");
    }
    Ok(yaml)
}

/// The render options the manifest flags describe (`allowed_cidrs: None` when none were given).
fn render_options(args: &ManifestArgs, namespace: &str) -> RenderOptions {
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
    options.mcp_header = args.mcp_header.to_ascii_lowercase();
    options.session_header = args.session_header.to_ascii_lowercase();
    options.allowed_cidrs = (!args.allowed_cidrs.is_empty()).then(|| args.allowed_cidrs.clone());
    options
}

type InstallFuture<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), InstallError>> + 'a>>;

/// Runs one cluster command: connect, run, and turn every failure into one line and its exit code.
fn run_install(
    command: &str,
    target: &ClusterTarget,
    run: impl for<'a> FnOnce(kube::Client, &'a mut dyn std::io::Write) -> InstallFuture<'a>,
) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("kasi {command}: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let client = cluster::connect(target)
            .await
            .map_err(|e| InstallError::Cluster(format!("{e:#}")))?;
        let mut stdout = std::io::stdout();
        run(client, &mut stdout).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line each: an apply refused by findings names each finding on its own line.
            for line in e.to_string().lines() {
                eprintln!("kasi {command}: {line}");
            }
            ExitCode::from(e.exit_code())
        }
    }
}

async fn run_apply(
    client: kube::Client,
    args: ApplyArgs,
    namespace: String,
    out: &mut dyn std::io::Write,
) -> Result<(), InstallError> {
    let options = ApplyOptions {
        render: render_options(&args.manifest, &namespace),
        detect_cidrs: true,
        dry_run: args.dry_run,
        show_diff: args.diff,
        force_conflicts: args.force_conflicts,
        force: args.force,
        rotate_key: args.rotate_key,
    };
    apply::apply(&client, options, &mut ask(args.yes, "apply"), out)
        .await
        .map(|_| ())
}

/// The y/N question on the terminal; `--yes` answers it, and without a terminal to ask on the
/// command refuses rather than guess.
fn ask(yes: bool, command: &'static str) -> impl FnMut(&str) -> Result<bool, InstallError> {
    move |question| {
        if yes {
            return Ok(true);
        }
        if !std::io::stdin().is_terminal() {
            return Err(InstallError::BadInput(format!(
                "stdin is not a terminal, so kasi cannot ask; pass --yes to {command} without asking"
            )));
        }
        print!("{question} [y/N] ");
        let _ = std::io::stdout().flush();
        let mut answer = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut answer)
            .map_err(|e| InstallError::BadInput(format!("cannot read the answer: {e}")))?;
        Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
    }
}

/// Runs a command's future on a fresh runtime; a failure is one line and exit 1.
fn block_on(
    command: &str,
    work: impl std::future::Future<Output = anyhow::Result<()>>,
) -> ExitCode {
    let result = tokio::runtime::Runtime::new()
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(work));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{command}: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The UI's own installer renders with the defaults of `kasi manifests` (flags come later).
fn default_render(namespace: &str) -> RenderOptions {
    let mut options = RenderOptions::new(FilterSource::ConfigMap {
        wasm: FILTER_WASM.to_vec(),
    });
    options.system_namespace = namespace.to_owned();
    options
}

/// `kasi`: the terminal UI on the current kube context.
fn run_ui(global: &kasi::cli::Global, namespace: &str) -> ExitCode {
    let _log = kasi::logging::to_file();
    let target = ClusterTarget {
        kubeconfig: global.kubeconfig.clone(),
        context: global.context.clone(),
    };
    let render = default_render(namespace);
    let installer =
        move |target: ClusterTarget| Some(kasi::tui::installer::installer(target, render.clone()));
    block_on(
        "kasi",
        kasi::tui::launch::inspect(target, namespace.to_owned(), installer),
    )
}

/// `kasi probe`: client-side stickiness, one line per session (or JSON); a progress line on
/// stderr while it runs, when stderr is a terminal.
fn run_probe(args: ProbeArgs) -> ExitCode {
    let options = kasi::probe::ProbeOptions {
        url: args.url,
        sessions: args.sessions as usize,
        requests_per_session: args.requests as usize,
        cookie_name: args.cookie_name,
        pause: args.pause,
        mcp: args.mcp,
        resolve: args.resolve,
        headers: args.header,
        http2: args.http2,
        insecure: args.insecure,
        stop: None,
    };
    let show_progress = std::io::stderr().is_terminal();
    let result = tokio::runtime::Runtime::new()
        .map_err(anyhow::Error::from)
        .and_then(|rt| {
            rt.block_on(async {
                let (tx, mut rx) = tokio::sync::mpsc::channel(4);
                let printer = tokio::spawn(async move {
                    let mut printed = false;
                    while let Some(report) = rx.recv().await {
                        eprint!("\r\x1b[K{}", kasi::probe::output::progress_line(&report));
                        printed = true;
                    }
                    if printed {
                        eprint!("\r\x1b[K");
                    }
                });
                // Without a terminal the sender is dropped here and nothing is printed.
                let result = kasi::probe::run(&options, show_progress.then_some(tx)).await;
                let _ = printer.await;
                result
            })
        });
    let report = match result {
        Ok(report) => report,
        Err(e) => {
            eprintln!("kasi probe: {e:#}");
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    if args.json {
        println!("{}", serde_json::to_string(&report).unwrap_or_default());
    } else {
        print!("{}", kasi::probe::output::table(&report));
    }
    ExitCode::SUCCESS
}

/// `kasi demo`: the lab, and the terminal UI on it.
fn run_demo(args: DemoArgs, namespace: &str) -> ExitCode {
    let _log = kasi::logging::to_file();
    let tour = args
        .tour
        .then(|| kasi::tui::tour::Tour::new(args.auto.map(f64::from)));
    let options = lab_options(args.lab);
    let render = default_render(namespace);
    let installer =
        |target: ClusterTarget| Some(kasi::tui::installer::installer(target, render.clone()));
    block_on(
        "kasi demo",
        kasi::tui::launch::demo(options, namespace.to_owned(), installer, tour),
    )
}

fn lab_options(args: LabArgs) -> LabOptions {
    LabOptions {
        services: args.services as usize,
        state_dir: args.state_dir,
        envoy: args.envoy,
        istio_crds: !args.without_istio,
        classic_sidecars: args.classic_sidecars,
        ..LabOptions::default()
    }
}

fn run_lab(args: LabArgs) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("kasi: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let options = lab_options(args);
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
        wait_for_signal().await;
        eprintln!("stopping the lab…");
        lab.shutdown().await;
        ExitCode::SUCCESS
    })
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
