//! `get`: objects as kubectl's tables, YAML, JSON or names; `-w` keeps printing changes.

use std::process::ExitCode;

use minik_api::resources::ResourceInfo;
use minik_client::{Api, ListParams, WatchEventType};
use serde_json::{json, Value};

use super::printers::{self, TableOptions};
use super::tabwriter::align;
use super::{fail, kind_slash_name, parse_targets, CliError, CliResult, Client, ClientFlags};

#[derive(clap::Args, Debug)]
pub struct GetArgs {
    #[command(flatten)]
    client: ClientFlags,
    /// KIND[,KIND...] [NAME...], or KIND/NAME...
    #[arg(required = true)]
    targets: Vec<String>,
    /// Output format: wide, yaml, json or name.
    #[arg(short = 'o', long)]
    output: Option<String>,
    /// Label selector, e.g. app=web,tier!=db.
    #[arg(short = 'l', long)]
    selector: Option<String>,
    /// Field selector, e.g. status.phase=Running.
    #[arg(long)]
    field_selector: Option<String>,
    /// Lists across all namespaces.
    #[arg(short = 'A', long)]
    all_namespaces: bool,
    /// Adds a LABELS column.
    #[arg(long)]
    show_labels: bool,
    /// After listing, prints every change as it happens.
    #[arg(short = 'w', long)]
    watch: bool,
    /// Leaves out the header of tables.
    #[arg(long)]
    no_headers: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Output {
    Table { wide: bool },
    Yaml,
    Json,
    Name,
}

/// The validated settings of `get`.
struct GetSettings {
    output: Output,
    params: ListParams,
    all_namespaces: bool,
    show_labels: bool,
    watch: bool,
    no_headers: bool,
}

impl GetArgs {
    fn settings(&self) -> CliResult<GetSettings> {
        let output = match self.output.as_deref() {
            None => Output::Table { wide: false },
            Some("wide") => Output::Table { wide: true },
            Some("yaml") => Output::Yaml,
            Some("json") => Output::Json,
            Some("name") => Output::Name,
            Some(other) => {
                return Err(fail!(
                    "unable to match a printer suitable for the output format \"{other}\", allowed formats are: json,name,wide,yaml"
                ))
            }
        };
        Ok(GetSettings {
            output,
            params: ListParams {
                label_selector: self.selector.clone(),
                field_selector: self.field_selector.clone(),
            },
            all_namespaces: self.all_namespaces,
            show_labels: self.show_labels,
            watch: self.watch,
            no_headers: self.no_headers,
        })
    }
}

pub async fn run(args: GetArgs) -> CliResult<ExitCode> {
    let settings = args.settings()?;
    let client = Client::new(&args.client)?;
    let targets = parse_targets(&args.targets)?;
    if settings.watch && targets.groups.len() != 1 {
        return Err(fail!(
            "you may only specify a single resource type with --watch"
        ));
    }
    let now = super::time::now();
    let mut failed = false;
    // Objects found, per kind, in the order asked.
    let mut found: Vec<(&'static ResourceInfo, Vec<Value>)> = Vec::new();
    let mut last_version = String::new();
    for (info, names) in &targets.groups {
        let ns = if settings.all_namespaces {
            None
        } else {
            client.ns_for(info)
        };
        if names.is_empty() {
            let list = client.api.list(info, ns, &settings.params).await?;
            last_version = list.resource_version;
            found.push((info, list.items));
        } else {
            let mut items = Vec::new();
            for name in names {
                match client.api.get(info, client.ns_for(info), name).await {
                    Ok(obj) => {
                        // A watch of a named object continues from the version just read.
                        if let Some(rv) = obj
                            .pointer("/metadata/resourceVersion")
                            .and_then(Value::as_str)
                        {
                            last_version = rv.to_owned();
                        }
                        items.push(obj)
                    }
                    Err(e) => {
                        eprintln!("{}", CliError::from(e));
                        failed = true;
                    }
                }
            }
            found.push((info, items));
        }
    }
    let single_by_name = targets.groups.len() == 1 && targets.groups[0].1.len() == 1;
    let total: usize = found.iter().map(|(_, items)| items.len()).sum();
    match settings.output {
        Output::Table { wide } => {
            let mut first = true;
            for (info, items) in &found {
                if items.is_empty() {
                    continue;
                }
                let opts = TableOptions {
                    wide,
                    show_labels: settings.show_labels,
                    with_namespace: settings.all_namespaces && info.namespaced,
                    with_kind: targets.several_kinds,
                    no_headers: settings.no_headers,
                };
                if !first {
                    println!();
                }
                first = false;
                print!("{}", table(info, items, opts, now));
            }
        }
        Output::Name => {
            for (info, items) in &found {
                for item in items {
                    println!("{}", kind_slash_name(info, name_of(item)));
                }
            }
        }
        Output::Yaml | Output::Json => {
            let all: Vec<Value> = found.into_iter().flat_map(|(_, items)| items).collect();
            let value = if single_by_name && all.len() == 1 {
                all.into_iter().next().unwrap_or(Value::Null)
            } else {
                json!({"apiVersion": "v1", "items": all, "kind": "List", "metadata": {"resourceVersion": ""}})
            };
            if settings.output == Output::Yaml {
                print!("{}", printers::to_yaml(&value));
            } else {
                print!("{}", printers::to_json(&value));
            }
        }
    }
    if total == 0 && !failed && !matches!(settings.output, Output::Yaml | Output::Json) {
        let namespaced = targets.groups.iter().any(|(i, _)| i.namespaced);
        if settings.all_namespaces || !namespaced {
            eprintln!("No resources found");
        } else {
            eprintln!(
                "No resources found in {} namespace.",
                client.settings.namespace
            );
        }
    }
    if settings.watch && !failed {
        let (info, names) = &targets.groups[0];
        let ns = if settings.all_namespaces {
            None
        } else {
            client.ns_for(info)
        };
        watch(
            &client,
            info,
            ns,
            names,
            &settings,
            &last_version,
            total > 0,
        )
        .await?;
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn name_of(obj: &Value) -> &str {
    obj.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn table(info: &ResourceInfo, items: &[Value], opts: TableOptions, now: i64) -> String {
    let header = printers::headers(info, opts);
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|o| printers::row(info, o, opts, now))
        .collect();
    let header = (!opts.no_headers).then_some(header.as_slice());
    // Rows printed one at a time (watch) line up with the header only if their widths are set
    // together; watch output is aligned per line, as kubectl's is.
    align(&printers::table_text(header, &rows), 3)
}

/// Prints each change after the list as a row (or in the chosen format), until interrupted.
async fn watch(
    client: &Client,
    info: &'static ResourceInfo,
    ns: Option<&str>,
    names: &[String],
    settings: &GetSettings,
    from: &str,
    header_printed: bool,
) -> CliResult {
    let mut params = settings.params.clone();
    if let [name] = names {
        params.field_selector = Some(format!("metadata.name={name}"));
    }
    let from = if from.is_empty() { None } else { Some(from) };
    let mut stream = client.api.watch(info, ns, &params, from).await?;
    let mut header_printed = header_printed;
    let opts = |no_headers| TableOptions {
        wide: settings.output == Output::Table { wide: true },
        show_labels: settings.show_labels,
        with_namespace: settings.all_namespaces && info.namespaced,
        with_kind: false,
        no_headers,
    };
    loop {
        let next = std::future::poll_fn(|cx| stream.as_mut().poll_next(cx)).await;
        let event = match next {
            None => return Ok(()),
            Some(Err(e)) => return Err(e.into()),
            Some(Ok(event)) => event,
        };
        if event.kind == WatchEventType::Bookmark {
            continue;
        }
        if !names.is_empty() && !names.iter().any(|n| n == name_of(&event.object)) {
            continue;
        }
        let now = super::time::now();
        let text = match settings.output {
            Output::Table { .. } => {
                let no_headers = header_printed || settings.no_headers;
                header_printed = true;
                table(
                    info,
                    std::slice::from_ref(&event.object),
                    opts(no_headers),
                    now,
                )
            }
            Output::Name => format!("{}\n", kind_slash_name(info, name_of(&event.object))),
            Output::Yaml => format!("---\n{}", printers::to_yaml(&event.object)),
            Output::Json => printers::to_json(&event.object),
        };
        print!("{text}");
        use std::io::Write;
        let _ = std::io::stdout().flush();
    }
}
