//! [`Label`]: the name a node shows in reports, errors, causes and events.

use alloc::borrow::Cow;

/// A node's label: free for `&'static str`, owned otherwise.
pub(crate) type Label = Cow<'static, str>;
