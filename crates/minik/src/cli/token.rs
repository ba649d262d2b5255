//! `token`: rotate the cluster's admin or join token, or revoke a node's credential
//! (SPEC §8; the server keeps the tokens in DATA_DIR/auth, docs/operations.md).

use std::process::ExitCode;

use serde_json::Value;

use super::{fail, CliResult, Client, ClientFlags};

#[derive(clap::Args, Debug)]
pub struct TokenArgs {
    #[command(subcommand)]
    action: TokenAction,
    #[command(flatten)]
    client: ClientFlags,
}

#[derive(clap::Subcommand, Debug)]
enum TokenAction {
    /// Replace the admin token or the node join token with a new one and print it; the old one
    /// stops working at once (nodes that joined keep their own credentials).
    Rotate {
        /// Which token: admin or join.
        #[arg(value_parser = ["admin", "join"])]
        which: String,
    },
    /// Take a node's credential away; the node must join again (with the join token).
    Revoke {
        /// The node's name.
        node: String,
    },
}

pub async fn run(args: TokenArgs) -> CliResult<ExitCode> {
    let client = Client::new(&args.client)?;
    match args.action {
        TokenAction::Rotate { which } => {
            let answer = client
                .api
                .post_path(&format!("/minik/v1/tokens/{which}"), &Value::Null)
                .await?;
            let token = answer
                .get("token")
                .and_then(Value::as_str)
                .ok_or_else(|| fail!("the server's answer has no token: {answer}"))?;
            let file = answer.get("file").and_then(Value::as_str).unwrap_or("?");
            eprintln!("{which} token rotated; the server keeps it in {file}");
            println!("{token}");
        }
        TokenAction::Revoke { node } => {
            client
                .api
                .delete_path(&format!("/minik/v1/nodes/{node}/token"))
                .await?;
            println!("node/{node} credential revoked");
        }
    }
    Ok(ExitCode::SUCCESS)
}
