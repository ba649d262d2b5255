//! A client for one base address that answers status codes and bodies as JSON: what tests read
//! from the API (a body that is not JSON comes back as a JSON string).

use serde_json::Value;

/// An answer: status code and body as JSON (text that is not JSON as a JSON string).
#[derive(Debug)]
pub struct Answer {
    pub code: u16,
    pub body: Value,
}

impl Answer {
    /// Whether the code is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.code)
    }
}

/// HTTP to one server: `base` is `https://127.0.0.1:PORT` (its CA trusted when a test
/// started it) or `http://...`.
#[derive(Clone)]
pub struct Http {
    pub base: String,
    pub client: reqwest::Client,
}

impl Http {
    /// A client for `base` whose requests give up after [`crate::DEADLINE`].
    pub fn new(base: impl Into<String>) -> Http {
        let base: String = base.into();
        let client = crate::trust::builder(&base)
            .timeout(crate::DEADLINE)
            .build()
            .expect("an HTTP client");
        Http { base, client }
    }

    /// The same, with no timeout of its own (for watches a test holds open).
    pub fn without_timeout(base: impl Into<String>) -> Http {
        let base: String = base.into();
        let client = crate::trust::client(&base);
        Http { base, client }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `METHOD base+path` with `body` of `content_type`; fails the test only if no answer came.
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: Option<String>,
    ) -> Answer {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = self.client.request(method.clone(), self.url(path));
        if let Some(body) = body {
            request = request.header("content-type", content_type).body(body);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: no answer: {e}"));
        let code = response.status().as_u16();
        let text = response.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Answer { code, body }
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.send("GET", path, "", None).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Answer {
        self.send("POST", path, "application/json", Some(body.to_string()))
            .await
    }

    pub async fn put(&self, path: &str, body: &Value) -> Answer {
        self.send("PUT", path, "application/json", Some(body.to_string()))
            .await
    }

    pub async fn patch(&self, path: &str, content_type: &str, body: &Value) -> Answer {
        self.send("PATCH", path, content_type, Some(body.to_string()))
            .await
    }

    /// A JSON merge patch, what most tests mean by a patch.
    pub async fn merge_patch(&self, path: &str, body: &Value) -> Answer {
        self.patch(path, "application/merge-patch+json", body).await
    }

    pub async fn delete(&self, path: &str) -> Answer {
        self.send("DELETE", path, "", None).await
    }

    /// `GET base+path` decoded as JSON, or `None` if there was no answer or not a success.
    pub async fn get_json(&self, path: &str) -> Option<Value> {
        get_json(&self.client, &self.base, path).await
    }

    /// `GET base+path` as text, or `None` if there was no answer or not a success.
    pub async fn get_text(&self, path: &str) -> Option<String> {
        get_text(&self.client, &self.base, path).await
    }

    /// Polls `GET base+path` until `check` holds for the object; answers it. A timeout shows
    /// the object as last read.
    pub async fn wait_until(
        &self,
        what: &str,
        path: &str,
        check: impl Fn(&Value) -> bool,
    ) -> Value {
        crate::wait_for(what, crate::DEADLINE, || async {
            match self.get_json(path).await {
                Some(object) if check(&object) => Ok(object),
                seen => Err(seen),
            }
        })
        .await
    }
}

/// `GET base+path` decoded as JSON, or `None` if there was no answer or not a success: for
/// conditions polled while a server may still be starting or restarting.
pub async fn get_json(client: &reqwest::Client, base: &str, path: &str) -> Option<Value> {
    let response = client.get(format!("{base}{path}")).send().await.ok()?;
    response.status().is_success().then_some(())?;
    response.json().await.ok()
}

/// `GET base+path` as text, or `None` if there was no answer or not a success.
pub async fn get_text(client: &reqwest::Client, base: &str, path: &str) -> Option<String> {
    let response = client.get(format!("{base}{path}")).send().await.ok()?;
    response.status().is_success().then_some(())?;
    response.text().await.ok()
}

/// Waits (up to [`crate::DEADLINE`]) until node `name` of the server at `base` is Ready; answers
/// the node.
pub async fn wait_node_ready(client: &reqwest::Client, base: &str, name: &str) -> Value {
    let path = format!("/api/v1/nodes/{name}");
    let what = format!("node {name} to be Ready");
    crate::wait_for(&what, crate::DEADLINE, || async {
        match get_json(client, base, &path).await {
            Some(node) if crate::manifest::is_ready(&node) => Ok(node),
            Some(node) => Err(node["status"]["conditions"].clone()),
            None => Err(Value::Null),
        }
    })
    .await
}
