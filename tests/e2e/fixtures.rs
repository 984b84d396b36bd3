//! Identities, names and the policy the broker end-to-end tests share (realm, gRPC): the
//! shared harness's (`svid_broker_testkit::broker`).

pub(crate) use svid_broker_testkit::broker::{
    ADMIN, AUDIENCE, BUILDER, BrokerFixture, BrokerSpec, ISSUER, POLICY, READER, SERVICE, STRANGER,
    id,
};
