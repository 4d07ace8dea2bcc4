//! The one Keyhaven binary: `keyhaven server` runs the control plane, `keyhaven down`
//! stops a data directory's valkey-servers and endpoint, `keyhaven endpoint` (hidden: the
//! runtime starts it) is the endpoint process, and the other commands are the CLI client.

mod server;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "keyhaven",
    version,
    about = "Managed Valkey with read replicas, on your own machines",
    after_help = "Examples:
  keyhaven server                  run the server (API on 127.0.0.1:8080, data in ./keyhaven-data)
  keyhaven service create -p startup-4 primary --wait
  keyhaven service create -p startup-4 --read-replica-for primary replica --wait
  keyhaven service replicas primary
  keyhaven service promote replica
  keyhaven --url http://10.0.0.5:8080 --auth-token \"$TOKEN\" service list

Every command's --help has examples."
)]
struct Cli {
    /// Connection flags before the command, as avn takes them (client commands only).
    #[command(flatten)]
    before: keyhaven_cli::GlobalOpts,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the Keyhaven server: the /v1 API and the reconciler of valkey-server nodes.
    ///
    /// Example: keyhaven server --listen 127.0.0.1:8080 --data-dir ./keyhaven-data
    Server(server::ServerArgs),
    /// Stop every valkey-server of a data directory (the server must be stopped first).
    ///
    /// Example: keyhaven down --data-dir ./keyhaven-data
    Down(server::DownArgs),
    /// The endpoint process (TLS and reader endpoints) of a data directory; started by
    /// `keyhaven server`'s runtime, not by hand.
    #[command(hide = true)]
    Endpoint(server::EndpointArgs),
    #[command(flatten)]
    Client(keyhaven_cli::ClientCommand),
    /// Print a shell completion script.
    ///
    /// Example: keyhaven completion bash > /etc/bash_completion.d/keyhaven
    Completion { shell: clap_complete::Shell },
    /// Print the OpenAPI document of the API.
    ///
    /// Example: keyhaven openapi > openapi.json
    Openapi,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("the tokio runtime starts");
    if cli.before.any() && !matches!(cli.command, Command::Client(_)) {
        eprintln!(
            "error: --url, --auth-token, --project and --json before a command apply to client commands (service, project, user) only"
        );
        return ExitCode::from(2);
    }
    let before = cli.before;
    let result = runtime.block_on(async {
        match cli.command {
            Command::Server(args) => server::run(args).await,
            Command::Down(args) => server::down(args).await,
            Command::Endpoint(args) => server::endpoint(args).await,
            Command::Client(cmd) => keyhaven_cli::run(cmd, &before)
                .await
                .map_err(anyhow::Error::from),
            Command::Completion { shell } => {
                use clap::CommandFactory;
                clap_complete::generate(
                    shell,
                    &mut Cli::command(),
                    "keyhaven",
                    &mut std::io::stdout(),
                );
                Ok(())
            }
            Command::Openapi => {
                println!("{}", keyhaven_server::openapi::document());
                Ok(())
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
