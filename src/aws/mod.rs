//! Signing our own requests to AWS services: credentials of the standard chain, SigV4 for HTTP,
//! Amazon MSK IAM tokens.

pub mod credentials;
pub mod msk_iam;
pub mod sigv4;
