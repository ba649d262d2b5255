//! `get`: objects as kubectl's tables, YAML, JSON or names; `-w` keeps printing changes.

use std::process::ExitCode;

use minik_api::resources::ResourceInfo;
use minik_client::{Api, ListParams, WatchEventType};
use serde_json::{json, Value};

use super::jsonpath::{text_of, Template};
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
    /// Output format: wide, yaml, json, name, jsonpath=TEMPLATE or
    /// custom-columns=HEADER:PATH[,HEADER:PATH...].
    #[arg(short = 'o', long)]
    output: Option<String>,
    /// Sorts list output by the value at this JSONPath, e.g. .metadata.creationTimestamp.
    #[arg(long, value_name = "JSONPATH")]
    sort_by: Option<String>,
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
    /// Prints only the changes, not the objects as they are now.
    #[arg(long)]
    watch_only: bool,
    /// Leaves out the header of tables.
    #[arg(long)]
    no_headers: bool,
}

#[derive(Clone, Debug, PartialEq)]
enum Output {
    Table {
        wide: bool,
    },
    Yaml,
    Json,
    Name,
    JsonPath(Template),
    /// Each column's header and the path of its values.
    CustomColumns(Vec<(String, Template)>),
}

/// The validated settings of `get`.
struct GetSettings {
    output: Output,
    params: ListParams,
    all_namespaces: bool,
    show_labels: bool,
    watch: bool,
    watch_only: bool,
    no_headers: bool,
    sort_by: Option<(String, Template)>,
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
                if other == "jsonpath" || other == "jsonpath=" {
                    return Err(fail!("template format specified but no template given"));
                } else if other == "custom-columns" || other == "custom-columns=" {
                    return Err(fail!(
                        "custom-columns format specified but no custom columns given"
                    ));
                } else if let Some(template) = other.strip_prefix("jsonpath=") {
                    Output::JsonPath(
                        Template::parse(template)
                            .map_err(|e| fail!("error parsing jsonpath {template}: {e}"))?,
                    )
                } else if let Some(spec) = other.strip_prefix("custom-columns=") {
                    Output::CustomColumns(custom_columns(spec)?)
                } else {
                    return Err(fail!(
                        "unable to match a printer suitable for the output format \"{other}\", allowed formats are: custom-columns,json,jsonpath,name,wide,yaml"
                    ));
                }
            }
        };
        let sort_by = match &self.sort_by {
            Some(path) => Some((
                path.clone(),
                Template::parse_relaxed(path)
                    .map_err(|e| fail!("error parsing --sort-by {path}: {e}"))?,
            )),
            None => None,
        };
        Ok(GetSettings {
            output,
            params: ListParams {
                label_selector: self.selector.clone(),
                field_selector: self.field_selector.clone(),
            },
            all_namespaces: self.all_namespaces,
            show_labels: self.show_labels,
            watch: self.watch || self.watch_only,
            watch_only: self.watch_only,
            no_headers: self.no_headers,
            sort_by,
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
    if let Some((path, template)) = &settings.sort_by {
        for (_, items) in &mut found {
            sort_items(items, path, template)?;
        }
    }
    let single_by_name = targets.groups.len() == 1 && targets.groups[0].1.len() == 1;
    let total: usize = found.iter().map(|(_, items)| items.len()).sum();
    if !settings.watch_only {
        print_found(&settings, &targets, found, single_by_name, now);
    }
    let human = matches!(settings.output, Output::Table { .. } | Output::Name);
    if total == 0 && !failed && human && !settings.watch_only {
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
        let header_printed = total > 0 && !settings.watch_only;
        watch(
            &client,
            info,
            ns,
            names,
            &settings,
            &last_version,
            header_printed,
        )
        .await?;
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Prints what was found in the chosen format.
fn print_found(
    settings: &GetSettings,
    targets: &super::Targets,
    found: Vec<(&'static ResourceInfo, Vec<Value>)>,
    single_by_name: bool,
    now: i64,
) {
    match &settings.output {
        Output::Table { wide } => {
            let mut first = true;
            for (info, items) in &found {
                if items.is_empty() {
                    continue;
                }
                let opts = TableOptions {
                    wide: *wide,
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
        Output::CustomColumns(columns) => {
            let items: Vec<&Value> = found.iter().flat_map(|(_, items)| items).collect();
            if !items.is_empty() {
                print!(
                    "{}",
                    custom_columns_table(columns, &items, settings.no_headers)
                );
            }
        }
        Output::Yaml | Output::Json | Output::JsonPath(_) => {
            let all: Vec<Value> = found.into_iter().flat_map(|(_, items)| items).collect();
            let value = if single_by_name && all.len() == 1 {
                all.into_iter().next().unwrap_or(Value::Null)
            } else {
                json!({"apiVersion": "v1", "items": all, "kind": "List", "metadata": {"resourceVersion": ""}})
            };
            match &settings.output {
                Output::Yaml => print!("{}", printers::to_yaml(&value)),
                Output::JsonPath(template) => print!("{}", template.render(&value)),
                _ => print!("{}", printers::to_json(&value)),
            }
        }
    }
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

/// Parses `HEADER:PATH,HEADER:PATH`; commas inside brackets or quotes belong to the path.
fn custom_columns(spec: &str) -> CliResult<Vec<(String, Template)>> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut quote = None;
    let mut current = String::new();
    for c in spec.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '[' | '{' | '(') => depth += 1,
            (None, ']' | '}' | ')') => depth -= 1,
            (None, ',') if depth == 0 => {
                parts.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    parts.push(current);
    let mut columns = Vec::new();
    for part in parts {
        let Some((header, path)) = part
            .split_once(':')
            .filter(|(h, p)| !h.is_empty() && !p.is_empty())
        else {
            return Err(fail!(
                "unexpected custom-columns spec: {part}, expected <header>:<json-path-expr>"
            ));
        };
        let template = Template::parse_relaxed(path)
            .map_err(|e| fail!("error parsing custom-columns path {path}: {e}"))?;
        columns.push((header.to_owned(), template));
    }
    Ok(columns)
}

fn custom_columns_table(
    columns: &[(String, Template)],
    items: &[&Value],
    no_headers: bool,
) -> String {
    let header: Vec<String> = columns.iter().map(|(h, _)| h.clone()).collect();
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|item| {
            columns
                .iter()
                .map(|(_, t)| {
                    let values: Vec<String> = t.values(item).into_iter().map(text_of).collect();
                    if values.is_empty() {
                        "<none>".to_owned()
                    } else {
                        values.join(",")
                    }
                })
                .collect()
        })
        .collect();
    let header = (!no_headers).then_some(header.as_slice());
    align(&printers::table_text(header, &rows), 3)
}

/// Sorts by the value at `template`, as kubectl's `--sort-by`: numbers by value, everything
/// else by its text; objects without the field first. A path no object has is an error.
fn sort_items(items: &mut [Value], path: &str, template: &Template) -> CliResult {
    if items.len() > 1 && items.iter().all(|i| template.values(i).is_empty()) {
        return Err(fail!(
            "couldn't find any field with path \"{path}\" in the list of objects"
        ));
    }
    items.sort_by(|a, b| {
        let key = |v: &Value| template.values(v).first().map(|v| (*v).clone());
        compare_values(key(a).as_ref(), key(b).as_ref())
    });
    Ok(())
}

fn compare_values(a: Option<&Value>, b: Option<&Value>) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (Some(Value::Number(x)), Some(Value::Number(y))) => x
            .as_f64()
            .zip(y.as_f64())
            .and_then(|(x, y)| x.partial_cmp(&y))
            .unwrap_or(Ordering::Equal),
        (Some(x), Some(y)) => text_of(x).cmp(&text_of(y)),
    }
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
    let opts = |wide, no_headers| TableOptions {
        wide,
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
        let no_headers = header_printed || settings.no_headers;
        let text = match &settings.output {
            Output::Table { wide } => {
                header_printed = true;
                table(
                    info,
                    std::slice::from_ref(&event.object),
                    opts(*wide, no_headers),
                    now,
                )
            }
            Output::CustomColumns(columns) => {
                header_printed = true;
                custom_columns_table(columns, &[&event.object], no_headers)
            }
            Output::Name => format!("{}\n", kind_slash_name(info, name_of(&event.object))),
            Output::Yaml => format!("---\n{}", printers::to_yaml(&event.object)),
            Output::Json => printers::to_json(&event.object),
            Output::JsonPath(template) => template.render(&event.object),
        };
        print!("{text}");
        use std::io::Write;
        let _ = std::io::stdout().flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn custom_columns_print_values_or_none() {
        let columns =
            custom_columns("NAME:.metadata.name,IMAGES:.spec.containers[*].image,IP:status.podIP")
                .unwrap();
        let a = json!({"metadata": {"name": "a"}, "spec": {"containers": [{"image": "x"}, {"image": "y"}]}});
        let b = json!({"metadata": {"name": "bb"}, "spec": {"containers": []}, "status": {"podIP": "1.2.3.4"}});
        assert_eq!(
            custom_columns_table(&columns, &[&a, &b], false),
            "NAME   IMAGES   IP\na      x,y      <none>\nbb     <none>   1.2.3.4\n"
        );
        let filtered =
            custom_columns("READY:.status.conditions[?(@.type==\"Ready\")].status").unwrap();
        assert_eq!(filtered.len(), 1);
        for bad in ["NAME", "NAME:", ":.x", "A:.x,B"] {
            assert!(custom_columns(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sort_by_orders_numbers_by_value_and_missing_first() {
        let mut items = vec![
            json!({"n": "c", "v": 10}),
            json!({"n": "a", "v": 9}),
            json!({"n": "b"}),
        ];
        let t = Template::parse_relaxed(".v").unwrap();
        sort_items(&mut items, ".v", &t).unwrap();
        let names: Vec<&str> = items.iter().map(|i| i["n"].as_str().unwrap()).collect();
        assert_eq!(names, ["b", "a", "c"]);
        let t = Template::parse_relaxed(".nope").unwrap();
        assert!(sort_items(&mut items, ".nope", &t).is_err());
    }
}
