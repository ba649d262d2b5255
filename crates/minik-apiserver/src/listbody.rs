//! A list answered in JSON as the connection takes it.
//!
//! A LIST of 10,000 pods is 23 MB of JSON. Built whole, the answer was a second copy of every
//! item next to the store's, and the allocator kept much of that memory after the answer was
//! sent. Here the items stay the store's bytes until their turn comes. Each is copied into a
//! chunk of about [`CHUNK_BYTES`], and the chunk goes out before the next is made. The answer's
//! length is known from the start, so it goes with a `Content-Length`, as before, rather than
//! chunked. Kubernetes 1.33 streams its list encoding for the same reason
//! (`StreamingCollectionsEncodingToJSON`).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use hyper::body::{Frame, SizeHint};

/// About how many bytes one chunk of the answer holds; an item larger than this is a chunk
/// of its own.
pub(crate) const CHUNK_BYTES: usize = 64 * 1024;

/// `{head}[item,item,...]}`: the JSON of a list whose `head` is everything up to its items'
/// opening bracket, produced a chunk at a time.
pub(crate) struct ListBody {
    head: Option<Bytes>,
    items: VecDeque<Bytes>,
    /// Whether the item that comes next is the list's first (no comma before it).
    first: bool,
    done: bool,
    remaining: u64,
}

impl ListBody {
    /// `head` must end with the opening of the items array, `"items":[`.
    pub(crate) fn new(head: Bytes, items: Vec<Bytes>) -> ListBody {
        let commas = items.len().saturating_sub(1);
        let remaining = head.len() + items.iter().map(Bytes::len).sum::<usize>() + commas + 2;
        ListBody {
            head: Some(head),
            items: items.into(),
            first: true,
            done: false,
            remaining: remaining as u64,
        }
    }

    /// The whole answer in one piece (for encodings made from the JSON as a whole).
    pub(crate) fn whole(mut self) -> Bytes {
        let mut out = BytesMut::with_capacity(self.remaining as usize);
        while let Some(chunk) = self.next_chunk() {
            out.extend_from_slice(&chunk);
        }
        out.freeze()
    }

    /// The next chunk of the answer, or `None` when it has all gone out.
    fn next_chunk(&mut self) -> Option<Bytes> {
        if self.done {
            return None;
        }
        let mut chunk = BytesMut::with_capacity(CHUNK_BYTES + 1024);
        if let Some(head) = self.head.take() {
            chunk.extend_from_slice(&head);
        }
        while chunk.len() < CHUNK_BYTES {
            let Some(item) = self.items.pop_front() else {
                chunk.extend_from_slice(b"]}");
                self.done = true;
                break;
            };
            if !std::mem::take(&mut self.first) {
                chunk.extend_from_slice(b",");
            }
            // The item's bytes are dropped here: what has been sent is not held any more.
            chunk.extend_from_slice(&item);
        }
        self.remaining = self.remaining.saturating_sub(chunk.len() as u64);
        Some(chunk.freeze())
    }
}

impl hyper::body::Body for ListBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.get_mut().next_chunk().map(|c| Ok(Frame::data(c))))
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::body::Body as _;

    async fn collect(mut body: ListBody) -> (Vec<usize>, Vec<u8>) {
        let mut sizes = Vec::new();
        let mut all = Vec::new();
        while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await
        {
            let data = frame.unwrap().into_data().unwrap();
            sizes.push(data.len());
            all.extend_from_slice(&data);
        }
        (sizes, all)
    }

    fn item(i: usize, size: usize) -> Bytes {
        let text = format!("{{\"i\":{i},\"pad\":\"{}\"}}", "x".repeat(size));
        Bytes::from(text)
    }

    #[tokio::test]
    async fn the_chunks_make_the_list_and_its_length_is_exact() {
        for count in [0, 1, 2, 3, 100, 1000] {
            let items: Vec<Bytes> = (0..count).map(|i| item(i, 200 + i % 7)).collect();
            let head = Bytes::from_static(b"{\"kind\":\"PodList\",\"items\":[");
            let mut whole = head.to_vec();
            for (i, it) in items.iter().enumerate() {
                if i > 0 {
                    whole.push(b',');
                }
                whole.extend_from_slice(it);
            }
            whole.extend_from_slice(b"]}");
            let body = ListBody::new(head, items);
            assert_eq!(body.size_hint().exact(), Some(whole.len() as u64));
            let (sizes, all) = collect(body).await;
            assert_eq!(all, whole, "{count} items");
            let parsed: serde_json::Value = serde_json::from_slice(&all).unwrap();
            assert_eq!(parsed["items"].as_array().unwrap().len(), count);
            // No chunk is much larger than the target, unless one item is.
            assert!(sizes.iter().all(|s| *s < CHUNK_BYTES + 1024), "{sizes:?}");
            if whole.len() > 2 * CHUNK_BYTES {
                assert!(sizes.len() > 2, "{sizes:?}");
            }
        }
    }

    #[tokio::test]
    async fn an_item_larger_than_a_chunk_goes_whole() {
        let items = vec![item(0, 10), item(1, 3 * CHUNK_BYTES), item(2, 10)];
        let head = Bytes::from_static(b"{\"items\":[");
        let expected = head.len() + items.iter().map(Bytes::len).sum::<usize>() + 2 + 2;
        let (sizes, all) = collect(ListBody::new(head, items)).await;
        assert_eq!(all.len(), expected);
        assert!(sizes.iter().any(|s| *s > 3 * CHUNK_BYTES), "{sizes:?}");
        let parsed: serde_json::Value = serde_json::from_slice(&all).unwrap();
        assert_eq!(parsed["items"].as_array().unwrap().len(), 3);
    }
}
