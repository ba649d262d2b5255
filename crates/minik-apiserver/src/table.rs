//! Server-side `Table` answers (`Accept: application/json;as=Table;v=v1;g=meta.k8s.io`), which
//! is how kubectl asks for what `get` prints: column definitions and one row of cells per
//! object, computed by `minik_api::printers`, with `includeObject=None|Metadata|Object` saying
//! what each row carries besides its cells. Lists, single objects and watches are served.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use minik_api::resources::ResourceInfo;
use minik_api::ApiError;
use serde_json::{json, Map, Value};

use crate::registry::ListResult;

/// The `meta.k8s.io` version of `Table` a client asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TableRequest {
    api_version: &'static str,
}

/// What each row carries besides its cells (`includeObject`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IncludeObject {
    None,
    /// A `PartialObjectMetadata` (Kubernetes' default).
    Metadata,
    Object,
}

/// The Table a client asked for, if it asked for one before any representation minik serves
/// otherwise (`Accept` lists choices in order of preference).
pub(crate) fn requested(headers: &HeaderMap) -> Option<TableRequest> {
    let accept = headers.get(header::ACCEPT)?.to_str().ok()?;
    for item in accept.split(',') {
        let mut parts = item.split(';').map(str::trim);
        let media = parts.next().unwrap_or_default().to_ascii_lowercase();
        let params: HashMap<String, String> = parts
            .filter_map(|p| p.split_once('='))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let as_kind = params.get("as").map(String::as_str);
        if media != "application/json" && as_kind.is_some() {
            continue;
        }
        match as_kind {
            None => return None,
            Some("Table") if params.get("g").map(String::as_str) == Some("meta.k8s.io") => {
                match params.get("v").map(String::as_str) {
                    Some("v1") => {
                        return Some(TableRequest {
                            api_version: "meta.k8s.io/v1",
                        })
                    }
                    Some("v1beta1") => {
                        return Some(TableRequest {
                            api_version: "meta.k8s.io/v1beta1",
                        })
                    }
                    _ => continue,
                }
            }
            // Another representation minik does not serve (PartialObjectMetadata, ...): the
            // next choice is looked at, as Kubernetes does.
            Some(_) => continue,
        }
    }
    None
}

/// Reads `includeObject`; Kubernetes' default is `Metadata`.
pub(crate) fn include_object(query: &HashMap<String, String>) -> Result<IncludeObject, ApiError> {
    match query.get("includeObject").map(String::as_str) {
        None | Some("") | Some("Metadata") => Ok(IncludeObject::Metadata),
        Some("None") => Ok(IncludeObject::None),
        Some("Object") => Ok(IncludeObject::Object),
        Some(other) => Err(ApiError::BadRequest(format!(
            "includeObject: Unsupported value: {other:?}: supported values: \"Metadata\", \"None\", \"Object\""
        ))),
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

fn column_definitions(info: &ResourceInfo) -> Vec<Value> {
    info.columns()
        .iter()
        .map(|c| {
            json!({
                "name": c.name,
                "type": c.cell.as_str(),
                "format": c.format,
                "description": c.description,
                "priority": c.priority,
            })
        })
        .collect()
}

fn row(
    info: &ResourceInfo,
    object: Value,
    table: TableRequest,
    include: IncludeObject,
    now: i64,
) -> Value {
    let cells = info.cells(&object, now);
    let mut row = Map::new();
    row.insert("cells".into(), Value::Array(cells));
    let conditions = info.strategy.row_conditions(&object);
    if !conditions.is_null() {
        row.insert("conditions".into(), conditions);
    }
    match include {
        IncludeObject::None => {}
        IncludeObject::Object => {
            row.insert("object".into(), object);
        }
        IncludeObject::Metadata => {
            let metadata = object.get("metadata").cloned().unwrap_or_else(|| json!({}));
            row.insert(
                "object".into(),
                json!({
                    "kind": "PartialObjectMetadata",
                    "apiVersion": table.api_version,
                    "metadata": metadata,
                }),
            );
        }
    }
    Value::Object(row)
}

fn table(
    table: TableRequest,
    metadata: Value,
    columns: Option<Vec<Value>>,
    rows: Vec<Value>,
) -> Value {
    let mut t = json!({
        "kind": "Table",
        "apiVersion": table.api_version,
        "metadata": metadata,
        "rows": rows,
    });
    if let Some(columns) = columns {
        t["columnDefinitions"] = Value::Array(columns);
    } else {
        t["columnDefinitions"] = json!([]);
    }
    t
}

fn parse(item: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(item).map_err(|e| ApiError::Internal(format!("stored object: {e}")))
}

fn json_answer(body: &Value) -> Response {
    crate::answer::json_response(StatusCode::OK, Bytes::from(body.to_string()))
}

/// A list as a `Table`; a page of a list keeps its `continue` and `remainingItemCount`.
pub(crate) fn list(
    info: &ResourceInfo,
    list: &ListResult,
    request: TableRequest,
    query: &HashMap<String, String>,
) -> Result<Response, ApiError> {
    let include = include_object(query)?;
    let now = now();
    let rows = list
        .items
        .iter()
        .map(|item| Ok(row(info, parse(item)?, request, include, now)))
        .collect::<Result<Vec<_>, ApiError>>()?;
    Ok(json_answer(&table(
        request,
        crate::http::list_meta(list),
        Some(column_definitions(info)),
        rows,
    )))
}

/// One object as a `Table` of one row.
pub(crate) fn object(
    info: &ResourceInfo,
    stored: &[u8],
    request: TableRequest,
    query: &HashMap<String, String>,
) -> Result<Response, ApiError> {
    let include = include_object(query)?;
    let object = parse(stored)?;
    let rv = object
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let rows = vec![row(info, object, request, include, now())];
    Ok(json_answer(&table(
        request,
        json!({ "resourceVersion": rv }),
        Some(column_definitions(info)),
        rows,
    )))
}

/// Rewrites one watch event line: the object of ADDED, MODIFIED and DELETED events becomes a
/// `Table` of one row (with the column definitions only in the first, as Kubernetes saves
/// them on the rest); BOOKMARK and ERROR events pass unchanged.
fn watch_line(
    info: &ResourceInfo,
    line: &[u8],
    request: TableRequest,
    include: IncludeObject,
    first: &mut bool,
) -> Bytes {
    let Ok(mut event) = serde_json::from_slice::<Value>(line) else {
        return Bytes::copy_from_slice(line);
    };
    let kind = event
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if matches!(kind, "ADDED" | "MODIFIED" | "DELETED") {
        let object = event["object"].take();
        let rv = object
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let columns = std::mem::take(first).then(|| column_definitions(info));
        let rows = vec![row(info, object, request, include, now())];
        event["object"] = table(request, json!({ "resourceVersion": rv }), columns, rows);
    }
    let mut out = event.to_string().into_bytes();
    out.push(b'\n');
    Bytes::from(out)
}

/// A watch answer as it is, or with `Table`s in its events when a Table was asked for.
pub(crate) fn maybe_watch(
    info: &'static ResourceInfo,
    response: Response,
    request: Option<TableRequest>,
    query: &HashMap<String, String>,
) -> Result<Response, ApiError> {
    match request {
        Some(request) => watch(info, response, request, query),
        None => Ok(response),
    }
}

/// A watch answer whose events carry `Table`s instead of objects.
fn watch(
    info: &'static ResourceInfo,
    response: Response,
    request: TableRequest,
    query: &HashMap<String, String>,
) -> Result<Response, ApiError> {
    let include = include_object(query)?;
    let (mut parts, body) = response.into_parts();
    let mut pending = BytesMut::new();
    let mut first = true;
    let stream = body.into_data_stream().map(move |chunk| {
        let chunk = chunk?;
        pending.extend_from_slice(&chunk);
        let mut out = BytesMut::new();
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line = pending.split_to(end + 1);
            out.extend_from_slice(&watch_line(
                info,
                &line[..end],
                request,
                include,
                &mut first,
            ));
        }
        Ok::<_, axum::Error>(out.freeze())
    });
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(Response::from_parts(parts, Body::from_stream(stream)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use minik_api::resources;

    fn accept(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn table_is_served_when_asked_for_first() {
        let kubectl = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
        assert_eq!(
            requested(&accept(kubectl)).map(|t| t.api_version),
            Some("meta.k8s.io/v1")
        );
        assert_eq!(
            requested(&accept(
                "application/json; as=Table; v=v1beta1; g=meta.k8s.io"
            ))
            .map(|t| t.api_version),
            Some("meta.k8s.io/v1beta1")
        );
        // An unknown representation is skipped; plain JSON before a Table wins.
        let skip = "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1;g=meta.k8s.io";
        assert!(requested(&accept(skip)).is_some());
        assert!(requested(&accept(
            "application/json,application/json;as=Table;v=v1;g=meta.k8s.io"
        ))
        .is_none());
        assert!(requested(&accept("application/json;as=Table;v=v2;g=meta.k8s.io")).is_none());
        assert!(requested(&accept("application/json;as=Table;v=v1;g=apps")).is_none());
        assert!(requested(&HeaderMap::new()).is_none());
    }

    #[test]
    fn include_object_is_validated() {
        let q = |v: &str| HashMap::from([("includeObject".to_owned(), v.to_owned())]);
        assert_eq!(
            include_object(&HashMap::new()).unwrap(),
            IncludeObject::Metadata
        );
        assert_eq!(include_object(&q("None")).unwrap(), IncludeObject::None);
        assert_eq!(include_object(&q("Object")).unwrap(), IncludeObject::Object);
        let err = include_object(&q("All")).unwrap_err();
        assert_eq!(err.code(), 400);
        assert!(err.to_string().contains("includeObject"), "{err}");
    }

    #[test]
    fn rows_carry_cells_and_the_object_asked_for() {
        let info = resources::by_plural("", "v1", "pods").unwrap();
        let request = TableRequest {
            api_version: "meta.k8s.io/v1",
        };
        let pod = json!({"metadata": {"name": "p", "namespace": "ns", "labels": {"a": "b"}},
                         "spec": {"containers": [{"name": "c"}]},
                         "status": {"phase": "Succeeded"}});
        let r = row(info, pod.clone(), request, IncludeObject::Metadata, 0);
        assert_eq!(r["cells"][0], "p");
        assert_eq!(r["cells"][2], "Succeeded");
        assert_eq!(r["object"]["kind"], "PartialObjectMetadata");
        assert_eq!(r["object"]["metadata"]["labels"]["a"], "b");
        assert!(r["object"].get("spec").is_none());
        assert_eq!(r["conditions"][0]["type"], "Completed");
        let r = row(info, pod.clone(), request, IncludeObject::Object, 0);
        assert_eq!(r["object"], pod);
        let r = row(info, pod, request, IncludeObject::None, 0);
        assert!(r.get("object").is_none());
    }

    #[test]
    fn watch_events_become_tables_with_columns_once() {
        let info = resources::by_plural("", "v1", "pods").unwrap();
        let request = TableRequest {
            api_version: "meta.k8s.io/v1",
        };
        let mut first = true;
        let mut line = |raw: &[u8]| -> Value {
            let line = watch_line(info, raw, request, IncludeObject::Metadata, &mut first);
            serde_json::from_slice(&line).unwrap()
        };
        let added = br#"{"type":"ADDED","object":{"metadata":{"name":"p","resourceVersion":"7"}}}"#;
        let one = line(added);
        assert_eq!(one["object"]["kind"], "Table");
        assert_eq!(one["object"]["metadata"]["resourceVersion"], "7");
        assert_eq!(one["object"]["columnDefinitions"][0]["name"], "Name");
        assert_eq!(one["object"]["rows"][0]["cells"][0], "p");
        let two = line(added);
        assert_eq!(two["object"]["columnDefinitions"], json!([]));
        let bookmark =
            br#"{"type":"BOOKMARK","object":{"kind":"Pod","metadata":{"resourceVersion":"9"}}}"#;
        let b = line(bookmark);
        assert_eq!(b["object"]["kind"], "Pod");
    }
}
