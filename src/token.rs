//! A cheap, cloneable observer of one node.

use core::fmt;

use crate::node::NodeRef;
use crate::observe::observer_methods;

/// A cloneable handle that can see and request the cancellation of one node.
///
/// Give tokens to code that must notice shutdown (an accept loop, a worker)
/// but does not own a place in the tree. A token never keeps its node from
/// draining: only the node's [`Phaser`](crate::Phaser) and its children do.
///
/// A node counts its tokens and futures; like `Arc`, cloning one past
/// `isize::MAX` of them (only possible by leaking them with
/// [`mem::forget`](core::mem::forget)) aborts the process rather than let
/// the count wrap.
///
/// # Examples
///
/// ```
/// let root = phaseout::Phaser::new();
/// let token = root.token();
/// let worker = std::thread::spawn(move || {
///     while !token.is_cancelled() {
///         std::thread::yield_now(); // one unit of work
///     }
/// });
/// root.cancel();
/// worker.join().unwrap();
/// ```
#[derive(Clone)]
pub struct Token {
    node: NodeRef,
}

impl Token {
    pub(crate) fn new(node: NodeRef) -> Self {
        Self { node }
    }

    fn node_ref(&self) -> &NodeRef {
        &self.node
    }

    observer_methods!(".token()");
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("label", &self.node.label())
            .field("cancelled", &self.is_cancelled())
            .finish()
    }
}
