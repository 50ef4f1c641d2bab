//! The hang-up: how a response that cannot be finished closes its client connection.
//!
//! [`connection`](crate::connection) puts a [`HangUp`] in every request's extensions and closes
//! the connection when it is notified; a handler whose body has been cut off while hyper may not
//! be polling it (a scrape, see `scrape::coalesce::buffer`) notifies it. It sits below both, so
//! neither imports the other for it.

use std::sync::Arc;

use tokio::sync::Notify;

/// In each request's extensions: notify it to close this connection at once, when a response
/// has been cut off and hyper may not be polling it (see `scrape::coalesce::buffer`).
#[derive(Debug, Clone)]
pub struct HangUp(pub Arc<Notify>);
