//! How long work takes where: measured speeds per node and model ([`speed`]) and the
//! expected-finish ranking placement uses ([`finish`]). Pure: no I/O, no clock, no
//! locks, so the live dispatch and the fleet simulator run the same code.

pub mod finish;
pub mod speed;

pub(crate) use crate::scheduler::canonical_model as canonical;
