//! Which cluster node serves each slot, as `CLUSTER SLOTS` last said, so that
//! `reserve_many` sends one pipeline per node rather than one per slot:
//! redis-rs refuses a pipeline whose keys cross slots unless it is routed to
//! a node by address, and 1,000 keys spread over ~1,000 slots.

use super::Node;
use crate::record;
use redis::Value;
use redis::cluster_async::ClusterConnection;
use std::sync::{Arc, RwLock};

/// One range of slots and the master serving it.
struct Range {
    first: u16,
    last: u16,
    node: Node,
}

/// The slot map, fetched on first use and forgotten when a node answers a
/// pipeline with an error; never required for correctness, since keys whose
/// node is unknown are claimed by slot.
#[derive(Default)]
pub(super) struct Slots {
    known: RwLock<Option<Arc<Vec<Range>>>>,
}

impl Slots {
    /// The indexes of `keys` grouped by the node serving their slot, and the
    /// indexes whose node is unknown (no map could be fetched, or it does
    /// not cover the slot).
    pub(super) async fn by_node(
        &self,
        conn: &mut ClusterConnection,
        keys: &[String],
    ) -> (Vec<(Node, Vec<usize>)>, Vec<usize>) {
        let known = self.known.read().ok().and_then(|map| map.clone());
        let map = match known {
            Some(map) => map,
            None => match fetch(conn).await {
                Some(map) => {
                    let map = Arc::new(map);
                    if let Ok(mut known) = self.known.write() {
                        *known = Some(map.clone());
                    }
                    map
                }
                None => return (Vec::new(), (0..keys.len()).collect()),
            },
        };
        let mut groups: Vec<(Node, Vec<usize>)> = Vec::new();
        let mut unknown = Vec::new();
        for (i, key) in keys.iter().enumerate() {
            let slot = record::slot(key);
            let at = map.partition_point(|range| range.first <= slot);
            match at.checked_sub(1).map(|at| &map[at]) {
                Some(range) if range.last >= slot => {
                    match groups
                        .iter_mut()
                        .find(|(node, _)| Arc::ptr_eq(node, &range.node))
                    {
                        Some((_, indexes)) => indexes.push(i),
                        None => groups.push((range.node.clone(), vec![i])),
                    }
                }
                _ => unknown.push(i),
            }
        }
        (groups, unknown)
    }

    /// Drops the map; the next call fetches it again.
    pub(super) fn forget(&self) {
        if let Ok(mut known) = self.known.write() {
            *known = None;
        }
    }
}

/// `CLUSTER SLOTS` as ranges sorted by first slot; `None` when the command
/// fails or its answer cannot be read (the caller then routes by slot).
async fn fetch(conn: &mut ClusterConnection) -> Option<Vec<Range>> {
    let reply: Value = redis::cmd("CLUSTER")
        .arg("SLOTS")
        .query_async(conn)
        .await
        .ok()?;
    let Value::Array(entries) = reply else {
        return None;
    };
    let mut nodes: Vec<Node> = Vec::new();
    let mut ranges = Vec::with_capacity(entries.len());
    for entry in entries {
        // [first, last, [host, port, id, ...], replicas...]
        let Value::Array(fields) = entry else {
            return None;
        };
        let (Some(Value::Int(first)), Some(Value::Int(last)), Some(Value::Array(master))) =
            (fields.first(), fields.get(1), fields.get(2))
        else {
            return None;
        };
        let host: String = match master.first()? {
            Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok()?,
            Value::SimpleString(text) => text.clone(),
            _ => return None,
        };
        let Some(Value::Int(port)) = master.get(1) else {
            return None;
        };
        // An unknown endpoint ("?" or empty) cannot be addressed.
        if host.is_empty() || host == "?" {
            continue;
        }
        let port = u16::try_from(*port).ok()?;
        let node = if let Some(node) = nodes.iter().find(|n| n.0 == host && n.1 == port) {
            node.clone()
        } else {
            let node = Arc::new((host, port));
            nodes.push(node.clone());
            node
        };
        ranges.push(Range {
            first: u16::try_from(*first).ok()?,
            last: u16::try_from(*last).ok()?,
            node,
        });
    }
    ranges.sort_by_key(|range| range.first);
    Some(ranges)
}
