//! Resources: a producer client and a mock cluster. Their destructors never block: the
//! owners hand teardown to erlkaf_core's reaper.

use crate::keep::Keep;
use erlkaf_core::mock::MockCluster;
use erlkaf_core::producer::Producer;
use std::sync::Mutex;

/// A producer client.
pub struct ProducerRes {
    pub producer: Producer<Keep>,
    /// Reports need each message's MsgRef (a delivery-report callback exists).
    pub keep_refs: bool,
}

#[rustler::resource_impl]
impl rustler::Resource for ProducerRes {}

/// A mock cluster; `None` once stopped.
pub struct MockRes {
    pub mock: Mutex<Option<MockCluster>>,
}

#[rustler::resource_impl]
impl rustler::Resource for MockRes {}
