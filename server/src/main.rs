//! `trellis`: the leader. With no subcommand (or `serve`) it runs the whole leader; `migrate` runs
//! database migrations by hand; `schema` prints the GraphQL SDL.

use clap::{Parser, Subcommand};
use migration::{Migrator, MigratorTrait};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;
use trellis_server::config::Args;

#[derive(Parser)]
#[command(
    name = "trellis",
    version,
    about = "Trellis leader: control plane for edge clusters",
    args_conflicts_with_subcommands = true,
    // A flag given twice takes its last value (a wrapper script's default, then the user's).
    args_override_self = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: Args,
}

#[derive(Subcommand)]
enum Command {
    /// Run the leader (the default).
    Serve(Args),
    /// Apply, revert or list database migrations.
    Migrate {
        #[command(subcommand)]
        action: MigrateAction,
        #[command(flatten)]
        args: Args,
    },
    /// Print the GraphQL schema (SDL); `trellis schema > schema.graphql` regenerates the committed file.
    Schema,
    /// Print the lines to add to mosquitto.conf for a Mosquitto whose accounts the leader
    /// manages in DIR (start the leader with --broker-url and --mosquitto-dir DIR).
    MosquittoConfig {
        /// The directory given to the leader as --mosquitto-dir.
        dir: std::path::PathBuf,
    },
    /// Make a CA and a certificate for the leader, for HTTPS and MQTT over TLS (--tls-cert,
    /// --tls-key); agents trust the leader with --broker-ca <OUT>/ca.pem. Re-running keeps the CA.
    TlsCert {
        /// A name or IP address machines reach the leader by (repeat for more).
        #[arg(long = "host", required = true)]
        hosts: Vec<String>,
        /// Directory for ca.pem, ca-key.pem, cert.pem and key.pem.
        #[arg(long)]
        out: std::path::PathBuf,
    },
    /// Certificates for reaching nodes' Docker engines over TLS.
    DockerTls {
        #[command(subcommand)]
        action: DockerTlsAction,
    },
}

#[derive(Subcommand)]
enum DockerTlsAction {
    /// Issue a node's Docker daemon a server certificate from the leader's CA, and print how to
    /// start the daemon with it.
    ServerCert {
        /// A name or IP address the leader reaches the daemon by (repeat for more).
        #[arg(long = "host", required = true)]
        hosts: Vec<String>,
        /// Directory to write ca.pem, server-cert.pem and server-key.pem into.
        #[arg(long)]
        out: std::path::PathBuf,
        #[command(flatten)]
        args: Args,
    },
}

#[derive(Subcommand, Clone, Copy)]
enum MigrateAction {
    /// Apply every pending migration.
    Up,
    /// Revert the newest applied migration.
    Down,
    /// List applied and pending migrations.
    Status,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_env("TRELLIS_LOG").unwrap_or_else(|_| {
            // rumqttd logs every client disconnect as an error from its connection
            // handler; the gate logs what matters about connections itself.
            EnvFilter::new(
                "info,sqlx=warn,rumqttd=warn,rumqttd::server::broker=off,tower_http=warn",
            )
        }))
        .init();
    let runtime = tokio::runtime::Runtime::new()?;
    match cli.command {
        Some(Command::MosquittoConfig { dir }) => {
            let dir = std::path::absolute(&dir)?;
            print!("{}", trellis_server::mqtt::mosquitto::config_lines(&dir));
            Ok(())
        }
        Some(Command::DockerTls {
            action: DockerTlsAction::ServerCert { hosts, out, args },
        }) => {
            let config = args.resolve()?;
            let tls = trellis_server::nodes::docker::DockerTls::ensure(&config.docker_tls_dir)?;
            tls.issue_server_cert(&hosts, &out)?;
            let out = std::path::absolute(&out)?;
            println!(
                "Wrote ca.pem, server-cert.pem and server-key.pem to {0}.\n\
                 Copy them to the node (say to /etc/docker/tls) and start its Docker daemon with\n\n  \
                 dockerd --tlsverify --tlscacert=/etc/docker/tls/ca.pem \
                 --tlscert=/etc/docker/tls/server-cert.pem --tlskey=/etc/docker/tls/server-key.pem \
                 -H unix:///var/run/docker.sock -H tcp://0.0.0.0:2376\n\n\
                 then start the node's agent with --docker-endpoint tcp://{1}:2376.",
                out.display(),
                hosts[0]
            );
            Ok(())
        }
        Some(Command::TlsCert { hosts, out }) => {
            let issued = trellis_server::infra::tls::issue_leader_cert(&hosts, &out)?;
            let abs = |p: &std::path::Path| {
                std::path::absolute(p)
                    .unwrap_or_else(|_| p.to_owned())
                    .display()
                    .to_string()
            };
            let made = if issued.new_ca {
                "a new CA"
            } else {
                "the CA already there"
            };
            println!(
                "Wrote a certificate for {hosts} signed by {made} (which may sign for those hosts only).\n\
                 Start the leader with\n\n\
                 \x20 trellis --tls-cert {cert} --tls-key {key} --http-listen 0.0.0.0:8443 --mqtt-listen 0.0.0.0:8883\n\n\
                 and copy {ca} to each node (say to /etc/trellis/ca.pem): its agent trusts the leader with\n\n\
                 \x20 trellis-agent --broker-url mqtts://{host}:8883 --broker-ca /etc/trellis/ca.pem --join-token ...\n\n\
                 Browsers trust the leader once {ca} is added to their trusted authorities.",
                hosts = hosts.join(", "),
                cert = abs(&issued.cert),
                key = abs(&issued.key),
                ca = abs(&issued.ca),
                host = hosts[0],
            );
            Ok(())
        }
        Some(Command::Schema) => {
            print!("{}", trellis_server::graphql::sdl());
            Ok(())
        }
        Some(Command::Migrate { action, args }) => runtime.block_on(migrate(action, args)),
        Some(Command::Serve(args)) => runtime.block_on(serve(args)),
        None => runtime.block_on(serve(cli.serve)),
    }
}

async fn serve(args: Args) -> anyhow::Result<()> {
    let config = args.resolve()?;
    let shutdown = CancellationToken::new();
    let signal = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down");
        signal.cancel();
    });
    trellis_server::run(config, shutdown).await
}

async fn migrate(action: MigrateAction, args: Args) -> anyhow::Result<()> {
    let config = args.resolve()?;
    let db = trellis_server::infra::db::open(&config.database_url).await?;
    match action {
        MigrateAction::Up => Migrator::up(&db, None).await?,
        MigrateAction::Down => Migrator::down(&db, Some(1)).await?,
        MigrateAction::Status => {
            for m in Migrator::get_applied_migrations(&db).await? {
                println!("applied  {}", m.name());
            }
            for m in Migrator::get_pending_migrations(&db).await? {
                println!("pending  {}", m.name());
            }
        }
    }
    Ok(())
}

async fn wait_for_signal() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
